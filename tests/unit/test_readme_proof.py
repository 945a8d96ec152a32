"""The README's "Your first DAG" block, as scripts/readme_proof.py extracts it (the proof itself runs the
block on real Airflow services: ``make cluster-smoke``). Here: the block is found, names the reader's two
substitutions once each, and defines the OCR DAG and one downstream DAG scheduled on its asset; and the
extractor refuses a README whose example lost those pieces."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

readme_proof = importlib.import_module("readme_proof")  # a script, not a package: found through scripts/


def _readme() -> str:
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
        return fh.read()


def test_the_readme_block_is_found_and_names_its_dags():
    code = readme_proof.readme_dag_code(_readme())
    compile(code, "readme_first_dag.py", "exec")
    assert readme_proof.asset_names(code) == ("scans_ocr", "text", "load_scans")
    assert "{{ ds" not in code and "logical_date" not in code.replace("no logical date", "")


def test_prepare_substitutes_only_the_folders(tmp_path):
    plan = readme_proof.prepare(str(tmp_path), 2, str(tmp_path / "dags"))
    written = open(plan["dag_file"], encoding="utf-8").read()
    original = readme_proof.readme_dag_code(_readme())
    assert written == original.replace("/data/scans/", plan["docs"]).replace("/data/ocr/", plan["results"])
    assert sorted(os.listdir(plan["docs"])) == ["scan-000.png", "scan-001.png"]


@pytest.mark.parametrize("broken, message", [
    (lambda r: r.replace("## Your first DAG", "## First steps"), "no heading"),
    (lambda r: r.replace('images="/data/scans/"', 'images="/tmp/x/"'), "'/data/scans/'"),
])
def test_a_readme_without_the_example_is_refused(broken, message):
    with pytest.raises(SystemExit, match=message):
        readme_proof.readme_dag_code(broken(_readme()))
