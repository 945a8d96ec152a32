"""The README's key information extraction example, offline (issue 20 item 17).

The README's "Every task type" block is imported as written (a DagBag, like test_readme_blocks.py); its
``receipts`` task is run as defined there — same task, schema and model — against the emulator on the
sample receipts, only with the documents and the output redirected. The old README schema
(``invoice_number``, ``seller.name`` …) came back all null from the emulator, whose KIE fills only keys printed
as labels on the document; the README's schema must now be filled, and a field the receipt does not print
must stay null.
"""

from __future__ import annotations

import os
import pathlib
import sys
from types import SimpleNamespace

import pytest

from airflow_provider_qwenocr.ocr.flatten import kv_values, schema_columns
from airflow_provider_qwenocr.runs.results_store import read_results
from tests.unit.test_readme_blocks import dagbag_of, for_this_airflow

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = REPO / "dags" / "sample_docs"
sys.path.insert(0, os.path.join(REPO, "scripts"))
import readme_proof  # noqa: E402  (a script, found through scripts/)


def _readme_kie_task(tmp_path):
    blocks = readme_proof.python_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    (block,) = [b for b in blocks if b["heading"] == "Every task type in a DAG"]
    dags, errors = dagbag_of(for_this_airflow(block["code"]), tmp_path)
    assert not errors and len(dags) == 1
    (dag,) = dags.values()
    return dag.get_task("receipts")


def _leaves(kv, schema):
    for key, sub in schema.items():
        if isinstance(sub, dict):
            yield from _leaves((kv or {}).get(key), sub)
        else:
            yield (kv or {}).get(key) if isinstance(kv, dict) else None


def test_the_readme_kie_example_is_filled_by_the_emulator(emulator, emulator_conn, tmp_path):
    op = _readme_kie_task(tmp_path)
    assert op.task == "key_information_extraction" and op.conn_id == emulator_conn
    op.images = [str(SAMPLES / "receipt_01.png"), str(SAMPLES / "receipt_02.png")]
    op.output_uri, op.use_cache = str(tmp_path / "kie.jsonl"), False
    ti = SimpleNamespace(dag_id="scans_every_task", task_id="receipts", run_id="manual__readme", map_index=-1)
    out = op.execute({"ti": ti, "run_id": "manual__readme"})
    assert out["n_ok"] == 2
    rows = {pathlib.Path(r["source"]).name: r for r in read_results(out["results_uri"])}

    schema = op.result_schema
    filled = list(_leaves(rows["receipt_01.png"]["kv"], schema))
    assert filled and all(v not in (None, "") for v in filled), rows["receipt_01.png"]["kv"]
    typed = kv_values(rows["receipt_01.png"]["kv"], schema_columns(schema))
    assert 128.5 in typed.values() and "2026-03-14" in typed.values()  # the number: and date: columns parse
    assert rows["receipt_02.png"]["kv"]["发票号码"] is None  # not printed on receipt_02: never invented
