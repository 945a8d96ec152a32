"""Paths tests share (importable from test modules, unlike conftest.py)."""

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
RECORDINGS = REPO / "tests" / "data" / "recordings"  # copied from cnblogs/dashscope-sdk (MIT, LICENSE inside)
SAMPLE_DOCS = REPO / "dags" / "sample_docs"
PUBLIC = REPO / "tests" / "data" / "public"  # public example bodies and error bodies (SOURCES.md inside)
