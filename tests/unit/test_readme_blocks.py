"""Every ```python block of README.md (and dags/README.md) is a DAG file: imported in a DagBag it gives 0
import errors and at least one DAG (issue 20 item 18: pasted as-is, the "Every task type" and batch snippets
used to give zero DAGs and no error).

A block that is meant to go inside a DAG says so on its first line, ``# Fragment`` (visible to the reader,
``readme_proof.FRAGMENT``); it must still compile. The blocks are found by ``readme_proof.python_blocks`` (the
same extraction ``scripts/readme_proof.py`` uses for "Your first DAG"). On Airflow 2 the README's own
instruction is applied: a line ``X  # Airflow 2.10: Y`` is read as ``Y``.
"""

from __future__ import annotations

import importlib
import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

readme_proof = importlib.import_module("readme_proof")
AIRFLOW2_ALTERNATIVE = re.compile(r"^(\s*)\S.*#\s*Airflow 2\.10:\s*(.+)$", re.M)


def _blocks() -> list[tuple[str, dict]]:
    out = []
    for name in ("README.md", os.path.join("dags", "README.md")):
        with open(os.path.join(REPO, name), encoding="utf-8") as fh:
            out += [(name, b) for b in readme_proof.python_blocks(fh.read())]
    return out


def for_this_airflow(code: str) -> str:
    from airflow import __version__

    if int(__version__.split(".")[0]) >= 3:
        return code
    return AIRFLOW2_ALTERNATIVE.sub(lambda m: m.group(1) + m.group(2).strip(), code)


def dagbag_of(code: str, folder) -> tuple[dict, dict]:
    """(dags, import_errors) of ``code`` written as a DAG file in ``folder`` and parsed by a DagBag."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.x
        from airflow.models.dagbag import DagBag

    path = folder / "readme_block.py"
    path.write_text(code, encoding="utf-8")
    bag = DagBag(dag_folder=str(path))  # examples are off (conftest: AIRFLOW__CORE__LOAD_EXAMPLES)
    return bag.dags, bag.import_errors


BLOCKS = _blocks()


def test_the_readmes_have_blocks():
    assert len([b for name, b in BLOCKS if name == "README.md"]) >= 4


@pytest.mark.parametrize("name, block", BLOCKS, ids=[f"{n}:{b['line']}:{b['heading']}" for n, b in BLOCKS])
def test_each_block_is_a_dag_or_a_fragment_on_purpose(name, block, tmp_path):
    code = for_this_airflow(block["code"])
    compile(code, f"{name}:{block['line']}", "exec")
    if block["fragment"]:
        return
    dags, errors = dagbag_of(code, tmp_path)
    assert errors == {}, f"{name} line {block['line']} ({block['heading']}): {errors}"
    assert len(dags) >= 1, f"{name} line {block['line']} ({block['heading']}) defines no DAG; mark it '# Fragment'"


def test_the_check_catches_a_snippet_that_is_no_dag(tmp_path):
    snippet = 'from airflow_provider_qwenocr import QwenOcrOperator\\nQwenOcrOperator(task_id="t", images="/x/")\n'
    dags, errors = dagbag_of(snippet.replace("\\n", "\n"), tmp_path)
    assert len(dags) == 0 or errors  # what the old "Every task type" block gave: no DAG
    fragment = readme_proof.python_blocks("## H\n\n```python\n# Fragment: inside a DAG\nx = 1\n```\n")
    assert fragment[0]["fragment"] is True


def test_airflow2_alternative_is_the_readme_instruction():
    line = "from airflow.sdk import dag, task  # Airflow 2.10: from airflow.decorators import dag, task\n"
    assert AIRFLOW2_ALTERNATIVE.sub(lambda m: m.group(1) + m.group(2).strip(), line) == \
        "from airflow.decorators import dag, task\n"
