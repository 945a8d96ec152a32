"""A ``result_schema`` (nested up to 3 levels) → warehouse columns, and a ``kv`` answer → typed column values.

Why a fixed, documented rule: the typed KIE table is something analysts query by name, and a re-run (or a
different engineer) must produce the very same column names from the same schema. The rule:

* One column per leaf of the schema. A leaf is a string description (or ``""``/``None``); a **list** value
  is one leaf too and lands as a JSON text column (its length varies per document).
* Column name = the path of keys joined with ``__`` (double underscore), each key normalised: Unicode NFKC,
  lower case, every run of characters that are neither letters nor digits becomes ``_``, leading/trailing
  ``_`` stripped; an empty key becomes ``field``. Letters include CJK, so ``{"金额": {"合计金额": ...}}``
  gives ``金额__合计金额`` (valid in SQLite and Postgres; the loaders always quote identifiers).
  A name starting with a digit gets ``f_`` in front. Names longer than 63 bytes (Postgres' limit) are cut
  and end with ``_`` + 8 hex digits of the path's hash, so two long paths never meet.
* Collisions (``"Total Amount"`` and ``"total_amount"``, or a name the loader reserves such as ``key``)
  are resolved in schema order: the later column gets ``_2``, ``_3``, … — deterministic.
* Type: a description starting with ``number:``, ``integer:``, ``date:``, ``boolean:`` or ``text:`` (also
  ``int:``/``bool:``) sets the column type; anything else is text. The hint stays inside the description
  the model sees, where it also helps the model.
* Values: missing keys, ``null``, empty strings, ``"null"``/``"N/A"`` and values made only of ``?`` (the
  service's mark for an unreadable character) are NULL. A typed value that does not parse cleanly
  (``"12?.50"`` as a number, ``"soon"`` as a date) is NULL too — never guessed. The raw ``kv`` is kept
  alongside in ``ocr_results.kv`` for anyone who wants the text as read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from .amounts import strip_currency
from .tasks import validate_schema

MAX_IDENTIFIER_BYTES = 63
TYPES = ("text", "number", "integer", "date", "boolean", "json")
_TYPE_HINT = re.compile(r"^\s*(number|integer|int|date|boolean|bool|text)\s*[:：]", re.I)
_HINT_ALIASES = {"int": "integer", "bool": "boolean"}
_NULL_WORDS = {"", "null", "none", "n/a", "na", "无", "-", "—"}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_TRUE = {"true", "yes", "y", "1", "是", "有"}
_FALSE = {"false", "no", "n", "0", "否"}

#: SQL type per column type; both the SQLite and the Postgres loaders accept these names.
SQL_TYPES = {"text": "TEXT", "number": "DOUBLE PRECISION", "integer": "BIGINT", "date": "DATE",
             "boolean": "BOOLEAN", "json": "TEXT"}


@dataclass(frozen=True)
class Column:
    name: str
    path: tuple[str, ...]
    type: str = "text"
    description: str = ""

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.type]


def normalize_key(key: str) -> str:
    """One key → one identifier part (the rule in the module docstring)."""
    s = unicodedata.normalize("NFKC", str(key)).lower()
    s = "".join(ch if (ch.isalnum() or ch == "_") else " " for ch in s)
    s = re.sub(r"[\s_]+", "_", s).strip("_")
    return s or "field"


def _fit(name: str, path: tuple[str, ...]) -> str:
    if name[0].isdigit():
        name = "f_" + name
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha1(json.dumps(path, ensure_ascii=False).encode()).hexdigest()[:8]
    cut = name.encode()[: MAX_IDENTIFIER_BYTES - 9].decode(errors="ignore").rstrip("_")
    return f"{cut}_{digest}"


def _type_of(description: Any) -> str:
    if not isinstance(description, str):
        return "text"
    m = _TYPE_HINT.match(description)
    if not m:
        return "text"
    word = m.group(1).lower()
    return _HINT_ALIASES.get(word, word)


def _leaves(schema: dict, prefix: tuple[str, ...] = ()):
    for key, value in schema.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            yield from _leaves(value, path)
        elif isinstance(value, list):
            yield path, "json", json.dumps(value, ensure_ascii=False)
        else:
            yield path, _type_of(value), "" if value is None else str(value)


def schema_columns(schema: dict | str, *, reserved: tuple[str, ...] | frozenset[str] = ()) -> list[Column]:
    """The typed columns for ``schema``, in schema order, names unique (also against ``reserved``)."""
    schema = validate_schema(schema)
    taken = {r.lower() for r in reserved}
    columns = []
    for path, col_type, description in _leaves(schema):
        base = _fit("__".join(normalize_key(p) for p in path), path)
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = _fit(f"{base}_{n}", path)
        taken.add(name.lower())
        columns.append(Column(name, path, col_type, description))
    return columns


def _lookup(kv: Any, path: tuple[str, ...]) -> Any:
    node = kv
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def is_null(value: Any) -> bool:
    """Whether an extracted value means "not read" (the NULL rule of the module docstring)."""
    if value is None:
        return True
    if isinstance(value, str):
        s = unicodedata.normalize("NFKC", value).strip()
        return s.lower() in _NULL_WORDS or set(s) <= {"?"}
    return isinstance(value, (list, dict)) and not value


def coerce(value: Any, col_type: str) -> Any:
    """One extracted value → the Python value for a column of ``col_type``; None when it is not a clean read."""
    if is_null(value):
        return None
    if col_type == "json":
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (dict, list)):
        return None if col_type != "text" else json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return value if col_type == "boolean" else (str(value).lower() if col_type == "text" else None)
    s = unicodedata.normalize("NFKC", str(value)).strip()
    if col_type == "text":
        return s
    if col_type in ("number", "integer"):
        if isinstance(value, (int, float)):
            num = value
        else:
            t = strip_currency(s).replace(",", "").replace(" ", "")
            if not _NUMBER.match(t):
                return None
            num = float(t)
        if col_type == "integer":
            return int(num) if float(num).is_integer() else None
        return float(num)
    if col_type == "date":
        m = _DATE.match(s)
        if not m:
            return None
        try:
            return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
        except ValueError:
            return None
    if col_type == "boolean":
        low = s.lower()
        return True if low in _TRUE else False if low in _FALSE else None
    raise ValueError(f"unknown column type {col_type!r}; expected one of {TYPES}")


def kv_values(kv: Any, columns: list[Column]) -> dict[str, Any]:
    """The typed values of one ``kv`` answer (a dict, or its JSON text) for ``columns``; unread → None."""
    if isinstance(kv, str):
        try:
            kv = json.loads(kv)
        except ValueError:
            kv = None
    return {c.name: coerce(_lookup(kv, c.path), c.type) for c in columns}
