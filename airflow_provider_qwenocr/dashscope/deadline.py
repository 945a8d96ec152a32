"""A wall-clock deadline for one HTTP call (connect + send + the full response), enforced on the socket.

Why not ``requests``' ``timeout``: it bounds each socket operation, not the call. A peer that sends one
byte every 2 s never trips a 5 s read timeout, so a worker can hang for as long as the peer likes.

How: the session's connection pools make connections of a class that registers its socket with the
deadline of the calling thread when it connects or sends a request. A timer fires at the deadline and shuts the
registered sockets down (``shutdown(SHUT_RDWR)``), which makes the blocked ``recv``/``send`` return at
once in the calling thread; the SDK then raises a connection error, which the client reports as a
:class:`~.errors.RetryableError` with code ``RequestTimeOut`` (the retry policy decides what next).
Nothing is abandoned: no thread is left behind blocked on a socket, and the broken connection is
discarded by urllib3, never returned to the pool.

Why the socket and not the connection: an answer without ``Content-Length`` (read until the peer closes)
is handed over by ``http.client`` to the response object, and the connection's ``sock`` becomes None at
once; a timer that looked the socket up on the connection at the deadline found nothing to cut, and a peer
dripping one byte every 2 s held a ``timeout=5`` call for minutes (issue 20 #1). A cut body of such an
answer looks complete (EOF is its end), so the caller must treat ``Deadline.expired`` as a failure even
when the call returned.

The same sessions also cap an answer's **bytes** (:data:`MAX_ANSWER_BYTES`): a 200 that never ends was read
to 2.3 GB before (issue 20 #2) — the deadline bounds time, not memory, and a fast peer fills gigabytes well
inside it. A response hook reads the body itself, chunk by chunk, and stops at the cap with
:class:`ResponseTooLarge` (the client turns it into a permanent ``ResponseTooLarge`` error row).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from urllib3 import connection as _u3conn
from urllib3 import connectionpool as _u3pool

# The subclasses keep urllib3's class names: error messages show them ("HTTPConnectionPool(host=…)").

_current = threading.local()

#: Bytes of one answer (decompressed) beyond which it is refused. The model's output limit bounds a real
#: answer: ≤ 8K output tokens, each at most a few bytes of text plus its ``words_info`` box (~100 bytes of
#: JSON per word), is well under 1 MB; 8 MiB is far above anything real and far below a worker's memory.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
_CHUNK = 64 * 1024


class ResponseTooLarge(Exception):
    """An answer over the byte cap. Deliberately not a ``requests`` error: the SDK resends on those."""

    def __init__(self, limit: int, url: str | None = None) -> None:
        self.limit = limit
        super().__init__(f"the answer exceeded {limit:,} bytes and was cut"
                         + (f" ({url.split('?', 1)[0]})" if url else ""))


class Deadline:
    """``with Deadline(seconds):`` — every connection this thread sends on inside the block is cut at the deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.expired = False
        self._socks: list[Any] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Deadline:
        self._previous = getattr(_current, "deadline", None)
        _current.deadline = self
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        _current.deadline = self._previous
        with self._lock:
            self._socks.clear()

    def track(self, conn: Any) -> None:
        sock = getattr(conn, "sock", None)  # None before connect(): connect() registers it then
        if sock is None:
            return
        with self._lock:
            if self.expired:
                _cut(sock)
            elif not any(s is sock for s in self._socks):
                self._socks.append(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _cut(sock)


def _cut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


def _track(conn: Any) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.track(conn)


class HTTPConnection(_u3conn.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _track(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self)  # a reused keep-alive connection does not connect again
        super().request(*args, **kwargs)


class HTTPSConnection(_u3conn.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _track(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self)
        super().request(*args, **kwargs)


class HTTPConnectionPool(_u3pool.HTTPConnectionPool):
    ConnectionCls = HTTPConnection


class HTTPSConnectionPool(_u3pool.HTTPSConnectionPool):
    ConnectionCls = HTTPSConnection


def capped_body(response: Any, *args: Any, stream: bool = False, limit: int | None = None, **kwargs: Any) -> Any:
    """``requests`` response hook: read the body now, at most ``limit`` bytes (:data:`MAX_ANSWER_BYTES`).

    Runs before ``requests`` reads the body itself (``Session.send`` calls the hooks first), so the body it
    later returns is the one read here. A declared ``Content-Length`` over the cap fails before any byte.
    A streamed call (``stream=True``) is only checked on its ``Content-Length``."""
    limit = MAX_ANSWER_BYTES if limit is None else limit
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        response.close()
        raise ResponseTooLarge(limit, response.url)
    if stream:
        return response
    chunks, total = [], 0
    for chunk in response.iter_content(_CHUNK):
        total += len(chunk)
        if total > limit:
            response.close()
            raise ResponseTooLarge(limit, response.url)
        chunks.append(chunk)
    response._content = b"".join(chunks)  # what ``response.content`` returns from now on
    response._content_consumed = True
    return response


def install(session: Any) -> Any:
    """Make ``session``'s (already mounted) adapters create deadline-aware connections and cap every answer
    at :data:`MAX_ANSWER_BYTES`; returns the session."""
    for adapter in session.adapters.values():
        manager = getattr(adapter, "poolmanager", None)
        if manager is not None:
            manager.pool_classes_by_scheme = {"http": HTTPConnectionPool, "https": HTTPSConnectionPool}
    session.hooks["response"].append(capped_body)
    return session


# -- the OpenAI-compatible calls (httpx, under the ``openai`` SDK) ------------------------------------

#: The service's limit for one batch file: a results file read back is legitimately this large.
MAX_FILE_BYTES = 500 * 1024 * 1024
#: Wall clock for reading one such file on top of the call's timeout (500 MB at ≥ 1 MB/s).
FILE_SECONDS = 500.0


def _is_file_download(path: str) -> bool:
    return path.rstrip("/").endswith("/content") and "/files/" in path


def _httpx_module():
    """The ``httpx`` the installed ``openai`` SDK is built on (``httpx``, or ``httpx2`` in newer SDKs)."""
    import importlib

    from openai import DefaultHttpxClient

    root = next(c.__module__.split(".")[0] for c in DefaultHttpxClient.__mro__ if c.__name__ == "Client")
    return importlib.import_module(root)


class BoundedTransport:
    """An ``httpx`` transport around another: every answer within a byte cap and a wall-clock deadline.

    The same two bounds as the realtime session: ``httpx``' timeout is per read, so a drip never trips it,
    and nothing caps a body. Here the stream handed to the SDK counts its bytes (refused over
    :data:`MAX_ANSWER_BYTES`, or :data:`MAX_FILE_BYTES` for a file's ``…/files/{id}/content``) and
    checks the clock after every chunk (``ReadTimeout`` past the deadline: the SDK reports a timeout).
    A ``Content-Length`` over the cap fails before the body. Bytes are counted as received (before any
    ``Content-Encoding`` is undone). The SDK retries what fails here like any transport error.
    """

    def __init__(self, inner: Any, *, seconds: float, httpx: Any) -> None:
        self.inner, self.seconds, self.httpx = inner, float(seconds), httpx

    def handle_request(self, request: Any) -> Any:
        is_file = _is_file_download(request.url.path)
        limit = MAX_FILE_BYTES if is_file else MAX_ANSWER_BYTES
        ends = time.monotonic() + self.seconds + (FILE_SECONDS if is_file else 0.0)
        response = self.inner.handle_request(request)
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            response.close()
            raise ResponseTooLarge(limit, str(request.url))
        stream = _bounded_stream_class(self.httpx)(response.stream, limit, ends, request)
        return self.httpx.Response(status_code=response.status_code, headers=response.headers, stream=stream,
                                   extensions=response.extensions)

    def close(self) -> None:
        self.inner.close()


_stream_classes: dict[Any, type] = {}


def _bounded_stream_class(httpx: Any) -> type:
    """A ``SyncByteStream`` of ``httpx`` (the module the SDK uses) that enforces the bounds chunk by chunk."""
    cls = _stream_classes.get(httpx)
    if cls is not None:
        return cls

    class BoundedStream(httpx.SyncByteStream):
        def __init__(self, stream: Any, limit: int, ends: float, request: Any) -> None:
            self.stream, self.limit, self.ends, self.request = stream, limit, ends, request

        def __iter__(self):
            total = 0
            for chunk in self.stream:
                total += len(chunk)
                if total > self.limit:
                    raise ResponseTooLarge(self.limit, str(self.request.url))
                if time.monotonic() > self.ends:
                    raise httpx.ReadTimeout("no complete response within the call's deadline", request=self.request)
                yield chunk

        def close(self) -> None:
            close = getattr(self.stream, "close", None)
            if close is not None:
                close()

    _stream_classes[httpx] = BoundedStream
    return BoundedStream


def bounded_http_client(seconds: float) -> Any:
    """The ``http_client`` for an ``openai.OpenAI``: the SDK's defaults, every answer bounded (above)."""
    from openai import DefaultHttpxClient

    httpx = _httpx_module()
    transport = BoundedTransport(httpx.HTTPTransport(), seconds=seconds, httpx=httpx)
    return DefaultHttpxClient(transport=transport)  # type: ignore[arg-type]
