"""The local example DAG on the reader's own folder (issue 20 items 15 and 16), under ``dag.test()``.

- dags/README.md's "your own folder" command (only ``input_dir``) used to fail on any real folder: the KIE
  tasks globbed ``receipt_*`` / ``*ticket*`` inside it and refused to start when nothing matched. Now any
  folder of images/PDFs with any names runs: every document gets a text row, and the KIE tasks take the
  documents whose names match ``kie_patterns`` (skipped when none do).
- The warehouse load's SQL provider is checked by the DAG's first task: without it, the run fails before any
  OCR call (0 calls on the emulator) instead of after the OCR was paid for.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

import pytest

from airflow_provider_qwenocr.warehouse.tasks import query, warehouse_hook
from tests.fixtures.airflow import load_dag

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "dags" / "sample_docs"


@pytest.fixture
def own_folder(tmp_path) -> pathlib.Path:
    """A reader's folder: names with spaces, capitals, accents, a subfolder, a PDF, and a file that is no document."""
    from PIL import Image

    folder = tmp_path / "My Scans (2026)"
    (folder / "März 2026").mkdir(parents=True)
    shutil.copy(SAMPLES / "receipt_01.png", folder / "Scan 0001.PNG")
    shutil.copy(SAMPLES / "text_page.png", folder / "IMG_2041.jpeg.png")
    shutil.copy(SAMPLES / "train_ticket.png", folder / "März 2026" / "Fahrkarte – Berlin.png")
    Image.open(SAMPLES / "table.png").convert("RGB").save(folder / "inventory sheet.pdf")
    (folder / "notes.txt").write_text("not a document")
    return folder


def _conf(folder, tmp_path, **more) -> dict:
    return {"input_dir": str(folder), "warehouse_conn_id": "wh_any", "output_dir": str(tmp_path / "out"), **more}


@pytest.fixture
def sqlite_wh(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_WH_ANY", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")}))
    return "wh_any"


def test_the_readme_command_on_any_folder_loads_every_document(dag_runner, emulator, emulator_conn, sqlite_wh,
                                                                own_folder, tmp_path):
    emulator.reset_stats()
    dag_runner("qwen_ocr_local_to_warehouse", _conf(own_folder, tmp_path))  # what dags/README.md shows
    assert emulator.stats()["ocr_calls"] == 4  # text only: no name matches the default kie_patterns
    rows = query(warehouse_hook(sqlite_wh), 'SELECT "source", "task", "status" FROM "ocr_results"')
    names = sorted(pathlib.Path(r["source"].split("#")[0]).name for r in rows)
    assert names == sorted(["Scan 0001.PNG", "IMG_2041.jpeg.png", "Fahrkarte – Berlin.png", "inventory sheet.pdf"])
    assert {r["task"] for r in rows} == {"text_recognition"} and all(r["status"] == "ok" for r in rows)


def test_kie_patterns_pick_documents_by_any_name(dag_runner, emulator, emulator_conn, sqlite_wh, own_folder,
                                                 tmp_path):
    emulator.reset_stats()
    dag_runner("qwen_ocr_local_to_warehouse", _conf(own_folder, tmp_path, kie_patterns=["scan *", "*berlin*"]))
    assert emulator.stats()["ocr_calls"] == 4 + 2 * 2  # text for all; KIE + boxes for the two matches
    kie = {pathlib.Path(r["source"]).name: r for r in query(warehouse_hook(sqlite_wh), 'SELECT * FROM "ocr_kie"')}
    assert set(kie) == {"Scan 0001.PNG", "Fahrkarte – Berlin.png"}
    assert kie["Scan 0001.PNG"]["发票号码"] == "31245678" and kie["Fahrkarte – Berlin.png"]["车次"] == "G1234"


def test_a_missing_sql_provider_fails_the_run_before_any_ocr_call(airflow_db, emulator, emulator_conn, tmp_path,
                                                                  monkeypatch):
    for name in [m for m in sys.modules if m.startswith("airflow.providers.sqlite")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "airflow.providers.sqlite", None)  # as if not installed
    emulator.reset_stats()
    run = load_dag("qwen_ocr_local_to_warehouse").test(
        run_conf={"warehouse_conn_id": "qwenocr_wh_undefined", "output_dir": str(tmp_path / "out")})
    states = {ti.task_id: str(ti.state).lower().split(".")[-1] for ti in run.get_task_instances()}
    assert states["check_warehouse"] == "failed"
    assert states["ocr_text"] == "upstream_failed" and states["ocr_key_information"] == "upstream_failed"
    assert emulator.stats()["ocr_calls"] == 0
