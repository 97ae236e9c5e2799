"""The migrations give the same schema on SQLite and on PostgreSQL (tests/pg.py's real cluster):
the same tables, columns (types mapped as pgstore maps them, nullability, defaults), primary
keys, foreign keys, indexes and migration version. A migration applied on one side only, or a
column one side lacks, fails here."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from crawler.db import PgUrl
from crawler.pgstore import PgStore
from crawler.store import MIGRATIONS, Store

#: SQLite's declared types as pgstore.pg_ddl maps them (information_schema's data_type names).
TYPES = {"INTEGER": "bigint", "REAL": "double precision", "TEXT": "text"}

Schema = dict[str, Any]


def sqlite_schema(path: Path) -> Schema:
    """Tables → columns (name, mapped type, not null, default), primary key, foreign keys;
    indexes (name → table, columns, unique) other than the primary keys'; the version."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables: dict[str, Any] = {}
        indexes: dict[str, Any] = {}
        names = [
            r[0]
            for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for t in names:
            info = db.execute(f"PRAGMA table_info({t})").fetchall()  # cid name type notnull dflt pk
            pk = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
            cols = [
                (name, TYPES.get(kind.upper(), kind.lower()), bool(notnull) or name in pk, dflt)
                for _, name, kind, notnull, dflt, _ in info
            ]
            fks = sorted(
                (r[3], r[2], r[4])  # from column, table, to column
                for r in db.execute(f"PRAGMA foreign_key_list({t})")
            )
            tables[t] = {"columns": cols, "primary key": pk, "foreign keys": fks}
            for _, iname, unique, origin, _ in db.execute(f"PRAGMA index_list({t})"):
                if origin == "pk":
                    continue
                icols = tuple(r[2] for r in db.execute(f"PRAGMA index_info({iname})"))
                indexes[iname] = (t, icols, bool(unique))
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    return {"tables": tables, "indexes": indexes, "version": version}


def _pg_default(text: str | None) -> str | None:
    """PostgreSQL's stored default as SQLite keeps it: `'[]'::text` → `'[]'`."""
    return None if text is None else re.sub(r"::[a-z ]+$", "", text)


def pg_schema(url: str) -> Schema:
    """sqlite_schema's view of a PostgreSQL database (its own crawler_schema table gives the
    version and is not one of the store's tables)."""
    with psycopg.connect(url) as db:
        tables: dict[str, Any] = {}
        names = [
            r[0]
            for r in db.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' "
                "AND table_name <> 'crawler_schema' ORDER BY table_name"
            )
        ]
        for t in names:
            cols = [
                (name, kind, nullable == "NO", _pg_default(dflt))
                for name, kind, nullable, dflt in db.execute(
                    "SELECT column_name, data_type, is_nullable, column_default "
                    "FROM information_schema.columns WHERE table_schema = current_schema() "
                    "AND table_name = %s ORDER BY ordinal_position",
                    (t,),
                )
            ]
            keys = db.execute(
                "SELECT c.contype, a.attname, r.relname, ra.attname "
                "FROM pg_constraint c "
                "JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) ON true "
                "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
                "LEFT JOIN pg_class r ON r.oid = c.confrelid "
                "LEFT JOIN pg_attribute ra ON ra.attrelid = c.confrelid "
                "AND ra.attnum = c.confkey[k.n] "
                "WHERE c.conrelid = %s::regclass AND c.contype IN ('p', 'f') ORDER BY k.n",
                (t,),
            ).fetchall()
            pk = tuple(col for kind, col, _, _ in keys if kind == "p")
            fks = sorted((col, rt, rc) for kind, col, rt, rc in keys if kind == "f")
            tables[t] = {"columns": cols, "primary key": pk, "foreign keys": fks}
        indexes = {
            name: (table, tuple(cols), unique)
            for name, table, cols, unique in db.execute(
                "SELECT i.relname, t.relname, "
                "array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) "
                "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
                "ORDER BY k.n), x.indisunique "
                "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "JOIN pg_class t ON t.oid = x.indrelid "
                "JOIN pg_namespace s ON s.oid = t.relnamespace "
                "WHERE s.nspname = current_schema() AND NOT x.indisprimary "
                "AND t.relname <> 'crawler_schema'"
            )
        }
        row = db.execute("SELECT version FROM crawler_schema").fetchone()
    return {"tables": tables, "indexes": indexes, "version": int(row[0]) if row else 0}


def differences(a: Schema, b: Schema) -> list[str]:
    """What differs between two schemas, one line each (empty: the same)."""
    out = []
    for t in sorted(a["tables"].keys() | b["tables"].keys()):
        ta, tb = a["tables"].get(t), b["tables"].get(t)
        if ta is None or tb is None:
            out.append(f"table {t}: only on {'PostgreSQL' if ta is None else 'SQLite'}")
            continue
        for what in ("columns", "primary key", "foreign keys"):
            if ta[what] != tb[what]:
                out.append(f"table {t} {what}: SQLite {ta[what]} != PostgreSQL {tb[what]}")
    for i in sorted(a["indexes"].keys() | b["indexes"].keys()):
        if a["indexes"].get(i) != b["indexes"].get(i):
            lite, pg = a["indexes"].get(i), b["indexes"].get(i)
            out.append(f"index {i}: SQLite {lite} != PostgreSQL {pg}")
    if a["version"] != b["version"]:
        out.append(f"version: SQLite {a['version']} != PostgreSQL {b['version']}")
    return out


def _migrated(tmp_path: Path, pg_url: str) -> tuple[Path, str]:
    path = tmp_path / "history.sqlite"
    Store.open(path).close()
    PgStore.open(PgUrl(pg_url)).close()
    return path, pg_url


def test_migrations_give_the_same_schema_on_sqlite_and_postgresql(
    tmp_path: Path, pg_url: str
) -> None:
    path, url = _migrated(tmp_path, pg_url)
    lite, pg = sqlite_schema(path), pg_schema(url)
    assert differences(lite, pg) == []
    # the comparison saw the whole schema, not two empty ones
    assert lite["version"] == len(MIGRATIONS)
    tables = lite["tables"]
    assert {"runs", "checks", "url_state", "run_urls", "run_hosts", "hosts"} <= tables.keys()
    checks = dict((c[0], c[1:]) for c in lite["tables"]["checks"]["columns"])
    assert checks["id"] == ("bigint", True, None)
    assert checks["anchors"] == ("text", False, None)
    assert lite["tables"]["run_urls"]["primary key"] == ("run_id", "url")
    assert ("run_id", "runs", "id") in lite["tables"]["checks"]["foreign keys"]
    assert lite["indexes"]["checks_url_run"] == (
        "checks",
        ("url", "run_id", "verdict", "checked_at"),
        False,
    )


def test_the_schema_comparison_sees_a_column_or_a_migration_on_one_side_only(
    tmp_path: Path, pg_url: str
) -> None:
    """The comparison above can fail: a dropped column, an index or a type on one side only."""
    path, url = _migrated(tmp_path, pg_url)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("ALTER TABLE checks DROP COLUMN anchors")
    diff = differences(sqlite_schema(path), pg_schema(url))
    assert len(diff) == 1 and diff[0].startswith("table checks columns:"), diff
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("ALTER TABLE checks DROP COLUMN anchors")
        db.execute("CREATE INDEX hosts_pace ON hosts(pace_updated_at)")
        db.execute("ALTER TABLE hosts ADD COLUMN note REAL")
        db.execute("PRAGMA user_version = 99")
        db.commit()
    diff = differences(sqlite_schema(path), pg_schema(url))
    assert [d.split(":")[0] for d in diff] == [
        "table hosts columns", "index hosts_pace", "version"
    ], diff  # fmt: skip
