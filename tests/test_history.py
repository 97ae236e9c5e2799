"""History: verdicts over time (pure), the SQLite store, and runs that remember."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from crawler.config import FetchSettings
from crawler.errors import StoreError
from crawler.history import ConfirmRule, UrlState, apply_history, next_state
from crawler.pipeline import RunOptions, check_links
from crawler.store import MIGRATIONS, Store
from crawler.types import Classification, Link, Verdict
from tests.factories import T0
from tests.server import LocalServer

ERR = Classification(Verdict.ERROR, "timeout", "timed out")
OK = Classification(Verdict.OK, "title-matches", "alive")
DEAD404 = Classification(Verdict.DEAD, "http-404", "404")
BLOCK = Classification(Verdict.BLOCKED, "http-403", "403")


def days(n: float) -> datetime:
    return T0 + timedelta(days=n)


def run_sequence(raws: list[tuple[float, Classification]], title: str | None = None) -> list:
    """Feed classifications on given days through apply_history/next_state."""
    state: UrlState | None = None
    out = []
    for day, raw in raws:
        final, hist = apply_history(state, raw, title, None, days(day))
        state = next_state(state, "u", final, raw, title, days(day), hist)
        out.append((final, hist))
    return out


def test_error_becomes_dead_only_after_runs_spanning_days() -> None:
    out = run_sequence([(0, ERR), (1, ERR), (2, ERR), (3, ERR)])
    assert [f.verdict for f, _ in out] == [Verdict.ERROR] * 3 + [Verdict.DEAD]
    assert out[3][0].reason == "confirmed-dead"
    assert out[3][1].consecutive_failures == 4
    assert out[3][1].first_failed_at == days(0)


def test_many_runs_in_one_day_do_not_confirm() -> None:
    out = run_sequence([(0, ERR), (0.1, ERR), (0.2, ERR), (0.3, ERR), (0.4, ERR)])
    assert {f.verdict for f, _ in out} == {Verdict.ERROR}


def test_one_success_resets_the_count() -> None:
    out = run_sequence([(0, ERR), (1, ERR), (2, OK), (3, ERR), (4, ERR), (5, ERR)])
    assert [f.verdict for f, _ in out][-1] is Verdict.ERROR
    assert out[-1][1].consecutive_failures == 3
    assert out[-1][1].first_failed_at == days(3)


def test_blocked_neither_counts_nor_resets() -> None:
    out = run_sequence([(0, ERR), (1, BLOCK), (2, ERR), (3, ERR)])
    assert out[1][0].verdict is Verdict.BLOCKED
    assert out[3][0].verdict is Verdict.DEAD  # 3 failing runs over 3 days


def test_definitive_death_at_first_sight() -> None:
    ((final, hist),) = run_sequence([(0, DEAD404)])
    assert final.verdict is Verdict.DEAD and final.reason == "http-404"
    assert hist.consecutive_failures == 1 and hist.previous_verdict is None


def test_custom_rule() -> None:
    state = None
    rule = ConfirmRule(runs=2, days=0)
    final, hist = apply_history(state, ERR, None, None, days(0), rule)
    state = next_state(state, "u", final, ERR, None, days(0), hist)
    final, _ = apply_history(state, ERR, None, None, days(0.01), rule)
    assert final.verdict is Verdict.DEAD


def test_since_and_previous() -> None:
    out = run_sequence([(0, OK), (1, OK), (2, DEAD404), (3, DEAD404)], title="T")
    _, h = out[1]
    assert h.previous_verdict is Verdict.OK and h.since == days(0)
    _, h = out[3]
    assert h.previous_verdict is Verdict.DEAD and h.since == days(2)
    assert [v for _, v in h.recent] == [Verdict.OK, Verdict.OK, Verdict.DEAD, Verdict.DEAD]


def test_title_changed_since_last_good_check() -> None:
    state = None
    final, hist = apply_history(state, OK, "Old", None, days(0))
    state = next_state(state, "u", final, OK, "Old", days(0), hist)
    final, _ = apply_history(state, OK, "Brand new", None, days(1))
    assert final.verdict is Verdict.CHANGED
    assert final.reason == "title-changed-since-last-check"
    assert "Old" in final.detail


# --- the store ---------------------------------------------------------------------------


def test_migrations_from_every_version(tmp_path: Path) -> None:
    for start in range(len(MIGRATIONS) + 1):
        path = tmp_path / f"v{start}.sqlite"
        conn = sqlite3.connect(path)
        for i in range(start):
            conn.executescript(MIGRATIONS[i])
            conn.execute(f"PRAGMA user_version = {i + 1}")
        conn.commit()
        conn.close()
        store = Store.open(path)
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.close()


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    # A `crawler report` started while the first check creates the file must not fail
    # either of them: the schema is created once, under the write lock.
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for round_ in range(25):
        path = tmp_path / f"new{round_}.sqlite"
        gate = ctx.Barrier(3)
        procs = [ctx.Process(target=_open_at_gate, args=(str(path), gate)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=30)
        assert [p.exitcode for p in procs] == [0, 0, 0], f"round {round_}"


def _open_at_gate(path: str, gate: object) -> None:
    gate.wait(timeout=10)  # type: ignore[attr-defined]
    try:
        Store.open(path).close()
    except StoreError:
        import os

        os._exit(1)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(path)


def test_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot use the history database"):
        Store.open(path)


def test_second_run_is_refused_while_one_holds_the_lock(tmp_path: Path) -> None:
    a = Store.open(tmp_path / "h.sqlite")
    a.lock()
    b = Store.open(tmp_path / "h.sqlite")
    with pytest.raises(StoreError, match="another check is running"):
        b.lock()
    a.close()
    b.lock()  # free again
    b.close()


# --- runs that remember, against the local server ------------------------------------------

FAST = FetchSettings(host_interval=0, retries=0, timeout=2)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def links_for(server: LocalServer, paths: list[str]) -> list[Link]:
    return [Link(url=server.url(p), line=i + 1, listed_title=None) for i, p in enumerate(paths)]


@pytest.mark.anyio
async def test_failures_confirmed_over_days_and_offline_nights_do_not_count(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    clock = Clock()
    links = links_for(server, ["/status/500", "/page/plain"])
    verdicts = []
    for day in range(4):
        clock.now = days(day)
        run = await check_links(links, FAST, store=store, clock=clock)
        verdicts.append(run.checks[0].verdict)
        if day == 1:
            # An offline night between day 1 and day 2 (the proxy is down): recorded,
            # changes no failure count.
            before = store.states([links[0].url])
            with monkeypatch.context() as m:
                m.setenv("HTTP_PROXY", "http://127.0.0.1:9")
                clock.now = days(1.5)
                offline = await check_links(links, FAST, store=store, clock=clock)
            assert offline.network_down
            assert {c.verdict for c in offline.checks} == {Verdict.ERROR}
            assert store.states([links[0].url]) == before
    assert verdicts == [Verdict.ERROR, Verdict.ERROR, Verdict.ERROR, Verdict.DEAD]
    info = store.run_info()
    assert info is not None and info.status == "complete"
    down = [r for r in store.runs() if r.network_down]
    assert len(down) == 1
    assert store.states([links[0].url])[links[0].url].fail_runs == 4
    store.close()


@pytest.mark.anyio
async def test_network_down_run_keeps_failure_counts(server: LocalServer, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    clock = Clock()
    url = "http://127.0.0.1:9/gone"  # nothing listens on the discard port
    links = [Link(url=url, line=1)]
    await check_links(links, FAST, store=store, clock=clock)
    assert store.states([url]) == {}  # a network-down run writes no state
    rows = store.url_history(url)
    assert len(rows) == 1 and rows[0].network_down is True
    store.close()


@pytest.mark.anyio
async def test_report_of_a_past_run_round_trips(server: LocalServer, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    clock = Clock()
    links = links_for(server, ["/page/article", "/page/removed", "/status/404"])
    first = await check_links(links, FAST, store=store, clock=clock)
    clock.now = days(1)
    second = await check_links(links, FAST, store=store, clock=clock)
    loaded = store.load_run(second.run_id)
    assert [c.verdict for c in loaded.checks] == [c.verdict for c in second.checks]
    assert [c.meta.title for c in loaded.checks if c.meta] == [
        c.meta.title for c in second.checks if c.meta
    ]
    assert loaded.checks[1].history is not None
    assert loaded.checks[1].history.previous_verdict is Verdict.DEAD
    assert len(loaded.checks[0].history.recent) == 2  # type: ignore[union-attr]
    assert [t.run_id for t in loaded.trend] == [first.run_id]
    store.close()


@pytest.mark.anyio
async def test_max_age_reuses_recent_results_but_never_errors(
    server: LocalServer, tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    clock = Clock()
    links = links_for(server, ["/page/article", "/status/500"])
    await check_links(links, FAST, store=store, clock=clock)
    clock.now = T0 + timedelta(hours=1)
    run = await check_links(
        links, FAST, store=store, clock=clock, options=RunOptions(max_age=timedelta(hours=12))
    )
    assert server.hits["/page/article"] == 1  # reused
    assert server.hits["/status/500"] == 2  # errors are always refetched
    assert run.checks[0].cached and not run.checks[1].cached
    assert run.checks[0].meta is not None and run.checks[0].meta.title == "语音识别的最新进展"
    store.close()


@pytest.mark.anyio
async def test_only_failing(server: LocalServer, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    clock = Clock()
    links = links_for(server, ["/page/plain", "/status/404"])
    await check_links(links, FAST, store=store, clock=clock)
    clock.now = days(10)
    run = await check_links(
        links, FAST, store=store, clock=clock, options=RunOptions(only_failing=True)
    )
    assert server.hits["/page/plain"] == 1 and server.hits["/status/404"] == 2
    assert [c.verdict for c in run.checks] == [Verdict.OK, Verdict.DEAD]
    store.close()


@pytest.mark.anyio
async def test_the_main_text_hash_is_stored(server: LocalServer, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    links = links_for(server, ["/page/article", "/page/removed"])
    run = await check_links(links, FAST, store=store, clock=Clock())
    rows = {
        r["url"]: r["text_hash"] for r in store.conn.execute("SELECT url, text_hash FROM checks")
    }
    assert rows[links[0].url] and len(rows[links[0].url]) == 16
    assert rows[links[1].url] is None  # a removal notice has no article text
    # The run in memory leaves it out (no report shows it; 100,000 links keep 6 MB less) ...
    assert run.checks[0].meta is not None and run.checks[0].meta.text_hash is None
    assert run.checks[0].meta.title and run.checks[0].meta.summary
    # ... the history has it.
    loaded = store.load_run(run.run_id)
    assert (
        loaded.checks[0].meta is not None and loaded.checks[0].meta.text_hash == rows[links[0].url]
    )
    store.close()
