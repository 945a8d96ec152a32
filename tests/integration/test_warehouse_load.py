"""Idempotent loads into SQLite (embedded) and a real local Postgres, the typed KIE table and the ledger."""

from __future__ import annotations

import json

import pytest

from airflow_provider_qwenocr.ocr.results import OcrResult, Usage, idempotency_key
from airflow_provider_qwenocr.warehouse.loader import load_results, run_ledger
from airflow_provider_qwenocr.warehouse.tables import row_cost
from airflow_provider_qwenocr.warehouse.tasks import query, warehouse_hook

SCHEMA = {"发票号码": "", "金额": {"合计金额": "number: total"}, "开票日期": "date:"}


def _row(n: int, task="text_recognition", kv=None, status="ok", tokens=(1000, 20)) -> dict:
    sha = f"{n:064x}"
    res = OcrResult(source=f"/docs/doc{n}.png", task=task, model="qwen-vl-ocr", status=status, sha256=sha,
                    key=idempotency_key(sha, task, "qwen-vl-ocr"), text=f"text {n}", kv=kv,
                    usage=Usage(tokens[0], tokens[1], tokens[0] - 20, sum(tokens)))
    return res.to_row()


@pytest.fixture(params=["sqlite", "postgres"])
def hook(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        monkeypatch.setenv("AIRFLOW_CONN_WH_TEST", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}))
        return warehouse_hook("wh_test")
    return warehouse_hook(request.getfixturevalue("pg_warehouse"))


def test_reload_adds_no_rows_and_bills_once(hook):
    rows = [_row(1), _row(2), _row(3, status="error", tokens=(0, 0))]
    first = load_results(hook, rows, dag_id="d", run_id="r1")
    assert (first.n_rows, first.n_new, first.n_updated, first.n_billed) == (3, 3, 0, 2)
    assert first.usage["total_tokens"] == 2 * 1020
    expected = row_cost(rows[0])
    assert first.cost["cny"] == pytest.approx(2 * expected["cny"]) and first.cost["cny"] > 0

    again = load_results(hook, rows, dag_id="d", run_id="r1")  # a retried load task
    later = load_results(hook, rows, dag_id="d", run_id="r2")  # a new run over the same documents
    assert (again.n_new, again.n_billed, later.n_new, later.n_billed) == (0, 0, 0, 0)
    assert query(hook, 'SELECT COUNT(*) AS n FROM "ocr_results"')[0]["n"] == 3
    got = {r["key"]: r for r in query(hook, 'SELECT * FROM "ocr_results"')}
    assert got[rows[0]["key"]]["first_run_id"] == "r1" and got[rows[0]["key"]]["last_run_id"] == "r2"
    assert got[rows[2]["key"]]["status"] == "error"

    ledger = {r["run_id"]: r for r in run_ledger(hook, dag_id="d")}
    assert ledger["r1"]["n_billed"] == 2 and ledger["r1"]["total_tokens"] == 2040
    assert "r2" not in ledger  # nothing new, nothing billed


def test_error_row_replaced_by_later_success_and_billed_then(hook):
    bad = _row(7, status="error", tokens=(0, 0))
    load_results(hook, [bad], dag_id="d", run_id="r1")
    good = _row(7)
    rep = load_results(hook, [good], dag_id="d", run_id="r2")
    assert (rep.n_new, rep.n_billed) == (0, 1)
    row = query(hook, 'SELECT "status", "first_run_id" FROM "ocr_results"')[0]
    assert row == {"status": "ok", "first_run_id": "r1"}


def test_batch_rows_cost_half(hook):
    rt = load_results(hook, [_row(1)], dag_id="d", run_id="rt")
    bt = load_results(hook, [_row(2)], dag_id="d", run_id="bt", mode="batch")
    assert bt.cost["usd"] == pytest.approx(rt.cost["usd"] / 2)
    assert {r["mode"] for r in run_ledger(hook, run_id="bt")} == {"batch"}


def test_kie_table_typed_and_null_for_unread(hook):
    kie = "key_information_extraction"
    rows = [_row(1, kie, {"发票号码": "31245678", "金额": {"合计金额": "¥128.50"}, "开票日期": "2026-03-14"}),
            _row(2, kie, {"发票号码": None, "金额": {"合计金额": "12?.00"}, "开票日期": "2026-04-02"}),
            _row(3)]  # text recognition: not a KIE row
    rep = load_results(hook, rows, dag_id="d", run_id="r1", result_schema=SCHEMA)
    assert rep.n_kie == 2
    got = {r["source"]: r for r in query(hook, 'SELECT * FROM "ocr_kie"')}
    assert set(got) == {"/docs/doc1.png", "/docs/doc2.png"}
    assert got["/docs/doc1.png"]["发票号码"] == "31245678"
    assert got["/docs/doc1.png"]["金额__合计金额"] == pytest.approx(128.5)
    assert str(got["/docs/doc1.png"]["开票日期"]) == "2026-03-14"
    assert got["/docs/doc2.png"]["发票号码"] is None and got["/docs/doc2.png"]["金额__合计金额"] is None


def test_new_schema_field_adds_a_column(hook):
    kie = "key_information_extraction"
    load_results(hook, [_row(1, kie, {"发票号码": "1"})], run_id="r1", result_schema={"发票号码": ""})
    load_results(hook, [_row(2, kie, {"发票号码": "2", "车次": "G1"})], run_id="r2",
                 result_schema={"发票号码": "", "车次": ""})
    got = {r["source"]: r for r in query(hook, 'SELECT * FROM "ocr_kie"')}
    assert got["/docs/doc2.png"]["车次"] == "G1" and got["/docs/doc1.png"]["车次"] is None


def test_undefined_connection_falls_back_to_embedded_sqlite(tmp_path):
    import os

    before = dict(os.environ)
    hook = warehouse_hook("qwenocr_wh_missing", fallback_sqlite=str(tmp_path / "fallback.db"))
    rep = load_results(hook, [_row(1)], run_id="r1")
    assert rep.n_new == 1 and (tmp_path / "fallback.db").exists()
    assert dict(os.environ) == before  # no connection invented through the environment
    again = warehouse_hook("qwenocr_wh_missing", fallback_sqlite=str(tmp_path / "fallback.db"))
    assert query(again, 'SELECT COUNT(*) AS n FROM "ocr_results"')[0]["n"] == 1
    with pytest.raises(Exception, match="qwenocr_wh_missing_too"):
        warehouse_hook("qwenocr_wh_missing_too")  # no fallback asked: the lookup error propagates


def test_a_cost_nobody_can_price_loads_as_null_never_zero(hook):
    known, unknown = _row(21), _row(22)
    known["cost"] = {"usd": 0.0002, "cny": 0.0015}  # priced by the client from the catalogue
    unknown["model"] = "qwen-vl-ocr-from-the-future"
    unknown["cost"] = {"usd": None, "cny": None}  # a model the catalogue does not price
    rep = load_results(hook, [known, unknown], dag_id="d", run_id="r1")
    assert rep.n_billed == 2 and rep.cost == {"cny": None, "usd": None}  # unknown, not "0.0015"
    got = {r["key"]: r for r in query(hook, 'SELECT "key", "cost_cny", "cost_usd" FROM "ocr_results"')}
    assert got[known["key"]]["cost_cny"] == pytest.approx(0.0015)  # the row's own cost, not re-priced
    assert got[unknown["key"]]["cost_cny"] is None and got[unknown["key"]]["cost_usd"] is None
    ledger = {r["model"]: r for r in run_ledger(hook, dag_id="d", run_id="r1")}
    assert ledger["qwen-vl-ocr"]["cost_cny"] == pytest.approx(0.0015)
    assert ledger["qwen-vl-ocr-from-the-future"]["cost_cny"] is None
    assert ledger["qwen-vl-ocr-from-the-future"]["total_tokens"] == 1020  # tokens are still counted


def test_report_logs_instead_of_printing(hook, caplog, monkeypatch):
    import builtins
    import logging

    def no_print(*args, **kwargs):
        raise AssertionError(f"print() called: {args}")

    monkeypatch.setattr(builtins, "print", no_print)
    from airflow_provider_qwenocr.warehouse.tasks import warehouse_report

    load = load_results(hook, [_row(31), _row(32)], dag_id="d", run_id="r9").to_dict()
    with caplog.at_level(logging.INFO, logger="airflow_provider_qwenocr.warehouse.tasks"):
        summary = warehouse_report(hook, dag_id="d", run_id="r9", ocr_outputs=[{"n_images": 2, "n_cached": 0}], load=load)
    assert summary["billed_rows"] == 2 and summary["cost_cny"] == pytest.approx(load["cost"]["cny"])
    assert "r9: 2 API calls" in caplog.text and "doc31.png" in caplog.text


def test_public_load_helpers_take_summaries_and_know_what_is_loaded(hook, tmp_path, monkeypatch):
    """What the example DAGs use from the public API: ``load_result_files`` takes the OCR tasks' XCom
    summaries (mapped ones as lists) as well as URIs; ``loaded_sha256s`` answers the nightly DAG's question
    (an empty set before the first load); ``fallback_sqlite=True`` is the embedded file in AIRFLOW_HOME."""
    from airflow_provider_qwenocr import load_result_files, loaded_sha256s
    from airflow_provider_qwenocr.runs.results_store import ResultsWriter

    assert loaded_sha256s(hook, task="text_recognition") == set()  # no table yet
    uris = []
    for name, rows in (("a", [_row(41), _row(42, status="error", tokens=(0, 0))]), ("b", [_row(43)])):
        uris.append(str(tmp_path / f"{name}.jsonl"))
        with ResultsWriter(uris[-1]) as writer:
            for row in rows:
                writer.write(row)
    outputs = [{"results_uri": uris[0], "n_images": 2}, [{"results_uri": uris[1]}, None]]
    report = load_result_files(hook, outputs, dag_id="d", run_id="r1")
    assert report["results_uris"] == uris and report["n_rows"] == 3
    assert loaded_sha256s(hook, task="text_recognition") == {f"{41:064x}", f"{43:064x}"}  # ok rows only
    assert loaded_sha256s(hook, task="table_parsing") == set()

    (tmp_path / "home").mkdir()
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    embedded = warehouse_hook("qwenocr_wh_not_defined", fallback_sqlite=True)
    load_results(embedded, [_row(44)], run_id="r1")
    assert (tmp_path / "home" / "qwenocr_warehouse.sqlite").exists()
