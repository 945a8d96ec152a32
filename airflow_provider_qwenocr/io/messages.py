"""Messages people read: exception text without object reprs, repeated prefixes or undecodable names.

Why one place: error rows and log lines are what a user reads the morning after a failed night. Pillow
says ``cannot identify image file <_io.BytesIO object at 0x7f…>``, transport errors nest their type
name twice, and a file name that is not valid UTF-8 (a surrogate-escaped ``str`` on POSIX) cannot even
be written to a UTF-8 results file. Everything shown goes through :func:`describe` / :func:`readable`.
"""

from __future__ import annotations

import os
import re

_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r"\s*at 0x[0-9a-fA-F]{6,}")


def readable(name: str | bytes) -> str:
    """A file name or URI as text that always encodes to UTF-8: undecodable bytes shown as ``\\xNN``."""
    raw = os.fsencode(name) if isinstance(name, str) else bytes(name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def describe(exc: BaseException) -> str:
    """``exc`` as one clean line: its message (or its type name when empty), object reprs and memory
    addresses removed, a leading repeated ``Type: Type:`` collapsed. Callers put the error code in front."""
    name = type(exc).__name__
    text = _ADDRESS.sub("", _REPR.sub("", str(exc))).strip()
    while text.startswith(f"{name}: {name}: "):
        text = text[len(name) + 2:]
    return readable(" ".join(text.split())) if text else name
