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
import socket
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from crawler.config import RECENT_RUNS, TREND_RUNS
from crawler.errors import StoreError
from crawler.frontier import UNCHECKED, Finished, UrlTask
from crawler.history import UrlState
from crawler.pace import Pace
from crawler.redact import redact_text, redact_url
from crawler.types import (
    NETWORK_ERRORS,
    Check,
    ErrorKind,
    FetchResult,
    Hop,
    LazyChecks,
    Link,
    LinkHistory,
    PageKind,
    PageMeta,
    Run,
    RunTotals,
    Survey,
    Verdict,
)

#: A URL's remembered state (history.UrlState): the columns of url_state (migration 1) and of
#: run_states (migration 3), which a run's states go through. Part of both migrations as they
#: ran: a change is a new migration, never an edit here.
_STATE_COLUMNS = (
    ("last_verdict", "TEXT"),
    ("last_title", "TEXT"),
    ("last_checked_at", "TEXT"),
    ("verdict_since", "TEXT"),
    ("last_alive_title", "TEXT"),
    ("fail_runs", "INTEGER NOT NULL DEFAULT 0"),
    ("first_failed_at", "TEXT"),
    ("recent", "TEXT NOT NULL DEFAULT '[]'"),  # JSON [[iso, verdict], ...]
)
_STATE_DDL = ",\n".join(f"        {name} {kind}" for name, kind in _STATE_COLUMNS)
_STATE_NAMES = ", ".join(name for name, _ in _STATE_COLUMNS)

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
    """
    + _STATE_DDL
    + """
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
    # 3: the store is the frontier (crawler/engine.py). A run's distinct URLs wait in run_urls
    # until a worker that leased their host (run_hosts) writes their checks; run_states holds
    # the URL states a run will remember once it ends; hosts will hold each host's pace.
    f"""
    ALTER TABLE runs ADD COLUMN plan TEXT;       -- JSON: what every worker of the run follows
    ALTER TABLE checks ADD COLUMN position INTEGER;  -- the link's place among the run's links
    ALTER TABLE checks ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0;  -- body hit the cap
    ALTER TABLE checks ADD COLUMN anchors TEXT;  -- JSON list, read for --include-fragments only
    CREATE TABLE run_urls (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        url TEXT NOT NULL,
        host TEXT NOT NULL,                -- politeness key: host[:port]
        position INTEGER NOT NULL,         -- of the URL's first occurrence
        links TEXT NOT NULL,  -- JSON [[position, line, listed_title, section, source, anchor_text]]
        state TEXT NOT NULL DEFAULT 'pending',  -- pending | done (leased: its host's lease)
        PRIMARY KEY (run_id, url)
    );
    CREATE INDEX run_urls_todo ON run_urls(run_id, host, state, position);
    CREATE TABLE run_hosts (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        host TEXT NOT NULL,
        urls INTEGER NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,   -- 1 once none of its URLs is pending
        leases INTEGER NOT NULL DEFAULT 0, -- times a worker leased it for the run (>1: taken over)
        lease_owner TEXT,                  -- "machine:pid:nonce" of the worker holding it
        lease_expires REAL,                -- unix time
        PRIMARY KEY (run_id, host)
    );
    CREATE TABLE hosts (
        host TEXT PRIMARY KEY,
        pace_concurrency INTEGER,          -- learned pace (crawler/pace.py)
        pace_interval REAL,
        pace_updated_at TEXT
    );
    CREATE TABLE run_states (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        url TEXT NOT NULL,
{_STATE_DDL},
        PRIMARY KEY (run_id, url)
    );
    """,
    # 4: budgeted runs claim the most due URLs first (frontier.due): a host's `due` is the
    # lowest of its pending URLs', and hosts are leased lowest first.
    """
    ALTER TABLE run_urls ADD COLUMN due INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE run_urls ADD COLUMN last_checked TEXT;  -- the URL's last check before the run
    ALTER TABLE run_hosts ADD COLUMN due INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: the learned pace's memory of a host's limit (crawler/pace.py).
    """
    ALTER TABLE hosts ADD COLUMN pace_known_max INTEGER;  -- most in flight known to pass
    """,
    # 6: verification pages met per host, over every run (crawler hosts).
    """
    ALTER TABLE hosts ADD COLUMN verification_pages INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: a report's strips of recent runs read from the index alone (_recent_before), not from
    # each earlier check's row: 1.5 s -> 0.15 s CPU for 25,000 links and two earlier runs.
    """
    CREATE INDEX checks_url_run ON checks(url, run_id, verdict, checked_at);
    """,
    # 8: each host's count of check rows written for the run, so the progress of a run worked
    # by other processes is read from one row per host, not counted over its checks (a count
    # every 0.2 s over a run of 100,000 links: the most PostgreSQL CPU of any statement).
    """
    ALTER TABLE run_hosts ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: a URL with a password is recorded with *** in its place (crawler/redact.py); the
    # URL as written waits here for its request, and only while the URL is pending.
    """
    ALTER TABLE run_urls ADD COLUMN fetch_url TEXT;  -- NULL: fetched as `url` says
    """,
    # 9: a worker renews its leases by owner every few seconds (renew_leases), and a check
    # frees a killed run's by owner (release_stale_leases): without an index each was a scan
    # of every run's hosts (20 runs of 2,000 hosts: 120,096 SQLite steps a renewal, 101 with
    # it). Only leased rows are in it: a few per worker, whatever the history's size.
    """
    CREATE INDEX run_hosts_owner ON run_hosts(lease_owner) WHERE lease_owner IS NOT NULL;
    """,
)


def statements(script: str) -> Iterator[str]:
    """The complete SQL statements of a script, as SQLite itself delimits them (a `;` inside a
    string, a comment or a trigger body does not end one)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf
            buf = ""
    if buf.strip() and not buf.strip().startswith("--"):
        yield buf  # a last statement without its `;`


P = ParamSpec("P")
T = TypeVar("T")

BUSY_TIMEOUT = 30.0  # seconds a statement waits for another process's lock
BATCH = 1000  # checks per write transaction (and at least every second: engine.FLUSH_SECONDS)
_IN_CHUNK = 500  # values per `IN (...)`: under SQLite's limit on bound parameters
Recent = tuple[datetime, Verdict]


def _empty_host(host: str) -> dict[str, Any]:
    return {
        "host": host,
        "urls_checked": 0,
        "requests": 0,
        "answers": dict.fromkeys(("2xx", "3xx", "4xx", "5xx", "none"), 0),
        "verification_pages": 0,
        "pace": None,
        "median_latency_ms": None,
        "last_lease": None,
    }


def _ts(d: datetime | None) -> str | None:
    return d.isoformat() if d is not None else None


@lru_cache(maxsize=4096)  # a run's checks share their moments (since, first failed, runs)
def _dt(s: str | None) -> datetime | None:
    if not s:
        return None
    d = datetime.fromisoformat(s)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


@lru_cache(maxsize=4096)  # a post's links share a few sections
def _section(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


_VERDICT = {v.value: v for v in Verdict}
_KIND = {k.value: k for k in PageKind}
_ERROR = {e.value: e for e in ErrorKind}


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


def _when(value: str | datetime) -> datetime:
    """A NOT NULL time column as an aware datetime (PostgreSQL may give one already)."""
    d = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One stored check of a URL with its run's status: a line of `crawler history`."""

    run_id: int
    url: str
    checked_at: datetime
    verdict: str
    raw_verdict: str | None
    reason: str
    detail: str | None
    http_status: int | None
    final_url: str | None
    title: str | None
    listed_title: str | None
    cached: bool
    run_status: str
    network_down: bool

    @classmethod
    def from_row(cls, r: Any) -> CheckRecord:
        """A record from a row of url_history's query (its columns are the fields' names)."""
        values = {f.name: r[f.name] for f in fields(cls)}
        values.update(
            run_id=int(r["run_id"]),
            checked_at=_when(r["checked_at"]),
            cached=bool(r["cached"]),
            network_down=bool(r["network_down"]),
        )
        return cls(**values)


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

    #: How lease_host's choice of a host is locked: SQLite's BEGIN IMMEDIATE (transaction())
    #: already holds the whole database's write lock, so nothing more.
    CLAIM_LOCK = ""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self._lock_fd: int | None = None

    async def off_loop(self, step: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """step(*args, **kwargs) for a caller on an event loop: one of this store's steps.

        SQLite's run right here, on the caller's thread: a local file (sqlite3's connection
        belongs to its thread). PgStore's wait for the server in a thread (see there)."""
        return step(*args, **kwargs)

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
                for stmt in statements(MIGRATIONS[i]):
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
        # So are the leases its workers on this machine held: they need not wait to expire.
        self.release_stale_leases(socket.gethostname(), _pid_alive)

    def unlock(self) -> None:
        """Release the run lock."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    # --- writing --------------------------------------------------------------------------

    def plan_run(
        self,
        started_at: datetime,
        sources: Sequence[str],
        digests: Mapping[str, str],
        plan: Mapping[str, Any],
        tasks: Iterable[UrlTask],
    ) -> int:
        """Insert a run marked 'running' and its distinct URLs (pending), in one transaction.

        `tasks` may come as a stream with a URL more than once (engine.occurrences): each URL
        is one row, its occurrences in the order they came, and only the URLs are held here."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO runs (started_at, status, sources, post_digests, pid, plan) "
                "VALUES (?, 'running', ?, ?, ?, ?)",
                (
                    _ts(started_at),
                    json.dumps(list(sources)),
                    json.dumps(dict(digests)),
                    os.getpid(),
                    json.dumps(dict(plan)),
                ),
            )
            run_id = int(cur.lastrowid or 0)
            hosts: dict[str, int] = {}

            due: dict[str, int] = {}
            seen: set[str] = set()
            again: dict[str, list[tuple[int, Link]]] = {}  # a URL's occurrences after its row

            def rows() -> Iterator[tuple[Any, ...]]:
                for t in tasks:
                    if t.url in seen:
                        again.setdefault(t.url, []).extend(t.links)
                        continue
                    seen.add(t.url)
                    hosts[t.host] = hosts.get(t.host, 0) + 1
                    due[t.host] = min(due.get(t.host, t.due), t.due)
                    yield (
                        run_id, t.url, t.host, t.links[0][0], _links_json(t.links),
                        t.due, _ts(t.last_checked), t.fetch_url,
                    )  # fmt: skip

            c.executemany(
                "INSERT INTO run_urls (run_id, url, host, position, links, due, last_checked, "
                "fetch_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows(),
            )
            for url, more in again.items():
                r = c.execute(
                    "SELECT links FROM run_urls WHERE run_id = ? AND url = ?", (run_id, url)
                ).fetchone()
                links = [*_links_from_json(r[0]), *more]
                c.execute(
                    "UPDATE run_urls SET links = ? WHERE run_id = ? AND url = ?",
                    (_links_json(links), run_id, url),
                )
            c.executemany(
                "INSERT INTO run_hosts (run_id, host, urls, due) VALUES (?, ?, ?, ?)",
                ((run_id, h, n, due[h]) for h, n in hosts.items()),
            )
        self._planned(run_id)
        return run_id

    def _planned(self, run_id: int) -> None:
        """Called once a run is planned (committed): SQLite's run lock is the file's."""

    def run_plan(self, run_id: int) -> dict[str, Any]:
        """The plan a run was made with (what its workers follow)."""
        r = self.conn.execute("SELECT plan FROM runs WHERE id = ?", (run_id,)).fetchone()
        if r is None:
            raise StoreError(f"no run {run_id} in {self.path}")
        return dict(json.loads(r["plan"] or "{}"))

    def _in(
        self, column: str, values: Sequence[Any], kind: str = "text"
    ) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """`column IN (…)` over values and its parameters, a chunk at a time (SQLite bounds
        the parameters of a statement); `kind` is the column's type (PgStore's one array).

        A chunk's list is padded to a power of two (or the chunk's size) by repeating its last
        value, which IN ignores: the sqlite3 module keeps each distinct statement's compiled
        program (128 of them), and a program grows with its list, so a worker's batches of
        every size up to 500 held up to ~6 MB by the end of a long run (Hibernate pads its IN
        lists the same way, `in_clause_parameter_padding`)."""
        for i in range(0, len(values), _IN_CHUNK):
            part = tuple(values[i : i + _IN_CHUNK])
            size = min(1 << (len(part) - 1).bit_length(), _IN_CHUNK)
            part += part[-1:] * (size - len(part))
            yield f"{column} IN ({', '.join('?' * size)})", part

    def lease_host(self, run_id: int, owner: str, seconds: float, now: float) -> str | None:
        """Lease the run's open host with the most URLs whose lease is free or expired (the
        largest first: the run's tail is then made of small hosts), among those with the most
        due URLs (the lowest `due`: a budgeted run claims what is most due first).

        One statement in a write transaction (CLAIM_LOCK), so two workers never both get a
        host, and none waits on another where the database can pass a locked row over.
        """
        free = "(lease_owner IS NULL OR lease_expires < ?)"
        with self.transaction() as c:
            r = c.execute(
                "UPDATE run_hosts SET lease_owner = ?, lease_expires = ?, leases = leases + 1 "
                f"WHERE run_id = ? AND done = 0 AND {free} AND host = (SELECT host FROM run_hosts "
                f"WHERE run_id = ? AND done = 0 AND {free} ORDER BY due, urls DESC, host LIMIT 1"
                f"{self.CLAIM_LOCK}) RETURNING host",
                (owner, now + seconds, run_id, now, run_id, now),
            ).fetchone()
            return None if r is None else str(r[0])

    def pending(self, run_id: int, host: str) -> list[UrlTask]:
        """The run's most due pending URLs on a host (those of its lowest `due`), oldest check
        first, then in the links' order (a run without a budget: every pending URL, in order)."""
        todo = "run_id = ? AND host = ? AND state = 'pending'"
        rows = self.conn.execute(
            f"SELECT url, links, due, last_checked, fetch_url FROM run_urls WHERE {todo} "
            f"AND due = (SELECT min(due) FROM run_urls WHERE {todo}) "
            "ORDER BY last_checked, position",
            (run_id, host, run_id, host),
        )
        return [_task(r, host) for r in rows]

    def pending_urls(self, run_id: int, size: int = BATCH) -> Iterator[list[UrlTask]]:
        """Every pending URL of the run, `size` at a time, in the links' order."""
        after = -1
        while True:
            rows = self.conn.execute(
                "SELECT url, host, links, due, last_checked, position, fetch_url FROM run_urls "
                "WHERE run_id = ? AND state = 'pending' AND position > ? "
                "ORDER BY position LIMIT ?",
                (run_id, after, size),
            ).fetchall()
            if not rows:
                return
            after = int(rows[-1]["position"])
            yield [_task(r, r["host"]) for r in rows]

    def latest_checks(self, urls: Sequence[str]) -> dict[str, Check]:
        """The latest stored check of each URL from a run whose network was up (none that
        only says the URL was not reached)."""
        out: dict[str, Check] = {}
        wanted = list(dict.fromkeys(urls))
        for among, part in self._in("c.url", wanted):
            for r in self.conn.execute(
                f"SELECT {_READ_C} FROM checks c JOIN runs r ON r.id = c.run_id "
                f"WHERE {among} AND r.network_down = 0 AND c.reason != ? "
                "ORDER BY c.checked_at, c.id",
                (*part, UNCHECKED),
            ):
                out[r["url"]] = _row_check(r, history=False)  # the newest wins
        return out

    def renew_leases(self, owner: str, seconds: float, now: float) -> set[tuple[int, str]]:
        """Extend every lease the owner holds; the (run, host) of each, so a worker sees which
        of its leases another worker took once they expired (a stall longer than a lease)."""
        with self.transaction() as c:
            rows = c.execute(
                "UPDATE run_hosts SET lease_expires = ? WHERE lease_owner = ? "
                "RETURNING run_id, host",
                (now + seconds, owner),
            ).fetchall()
            return {(int(r[0]), str(r[1])) for r in rows}

    def release_host(self, run_id: int, host: str, owner: str) -> None:
        """Give a host back, marking it done for the run when none of its URLs is pending."""
        with self.transaction() as c:
            # The host's `due` is then that of its most due pending URL (what is left).
            c.execute(
                "UPDATE run_hosts SET lease_owner = NULL, lease_expires = NULL, done = CASE WHEN "
                "EXISTS (SELECT 1 FROM run_urls u WHERE u.run_id = ? AND u.host = ? "
                "AND u.state = 'pending') THEN 0 ELSE 1 END, due = coalesce((SELECT min(due) "
                "FROM run_urls u WHERE u.run_id = ? AND u.host = ? AND u.state = 'pending'), due) "
                "WHERE run_id = ? AND host = ? AND lease_owner = ?",
                (run_id, host, run_id, host, run_id, host, owner),
            )

    def release_stale_leases(self, machine: str, alive: Callable[[int], bool]) -> int:
        """Free the leases held by this machine's processes that are gone (a killed run's)."""
        stale = []
        held = "SELECT run_id, host, lease_owner FROM run_hosts WHERE lease_owner IS NOT NULL"
        for r in self.conn.execute(held):
            # owner: machine:pid:nonce (engine.worker_id)
            name, _, pid = str(r["lease_owner"]).rpartition(":")[0].rpartition(":")
            if name == machine and pid.isdigit() and not alive(int(pid)):
                stale.append((r["run_id"], r["host"], r["lease_owner"]))
        if stale:
            with self.transaction() as c:
                c.executemany(
                    "UPDATE run_hosts SET lease_owner = NULL, lease_expires = NULL "
                    "WHERE run_id = ? AND host = ? AND lease_owner = ?",
                    stale,
                )
        return len(stale)

    def write_finished(self, run_id: int, items: Sequence[Finished]) -> int:
        """Write the checks (and the state to remember) of each URL still pending in the run and
        mark it done, in one transaction; a URL already done is left as it is (another worker
        wrote it first). Returns the number of URLs written."""
        if not items:
            return 0
        ts = _ts
        with self.transaction() as c:
            # One statement marks them done and says which were pending: a URL another worker
            # wrote first is not among them (on PostgreSQL too, where the rows are locked).
            pending: dict[str, str] = {}  # url: host
            urls = list(dict.fromkeys(item.url for item in items))
            for among, part in self._in("url", urls):
                pending.update(
                    (r[0], r[1])
                    for r in c.execute(
                        "UPDATE run_urls SET state = 'done', fetch_url = NULL WHERE run_id = ? "
                        f"AND state = 'pending' AND {among} RETURNING url, host",
                        (run_id, *part),
                    ).fetchall()
                )
            fresh = []
            written: dict[str, int] = {}  # host: check rows
            for item in items:
                host = pending.pop(self._as_stored(item.url), None)
                if host is not None:  # once, even if a batch had it twice
                    fresh.append(item)
                    written[host] = written.get(host, 0) + len(item.checks)
            c.executemany(
                _INSERT_CHECK,
                (_check_row(run_id, k, raw, pos) for item in fresh for pos, k, raw in item.checks),
            )
            c.executemany(
                f"INSERT OR REPLACE INTO run_states (run_id, url, {_STATE_NAMES}) "
                f"VALUES (?, ?, {', '.join('?' * len(_STATE_COLUMNS))})",
                (
                    (
                        run_id,
                        s.url,
                        s.last_verdict.value if s.last_verdict else None,
                        s.last_title,
                        ts(s.last_checked_at),
                        ts(s.verdict_since),
                        s.last_alive_title,
                        s.fail_runs,
                        ts(s.first_failed_at),
                        json.dumps([[ts(t), v.value] for t, v in s.recent]),
                    )
                    for item in fresh
                    if (s := item.state) is not None
                ),
            )
            # in the hosts' order: two writers of the same hosts never wait on each other in turn
            c.executemany(
                "UPDATE run_hosts SET checks = checks + ? WHERE run_id = ? AND host = ?",
                ((n, run_id, host) for host, n in sorted(written.items())),
            )
        return len(fresh)

    @staticmethod
    def _as_stored(text: str) -> str:
        """text as the database gives it back (PostgreSQL's text cannot hold NUL)."""
        return text

    def run_size(self, run_id: int) -> tuple[int, int]:
        """A planned run's distinct URLs and hosts."""
        r = self.conn.execute(
            "SELECT coalesce(sum(urls), 0), count(*) FROM run_hosts WHERE run_id = ?", (run_id,)
        ).fetchone()
        return int(r[0]), int(r[1])

    def open_hosts(self, run_id: int) -> int:
        """Hosts of the run with URLs not yet done."""
        r = self.conn.execute(
            "SELECT count(*) FROM run_hosts WHERE run_id = ? AND done = 0", (run_id,)
        ).fetchone()
        return int(r[0])

    def open_run(self) -> int | None:
        """The oldest running run with hosts left to check and time left in its budget (for
        `crawler worker` without --run)."""
        now = datetime.now(UTC)
        for r in self.conn.execute(
            "SELECT id, plan FROM runs WHERE status = 'running' AND EXISTS "
            "(SELECT 1 FROM run_hosts WHERE run_hosts.run_id = runs.id AND done = 0) "
            "ORDER BY id"
        ).fetchall():
            deadline = _dt(json.loads(r["plan"] or "{}").get("deadline"))
            if deadline is None or deadline > now:
                return int(r["id"])
        return None

    def host_paces(self, hosts: Iterable[str]) -> dict[str, Pace]:
        """The pace each host ended its last run at (hosts never seen are absent)."""
        out: dict[str, Pace] = {}
        for host in hosts:
            r = self.conn.execute(
                "SELECT pace_concurrency, pace_interval, pace_known_max FROM hosts "
                "WHERE host = ? AND pace_concurrency IS NOT NULL",
                (host,),
            ).fetchone()
            if r is not None:
                known = r["pace_known_max"]
                out[host] = Pace(
                    int(r[0]), float(r[1] or 0.0), None if known is None else int(known)
                )
        return out

    def save_pace(self, host: str, pace: Pace, at: datetime, verification_pages: int = 0) -> None:
        """Keep the pace a host ended a lease at, for the next run to start from, and add the
        verification pages it met."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO hosts (host, pace_concurrency, pace_interval, pace_known_max, "
                "pace_updated_at, verification_pages) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (host) DO UPDATE SET pace_concurrency = excluded.pace_concurrency, "
                "pace_interval = excluded.pace_interval, pace_known_max = excluded.pace_known_max, "
                "pace_updated_at = excluded.pace_updated_at, "
                "verification_pages = hosts.verification_pages + excluded.verification_pages",
                (host, pace.limit, pace.interval, pace.known_max, _ts(at), verification_pages),
            )

    def host_stats(self) -> list[dict[str, Any]]:
        """Per host, over every check in the history: requests, answers by class (2xx, 3xx,
        4xx, 5xx, none), verification pages met, learned pace, median latency, last lease."""
        from statistics import median

        from crawler.fetch import host_key

        hosts: dict[str, dict[str, Any]] = {}
        latencies: dict[str, list[float]] = {}
        rows = self.conn.execute(
            "SELECT url, http_status, attempts, elapsed_ms FROM checks WHERE cached = 0"
        )
        for r in rows:
            host = host_key(r["url"])
            h = hosts.get(host)
            if h is None:
                h = hosts[host] = _empty_host(host)
            h["urls_checked"] += 1
            h["requests"] += int(r["attempts"])
            status = r["http_status"]
            h["answers"]["none" if status is None else f"{int(status) // 100}xx"] += 1
            if r["attempts"]:
                latencies.setdefault(host, []).append(r["elapsed_ms"] / r["attempts"])
        for r in self.conn.execute("SELECT * FROM hosts"):
            h = hosts.get(r["host"])
            if h is None:
                h = hosts[r["host"]] = _empty_host(r["host"])
            h["verification_pages"] = int(r["verification_pages"] or 0)
            h["pace"] = {
                "concurrency": r["pace_concurrency"],
                "interval": r["pace_interval"],
                "known_max": r["pace_known_max"],
            }
            h["last_lease"] = r["pace_updated_at"]
        for host, values in latencies.items():
            hosts[host]["median_latency_ms"] = round(median(values))
        return sorted(hosts.values(), key=lambda h: (-h["requests"], h["host"]))

    def written(self, run_id: int) -> int:
        """Checks written for the run so far, as its hosts count them (a run's progress: one
        row per host to read, whatever the number of checks)."""
        r = self.conn.execute(
            "SELECT coalesce(sum(checks), 0) FROM run_hosts WHERE run_id = ?", (run_id,)
        ).fetchone()
        return int(r[0])

    def checked(self, run_id: int) -> int:
        """Checks written for the run so far (counted: runs from before migration 8 too)."""
        r = self.conn.execute("SELECT count(*) FROM checks WHERE run_id = ?", (run_id,)).fetchone()
        return int(r[0])

    def finish_run(self, run_id: int, finished_at: datetime, status: str) -> bool:
        """Close a run: its counts, whether the network was down (no host answered and every
        fetch failed at the network level), and, unless it was, the URL states it leaves.
        Returns network_down."""
        with self.transaction() as c:
            counts = {v.value: 0 for v in Verdict if v is not Verdict.SKIPPED}
            for r in c.execute(
                "SELECT verdict, count(*) AS n FROM checks WHERE run_id = ? GROUP BY verdict",
                (run_id,),
            ):
                counts[r["verdict"]] = int(r["n"])
            network = ", ".join(f"'{e.value}'" for e in sorted(NETWORK_ERRORS))
            other = f"http_status IS NULL AND (error IS NULL OR error NOT IN ({network}))"
            r = c.execute(
                "SELECT count(*) AS fetched, count(http_status) AS answered, "
                f"coalesce(sum(CASE WHEN {other} THEN 1 ELSE 0 END), 0) AS other "
                "FROM checks WHERE run_id = ? AND cached = 0 "
                # URLs never requested (invalid ones) say nothing either way
                "AND attempts > 0",
                (run_id,),
            ).fetchone()
            network_down = bool(r["fetched"] > 0 and r["answered"] == 0 and r["other"] == 0)
            c.execute(
                "UPDATE runs SET finished_at = ?, status = ?, counts = ?, network_down = ? "
                "WHERE id = ?",
                (_ts(finished_at), status, json.dumps(counts), int(network_down), run_id),
            )
            if status != "complete":  # URLs not reached keep no password (done ones gave it up)
                c.execute(
                    "UPDATE run_urls SET fetch_url = NULL WHERE run_id = ? AND state = 'pending' "
                    "AND fetch_url IS NOT NULL",
                    (run_id,),
                )
            if not network_down:
                c.execute(
                    f"INSERT OR REPLACE INTO url_state (url, {_STATE_NAMES}) "
                    f"SELECT url, {_STATE_NAMES} FROM run_states WHERE run_id = ?",
                    (run_id,),
                )
            c.execute("DELETE FROM run_states WHERE run_id = ?", (run_id,))
        return network_down

    def accept_title(self, url: str) -> str | None:
        """Take url's title at its last check as the one to compare with from now on (`crawler
        accept`): a `changed` link is ok again on the next run. The title, or None when url has
        no alive check to accept."""
        url = redact_url(url)  # as recorded
        with self.transaction() as c:
            row = c.execute("SELECT last_title FROM url_state WHERE url = ?", (url,)).fetchone()
            if row is None or row["last_title"] is None:
                return None
            c.execute("UPDATE url_state SET last_alive_title = last_title WHERE url = ?", (url,))
            return str(row["last_title"])

    # --- reading --------------------------------------------------------------------------

    def states(self, urls: Iterable[str]) -> dict[str, UrlState]:
        """The remembered state of each known URL among urls."""
        wanted = list(dict.fromkeys(urls))
        out: dict[str, UrlState] = {}
        for among, part in self._in("url", wanted):
            for r in self.conn.execute(f"SELECT * FROM url_state WHERE {among}", part):
                out[r["url"]] = UrlState(
                    url=r["url"],
                    last_verdict=Verdict(r["last_verdict"]) if r["last_verdict"] else None,
                    last_title=r["last_title"],
                    last_checked_at=_dt(r["last_checked_at"]),
                    verdict_since=_dt(r["verdict_since"]),
                    last_alive_title=r["last_alive_title"],
                    fail_runs=int(r["fail_runs"]),
                    first_failed_at=_dt(r["first_failed_at"]),
                    recent=tuple(
                        (d, Verdict(v)) for t, v in json.loads(r["recent"]) if (d := _dt(t))
                    ),
                )
        return out

    def last_check(self, url: str) -> tuple[FetchResult, PageMeta, datetime] | None:
        """The latest stored fetch of url from a run whose network was up."""
        r = self.conn.execute(
            f"SELECT {_READ_C} FROM checks c JOIN runs r ON r.id = c.run_id "
            "WHERE c.url = ? AND r.network_down = 0 ORDER BY c.checked_at DESC, c.id DESC LIMIT 1",
            (url,),
        ).fetchone()
        if r is None:
            return None
        check = _row_check(r)
        if check.fetch is None or check.meta is None:
            return None  # nothing was read: nothing to reuse
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

    def load_run(
        self, run_id: int | None = None, *, text_hash: bool = True, stream: bool = False
    ) -> Run:
        """Rebuild a Run (for the reports) from the history, its checks in the links' order.

        `text_hash=False` leaves the pages' main-text hash out (no report shows it). A run made
        without the history (`check --no-history`) has no history fields. With `stream`, the
        checks are LazyChecks: each pass over them opens the database again and reads them a
        batch at a time, so memory stays flat at any size (the run's store may be closed).
        """
        info = self.run_info(run_id)
        if info is None:
            raise StoreError(
                f"no run {run_id} in {self.path}"
                if run_id is not None
                else f"no runs yet in {self.path}"
            )
        plan = self.run_plan(info.id)
        with_history = bool(plan.get("history", True))
        if stream and self.path != ":memory:" and not self._unordered(info.id):
            checks: Sequence[Check] = self._stream(info.id, text_hash, with_history)
            return Run(
                started_at=info.started_at,
                finished_at=info.finished_at or info.started_at,
                sources=info.sources,
                checks=checks,
                network_down=info.network_down,
                run_id=info.id,
                trend=self.trend(info.id) if with_history else (),
                status=info.status,
            )
        rows = self.conn.execute(
            f"SELECT {_READ} FROM checks WHERE run_id = ? ORDER BY id", (info.id,)
        ).fetchall()
        if rows and all(r["position"] is not None for r in rows):
            rows.sort(key=lambda r: (r["position"], r["id"]))
        else:
            # Checks were stored as they completed (before positions were kept): the post's order.
            src = {s: i for i, s in enumerate(info.sources)}
            rows.sort(key=lambda r: (src.get(r["source"], len(src)), r["line"], r["id"]))
        recent = self._recent_before(info.id, {r["url"] for r in rows}) if with_history else {}
        checks = []
        for r in rows:
            checks.append(_row_check(r, text_hash=text_hash, history=with_history, recent=recent))
        return Run(
            started_at=info.started_at,
            finished_at=info.finished_at or info.started_at,
            sources=info.sources,
            checks=tuple(checks),
            network_down=info.network_down,
            run_id=info.id,
            trend=self.trend(info.id) if with_history else (),
            status=info.status,
        )

    def _unordered(self, run_id: int) -> bool:
        """Whether the run's checks were stored without their positions (before migration 3)."""
        r = self.conn.execute(
            "SELECT 1 FROM checks WHERE run_id = ? AND position IS NULL LIMIT 1", (run_id,)
        ).fetchone()
        return r is not None

    def _stream(self, run_id: int, text_hash: bool, history: bool) -> LazyChecks:
        """The run's checks, read a batch at a time at each pass, each batch on a connection
        opened and closed for it (a pass given up half-way holds no connection). The order of
        the checks (their ids) is read once, at the first pass. A `lean` pass leaves out the
        strips of recent runs (report.html alone shows them; they cost the most to read)."""
        n = self.checked(run_id)
        location: Any = getattr(self, "url", None) or Path(self.path)
        order: list[array[int]] = []

        def ids() -> array[int]:
            from crawler.db import open_store

            if not order:
                store = open_store(location)
                try:
                    order.append(store.check_ids(run_id))
                finally:
                    store.close()
            return order[0]

        def read(wanted: Sequence[int], strips: bool) -> Iterator[Check]:
            from crawler.db import open_store

            for i in range(0, len(wanted), BATCH):
                store = open_store(location)
                try:
                    batch = store.checks_by_id(
                        run_id, wanted[i : i + BATCH], text_hash, history, strips=strips
                    )
                finally:
                    store.close()
                yield from batch

        def picked(indices: Sequence[int]) -> Iterator[Check]:
            every = ids()
            return read([every[i] for i in indices], True)

        def survey() -> Iterator[Survey]:
            from crawler.db import open_store

            wanted = ids()
            for i in range(0, len(wanted), BATCH):
                store = open_store(location)
                try:
                    batch = store.surveys_by_id(wanted[i : i + BATCH], history)
                finally:
                    store.close()
                yield from batch

        return LazyChecks(
            lambda: read(ids(), True), n, lambda: read(ids(), False), picked, survey=survey
        )

    def check_ids(self, run_id: int) -> array[int]:
        """The ids of the run's checks in the links' order."""
        rows = self.conn.execute(
            "SELECT id FROM checks WHERE run_id = ? ORDER BY position, id", (run_id,)
        )
        return array("q", (int(r[0]) for r in rows))

    def checks_by_id(
        self,
        run_id: int,
        ids: Sequence[int],
        text_hash: bool = True,
        history: bool = True,
        strips: bool = True,
    ) -> list[Check]:
        """The checks of run_id with these ids, in this order; with `strips`, each with its
        strip of recent runs."""
        rows: dict[int, Any] = {}
        for among, part in self._in("id", ids, "bigint"):
            for r in self.conn.execute(f"SELECT {_READ} FROM checks WHERE {among}", part):
                rows[int(r["id"])] = r
        recent = None
        if history and strips:
            recent = self._recent_before(run_id, {r["url"] for r in rows.values()})
        return [
            _row_check(rows[i], text_hash=text_hash, history=history, recent=recent) for i in ids
        ]

    def surveys_by_id(self, ids: Sequence[int], history: bool = True) -> list[Survey]:
        """The Check.survey() of the checks with these ids, in this order, read from their
        few columns (no check made)."""
        rows: dict[int, Any] = {}
        for among, part in self._in("id", ids, "bigint"):
            for r in self.conn.execute(
                "SELECT id, url, source, section, verdict, reason, cached, checked_at, "
                f"previous_verdict FROM checks WHERE {among}",
                part,
            ):
                rows[int(r[0])] = r
        out: list[Survey] = []
        for i in ids:
            _, url, source, section, verdict, reason, cached, checked, prev = rows[i]
            out.append(
                (
                    url,
                    source,
                    _section(section),
                    _VERDICT[verdict],
                    reason,
                    bool(cached),
                    _dt(checked) or datetime.now(UTC),
                    _VERDICT[prev] if history and prev else None,
                )
            )
        return out

    def _recent_before(self, run_id: int, urls: set[str]) -> dict[str, list[Recent]]:
        out: dict[str, list[Recent]] = {}
        seen: set[tuple[str, int]] = set()
        # the last runs before this one, those whose network was up (read once: the runs'
        # rows are big, with every post's digest)
        runs = [
            int(r[0])
            for r in self.conn.execute(
                "SELECT id FROM runs WHERE network_down = 0 AND id IN "
                "(SELECT id FROM runs WHERE id < ? ORDER BY id DESC LIMIT ?)",
                (run_id, RECENT_RUNS),
            )
        ]
        if not runs:
            return out
        wanted = sorted(urls)
        for i in range(0, len(wanted), _IN_CHUNK):
            part = wanted[i : i + _IN_CHUNK]
            for r in self.conn.execute(  # from the index checks_url_run alone
                "SELECT url, run_id, checked_at, verdict FROM checks "
                f"WHERE +run_id IN ({', '.join('?' * len(runs))}) "  # + : by url, not by run
                f"AND url IN ({', '.join('?' * len(part))}) ORDER BY run_id, id",
                (*runs, *part),
            ):
                url, run, checked_at, verdict = r
                if (url, run) not in seen:
                    seen.add((url, run))
                    d = _dt(checked_at)
                    if d is not None:
                        out.setdefault(url, []).append((d, _VERDICT[verdict]))
        return out  # each URL's runs oldest first: a URL's rows are all in one chunk

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

    def url_history(self, url: str) -> list[CheckRecord]:
        """Every stored check of url, oldest first, with its run's status."""
        rows = self.conn.execute(
            "SELECT c.*, r.status AS run_status, r.network_down FROM checks c "
            "JOIN runs r ON r.id = c.run_id WHERE c.url = ? ORDER BY c.checked_at, c.id",
            (url,),
        )
        return [CheckRecord.from_row(r) for r in rows]

    def checks_matching(self, urls: Sequence[str]) -> list[CheckRecord]:
        """Every stored check whose URL or final URL is one of urls, oldest first, with its
        run's status (url_history's records)."""
        marks = ", ".join("?" * len(urls))
        rows = self.conn.execute(
            "SELECT c.*, r.status AS run_status, r.network_down FROM checks c "
            f"JOIN runs r ON r.id = c.run_id WHERE c.url IN ({marks}) OR c.final_url IN ({marks}) "
            "ORDER BY c.checked_at, c.id",
            (*urls, *urls),
        )
        return [CheckRecord.from_row(r) for r in rows]

    def checked_counts(self, run_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """Checks per verdict of each run, counted from the checks table (for runs that ended
        without their counts: interrupted, killed or still running)."""
        out: dict[int, dict[str, int]] = {}
        if not run_ids:
            return out
        marks = ", ".join("?" * len(run_ids))
        for r in self.conn.execute(
            "SELECT run_id, verdict, COUNT(*) AS n FROM checks "
            f"WHERE run_id IN ({marks}) GROUP BY run_id, verdict",
            tuple(run_ids),
        ):
            out.setdefault(int(r["run_id"]), {})[r["verdict"]] = int(r["n"])
        return out


_CHECK_COLUMNS = (
    "run_id", "url", "source", "line", "section", "listed_title", "verdict", "raw_verdict",
    "reason", "detail", "http_status", "final_url", "redirects", "error", "title", "summary",
    "page_kind", "notice", "text_hash", "checked_at", "attempts", "elapsed_ms", "cached",
    "previous_verdict", "previous_title", "since", "first_failed_at", "consecutive_failures",
    "position", "truncated", "anchors",
)  # fmt: skip


_INSERT_CHECK = (
    f"INSERT INTO checks ({', '.join(_CHECK_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_CHECK_COLUMNS))})"
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _check_row(run_id: int, c: Check, raw: Verdict, position: int | None) -> tuple[Any, ...]:
    """A row of the checks table, in _CHECK_COLUMNS order."""
    f, m, h, link = c.fetch, c.meta, c.history, c.link
    return (
        run_id,
        redact_url(link.url),
        link.source,
        link.line,
        _section_json(link.section),
        link.listed_title,
        c.verdict.value,
        raw.value,
        c.reason,
        redact_text(c.detail),
        f.status if f else None,
        redact_url(f.final_url) if f and f.final_url else None,
        json.dumps([[hop.status, redact_url(hop.url)] for hop in f.hops]) if f and f.hops else "[]",
        f.error.value if f and f.error else None,
        m.title if m else None,
        m.summary if m else None,
        m.kind.value if m else None,
        m.notice if m else None,
        m.text_hash if m else None,
        _ts(c.checked_at),
        f.attempts if f else 0,
        f.elapsed_ms if f else 0,
        int(c.cached),
        h.previous_verdict.value if h and h.previous_verdict else None,
        h.previous_title if h else None,
        _ts(h.since) if h else None,
        _ts(h.first_failed_at) if h else None,
        h.consecutive_failures if h else 0,
        position,
        int(f.truncated) if f else 0,
        _json_text(sorted(m.anchors)) if m and m.anchors is not None else None,
    )


#: json.dumps(value, ensure_ascii=False) with one encoder made once: json.dumps makes a new
#: encoder at every call given any option, and the plan writes a URL's links at each URL (the
#: encoder was 40 % of the JSON's cost, a fifth of planning 10,000 URLs).
_json_text = json.JSONEncoder(ensure_ascii=False).encode


@lru_cache(maxsize=256)  # a post has few sections, each shared by many links
def _section_json(section: tuple[str, ...]) -> str:
    return _json_text(list(section))


def _links_json(links: Sequence[tuple[int, Link]]) -> str:
    return _json_text(
        [
            [pos, k.line, k.listed_title, list(k.section), k.source, k.anchor_text]
            for pos, k in links
        ]
    )


def _task(r: sqlite3.Row, host: str) -> UrlTask:
    url = r["url"]
    return UrlTask(
        url,
        host,
        _links_from_json(r["links"], url),
        int(r["due"]),
        _dt(r["last_checked"]),
        r["fetch_url"],
    )


def _links_from_json(text: str, url: str = "") -> tuple[tuple[int, Link], ...]:
    return tuple(
        (
            int(pos),
            Link(
                url=url,
                line=int(line),
                listed_title=title,
                section=tuple(sec),
                source=src,
                anchor_text=bool(anchor),
            ),
        )
        for pos, line, title, sec, src, anchor in json.loads(text)
    )


#: The columns _row_check reads, in its order.
_READ_COLUMNS = (
    "url", "source", "line", "section", "listed_title", "verdict", "reason", "detail",
    "http_status", "final_url", "redirects", "error", "title", "summary", "page_kind", "notice",
    "text_hash", "checked_at", "attempts", "elapsed_ms", "cached", "previous_verdict",
    "previous_title", "since", "first_failed_at", "consecutive_failures", "truncated", "anchors",
    "id", "position",
)  # fmt: skip
_READ = ", ".join(_READ_COLUMNS)
_READ_C = ", ".join(f"c.{c}" for c in _READ_COLUMNS)


def _row_check(
    r: sqlite3.Row,
    *,
    text_hash: bool = True,
    history: bool = True,
    recent: Mapping[str, list[Recent]] | None = None,
) -> Check:
    """A check from its row (the _READ_COLUMNS); with `recent` (a run's report), the URL's
    strip of recent runs. The values many rows share are decoded once (_dt, _section)."""
    (
        url, source, line, section, listed_title, verdict, reason, detail,
        http_status, final_url, redirects, error, title, summary, page_kind, notice,
        hashed, checked, attempts, elapsed_ms, cached, previous_verdict,
        previous_title, since, first_failed_at, consecutive_failures, truncated, anchors,
        *_,
    ) = r  # fmt: skip
    checked_at = _dt(checked) or datetime.now(UTC)
    fetch = FetchResult(
        url=url,
        final_url=final_url or url,
        status=http_status,
        hops=()
        if redirects == "[]"
        else tuple(Hop(int(s), str(u)) for s, u in json.loads(redirects)),
        attempts=int(attempts),
        elapsed_ms=int(elapsed_ms),
        error=_ERROR[error] if error else None,
        fetched_at=checked_at,
        truncated=bool(truncated),
    )
    # A page was read exactly when its kind was stored; a failure without a body has no meta.
    meta = None
    if page_kind:
        meta = PageMeta(
            title=title,
            summary=summary,
            kind=_KIND[page_kind],
            notice=notice,
            text_hash=hashed if text_hash else None,
            anchors=frozenset(json.loads(anchors)) if anchors is not None else None,
        )
    final = _VERDICT[verdict]
    hist = None
    if history:
        strip: tuple[Recent, ...] = ()
        if recent is not None:
            strip = (*recent.get(url, ()), (checked_at, final))[-RECENT_RUNS:]
        hist = LinkHistory(
            previous_verdict=_VERDICT[previous_verdict] if previous_verdict else None,
            previous_title=previous_title,
            since=_dt(since),
            first_failed_at=_dt(first_failed_at),
            consecutive_failures=int(consecutive_failures),
            recent=strip,
        )
    return Check(
        link=Link(
            url=url,
            line=int(line),
            listed_title=listed_title,
            section=_section(section),
            source=source,
        ),
        fetch=fetch,
        meta=meta,
        verdict=final,
        reason=reason,
        detail=detail,
        checked_at=checked_at,
        history=hist,
        cached=bool(cached),
    )


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
