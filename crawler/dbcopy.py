"""`crawler db copy`: a whole history from one database to another (SQLite ⇄ PostgreSQL).

Both ends are opened (so migrated) by this crawler, so their tables and columns are the same.
The destination must hold no history yet. Every table is copied row for row, ids included, in one
transaction of the destination, and checked before it commits: the same number of rows in each
table, and a sample of rows (about one in a hundred, at least the first and last) identical on
both sides. A mismatch rolls the copy back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from crawler.db import Db
from crawler.errors import CrawlerError
from crawler.store import Store

CHUNK = 1000  # rows per insert
SAMPLES = 100  # rows checked per table, about


@dataclass(frozen=True, slots=True)
class Copied:
    """What a copy moved: rows per table (in copy order) and how many rows were compared."""

    rows: dict[str, int]
    sampled: int


def _is_pg(store: Store) -> bool:
    from crawler.pgstore import PgStore

    return isinstance(store, PgStore)


def tables(store: Store) -> list[str]:
    """The history's tables, `runs` first (every other table refers to it)."""
    if _is_pg(store):
        rows = store.conn.execute(
            "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()"
        )
        names = {str(r["name"]) for r in rows} - {"crawler_schema"}
    else:
        rows = store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        names = {str(r["name"]) for r in rows if not str(r["name"]).startswith("sqlite_")}
    return sorted(names, key=lambda n: (n != "runs", n))


def columns(store: Store, table: str) -> list[str]:
    """The table's columns, in their order."""
    if _is_pg(store):
        rows = store.conn.execute(
            "SELECT column_name AS name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
    else:
        rows = store.conn.execute(f"SELECT name FROM pragma_table_info('{table}') ORDER BY cid")
    return [str(r["name"]) for r in rows]


def primary_key(store: Store, table: str, cols: Sequence[str]) -> list[str]:
    """The columns that name a row of table (all of them when it has no primary key)."""
    if _is_pg(store):
        from crawler.pgstore import PgStore

        assert isinstance(store, PgStore)
        key = list(store.pgconn.primary_key(table))
    else:
        rows = store.conn.execute(
            f"SELECT name, pk FROM pragma_table_info('{table}') WHERE pk > 0 ORDER BY pk"
        )
        key = [str(r["name"]) for r in rows]
    return key or list(cols)


def _rows(store: Store, table: str, cols: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Every row of table, streamed (a server-side cursor on PostgreSQL)."""
    sql = f"SELECT {', '.join(cols)} FROM {table}"
    if _is_pg(store):
        from crawler.pgstore import PgStore

        assert isinstance(store, PgStore)
        pg = store.pgconn.pg
        with store.pgconn.errors(), pg.transaction(), pg.cursor(name=f"copy_{table}") as cur:
            cur.itersize = CHUNK
            cur.execute(sql)
            for r in cur:
                yield tuple(r)
    else:
        for r in store.conn.execute(sql):
            yield tuple(r)


def count(store: Store, table: str) -> int:
    row = store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0])


def copy_history(src: Store, dst: Store) -> Copied:
    """Copy every table of src into dst (which must hold no history); see the module's doc."""
    names = tables(src)
    missing = [t for t in names if t not in tables(dst)]
    if missing:
        raise CrawlerError(f"{dst.path} has no table {missing[0]}: not the same schema")
    for t in ("runs", "url_state"):
        if t in names and (n := count(dst, t)):
            raise CrawlerError(
                f"{dst.path} already holds a history ({n} rows in {t}); copy into an empty one"
            )
    totals: dict[str, int] = {}
    sampled = 0
    with dst.transaction() as c:
        for table in names:
            cols = [col for col in columns(src, table) if col in set(columns(dst, table))]
            n_src = count(src, table)
            every = max(1, n_src // SAMPLES)
            insert = (
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            )
            samples: list[tuple[Any, ...]] = []
            batch: list[tuple[Any, ...]] = []
            n = 0
            for row in _rows(src, table, cols):
                if n % every == 0 or n == n_src - 1:
                    samples.append(row)
                n += 1
                batch.append(row)
                if len(batch) >= CHUNK:
                    c.executemany(insert, batch)
                    batch = []
            if batch:
                c.executemany(insert, batch)
            got = count(dst, table)
            if got != n or n != n_src:
                raise CrawlerError(
                    f"copy of {table} does not add up ({n_src} rows in the source, {n} read, "
                    f"{got} in the destination); nothing was written"
                )
            key = primary_key(src, table, cols)
            where = " AND ".join(f"{k} = ?" for k in key)
            for row in samples:
                vals = dict(zip(cols, row, strict=True))
                found = c.execute(
                    f"SELECT {', '.join(cols)} FROM {table} WHERE {where}",
                    tuple(vals[k] for k in key),
                ).fetchall()
                if len(found) != 1 or tuple(found[0]) != row:
                    raise CrawlerError(
                        f"copy of {table}: a row differs after the copy "
                        f"({', '.join(f'{k}={vals[k]!r}' for k in key)}); nothing was written"
                    )
            sampled += len(samples)
            totals[table] = n
        if _is_pg(dst):
            for table in names:
                if "id" in columns(dst, table):
                    # The next id after the copied ones (the identity does not see explicit ids).
                    c.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"coalesce(max(id), 0) + 1, false) FROM {table}"
                    )
    return Copied(totals, sampled)


def copy_database(source: Db, dest: Db) -> Copied:
    """`crawler db copy`: open both histories and copy source into dest (which must be another,
    empty one)."""
    from pathlib import Path

    from crawler.db import open_store, require_history

    require_history(source)
    if str(source) == str(dest) or (
        isinstance(source, Path) and isinstance(dest, Path) and source.resolve() == dest.resolve()
    ):
        raise CrawlerError(f"{source}: --from and --to are the same database")
    src = open_store(source)
    try:
        dst = open_store(dest)
        try:
            return copy_history(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
