"""Where results go: the JSONL results file, and the per-image result cache that makes re-runs free.

Two stores, two different promises:

- :class:`ResultsWriter` — one JSON line per image at ``output_uri``. Lines go to a local temp file and
  the file is published in one step at the end (rename locally, one PUT to object storage), so a crash or
  a kill never leaves a half-written results file for a downstream load to pick up.
- :class:`ResultCache` — one small JSON object per idempotency key, written the moment that image is
  done. A task killed halfway and retried (or a new DAG run over the same documents) finds every finished
  image here and pays for none of them again. Only ``ok`` rows are cached: a failed image is retried.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow_provider_qwenocr.io import storage
from airflow_provider_qwenocr.ocr.results import OcrResult


class ResultsWriter:
    """Context manager: ``write()`` rows while working, published atomically at ``output_uri`` on a clean exit.

    On an exception inside the ``with`` block the temp file is discarded and nothing is published.
    """

    def __init__(self, output_uri: str, *, aws_conn_id: str | None = "aws_default") -> None:
        self.output_uri = str(output_uri)
        self.aws_conn_id = aws_conn_id
        self.n_written = 0
        self._fh = None
        self._tmp: str | None = None

    def __enter__(self) -> ResultsWriter:
        if storage.is_local(self.output_uri):
            target = storage.local_path(self.output_uri)
            target.parent.mkdir(parents=True, exist_ok=True)
            directory: str | None = str(target.parent)  # same filesystem → os.replace is atomic
            prefix = f".{target.name}."
        else:
            directory, prefix = None, "qwenocr-results-"
        fd, self._tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".part")
        self._fh = os.fdopen(fd, "w", encoding="utf-8")
        return self

    def write(self, result: OcrResult | dict[str, Any]) -> None:
        if self._fh is None:
            raise RuntimeError("ResultsWriter.write() outside its 'with' block")
        row = result.to_row() if isinstance(result, OcrResult) else result
        self._fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
        self.n_written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        fh, tmp = self._fh, self._tmp
        self._fh = self._tmp = None
        if fh is None or tmp is None:
            return
        try:
            fh.close()
            if exc_type is None:
                storage.publish_file(tmp, self.output_uri, aws_conn_id=self.aws_conn_id)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def read_results(uri: str, *, aws_conn_id: str | None = "aws_default") -> Iterator[dict[str, Any]]:
    """Rows of a results file written by :class:`ResultsWriter`, streamed line by line."""
    for line in storage.open_text_lines(str(uri), aws_conn_id=aws_conn_id):
        line = line.strip()
        if line:
            yield json.loads(line)


class ResultCache:
    """``{cache_uri}/{key[:2]}/{key}.json`` per finished image. Local path or any object-storage URI.

    Why one object per key and not one shared file: writes from parallel threads, mapped task instances
    and retries never contend, a kill loses at most the image in flight, and a lookup is one GET.
    """

    def __init__(self, cache_uri: str, *, aws_conn_id: str | None = "aws_default") -> None:
        self.cache_uri = str(cache_uri)
        self.aws_conn_id = aws_conn_id

    def _uri(self, key: str) -> str:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"invalid cache key {key!r}")
        return storage.join(self.cache_uri, key[:2], f"{key}.json")

    def get(self, key: str) -> dict[str, Any] | None:
        data = storage.read_bytes(self._uri(key), aws_conn_id=self.aws_conn_id)
        if data is None:
            return None
        try:
            row = json.loads(data)
        except ValueError:  # a torn write from another filesystem: treat as a miss, it gets rewritten
            return None
        return row if isinstance(row, dict) and row.get("status") == "ok" else None

    def put(self, row: dict[str, Any] | OcrResult) -> bool:
        """Store an ``ok`` row under its ``key``; error rows and rows without a key are not cached."""
        if isinstance(row, OcrResult):
            row = row.to_row()
        key = row.get("key")
        if not key or row.get("status") != "ok":
            return False
        blob = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
        storage.write_bytes(self._uri(key), blob, aws_conn_id=self.aws_conn_id)
        return True

    def __repr__(self) -> str:
        return f"ResultCache({self.cache_uri!r})"


def default_base_dir() -> Path:
    """``$AIRFLOW_HOME/qwenocr`` (or the temp dir's ``qwenocr``): where default outputs and caches go."""
    home = os.environ.get("AIRFLOW_HOME")
    return Path(home if home else tempfile.gettempdir()) / "qwenocr"
