"""No README example or example DAG templates a value that an Airflow 3 manual run does not have.

A manual (or asset-triggered) run on Airflow 3 has no logical date: ``{{ ds }}``, ``{{ ts }}``,
``{{ logical_date }}``, ``{{ data_interval_start }}`` … are undefined there and the task fails at render.
The runs themselves are exercised by test_runs_cache_and_assets.py and test_example_dags.py.
"""

from __future__ import annotations

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
NEEDS_LOGICAL_DATE = re.compile(
    r"\b(ds|ds_nodash|ts|ts_nodash|ts_nodash_with_tz|logical_date|execution_date|data_interval_start|"
    r"data_interval_end|prev_ds|next_ds|prev_execution_date|next_execution_date|yesterday_ds|tomorrow_ds)\b")
JINJA = re.compile(r"\{\{(.*?)\}\}", re.S)


def _files() -> list[pathlib.Path]:
    return [REPO / "README.md", REPO / "dags" / "README.md", *sorted((REPO / "dags").glob("*.py"))]


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_no_template_needs_a_logical_date(path):
    text = path.read_text(encoding="utf-8")
    offending = [m.group(0) for m in JINJA.finditer(text) if NEEDS_LOGICAL_DATE.search(m.group(1))]
    assert offending == [], f"{path.name}: {offending}"


def test_the_guard_catches_what_it_is_for():
    sample = 'output_uri="s3://b/{{ ds }}/x.jsonl", other="{{ data_interval_start | ds }}", ok="{{ run_id }}"'
    found = [m.group(0) for m in JINJA.finditer(sample) if NEEDS_LOGICAL_DATE.search(m.group(1))]
    assert found == ["{{ ds }}", "{{ data_interval_start | ds }}"]
