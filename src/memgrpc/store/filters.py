"""The only place that turns client values into LanceDB filter (SQL) text.

Every value that reaches a `where` string goes through `literal`; column names are checked against
`_IDENT`. Nothing else in memgrpc formats a filter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
Scalar = str | int | float | bool | datetime


class FilterValueError(ValueError):
    """A value that cannot be expressed safely in a filter (e.g. a NUL byte)."""


def literal(value: Scalar) -> str:
    """Escape one client value as a SQL literal. The single escaping function of memgrpc."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterValueError("non-finite number in filter")
        return repr(float(value))
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return f"TIMESTAMP '{utc.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    if isinstance(value, str):
        if "\x00" in value:
            raise FilterValueError("NUL byte in filter value")
        return "'" + value.replace("'", "''") + "'"
    raise FilterValueError(f"unsupported filter value type {type(value).__name__}")


def _col(name: str) -> str:
    if not _IDENT.match(name):
        raise FilterValueError(f"bad column name {name!r}")
    return name


def _list(values: Iterable[Scalar]) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]"


class Where:
    """AND-ed conditions; `str(where)` is the filter text (empty when there is none)."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def eq(self, col: str, value: Scalar) -> Where:
        self._parts.append(f"{_col(col)} = {literal(value)}")
        return self

    def is_in(self, col: str, values: Sequence[Scalar]) -> Where:
        if not values:
            self._parts.append("FALSE")
        else:
            self._parts.append(f"{_col(col)} IN ({', '.join(literal(v) for v in values)})")
        return self

    def is_null(self, col: str) -> Where:
        self._parts.append(f"{_col(col)} IS NULL")
        return self

    def not_in(self, col: str, values: Sequence[Scalar]) -> Where:
        """NULL is neither in nor out (SQL): pair with is_null where NULL should pass."""
        if values:
            self._parts.append(f"{_col(col)} NOT IN ({', '.join(literal(v) for v in values)})")
        else:
            self._parts.append(f"{_col(col)} IS NOT NULL")
        return self

    def either(self, *alternatives: Where) -> Where:
        """One condition: at least one of the alternatives (each AND-ed inside) holds."""
        parts = [f"({a})" if a else "TRUE" for a in alternatives]
        self._parts.append("(" + " OR ".join(parts) + ")" if parts else "FALSE")
        return self

    def not_true(self, col: str) -> Where:
        self._parts.append(f"({_col(col)} IS NULL OR {_col(col)} = FALSE)")
        return self

    def has_any(self, col: str, values: Sequence[Scalar]) -> Where:
        self._parts.append(f"array_has_any({_col(col)}, {_list(values)})")
        return self

    def has_all(self, col: str, values: Sequence[Scalar]) -> Where:
        self._parts.append(f"array_has_all({_col(col)}, {_list(values)})")
        return self

    def cmp(self, col: str, op: str, value: Scalar) -> Where:
        if op not in ("<", "<=", ">", ">="):
            raise FilterValueError(f"bad operator {op!r}")
        self._parts.append(f"{_col(col)} {op} {literal(value)}")
        return self

    def after(self, col: str, value: Scalar, key_col: str, key: str, *, desc: bool) -> Where:
        """Keyset condition: rows strictly after (value, key) in (col, key_col) order."""
        op = "<" if desc else ">"
        c, k = _col(col), _col(key_col)
        v = literal(value)
        self._parts.append(f"({c} {op} {v} OR ({c} = {v} AND {k} {op} {literal(key)}))")
        return self

    def __str__(self) -> str:
        return " AND ".join(self._parts)

    def __bool__(self) -> bool:
        return bool(self._parts)
