"""What a newcomer following the README needs and used to miss (issue 20 item 18), tied to the code it names:

- both DAGs of "Your first DAG" are unpaused by command (a manual trigger of a paused DAG stays queued);
- the connection argument ``conn_id`` and its real default;
- that ``test_connection`` is a billed OCR call (it is: the hook recognises an image);
- the emulator's counters endpoint, which the emulator really serves.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))
readme_proof = importlib.import_module("readme_proof")


def _readme() -> str:
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
        return fh.read()


def _section(readme: str, heading: str) -> str:
    start = readme.index(f"\n## {heading}\n")
    rest = readme[start + 4:]
    end = re.search(r"^## ", rest, re.M)
    return rest[: end.start()] if end else rest


def test_both_first_dags_are_unpaused_by_command():
    readme = _readme()
    ocr_dag, _task, downstream = readme_proof.asset_names(readme_proof.readme_dag_code(readme))
    section = _section(readme, "Your first DAG")
    for dag_id in (ocr_dag, downstream):
        assert f"airflow dags unpause {dag_id}" in section, dag_id
    assert "queued" in section


def test_conn_id_is_named_with_its_real_default():
    from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
    from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator

    default = QwenOcrOperator(task_id="t", images="/x/").conn_id
    assert default == inspect.signature(QwenOcrHook.__init__).parameters["conn_id"].default
    assert re.search(rf"`conn_id` \(default `{default}`", _readme())


def test_test_connection_is_said_to_bill_and_does_call_the_service():
    from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook

    assert "recognize(" in inspect.getsource(QwenOcrHook.test_connection)  # one real OCR request
    paragraphs = _section(_readme(), "Connection").split("\n\n")
    assert any("Test" in p and "billed" in p for p in paragraphs)


def test_the_emulator_counters_are_in_the_readme_and_served():
    from qwenocr_emulator.app import create_app

    routes = {getattr(r, "path", None) for r in create_app().routes}
    section = _section(_readme(), "The offline emulator")
    for path in ("/emulator/stats", "/emulator/reset"):
        assert path in routes and path in section, path
