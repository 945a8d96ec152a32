"""OpenLineage helpers (lineage.py): dataset naming, collapsing, lazy import, and the operator hook-up."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest

from airflow_provider_qwenocr import lineage


def test_dataset_names_follow_the_naming_spec(tmp_path):
    assert lineage.dataset_id("s3://bucket/in/a.png") == ("s3://bucket", "in/a.png")
    assert lineage.dataset_id(str(tmp_path / "a.png")) == ("file", str(tmp_path / "a.png"))
    assert lineage.dataset_id("file:///data/x.jpg") == ("file", "/data/x.jpg")
    assert lineage.dataset_id("https://h.example/img/1.png") == ("https://h.example", "/img/1.png")
    assert lineage.table_id("postgres", host="db", port=5432, database="wh", schema="public",
                            table="ocr_results") == ("postgres://db:5432", "wh.public.ocr_results")
    assert lineage.table_id("sqlite", host="/w/wh.db", table="ocr_kie") == ("sqlite:/w/wh.db", "ocr_kie")


def test_many_inputs_collapse_to_prefixes():
    ids = [("s3://b", f"day1/{i}.png") for i in range(150)] + [("s3://b", "day2/x.png")]
    assert lineage.collapse(ids, limit=100) == [("s3://b", "day1"), ("s3://b", "day2")]
    assert len(lineage.collapse(ids[:5], limit=100)) == 5


def test_without_openlineage_provider_returns_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage", None)
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)
    assert lineage.operator_lineage(["s3://b/k.png"], ["s3://b/out.jsonl"]) is None


@dataclass
class _Dataset:
    namespace: str
    name: str
    facets: dict = field(default_factory=dict)


@dataclass
class _Lineage:
    inputs: list
    outputs: list


@pytest.fixture
def fake_openlineage(monkeypatch):
    ext = types.ModuleType("airflow.providers.openlineage.extractors")
    ext.OperatorLineage = _Lineage
    facet = types.ModuleType("airflow.providers.common.compat.openlineage.facet")
    facet.Dataset = _Dataset
    facet.SchemaDatasetFacet = lambda fields: {"fields": fields}
    facet.SchemaDatasetFacetFields = lambda name, type: (name, type)
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage", types.ModuleType("airflow.providers.openlineage"))
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", ext)
    monkeypatch.setitem(sys.modules, "airflow.providers.common.compat.openlineage.facet", facet)


def test_operator_lineage_inputs_outputs_and_table_schema(fake_openlineage):
    table = lineage.table_id("sqlite", host="/w/wh.db", table="ocr_kie")
    got = lineage.operator_lineage(["s3://b/in/a.png", "s3://b/in/a.png", "/docs/b.png"],
                                   ["s3://b/out/r.jsonl", table], output_fields=[("发票号码", "TEXT")])
    assert [(d.namespace, d.name) for d in got.inputs] == [("s3://b", "in/a.png"), ("file", "/docs/b.png")]
    assert [(d.namespace, d.name) for d in got.outputs] == [("s3://b", "out/r.jsonl"), table]
    assert got.outputs[0].facets == {} and got.outputs[1].facets["schema"] == {"fields": [("发票号码", "TEXT")]}


def test_ocr_operator_hookup_uses_images_and_results_uri(fake_openlineage):
    op = types.SimpleNamespace(images=["s3://b/in/", "/docs/x.png"], results_uri="s3://b/out/run/text.jsonl")
    got = lineage.ocr_operator_lineage(op, None)
    assert [(d.namespace, d.name) for d in got.inputs] == [("s3://b", "in/"), ("file", "/docs/x.png")]
    assert [(d.namespace, d.name) for d in got.outputs] == [("s3://b", "out/run/text.jsonl")]


def test_real_operator_reports_lineage_through_these_helpers(fake_openlineage):
    from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator

    op = QwenOcrOperator(task_id="ocr", images="s3://b/in/", output_uri="s3://b/out/r.jsonl")
    op.results_uri = "s3://b/out/r.jsonl"
    got = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in got.inputs] == [("s3://b", "in/")]
    assert [(d.namespace, d.name) for d in got.outputs] == [("s3://b", "out/r.jsonl")]



def test_batch_operator_reports_lineage_too(fake_openlineage):
    from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator

    op = QwenOcrBatchOperator(task_id="b", images="s3://scans/2026/", output_uri="s3://ocr/out.jsonl")
    got = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in got.inputs] == [("s3://scans", "2026/")]
    assert [(d.namespace, d.name) for d in got.outputs] == [("s3://ocr", "out.jsonl")]


def test_lineage_errors_never_fail_the_task(fake_openlineage, monkeypatch):
    from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator

    monkeypatch.setattr(lineage, "operator_lineage", lambda *a, **k: 1 / 0)
    op = QwenOcrOperator(task_id="ocr", images="/docs/", output_uri="/out/r.jsonl")
    assert op.get_openlineage_facets_on_complete(None) is None
