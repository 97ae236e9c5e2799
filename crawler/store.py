"""Store stage: runs and checks in SQLite (stdlib sqlite3), with versioned migrations.

Every check is stored, errors and blocked included: history is the point. Enums are stored as
their string values. Checks are written in batches while a run goes on, so an interrupted run
keeps what it finished; the per-URL state that drives "newly broken" and confirmed deaths is
written once at the end of a run, and never for a run in which the network was down.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawler.config import RECENT_RUNS, TREND_RUNS
from crawler.errors import StoreError
from crawler.history import UrlState
from crawler.types import (
    Check,
    ErrorKind,
    FetchResult,
    Hop,
    Link,
    LinkHistory,
    PageKind,
    PageMeta,
    Run,
    RunTotals,
    Verdict,
)

#: Ordered migrations; user_version = how many have run. The pending ones run in one transaction.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,              -- running | complete | interrupted
        network_down INTEGER NOT NULL DEFAULT 0,
        sources TEXT NOT NULL,             -- JSON list
        post_digests TEXT NOT NULL,        -- JSON {source: sha256}
        counts TEXT,                       -- JSON {verdict: n}
        pid INTEGER
    );
    CREATE TABLE checks (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        url TEXT NOT NULL,
        source TEXT NOT NULL,
        line INTEGER NOT NULL,
        section TEXT NOT NULL,             -- JSON list
        listed_title TEXT,
        verdict TEXT NOT NULL,
        raw_verdict TEXT NOT NULL,         -- before the history rules
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        http_status INTEGER,
        final_url TEXT,
        redirects TEXT NOT NULL,           -- JSON [[status, url], ...]
        error TEXT,
        title TEXT,
        summary TEXT,
        page_kind TEXT,
        notice TEXT,
        text_hash TEXT,
        checked_at TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        elapsed_ms INTEGER NOT NULL,
        cached INTEGER NOT NULL DEFAULT 0,
        previous_verdict TEXT,
        previous_title TEXT,
        since TEXT,
        first_failed_at TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX checks_url_time ON checks(url, checked_at);
    CREATE INDEX checks_run ON checks(run_id);
    CREATE TABLE url_state (
        url TEXT PRIMARY KEY,
        last_verdict TEXT,
        last_title TEXT,
        last_checked_at TEXT,
        verdict_since TEXT,
        last_alive_title TEXT,
        fail_runs INTEGER NOT NULL DEFAULT 0,
        first_failed_at TEXT,
        recent TEXT NOT NULL DEFAULT '[]'  -- JSON [[iso, verdict], ...]
    );
    """,
    # 2: `crawler enrich` records the digest it wrote, so a second enrich of its own output
    # still trusts the check it came from.
    """
    CREATE TABLE enrichments (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        source TEXT NOT NULL,
        digest TEXT NOT NULL,
        written_at TEXT NOT NULL
    );
    CREATE INDEX enrichments_run ON enrichments(run_id);
    """,
)

BUSY_TIMEOUT = 30.0  # seconds a statement waits for another process's lock
BATCH = 1000  # checks per insert transaction (and at least every second: pipeline.FLUSH_SECONDS)
Recent = tuple[datetime, Verdict]


def _ts(d: datetime | None) -> str | None:
    return d.isoformat() if d is not None else None


def _dt(s: str | None) -> datetime | None:
    if not s:
        return None
    d = datetime.fromisoformat(s)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A row of the runs table."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    network_down: bool
    sources: tuple[str, ...]
    post_digests: dict[str, str]
    counts: dict[str, int]


def _use_wal(conn: sqlite3.Connection, wait: float = BUSY_TIMEOUT) -> None:
    """Switch to WAL, waiting for other openers: SQLite answers this pragma's lock conflict
    with "database is locked" at once, without its busy handler."""
    deadline = time.monotonic() + wait
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


class Store:
    """The history database. Use `Store.open(path)`; close() when done."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self._lock_fd: int | None = None
        self._rows = _CheckRows()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Store:
        """Open (creating if needed) and migrate the database at path (":memory:" works)."""
        p = str(path)
        try:
            if p != ":memory:":
                Path(p).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(p, timeout=BUSY_TIMEOUT, isolation_level=None)
            conn.row_factory = sqlite3.Row
            _use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            store = cls(conn, p)
            store.migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot use the history database {p}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot create the history database {p}: {exc.strerror}") from exc
        return store

    def close(self) -> None:
        """Release the run lock and close the connection."""
        self.unlock()
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def migrate(self) -> None:
        """Run the migrations this database has not seen yet."""
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} was written by a newer crawler (schema {version}); upgrade the tool"
            )
        if version == len(MIGRATIONS):
            return
        with self.transaction() as c:
            # Read again under the write lock: another process may have migrated meanwhile.
            version = int(c.execute("PRAGMA user_version").fetchone()[0])
            for i in range(version, len(MIGRATIONS)):
                for stmt in MIGRATIONS[i].split(";"):
                    if stmt.strip():
                        c.execute(stmt)
            c.execute(f"PRAGMA user_version = {max(version, len(MIGRATIONS))}")

    # --- run lock -------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the run lock, or raise StoreError at once if another run holds it."""
        if self.path == ":memory:" or self._lock_fd is not None:
            return
        lock_path = self.path + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(
                f"another check is running with {self.path} (pid {other}); try again when it ends"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        # A run still 'running' while we hold the lock was killed: its process is gone.
        with self.transaction() as c:
            c.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")

    def unlock(self) -> None:
        """Release the run lock."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    # --- writing --------------------------------------------------------------------------

    def begin_run(
        self, started_at: datetime, sources: Sequence[str], digests: dict[str, str]
    ) -> int:
        """Insert a run marked 'running' and return its id."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO runs (started_at, status, sources, post_digests, pid) "
                "VALUES (?, 'running', ?, ?, ?)",
                (_ts(started_at), json.dumps(list(sources)), json.dumps(digests), os.getpid()),
            )
            return int(cur.lastrowid or 0)

    def add_checks(self, run_id: int, checks: Iterable[tuple[Check, Verdict]]) -> None:
        """Insert checks (each with its raw verdict) in one transaction."""
        row = self._rows.row
        rows = [row(run_id, c, raw) for c, raw in checks]
        if not rows:
            return
        with self.transaction() as c:
            c.executemany(_INSERT_CHECK, rows)

    def finish_run(
        self,
        run_id: int,
        finished_at: datetime,
        status: str,
        counts: dict[str, int],
        network_down: bool,
        states: Iterable[UrlState] = (),
    ) -> None:
        """Close a run; save the URL states unless the network was down."""
        ts = _Timestamps()
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET finished_at = ?, status = ?, counts = ?, network_down = ? "
                "WHERE id = ?",
                (_ts(finished_at), status, json.dumps(counts), int(network_down), run_id),
            )
            if not network_down:
                c.executemany(
                    "INSERT OR REPLACE INTO url_state (url, last_verdict, last_title, "
                    "last_checked_at, verdict_since, last_alive_title, fail_runs, "
                    "first_failed_at, recent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (  # a generator: rows are made as SQLite takes them
                        (
                            _unshared(s.url),
                            s.last_verdict.value if s.last_verdict else None,
                            _unshared(s.last_title),
                            ts(s.last_checked_at),
                            ts(s.verdict_since),
                            _unshared(s.last_alive_title),
                            s.fail_runs,
                            ts(s.first_failed_at),
                            _recent_json(s.recent, ts),
                        )
                        for s in states
                    ),
                )

    def accept_title(self, url: str) -> str | None:
        """Take url's title at its last check as the one to compare with from now on (`crawler
        accept`): a `changed` link is ok again on the next run. The title, or None when url has
        no alive check to accept."""
        with self.transaction() as c:
            row = c.execute("SELECT last_title FROM url_state WHERE url = ?", (url,)).fetchone()
            if row is None or row["last_title"] is None:
                return None
            c.execute("UPDATE url_state SET last_alive_title = last_title WHERE url = ?", (url,))
            return str(row["last_title"])

    # --- reading --------------------------------------------------------------------------

    def states(self, urls: Iterable[str]) -> dict[str, UrlState]:
        """The remembered state of each known URL among urls."""
        wanted = set(urls)
        out: dict[str, UrlState] = {}
        for r in self.conn.execute("SELECT * FROM url_state"):
            if r["url"] not in wanted:
                continue
            out[r["url"]] = UrlState(
                url=r["url"],
                last_verdict=Verdict(r["last_verdict"]) if r["last_verdict"] else None,
                last_title=r["last_title"],
                last_checked_at=_dt(r["last_checked_at"]),
                verdict_since=_dt(r["verdict_since"]),
                last_alive_title=r["last_alive_title"],
                fail_runs=int(r["fail_runs"]),
                first_failed_at=_dt(r["first_failed_at"]),
                recent=tuple((d, Verdict(v)) for t, v in json.loads(r["recent"]) if (d := _dt(t))),
            )
        return out

    def last_check(self, url: str) -> tuple[FetchResult, PageMeta, datetime] | None:
        """The latest stored fetch of url from a run whose network was up."""
        r = self.conn.execute(
            "SELECT c.* FROM checks c JOIN runs r ON r.id = c.run_id "
            "WHERE c.url = ? AND r.network_down = 0 ORDER BY c.checked_at DESC, c.id DESC LIMIT 1",
            (url,),
        ).fetchone()
        if r is None:
            return None
        check = _row_check(r)
        assert check.fetch is not None and check.meta is not None
        return check.fetch, check.meta, check.checked_at

    def runs(self, limit: int = TREND_RUNS, before: int | None = None) -> list[RunInfo]:
        """The latest runs (newest last), optionally only those before run id `before`."""
        q = "SELECT * FROM runs"
        args: list[Any] = []
        if before is not None:
            q += " WHERE id < ?"
            args.append(before)
        q += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [_run_info(r) for r in reversed(self.conn.execute(q, args).fetchall())]

    def run_info(self, run_id: int | None = None) -> RunInfo | None:
        """One run, or the latest when run_id is None."""
        if run_id is None:
            r = self.conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        else:
            r = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run_info(r) if r is not None else None

    def latest_check_of(self, real_path: str) -> tuple[int, str] | None:
        """(run id, the post's sha256 then) of the newest complete run that read this file."""
        rows = self.conn.execute(
            "SELECT * FROM runs WHERE status = 'complete' AND network_down = 0 ORDER BY id DESC"
        )
        for r in rows:
            for src, digest in json.loads(r["post_digests"]).items():
                # real paths since issue 13; older runs kept the name as given
                if src != "-" and os.path.realpath(src) == real_path:
                    return int(r["id"]), str(digest)
        return None

    def trend(self, before: int, limit: int = TREND_RUNS) -> tuple[RunTotals, ...]:
        """Counts of the finished runs before run id `before`, oldest first."""
        return tuple(
            RunTotals(i.id, i.started_at, i.counts, i.network_down)
            for i in self.runs(limit, before)
            if i.counts
        )

    def load_run(self, run_id: int | None = None) -> Run:
        """Rebuild a Run (for `crawler report`) from the history."""
        info = self.run_info(run_id)
        if info is None:
            raise StoreError(
                f"no run {run_id} in {self.path}" if run_id else f"no runs yet in {self.path}"
            )
        rows = self.conn.execute(
            "SELECT * FROM checks WHERE run_id = ? ORDER BY id", (info.id,)
        ).fetchall()
        # Checks are stored as they complete; reports list them in the post's order.
        src = {s: i for i, s in enumerate(info.sources)}
        rows.sort(key=lambda r: (src.get(r["source"], len(src)), r["line"], r["id"]))
        recent = self._recent_before(info.id, {r["url"] for r in rows})
        checks = []
        for r in rows:
            c = _row_check(r)
            strip = (*recent.get(c.url, ()), (c.checked_at, c.verdict))[-RECENT_RUNS:]
            hist = c.history
            if hist is not None:
                hist = LinkHistory(
                    previous_verdict=hist.previous_verdict,
                    previous_title=hist.previous_title,
                    previous_checked_at=hist.previous_checked_at,
                    since=hist.since,
                    first_failed_at=hist.first_failed_at,
                    consecutive_failures=hist.consecutive_failures,
                    recent=strip,
                )
            checks.append(_with_history(c, hist))
        return Run(
            started_at=info.started_at,
            finished_at=info.finished_at or info.started_at,
            sources=info.sources,
            checks=tuple(checks),
            network_down=info.network_down,
            run_id=info.id,
            trend=self.trend(info.id),
        )

    def _recent_before(self, run_id: int, urls: set[str]) -> dict[str, list[Recent]]:
        out: dict[str, list[Recent]] = {}
        seen: set[tuple[str, int]] = set()
        for r in self.conn.execute(
            "SELECT c.url, c.run_id, c.checked_at, c.verdict FROM checks c "
            "JOIN runs r ON r.id = c.run_id WHERE c.run_id < ? AND r.network_down = 0 "
            "AND c.run_id IN (SELECT id FROM runs WHERE id < ? ORDER BY id DESC LIMIT ?) "
            "ORDER BY c.run_id",
            (run_id, run_id, RECENT_RUNS),
        ):
            if r["url"] in urls and (r["url"], r["run_id"]) not in seen:
                seen.add((r["url"], r["run_id"]))
                d = _dt(r["checked_at"])
                if d is not None:
                    out.setdefault(r["url"], []).append((d, Verdict(r["verdict"])))
        return out

    def add_enrichment(self, run_id: int, source: str, digest: str, at: datetime) -> None:
        """Remember that enrich wrote a post with this digest from run_id's checks."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO enrichments (run_id, source, digest, written_at) VALUES (?, ?, ?, ?)",
                (run_id, source, digest, _ts(at)),
            )

    def enrichment_digests(self, run_id: int) -> set[str]:
        """Digests of the posts enrich wrote from run_id."""
        rows = self.conn.execute("SELECT digest FROM enrichments WHERE run_id = ?", (run_id,))
        return {r["digest"] for r in rows}

    def url_history(self, url: str) -> list[sqlite3.Row]:
        """Every stored check of url, oldest first, with its run's status."""
        return self.conn.execute(
            "SELECT c.*, r.status AS run_status, r.network_down FROM checks c "
            "JOIN runs r ON r.id = c.run_id WHERE c.url = ? ORDER BY c.checked_at, c.id",
            (url,),
        ).fetchall()


_CHECK_COLUMNS = (
    "run_id", "url", "source", "line", "section", "listed_title", "verdict", "raw_verdict",
    "reason", "detail", "http_status", "final_url", "redirects", "error", "title", "summary",
    "page_kind", "notice", "text_hash", "checked_at", "attempts", "elapsed_ms", "cached",
    "previous_verdict", "previous_title", "since", "first_failed_at", "consecutive_failures",
)  # fmt: skip


_INSERT_CHECK = (
    f"INSERT INTO checks ({', '.join(_CHECK_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_CHECK_COLUMNS))})"
)


def _unshared(text: str | None) -> str | None:
    """The text to bind to a statement: for non-ASCII text, a copy that dies with the row.

    sqlite3 keeps the UTF-8 form of every str it binds inside that str object, as long as the
    object lives; the titles and summaries of a run live until its reports are written.
    """
    if text is None or text.isascii():
        return text
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")


class _Timestamps:
    """_ts with a memory of the last moment: a run's checks share their moments."""

    __slots__ = ("last", "text")

    def __init__(self) -> None:
        self.last: datetime | None = None
        self.text: str | None = None

    def __call__(self, d: datetime | None) -> str | None:
        if d is None:
            return None
        if d is not self.last:
            self.last, self.text = d, d.isoformat()
        return self.text


def _recent_json(recent: Iterable[Recent], ts: Callable[[datetime | None], str | None]) -> str:
    """json.dumps([[iso, verdict], ...]) for a URL's last runs (neither needs escaping)."""
    return "[" + ", ".join(f'["{ts(t)}", "{v.value}"]' for t, v in recent) + "]"


class _CheckRows:
    """Turns checks into rows of the checks table, remembering what checks share."""

    __slots__ = ("sections", "ts")

    def __init__(self) -> None:
        self.sections: dict[tuple[str, ...], str] = {}  # a post has few sections
        self.ts = _Timestamps()

    def row(self, run_id: int, c: Check, raw: Verdict) -> tuple[Any, ...]:
        f, m, h, link, ts = c.fetch, c.meta, c.history, c.link, self.ts
        section = self.sections.get(link.section)
        if section is None:
            section = json.dumps(list(link.section), ensure_ascii=False)
            if len(self.sections) < 10_000:
                self.sections[link.section] = section
        u = _unshared
        return (
            run_id,
            u(link.url),
            u(link.source),
            link.line,
            section,
            u(link.listed_title),
            c.verdict.value,
            raw.value,
            c.reason,
            u(c.detail),
            f.status if f else None,
            u(f.final_url) if f else None,
            json.dumps([[hop.status, hop.url] for hop in f.hops]) if f and f.hops else "[]",
            f.error.value if f and f.error else None,
            u(m.title) if m else None,
            u(m.summary) if m else None,
            m.kind.value if m else None,
            u(m.notice) if m else None,
            m.text_hash if m else None,
            ts(c.checked_at),
            f.attempts if f else 0,
            f.elapsed_ms if f else 0,
            int(c.cached),
            h.previous_verdict.value if h and h.previous_verdict else None,
            u(h.previous_title) if h else None,
            ts(h.since) if h else None,
            ts(h.first_failed_at) if h else None,
            h.consecutive_failures if h else 0,
        )


def _row_check(r: sqlite3.Row) -> Check:
    checked_at = _dt(r["checked_at"]) or datetime.now(UTC)
    fetch = FetchResult(
        url=r["url"],
        final_url=r["final_url"] or r["url"],
        status=r["http_status"],
        hops=tuple(Hop(int(s), str(u)) for s, u in json.loads(r["redirects"])),
        attempts=int(r["attempts"]),
        elapsed_ms=int(r["elapsed_ms"]),
        error=ErrorKind(r["error"]) if r["error"] else None,
        fetched_at=checked_at,
    )
    meta = PageMeta(
        title=r["title"],
        summary=r["summary"],
        kind=PageKind(r["page_kind"]) if r["page_kind"] else PageKind.OTHER,
        notice=r["notice"],
        text_hash=r["text_hash"],
    )
    hist = LinkHistory(
        previous_verdict=Verdict(r["previous_verdict"]) if r["previous_verdict"] else None,
        previous_title=r["previous_title"],
        since=_dt(r["since"]),
        first_failed_at=_dt(r["first_failed_at"]),
        consecutive_failures=int(r["consecutive_failures"]),
    )
    return Check(
        link=Link(
            url=r["url"],
            line=int(r["line"]),
            listed_title=r["listed_title"],
            section=tuple(json.loads(r["section"])),
            source=r["source"],
        ),
        fetch=fetch,
        meta=meta,
        verdict=Verdict(r["verdict"]),
        reason=r["reason"],
        detail=r["detail"],
        checked_at=checked_at,
        history=hist,
        cached=bool(r["cached"]),
    )


def _with_history(c: Check, hist: LinkHistory | None) -> Check:
    import dataclasses

    return dataclasses.replace(c, history=hist)


def _run_info(r: sqlite3.Row) -> RunInfo:
    return RunInfo(
        id=int(r["id"]),
        started_at=_dt(r["started_at"]) or datetime.now(UTC),
        finished_at=_dt(r["finished_at"]),
        status=r["status"],
        network_down=bool(r["network_down"]),
        sources=tuple(json.loads(r["sources"])),
        post_digests=json.loads(r["post_digests"]),
        counts=json.loads(r["counts"]) if r["counts"] else {},
    )
