"""Sources, results and cache on a non-S3 object store, through Airflow's ObjectStoragePath (fsspec memory fs)."""

from __future__ import annotations

import uuid

import pytest

from airflow_provider_qwenocr.ocr.results import OcrResult
from airflow_provider_qwenocr.runs import storage
from airflow_provider_qwenocr.runs.results_store import ResultCache, ResultsWriter, read_results
from airflow_provider_qwenocr.runs.sources import NoSourcesError, expand_sources


@pytest.fixture
def memory_root():
    import fsspec  # a dependency of Airflow's object storage: always there
    try:
        from airflow.sdk.io import attach
    except ImportError:
        from airflow.io.store import attach
    attach("memory", fs=fsspec.filesystem("memory"))
    # Airflow 2.10's ObjectStoragePath needs universal-pathlib 0.2.x (0.3 refuses every protocol, s3 included;
    # the Makefile pins it for the 2.10 venv). There the memory fs writes its root as "memory:///".
    return f"memory://bkt-{uuid.uuid4().hex[:8]}"


def canonical(uri: str) -> str:
    """``uri`` as ObjectStoragePath spells it on this Airflow (what a listing returns)."""
    return str(storage.object_path(uri))


def test_object_storage_sources_results_and_cache(memory_root):
    storage.write_bytes(f"{memory_root}/in/b/two.jpg", b"\xff\xd8\xffimg2")  # a JPEG's and a PNG's signature:
    storage.write_bytes(f"{memory_root}/in/a.png", b"\x89PNG\r\n\x1a\nimg1")  # read back as they are
    storage.write_bytes(f"{memory_root}/in/notes.txt", b"skip me")
    srcs = expand_sources(f"{memory_root}/in")
    assert [s.uri for s in srcs] == [canonical(f"{memory_root}/in/a.png"), canonical(f"{memory_root}/in/b/two.jpg")]
    assert [s.read() for s in srcs] == [b"\x89PNG\r\n\x1a\nimg1", b"\xff\xd8\xffimg2"]
    with pytest.raises(NoSourcesError):
        expand_sources(f"{memory_root}/nothing")

    cache = ResultCache(f"{memory_root}/cache")
    assert cache.get("abcd") is None
    # only a complete row of today's shape is a hit (a partial row is another version's: a miss)
    cache.put({"key": "abcd", "status": "ok", "text": "t"})
    assert cache.get("abcd") is None
    cache.put(OcrResult(source="a.png", task="text_recognition", model="m", key="abcd", text="t"))
    assert cache.get("abcd")["text"] == "t"

    out = f"{memory_root}/out/r.jsonl"
    with ResultsWriter(out) as w:
        w.write({"key": "abcd", "status": "ok"})
        assert storage.read_bytes(out) is None, "published only at the end"
    assert list(read_results(out)) == [{"key": "abcd", "status": "ok"}]
