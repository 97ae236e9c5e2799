"""Budgeted, rolling runs (`--budget`, `recheck_after`): the most due URLs are claimed first,
claiming stops when the time is up, and the reports still cover every link.

No wall time: the budget is measured on an injected clock that moves 10 s with every request
the local server has answered, so "the time is up" means "after N requests".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from crawler import engine
from crawler.cli import cli
from crawler.config import FetchSettings
from crawler.frontier import (
    FAILING,
    NEVER_CHECKED,
    NOT_DUE,
    STALE,
    Finished,
    Recheck,
    UrlTask,
    due,
)
from crawler.history import UrlState
from crawler.pipeline import RunOptions, check_links
from crawler.store import Store
from crawler.types import Link, Run, Verdict
from tests.factories import T0
from tests.server import LocalServer

#: One request at a time: the order the server sees is the order of the claims.
ONE = FetchSettings(host_interval=0, retries=0, timeout=5, max_concurrency=1, host_concurrency=1)
STEP = timedelta(seconds=10)


class Fixed:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class ServerClock:
    """Time that moves STEP with every request the server has counted (under `prefix`)."""

    def __init__(self, server: LocalServer, start: datetime, prefix: str = "/titled/") -> None:
        self.server, self.start, self.prefix = server, start, prefix

    def requests(self) -> int:
        with self.server.lock:
            return sum(n for p, n in self.server.hits.items() if p.startswith(self.prefix))

    def __call__(self) -> datetime:
        return self.start + STEP * self.requests()


def order(server: LocalServer) -> list[str]:
    """The paths in the order of their first request."""
    with server.lock:
        return [p for p, _ in sorted(server.arrived.items(), key=lambda kv: kv[1])]


def links(server: LocalServer, paths: list[str], host: str | None = None) -> list[Link]:
    return [Link(url=server.url(p, host), line=i + 1) for i, p in enumerate(paths)]


def by_path(run: Run) -> dict[str, Any]:
    return {c.url.split(":", 2)[2].split("/", 1)[1]: c for c in run.checks}


# --- due-ness (pure) ---------------------------------------------------------------------


def test_due_ranks_never_checked_then_failing_then_stale_ok() -> None:
    r = Recheck()
    assert due(None, T0, r) == NEVER_CHECKED
    ok = UrlState("u", last_verdict=Verdict.OK, last_checked_at=T0)
    assert due(ok, T0 + timedelta(days=6), r) is None
    assert due(ok, T0 + timedelta(days=7), r) == STALE
    for alive in (Verdict.REDIRECTED, Verdict.CHANGED):
        assert due(UrlState("u", alive, last_checked_at=T0), T0 + timedelta(days=3), r) is None
    for failing in (Verdict.DEAD, Verdict.ERROR, Verdict.BLOCKED):
        st = UrlState("u", last_verdict=failing, last_checked_at=T0)
        assert due(st, T0 + timedelta(hours=23), r) is None
        assert due(st, T0 + timedelta(days=1), r) == FAILING
    short = Recheck(ok=timedelta(hours=1), failing=timedelta(minutes=5))
    assert due(ok, T0 + timedelta(hours=1), short) == STALE


# --- claiming order, on both stores --------------------------------------------------------


def _task(url: str, host: str, pos: int, rank: int, last: datetime | None = None) -> UrlTask:
    return UrlTask(url, host, ((pos, Link(url=url, line=pos + 1)),), rank, last)


def claim_order(store: Store) -> list[tuple[str, list[str]]]:
    """Plan a run of URLs of every due-ness on three hosts; lease and release hosts one at a
    time, as a worker does, writing what each lease got: (host, urls) in the order claimed."""
    old, older = T0 - timedelta(days=10), T0 - timedelta(days=20)
    tasks = [
        _task("http://a/ok-old", "a", 0, STALE, old),
        _task("http://a/new", "a", 1, NEVER_CHECKED),
        _task("http://b/ok-older", "b", 2, STALE, older),
        _task("http://b/failing", "b", 3, FAILING, old),
        _task("http://c/ok", "c", 4, STALE, old),
        _task("http://c/ok-older", "c", 5, STALE, older),
        _task("http://c/stands", "c", 6, NOT_DUE, old),
        _task("http://c/new", "c", 7, NEVER_CHECKED),
        _task("http://c/new2", "c", 8, NEVER_CHECKED),
    ]
    run_id = store.plan_run(T0, ["post.md"], {}, {"history": True}, tasks)
    engine.write_known(store, run_id, [t for t in tasks if t.due == NOT_DUE], T0)
    got = []
    while (host := store.lease_host(run_id, "w:1:x", 60, 1e9)) is not None:
        todo = store.pending(run_id, host)
        got.append((host, [t.url.rsplit("/", 1)[1] for t in todo]))
        store.write_finished(run_id, [Finished(t.url, (), None) for t in todo])
        store.release_host(run_id, host, "w:1:x")
    assert store.open_hosts(run_id) == 0
    return got


EXPECTED_CLAIMS = [
    ("c", ["new", "new2"]),  # never checked: the host with more URLs first
    ("a", ["new"]),
    ("b", ["failing"]),  # then failing
    ("c", ["ok-older", "ok"]),  # then ok ones, the oldest check first
    ("a", ["ok-old"]),
    ("b", ["ok-older"]),
]


def test_sqlite_claims_the_most_due_first(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    try:
        assert claim_order(store) == EXPECTED_CLAIMS
    finally:
        store.close()


@pytest.mark.slow
def test_postgresql_claims_in_the_same_order(pg_url: str) -> None:
    from crawler.pgstore import PgStore

    store = PgStore.open(pg_url)
    try:
        assert claim_order(store) == EXPECTED_CLAIMS
    finally:
        store.close()


# --- a budgeted run ------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "h.sqlite")
    try:
        yield s
    finally:
        s.close()


@pytest.mark.anyio
async def test_budget_claims_most_due_first_and_stops_when_the_time_is_up(
    server: LocalServer, store: Store
) -> None:
    paths = {
        "fresh": "/titled/fresh",  # ok 1 day ago: stands
        "older": "/titled/older",  # ok 20 days ago: due, oldest
        "new1": "/titled/new1",  # never checked
        "old": "/titled/old",  # ok 10 days ago: due
        "failing": "/titled/failing",  # failing 2 days ago: due before the ok ones
        "new2": "/titled/new2",
        "gone": "/status/404",  # dead 2 hours ago: its verdict stands
    }
    every = links(server, list(paths.values()))
    url = {k: server.url(p) for k, p in paths.items()}
    start = T0 + timedelta(days=30)

    async def history(keys: list[str], days_ago: float) -> None:
        picked = [k for k in every if k.url in {url[x] for x in keys}]
        await check_links(picked, ONE, store=store, clock=Fixed(start - timedelta(days_ago)))

    await history(["older"], 20)
    await history(["old"], 10)
    await history(["failing"], 2)
    await history(["fresh"], 1)
    await history(["gone"], 1 / 12)
    # The history says the failing one failed (as after a 500); it answers now.
    with store.transaction() as c:
        c.execute("UPDATE url_state SET last_verdict = 'error' WHERE url = ?", (url["failing"],))
    server.reset()

    clock = ServerClock(server, start)
    options = RunOptions(budget=timedelta(seconds=25))  # three requests
    run = await check_links(every, ONE, store=store, clock=clock, options=options)
    assert order(server) == [paths["new1"], paths["new2"], paths["failing"]]
    assert len(run.checks) == len(every)  # every link is in the run, in the post's order
    assert [c.url for c in run.checks] == [k.url for k in every]
    checks = {k: c for k, c in zip(paths, run.checks, strict=True)}
    for k in ("new1", "new2", "failing"):
        assert checks[k].checked_this_run and checks[k].verdict is Verdict.OK
        assert checks[k].checked_at >= start
    # Not fetched: the last known verdict and its age stand.
    for k, age in (("fresh", 1), ("older", 20), ("old", 10), ("gone", 1 / 12)):
        known = checks[k]
        assert not known.checked_this_run and known.cached
        assert known.checked_at == start - timedelta(days=age)
    assert checks["gone"].verdict is Verdict.DEAD and not checks["gone"].newly_broken
    assert run.status == "complete"

    # The next run goes on with the rest: the oldest ok first; the fresh one still stands.
    server.reset()
    clock.start = start + timedelta(minutes=5)
    again = await check_links(every, ONE, store=store, clock=clock, options=options)
    assert order(server) == [paths["older"], paths["old"]]
    assert sum(c.checked_this_run for c in again.checks) == 2

    # Then nothing is due: no request at all, every verdict from the history.
    server.reset()
    clock.start = start + timedelta(minutes=10)
    idle = await check_links(every, ONE, store=store, clock=clock, options=options)
    assert clock.requests() == 0 and not server.hits
    assert not any(c.checked_this_run for c in idle.checks)
    assert [c.verdict for c in idle.checks] == [c.verdict for c in again.checks]


@pytest.mark.anyio
async def test_without_a_budget_every_link_is_fetched_whatever_its_age(
    server: LocalServer, store: Store
) -> None:
    every = links(server, ["/titled/a", "/titled/b"])
    await check_links(every, ONE, store=store, clock=Fixed(T0))
    server.reset()
    run = await check_links(every, ONE, store=store, clock=Fixed(T0 + timedelta(minutes=1)))
    assert sorted(server.hits) == ["/titled/a", "/titled/b"]
    assert all(c.checked_this_run for c in run.checks)


# --- `--budget 2m` from a fresh history, through the command line --------------------------


def test_budget_2m_on_a_fresh_history_writes_complete_reports_and_rolls_on(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 30
    post = tmp_path / "post.md"
    post.write_text("".join(f"- {server.url(f'/titled/p{i}')}\n" for i in range(n)), "utf-8")
    clock = ServerClock(server, T0)
    monkeypatch.setattr(engine, "_utcnow", clock)
    args = ["check", str(post), "--budget", "2m", "--host-interval", "0", "--retries", "0"]
    args += ["--max-concurrency", "4", "--host-concurrency", "4"]
    args += ["--format", "json,md,html,junit,sarif"]
    fetched: list[set[str]] = []
    for day in range(4):
        clock.start = T0 + timedelta(hours=day)
        before = dict(server.hits)
        out = tmp_path / f"r{day}"
        r = CliRunner().invoke(cli, [*args, "--report-dir", str(out)])
        assert r.exit_code == 0, r.output
        now = {p for p, k in server.hits.items() if k > before.get(p, 0)}
        fetched.append(now)
        doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
        records = doc["links"]
        assert len(records) == n  # every link, checked or not
        this_run = [x for x in records if x["checked_this_run"]]
        assert {x["url"].split(str(server.port))[1] for x in this_run} == now
        unchecked = [x for x in records if x["reason"] == "unchecked"]
        for x in unchecked:
            assert x["verdict"] == "skipped" and x["checked_at"] is None
        if day == 0:
            # 2 minutes are 12 requests; at most 4 more were in flight when the time was up
            assert 12 <= len(now) <= 12 + 4
            assert len(unchecked) == n - len(now)
            assert "not checked yet" in (out / "report.md").read_text(encoding="utf-8")
            assert "not checked yet" in (out / "report.html").read_text(encoding="utf-8")
            junit = (out / "report.junit.xml").read_text(encoding="utf-8")
            assert junit.count("unchecked: not checked yet") == len(unchecked)
            sarif = json.loads((out / "report.sarif").read_text(encoding="utf-8"))
            assert not sarif["runs"][0]["results"]  # every verdict is ok or not known
            assert f"budget: {len(now)} references checked this run" in r.output
        if day == 3:
            assert not now  # all done within 3 budgets: nothing is due, nothing fetched
            assert not unchecked
            assert "nothing is due" in r.output
    # Each URL was fetched once over the runs: each run took up where the last stopped.
    assert sum(len(f) for f in fetched) == n
    assert set().union(*fetched) == {f"/titled/p{i}" for i in range(n)}


def test_budget_stops_worker_processes_too(tmp_path: Path) -> None:
    """Worker processes read the budget from the run's plan (real time here: no upper bound
    is asserted, only that what they left is reported and taken up by the next run)."""
    from tests.hostfarm import HostFarm

    farm = HostFarm(2, delay=0.5).start()
    try:
        urls = list(farm.urls(20))
        post = tmp_path / "post.md"
        post.write_text("".join(f"- {u}\n" for u in urls), encoding="utf-8")
        args = ["check", str(post), "--workers", "2", "--host-interval", "0"]
        args += ["--host-concurrency", "1", "--retries", "0", "--format", "json"]
        seen: list[int] = []
        # 40 URLs at 0.5 s each, one at a time per host, cannot all be done in 3 s; the next
        # run's budget is ample: it takes what the first left, and only that.
        for day, budget in enumerate(("3s", "10m")):
            out = tmp_path / f"r{day}"
            r = CliRunner().invoke(cli, [*args, "--budget", budget, "--report-dir", str(out)])
            assert r.exit_code == 0, r.output
            doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
            assert len(doc["links"]) == len(urls) and doc["status"] == "complete"
            seen.append(sum(x["checked_this_run"] for x in doc["links"]))
            unchecked = sum(x["reason"] == "unchecked" for x in doc["links"])
            earlier = sum(x["cached"] for x in doc["links"])
            assert (seen[-1], unchecked, earlier) == (
                (seen[0], len(urls) - seen[0], 0) if day == 0 else (len(urls) - seen[0], 0, seen[0])
            )
        assert seen[0] < len(urls)
        assert sum(seen) == len(urls)
        assert set(farm.hits.values()) == {1} and len(farm.hits) == len(urls)
    finally:
        farm.stop()
