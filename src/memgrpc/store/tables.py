"""Generic reads over one table (rows, counts, keyset pages, top-n) plus its writer.

Filters arrive as `Where` objects, so every client value has already been escaped by
store/filters.py; this module only adds column names it checks itself.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from memgrpc.store.db import Store
from memgrpc.store.filters import Scalar, Where
from memgrpc.store.writer import TableWriter

Row = dict[str, Any]
# a list filter of more values than this is split over several queries
IN_CHUNK = 500


def chunks(values: Sequence[str], size: int = IN_CHUNK) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def extend(where: Where) -> Where:
    """A copy of `where` to add conditions to (Where objects are appended to in place)."""
    return copy.deepcopy(where)


class Table:
    """Read helpers over one table; `writer` is the table's single writer."""

    def __init__(self, store: Store, name: str) -> None:
        self.name = name
        self._store = store
        self.writer: TableWriter = store.writer(name)
        self.key: str = store.specs[name].key

    @property
    def _tbl(self) -> Any:
        return self._store.table(self.name)  # looked up per read: Store.renew_session moves it

    async def rows(
        self, where: Where, columns: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Row]:
        q = self._tbl.query()
        if where:
            q = q.where(str(where))
        if columns is not None:
            q = q.select(list(columns))
        if limit is not None:
            q = q.limit(limit)
        rows: list[Row] = (await q.to_arrow()).to_pylist()
        return rows

    async def version(self) -> int:
        """The table version this handle sees (cheap: no data is read)."""
        return int(await self._tbl.version())

    async def first(self, where: Where) -> Row | None:
        found = await self.rows(where, limit=1)
        return found[0] if found else None

    async def count(self, where: Where) -> int:
        return int(await self._tbl.count_rows(str(where) if where else None))

    async def by_keys(
        self, scope: Where, key_col: str, keys: Sequence[str], columns: Sequence[str] | None = None
    ) -> list[Row]:
        """Rows of `scope` whose `key_col` is one of `keys`, in the order of `keys`."""
        found: dict[Any, Row] = {}
        for part in chunks(keys):
            where = extend(scope).is_in(key_col, list(part))
            for r in await self.rows(where, columns):
                found[r[key_col]] = r
        return [found[k] for k in keys if k in found]

    async def sorted_keys(
        self, where: Where, sort: Sequence[tuple[str, bool]], key_col: str, limit: int
    ) -> list[str]:
        """The `key_col` values of the first `limit` rows in `sort` order ((column, desc) pairs);
        only the sort columns are read, never whole rows."""
        cols = list(dict.fromkeys([*(c for c, _ in sort), key_col]))
        q = self._tbl.query()
        if where:
            q = q.where(str(where))
        keys: pa.Table = await q.select(cols).to_arrow()
        if keys.num_rows == 0:
            return []
        order = [(c, "descending" if desc else "ascending") for c, desc in sort]
        idx = pc.sort_indices(keys, sort_keys=order)
        out: list[str] = keys.column(key_col).take(idx[:limit]).to_pylist()
        return out

    async def page(
        self,
        where: Where,
        order_col: str,
        key_col: str,
        *,
        desc: bool,
        after: tuple[Scalar, str] | None,
        limit: int,
    ) -> list[Row]:
        """Keyset page: rows strictly after `after` in (order_col, key_col) order."""
        keyed = extend(where)
        if after is not None:
            keyed.after(order_col, after[0], key_col, after[1], desc=desc)
        keys = await self.sorted_keys(keyed, [(order_col, desc), (key_col, desc)], key_col, limit)
        return await self.by_keys(where, key_col, keys)
