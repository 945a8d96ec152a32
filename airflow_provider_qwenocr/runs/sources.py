"""Turn what a DAG author writes in ``images=`` into a list of lazy sources, one per image (or PDF page).

Accepted, alone or in a list: a local file, a directory (recursive, sorted, image and PDF files), a
glob (``**`` allowed), an http(s) URL, ``s3://bucket/key`` or ``s3://bucket/prefix`` (amazon provider's
S3Hook, ``aws_conn_id``), or any other URI/ObjectStoragePath with a scheme (``gs://``, ``file://``...).

Why lazy: a backlog can hold hundreds of thousands of images. Expanding only lists names; the bytes are
fetched by :meth:`Source.read` when a worker thread gets to that image and dropped right after, so the
operator's memory does not grow with the number of images.

Nothing is dropped silently: in a folder or a glob, a file that looks like a document but cannot be read
(a format without a decoder such as ``.heic``, a broken symbolic link, a fifo or device) becomes a source
with :attr:`Source.error`, i.e. an error row naming it. Multi-page TIFFs and animated GIF/WebP give one
source per page/frame (``page`` = 1, 2, …), like PDF pages; pages are rendered at most ``max_pixels``.

Why http(s) URLs are flagged (:attr:`Source.is_remote_url`) and not fetched: the service can download a
public URL itself, which saves our bandwidth; the operator fetches them only when asked (``fetch=True``).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_qwenocr.dashscope.errors import readable
from airflow_provider_qwenocr.runs import source_limits as limits
from airflow_provider_qwenocr.runs import source_pages, storage

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dib", ".ico", ".jp2"}
)
PDF_EXTENSION = ".pdf"
#: Formats that may hold several pages/frames: one source per page, like a PDF.
MULTI_FRAME_EXTENSIONS = frozenset({".tif", ".tiff", ".gif", ".webp"})
#: Document/image formats we recognise by name but Pillow cannot decode without a plugin: error rows.
UNSUPPORTED_EXTENSIONS = {
    ".heic": "pip install pillow-heif (and register it)", ".heif": "pip install pillow-heif (and register it)",
    ".avif": "a Pillow built with AVIF support", ".jxl": "pip install pillow-jxl-plugin",
    ".svg": "convert it to PNG first", ".psd": "export it to PNG first", ".djvu": "convert it to PDF first",
    ".xps": "convert it to PDF first", ".dng": "convert it to JPEG/TIFF first", ".cr2": "convert it first",
    ".nef": "convert it first", ".arw": "convert it first",
}
_GLOB_CHARS = set("*?[")


class NoSourcesError(ValueError):
    """An ``images`` entry matched nothing: almost always a typo or a wrong prefix, so say which one."""


@dataclass(frozen=True)
class Source:
    """One image to recognise. ``read()`` fetches its bytes on demand (for a PDF page: renders the page)."""

    uri: str
    is_remote_url: bool = False
    page: int | None = None  # 1-based page number for PDF pages
    error: str | None = None  # set when this source cannot be recognised at all (becomes an error row)
    _reader: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)
    _file: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)  # a page's whole file

    @property
    def name(self) -> str:
        """What result rows call this source: the URI, plus ``#page=N`` for a PDF page."""
        uri = readable(self.uri)  # a name that is not valid UTF-8 is read by its real bytes, shown as \xNN
        return uri if self.page is None else f"{uri}#page={self.page}"

    def read(self) -> bytes:
        if self.error:
            raise ValueError(self.error)
        if self._reader is None:
            raise ValueError(f"{self.uri}: nothing to read")
        return self._reader()

    def read_file(self) -> bytes:
        """The bytes of the whole file this source is (or is a page of), by the same bounded reader — what a
        document sent whole is keyed on and sends (``runs/documents.py``)."""
        if self._file is not None and not self.error:
            return self._file()
        return self.read()


@dataclass(frozen=True)
class _Options:
    """What every entry's expansion needs besides the entry (see :func:`expand_sources`)."""

    aws_conn_id: str | None = "aws_default"
    max_pixels: int | None = None
    model: str | None = None
    fetch_timeout: float = limits.DEFAULT_FETCH_SECONDS
    exclude: tuple[str, ...] = ()

    def excluded(self, uri: str) -> bool:
        """Whether ``uri`` lies at or under one of the ``exclude`` locations (the operator's own outputs)."""
        return any(uri == p or uri.startswith(p.rstrip("/") + "/") for p in self.exclude)


def _location(uri: str) -> str:
    """``uri`` in the form sources are named by: an absolute resolved path for a local one."""
    uri = str(uri)
    return str(storage.local_path(uri).resolve()) if storage.is_local(uri) else uri.rstrip("/")


def expand_sources(images: Any, *, aws_conn_id: str | None = "aws_default", fetch: bool = False,
                   max_pixels: int | None = None, model: str | None = None,
                   fetch_timeout: float = limits.DEFAULT_FETCH_SECONDS, exclude: Iterable[Any] = ()) -> list[Source]:
    """Expand ``images`` (one entry or a list) into sources, in the given order, de-duplicated.

    ``fetch`` only changes what :meth:`Source.read` of an http(s) URL does; listing is the same. A fetched
    URL is bounded by ``fetch_timeout`` seconds of wall clock and ``model``'s image byte limit
    (:mod:`.source_limits`). ``max_pixels`` bounds what a PDF page or a TIFF/GIF frame is rendered at.
    ``exclude``: locations (files or folders) whose files are never sources — the operator passes its own
    outputs (results, box pictures, cache), so a run never reads back what an earlier run wrote.
    Raises :class:`NoSourcesError` naming every entry that matched nothing.
    """
    entries = _as_list(images)
    if not entries:
        raise NoSourcesError("images is empty: give a path, directory, glob, URL or s3:// prefix")
    opts = _Options(aws_conn_id, max_pixels, model, float(fetch_timeout),
                    tuple(_location(e) for e in exclude if e))
    out: list[Source] = []
    seen: set[str] = set()
    missing: list[str] = []
    for entry, found in zip(entries, _expand_all(entries, opts), strict=True):
        if not found:
            missing.append(entry)
        for src in found:
            if src.name not in seen:
                seen.add(src.name)
                out.append(src)
    if missing:
        note = f" (outside the operator's own outputs {', '.join(opts.exclude)})" if opts.exclude else ""
        raise NoSourcesError("no images found for: " + ", ".join(repr(m) for m in missing) + note)
    return out


_LIST_THREADS = 16  # S3 requests in flight while expanding many entries (each explicit key is one HeadObject)


def _expand_all(entries: list[str], opts: _Options) -> list[list[Source]]:
    """Each entry's sources, in the entries' order; several ``s3://`` entries are expanded concurrently.

    A mapped task over 50 explicit keys used to send its 50 HeadObjects one after another (~8 s on moto
    before the first image was read); boto3's client is thread-safe, so they go 16 at a time.
    """
    def one(entry: str) -> list[Source]:
        return [s for s in _expand_one(entry, opts) if not (opts.exclude and opts.excluded(s.uri))]

    if sum(storage.scheme_of(e.strip()) in storage.S3_SCHEMES for e in entries) < 2:
        return [one(e) for e in entries]
    storage.s3_hook(opts.aws_conn_id)  # the connection is fetched here, on the task's own thread
    with ThreadPoolExecutor(max_workers=min(_LIST_THREADS, len(entries)), thread_name_prefix="qwenocr-list") as pool:
        return list(pool.map(one, entries))


def _as_list(images: Any) -> list[str]:
    if images is None:
        return []
    if isinstance(images, (str, Path)) or hasattr(images, "protocol"):
        return [str(images)]
    if isinstance(images, Iterable):
        return [str(i) for i in images if i is not None and str(i).strip()]
    return [str(images)]


def _expand_one(entry: str, opts: _Options) -> Iterable[Source]:
    entry = entry.strip()
    scheme = storage.scheme_of(entry)
    if scheme in ("http", "https"):
        cap = limits.cap_for(entry, downloaded=True, model=opts.model)
        return [Source(entry, is_remote_url=True, _reader=_http_reader(entry, opts.fetch_timeout, cap))]
    if scheme in ("", "file"):
        return _expand_local(entry, opts)
    if scheme in storage.S3_SCHEMES:
        return _expand_s3(entry, opts)
    return _expand_object_storage(entry, opts)


def _pages(uri: str, reader: Callable[[], bytes], max_pixels: int | None) -> list[Source]:
    """The sources of one file: its PDF pages, its TIFF/GIF frames, or the file itself."""
    suffix = Path(uri).suffix.lower()
    if suffix == PDF_EXTENSION:
        return source_pages.pdf_pages(uri, reader, max_pixels)
    if suffix in UNSUPPORTED_EXTENSIONS and suffix not in _pillow_extensions():
        return [Source(uri, error=f"unsupported format {suffix}: no decoder installed "
                                  f"({UNSUPPORTED_EXTENSIONS[suffix]})")]
    if suffix in MULTI_FRAME_EXTENSIONS:
        return source_pages.frames(uri, reader, max_pixels)
    return [Source(uri, _reader=reader)]


def _pillow_extensions() -> set[str]:
    from PIL import Image

    return set(Image.registered_extensions())


# -- local ----------------------------------------------------------------------------------------


def _wanted(name: str) -> bool:
    suffix = Path(name).suffix.lower()
    return suffix in IMAGE_EXTENSIONS or suffix == PDF_EXTENSION or suffix in UNSUPPORTED_EXTENSIONS


def _special(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (broken link, fifo, socket, device), or None for a file/dir."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)" if path.is_symlink() else None
    except OSError as exc:
        return f"cannot stat: {exc.strerror}"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = ("fifo" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file")
    return f"not a regular file ({kind}); not read"


def _glob_local(path: Path) -> list[Path]:
    """Paths matching a local glob, walking like the folder form: ``**`` never descends a directory link.

    ``glob.glob(recursive=True)`` follows links, so a link to a parent folder made ``**/*.png`` run for
    minutes and hundreds of MB (issue 20 #5). ``Path.glob`` does not recurse through links; the pattern is
    split at its first component with a wildcard, the literal part being the folder it walks.
    """
    parts = path.parts
    first = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
    root = Path(*parts[:first]) if first else Path(".")
    rest = str(Path(*parts[first:]))
    if not root.is_dir():
        return []
    return sorted(root.glob(rest))


def _expand_local(entry: str, opts: _Options) -> list[Source]:
    max_pixels = opts.max_pixels
    path = storage.local_path(entry)
    if _GLOB_CHARS & set(str(path)):
        candidates = _glob_local(path)
    elif path.is_dir():
        candidates = sorted(path.rglob("*"))
    elif path.is_file():
        uri = str(path.resolve())  # an explicitly named file is taken whatever its extension; the decoder judges
        return _pages(uri, _local_reader(uri), max_pixels)
    elif path.is_symlink() or path.exists():
        return [Source(str(path.absolute()), error=_special(path) or "cannot read")]
    else:
        return []
    out: list[Source] = []
    for p in candidates:
        if opts.exclude and opts.excluded(str(p.absolute())):
            continue  # never stat'ed nor read: the operator's own outputs
        problem = _special(p)
        if problem is not None:
            out.append(Source(str(p.absolute()), error=problem))  # never opened: a fifo would block forever
        elif p.is_file() and _wanted(p.name):
            uri = str(p.resolve())
            out.extend(_pages(uri, _local_reader(uri), max_pixels))
    return out


def _local_reader(path: str) -> Callable[[], bytes]:
    """Size (stat) and signature checked before the body is read (:mod:`.source_limits`)."""
    def read() -> bytes:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            return limits.read_capped(path, fh, size, limits.cap_for(path, downloaded=False))

    return read


# -- s3 ---------------------------------------------------------------------------------------------


def _expand_s3(entry: str, opts: _Options) -> list[Source]:
    aws_conn_id, max_pixels = opts.aws_conn_id, opts.max_pixels
    bucket, key = storage.split_s3(entry)
    hook = storage.s3_hook(aws_conn_id)
    keys: list[str]
    if _GLOB_CHARS & set(key):
        literal = key[: min(key.index(c) for c in _GLOB_CHARS if c in key)]
        keys = [k for k in hook.list_keys(bucket_name=bucket, prefix=literal) or [] if fnmatch.fnmatchcase(k, key)]
        keys = [k for k in keys if _wanted(k)]
    elif key and not key.endswith("/") and hook.check_for_key(key, bucket_name=bucket):
        keys = [key]
    else:
        prefix = key if not key or key.endswith("/") else key + "/"
        keys = [k for k in hook.list_keys(bucket_name=bucket, prefix=prefix) or [] if _wanted(k) and not k.endswith("/")]
    out: list[Source] = []
    for k in sorted(keys):
        uri = f"s3://{bucket}/{k}"
        out.extend(_pages(uri, _s3_reader(bucket, k, aws_conn_id), max_pixels))
    return out


def _s3_reader(bucket: str, key: str, aws_conn_id: str | None) -> Callable[[], bytes]:
    """The object's ``ContentLength`` and signature are checked before its body is read."""
    def read() -> bytes:
        uri = f"s3://{bucket}/{key}"
        obj = storage.s3_client(aws_conn_id).get_object(Bucket=bucket, Key=key)
        body = obj["Body"]
        try:
            return limits.read_capped(uri, body, obj.get("ContentLength"), limits.cap_for(uri, downloaded=False))
        finally:
            body.close()

    return read


# -- any other object storage -----------------------------------------------------------------------


def _expand_object_storage(entry: str, opts: _Options) -> list[Source]:
    max_pixels = opts.max_pixels
    root = storage.object_path(entry)
    if root.is_dir():
        paths = sorted((p for p in root.rglob("*") if p.is_file() and _wanted(p.name)), key=str)
    elif root.exists():
        paths = [root]
    else:
        return []
    out: list[Source] = []
    for p in paths:
        uri = str(p)
        out.extend(_pages(uri, _object_reader(uri), max_pixels))
    return out


def _object_reader(uri: str) -> Callable[[], bytes]:
    """The object's size and signature are checked before its body is read."""
    def read() -> bytes:
        path = storage.object_path(uri)
        try:
            size = int(path.stat().st_size)
        except Exception:  # a store that cannot say: the read itself stops at the cap
            size = None
        with path.open("rb") as fh:
            return limits.read_capped(uri, fh, size, limits.cap_for(uri, downloaded=False))

    return read


# -- http -------------------------------------------------------------------------------------------


def _http_reader(url: str, timeout: float, cap: int) -> Callable[[], bytes]:
    """``fetch=True``: a download bounded in wall-clock time and bytes (:func:`.source_limits.download`)."""
    return lambda: limits.download(url, cap=cap, timeout=timeout)
