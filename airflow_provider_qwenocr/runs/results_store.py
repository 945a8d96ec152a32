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
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow_provider_qwenocr.dashscope.errors import describe
from airflow_provider_qwenocr.ocr.results import OcrResult
from airflow_provider_qwenocr.runs import storage

log = logging.getLogger(__name__)

#: The fields of today's row: a cached row with any other field was written by another version → a miss.
ROW_FIELDS = frozenset(OcrResult(source="", task="", model="").to_row())


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
            prefix = storage.temp_prefix(target.name)  # pid@host: a parallel task can tell it is alive
        else:
            directory, prefix = None, "qwenocr-results-"
        fd, self._tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".part")
        self._fh = os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace")  # never fail on a name
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
        """The cached ``ok`` row for ``key``, or None — also when the cache cannot be read or the row is not
        today's row (torn write, another version's fields, another key): a miss costs one call, a crash
        costs the task. Storage errors are logged as a warning, never raised."""
        uri = self._uri(key)  # a malformed key is a bug in the caller: that one raises
        try:
            data = storage.read_bytes(uri, aws_conn_id=self.aws_conn_id)
        except Exception as exc:
            log.warning("result cache lookup failed for %s (treated as a miss): %s", key, describe(exc))
            return None
        if data is None:
            return None
        try:
            row = json.loads(data)
            if not isinstance(row, dict) or row.get("status") != "ok" or row.get("key") != key:
                raise ValueError("not an ok row for this key")
            unknown = set(row) - ROW_FIELDS
            if unknown or not ROW_FIELDS <= set(row):
                raise ValueError(f"fields differ from this version's rows ({', '.join(sorted(unknown)) or 'missing'})")
            OcrResult.from_row(row)  # every field must parse as today's types
        except Exception as exc:
            log.warning("result cache entry %s is unreadable (treated as a miss, it will be rewritten): %s",
                        key, describe(exc))
            return None
        return row

    def put(self, row: dict[str, Any] | OcrResult) -> bool:
        """Store an ``ok`` row under its ``key``; error rows and rows without a key are not cached.

        A failed write is a warning, not an error: the image's row is still written to the results; only
        the saving on a re-run is lost."""
        if isinstance(row, OcrResult):
            row = row.to_row()
        key = row.get("key")
        if not key or row.get("status") != "ok":
            return False
        try:
            blob = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8",
                                                                                                "backslashreplace")
            storage.write_bytes(self._uri(key), blob, aws_conn_id=self.aws_conn_id)
        except Exception as exc:
            log.warning("could not write result cache entry %s: %s", key, describe(exc))
            return False
        return True

    def remove_stale_parts(self, older_than: float = 3600.0) -> int:
        """Delete temp files (``*.part``) a killed writer left in a local cache; returns how many.

        Only orphans (``storage.is_orphan``: the writer's pid is gone from this host, or, when that cannot
        be told, the file is older than ``older_than`` seconds): a parallel task writing to the same cache
        right now keeps its temp file."""
        if not storage.is_local(self.cache_uri):
            return 0
        root, removed = storage.local_path(self.cache_uri), 0
        for part in root.glob("*/.*.part") if root.is_dir() else []:
            try:
                if storage.is_orphan(part, older_than):
                    part.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def __repr__(self) -> str:
        return f"ResultCache({self.cache_uri!r})"


def default_base_dir() -> Path:
    """``$AIRFLOW_HOME/qwenocr`` (or the temp dir's ``qwenocr``): where default outputs and caches go."""
    home = os.environ.get("AIRFLOW_HOME")
    return Path(home if home else tempfile.gettempdir()) / "qwenocr"
