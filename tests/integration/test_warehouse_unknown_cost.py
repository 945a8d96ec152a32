"""A model without a published price (qwen3.5-ocr) loads its cost as NULL — row, ledger and report — never 0."""

from __future__ import annotations

import json

import pytest

from airflow_provider_qwenocr.ocr.results import OcrResult, Usage, idempotency_key
from airflow_provider_qwenocr.warehouse.loader import load_results, run_ledger
from airflow_provider_qwenocr.warehouse.tasks import query, warehouse_hook

pytestmark = pytest.mark.integration


def _row(n: int, model: str) -> dict:
    sha = f"{n:064x}"
    return OcrResult(source=f"/docs/doc{n}.png", task="text_recognition", model=model, sha256=sha,
                     key=idempotency_key(sha, "text_recognition", model), text=f"text {n}",
                     usage=Usage(1000, 20, 980, 1020)).to_row()


def test_unknown_price_loads_as_null(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WH_UNKNOWN", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}))
    hook = warehouse_hook("wh_unknown")
    report = load_results(hook, [_row(1, "qwen3.5-ocr"), _row(2, "qwen-vl-ocr")], dag_id="d", run_id="r1")
    assert report.n_billed == 2 and report.cost == {"cny": None, "usd": None}
    costs = {r["model"]: (r["cost_usd"], r["cost_cny"]) for r in query(hook, 'SELECT * FROM "ocr_results"')}
    assert costs["qwen3.5-ocr"] == (None, None) and costs["qwen-vl-ocr"][0] > 0
    ledger = {r["model"]: r for r in run_ledger(hook, dag_id="d")}
    assert ledger["qwen3.5-ocr"]["cost_usd"] is None and ledger["qwen3.5-ocr"]["total_tokens"] == 1020
    assert ledger["qwen-vl-ocr"]["cost_usd"] > 0  # a known model's figure is unchanged by its neighbour
