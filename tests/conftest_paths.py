"""Paths tests share (importable from test modules, unlike conftest.py)."""

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
RECORDINGS = REPO.parent / "shared" / "dashscope-recordings"
SAMPLE_DOCS = REPO / "dags" / "sample_docs"
