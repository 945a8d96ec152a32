"""Where bytes live: a local path, ``s3://`` (through the amazon provider's S3Hook) or any other
object-storage URI (through Airflow's ObjectStoragePath).

Why S3 goes through S3Hook and not ObjectStoragePath: ObjectStoragePath needs ``s3fs`` (an extra of the
amazon provider most installs do not have), while S3Hook is what every amazon-provider user already has
configured with an ``aws_conn_id``. Everything is imported lazily, so the provider works without the
amazon provider as long as no ``s3://`` URI is used.

Only the sources and the results store use this module; it holds no OCR logic.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

S3_SCHEMES = ("s3", "s3a", "s3n")


def scheme_of(uri: str) -> str:
    """URI scheme in lower case, or "" for a local path (a Windows drive letter is not a scheme)."""
    if "://" not in uri:
        return ""
    return uri.split("://", 1)[0].lower()


def is_local(uri: str) -> bool:
    return scheme_of(uri) in ("", "file")


def local_path(uri: str) -> Path:
    """A local path for ``uri`` (``file:///x`` or a plain path), with ``~`` expanded."""
    if uri.startswith("file://"):
        return Path(urlparse(uri).path)
    return Path(uri).expanduser()


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``."""
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise ValueError(f"{uri!r} has no bucket name")
    return parsed.netloc, parsed.path.lstrip("/")


def temp_prefix(name: str) -> str:
    """Prefix of a temp file written beside ``name``: ``.<name>.<pid>@<host>.`` (mkstemp adds a random part
    and ``.part``). The writer's pid and host in the name let :func:`is_orphan` tell a live writer's file
    from a killed one's."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
    return f".{name}.{os.getpid()}@{host}."


_WRITER = re.compile(r"\.(\d+)@([A-Za-z0-9_.-]+)\.[^.]+\.part$")
#: A temp file whose writer cannot be checked (another host, or no pid in its name) is removed only
#: when it has not been written for this long: a task writing results for hours keeps touching its file.
ORPHAN_SECONDS = 24 * 3600.0


def is_orphan(path: str | Path, older_than: float = ORPHAN_SECONDS) -> bool:
    """Whether the temp file ``path`` is a leftover: its writer (pid on this host) is gone, or — when that
    cannot be checked — it was last written more than ``older_than`` seconds ago."""
    match = _WRITER.search(Path(path).name)
    if match and match.group(2) == re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()):
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError):  # alive under another user / nonsense pid
            return False
        return False  # alive on this host: a parallel task writing right now
    try:
        return time.time() - os.stat(path).st_mtime > older_than
    except FileNotFoundError:
        return False


_hooks: dict = {}
_hooks_lock = threading.Lock()


def s3_hook(aws_conn_id: str | None):
    """One S3Hook (and so one boto3 client, thread-safe) per connection per process: each new hook fetches
    the connection (an API round trip on Airflow 3) and builds a client, ~1-2 s of CPU on a loaded worker;
    a mapped task over 20 keys used to build 20 before its first call, and one more per thread after."""
    try:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "s3:// URIs need the amazon provider: pip install 'airflow-provider-qwenocr[amazon]'"
        ) from exc
    # a connection defined in the environment may be redefined in the same process (tests, local runs)
    cache_key = (aws_conn_id, os.environ.get(f"AIRFLOW_CONN_{(aws_conn_id or '').upper()}"))
    with _hooks_lock:
        hook = _hooks.get(cache_key)
        if hook is None:
            hook = _hooks[cache_key] = S3Hook(aws_conn_id=aws_conn_id)
            hook.get_conn()  # built here, under the lock, so threads never race to build one each
    return hook


def s3_client(aws_conn_id: str | None):
    """The boto3 S3 client of :func:`s3_hook`: creating one costs far more than a small GET, and the result
    cache does a GET per image. boto3's low-level clients are thread-safe, so the threads share it."""
    return s3_hook(aws_conn_id).get_conn()


def object_path(uri: str, conn_id: str | None = None):
    from airflow_provider_qwenocr._compat import ObjectStoragePath

    if ObjectStoragePath is None:  # pragma: no cover - Airflow < 2.8
        raise ImportError(f"{uri!r}: this Airflow has no ObjectStoragePath")
    return ObjectStoragePath(uri, conn_id=conn_id) if conn_id else ObjectStoragePath(uri)


def join(base: str, *parts: str) -> str:
    """``base`` / parts for a local path or a URI (URIs always use ``/``)."""
    if is_local(base):
        return str(local_path(base).joinpath(*parts))
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def parent(uri: str) -> str:
    if is_local(uri):
        return str(local_path(uri).parent)
    head, _, _ = uri.rstrip("/").rpartition("/")
    return head


def read_bytes(uri: str, *, aws_conn_id: str | None = None) -> bytes | None:
    """Bytes at ``uri``, or None when nothing is there (the cache's miss path must be one cheap call)."""
    scheme = scheme_of(uri)
    if scheme in ("", "file"):
        try:
            return local_path(uri).read_bytes()
        except FileNotFoundError:
            return None
    if scheme in S3_SCHEMES:
        bucket, key = split_s3(uri)
        client = s3_client(aws_conn_id)
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
    path = object_path(uri)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def write_bytes(uri: str, data: bytes, *, aws_conn_id: str | None = None) -> None:
    """Write ``data`` at ``uri`` so that a reader never sees a half-written object.

    Local: temp file in the same directory + ``os.replace`` (atomic on POSIX). S3 PUTs are atomic.
    """
    scheme = scheme_of(uri)
    if scheme in ("", "file"):
        target = local_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target.name), suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            _unlink(tmp)
            raise
        return
    if scheme in S3_SCHEMES:
        bucket, key = split_s3(uri)
        s3_client(aws_conn_id).put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = object_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def publish_file(local_file: str | Path, uri: str, *, aws_conn_id: str | None = None) -> None:
    """Move a finished local file to ``uri`` in one step (rename locally, one upload remotely)."""
    scheme = scheme_of(uri)
    if scheme in ("", "file"):
        target = local_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(local_file, target)
        except OSError:  # another filesystem: copy beside the target, then rename
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target.name), suffix=".part")
            os.close(fd)
            shutil.copyfile(local_file, tmp)
            os.replace(tmp, target)
            _unlink(str(local_file))
        return
    if scheme in S3_SCHEMES:
        bucket, key = split_s3(uri)
        s3_hook(aws_conn_id).load_file(str(local_file), key=key, bucket_name=bucket, replace=True)
        _unlink(str(local_file))
        return
    path = object_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(local_file, "rb") as src, path.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    _unlink(str(local_file))


def open_text_lines(uri: str, *, aws_conn_id: str | None = None):
    """Iterate the text lines at ``uri`` without loading the whole object (results files can be big)."""
    scheme = scheme_of(uri)
    if scheme in ("", "file"):
        with open(local_path(uri), encoding="utf-8") as fh:
            yield from fh
        return
    if scheme in S3_SCHEMES:
        bucket, key = split_s3(uri)
        body = s3_client(aws_conn_id).get_object(Bucket=bucket, Key=key)["Body"]
        for raw in body.iter_lines():
            yield raw.decode("utf-8")
        return
    with object_path(uri).open("rb") as fh:
        # readline, not ``for line in fh``: Airflow 2.10's file wrapper has no __iter__ (iteration would go
        # through its __getitem__ and fail).
        for raw in iter(fh.readline, b""):
            yield raw.decode("utf-8")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def delete(uri: str, *, aws_conn_id: str | None = None) -> None:
    """Remove the object at ``uri`` (no error when it is already gone)."""
    scheme = scheme_of(uri)
    if scheme in ("", "file"):
        _unlink(str(local_path(uri)))
    elif scheme in S3_SCHEMES:
        bucket, key = split_s3(uri)
        s3_client(aws_conn_id).delete_object(Bucket=bucket, Key=key)
    else:
        path = object_path(uri)
        if path.exists():
            path.unlink()


def probe_write(uri: str, *, aws_conn_id: str | None = None) -> None:
    """Write and delete a tiny object at ``uri``: proves, before anything is billed, that results can land.

    Raises the storage's own error (permission denied, no such bucket …) for the caller to report."""
    write_bytes(uri, b"qwenocr write probe\n", aws_conn_id=aws_conn_id)
    delete(uri, aws_conn_id=aws_conn_id)


def remove_stale_parts(uri: str, older_than: float = ORPHAN_SECONDS) -> list[str]:
    """Delete the temporary ``.<name>.*.part`` files a killed run left beside the local file ``uri``.

    Why at the start and not only at exit: a SIGKILL runs no exit handler. The temp names carry the
    target's name, so only this output's leftovers are touched, and only orphans (:func:`is_orphan`): a
    second task over the same output once deleted the first one's file in progress, and the first failed
    at publish after paying for every call (issue 20 #7). Returns what was removed."""
    if not is_local(uri):
        return []
    target = local_path(uri)
    removed = []
    if target.parent.is_dir():
        for p in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
            if is_orphan(p, older_than):
                _unlink(str(p))
                removed.append(str(p))
    return removed

