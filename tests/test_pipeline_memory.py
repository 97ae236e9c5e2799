"""A run's checks and URL states are those the stages and the history rules give, link by link.

The worker's fetcher is a fake (no network) that answers every URL at once.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import crawler.engine as engine
from crawler.classify import classify
from crawler.config import FetchSettings
from crawler.history import apply_history, next_state
from crawler.pipeline import CheckDone, check_links
from crawler.store import Store
from crawler.types import FetchResult, Link, Verdict


def _fake_fetcher(titles: dict[str, str | None]) -> type[Any]:
    class FakeFetcher:
        in_flight = 0  # answers at once: nothing is ever on the wire

        def __init__(self, settings: FetchSettings, **_: Any) -> None:
            pass

        async def __aenter__(self) -> FakeFetcher:
            return self

        async def __aexit__(self, *exc: object) -> None:
            pass

        async def fetch(self, url: str) -> FetchResult:
            title = titles[url]
            page = f"<html><head><title>{html.escape(title or 'Not found')}</title></head></html>"
            return FetchResult(
                url=url,
                final_url=url,
                status=404 if title is None else 200,
                headers={"content-type": "text/html", "server": "farm"},
                body=page.encode(),
                fetched_at=datetime.now(UTC),
            )

    return FakeFetcher


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.anyio
async def test_a_run_is_what_the_stages_and_the_history_rules_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    links = [
        Link(f"https://h{i % 3}.example/p/{i}", 10 + i, f"标题 {i}", ("S",), "post.md")
        for i in range(200)
    ]
    links.append(Link("https://h0.example/p/0", 500, "标题 0", ("T",), "post.md"))  # again
    titles: dict[str, str | None] = {link.url: link.listed_title for link in links}
    titles["https://h1.example/p/7"] = None  # a 404
    titles["https://h2.example/p/8"] = "另一个标题"  # changed
    monkeypatch.setattr(engine.fetch, "Fetcher", _fake_fetcher(titles))
    store = Store.open(tmp_path / "h.sqlite")
    clock = Clock(datetime(2026, 11, 24, 8, tzinfo=UTC))
    run = await check_links(links, FetchSettings(), store=store, clock=clock)

    assert [c.link for c in run.checks] == links
    for c in run.checks:
        assert c.fetch is not None and not c.fetch.headers and c.fetch.body is None  # read
        assert c.checked_at == clock.now
        assert c.history is not None
        # what apply_history makes for a URL new to the history, shared or not
        raw = classify(c.fetch, c.meta, c.link.listed_title)
        final, hist = apply_history(None, raw, None, c.link.listed_title, clock.now)
        assert (c.verdict, c.reason, c.detail, c.history) == (
            final.verdict,
            final.reason,
            final.detail,
            hist,
        )
    by_url = {c.url: c for c in run.checks}
    assert by_url["https://h1.example/p/7"].verdict is Verdict.DEAD
    assert by_url["https://h2.example/p/8"].verdict is Verdict.CHANGED
    assert by_url["https://h0.example/p/3"].verdict is Verdict.OK

    # The states written are those next_state gives for each URL's first occurrence.
    states = store.states(titles)
    assert len(states) == len(titles)
    for url in by_url:
        first = next(x for x in run.checks if x.url == url)
        assert first.fetch is not None
        raw = classify(first.fetch, first.meta, first.link.listed_title)
        final, hist = apply_history(None, raw, None, first.link.listed_title, clock.now)
        title = first.meta.title if first.meta else None
        assert states[url] == next_state(None, url, final, raw, title, clock.now, hist)

    # A second run a day later sees the first.
    clock.now += timedelta(days=1)
    titles["https://h0.example/p/9"] = "又一个标题"
    again = await check_links(links, FetchSettings(), store=store, clock=clock)
    assert {c.url: c.history.previous_verdict for c in again.checks if c.history} == {
        url: c.verdict for url, c in by_url.items()
    }
    assert {c.url: c.verdict for c in again.checks}["https://h0.example/p/9"] is Verdict.CHANGED
    store.close()


def _peak_mb(links: int, *args: str, reports: bool = False) -> float:
    """Peak RSS (MB) of bench/stages.py checking `links` links (no network: its fake fetcher)
    and writing the json, md, html and issue reports (or those `args` say), in a process of
    its own; with `reports`, how far the RSS rose above where it was while the reports were
    written."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "stages.py"), "--links", str(links)]
        + ["--hosts", "500", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    [line] = [ln for ln in out.splitlines() if ln.startswith("reports")]
    if not reports:
        return float(line.split()[-1])
    [before] = [ln for ln in out.splitlines() if ln.startswith("pipeline")]
    return float(line.split()[-2]) - float(before.split()[-3])


@pytest.mark.slow
def test_memory_stays_flat_as_the_run_grows() -> None:
    """The reports stream the checks from the history: 8× the links cost little more memory
    (the links of the post itself, ~0.5 KB each), where holding the run's checks cost ~3.5 KB
    a link (133 MB at 25,000 links, 412 MB at 100,000, before)."""
    small, big = _peak_mb(5_000), _peak_mb(40_000)
    assert big - small < 35_000 * 1.2 / 1024, (small, big)


@pytest.mark.slow
def test_memory_stays_flat_without_the_history_in_every_format() -> None:
    """--no-history keeps the run in a scratch file the reports stream from, and report.junit.xml
    is written a testcase at a time: no format holds every check (held, 40,000 checks took
    ~140 MB more than 5,000)."""
    args = ("--no-history", "--formats", "json,md,html,junit,sarif,issue")
    small, big = _peak_mb(5_000, *args, reports=True), _peak_mb(40_000, *args, reports=True)
    assert big - small < 35_000 * 1.2 / 1024, (small, big)


class _NoProgress:
    def __call__(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _check_in_process(post: Path, report_dir: Path) -> CheckDone:
    """`crawler check` of the post without history, one request per host, no worker processes."""
    from crawler.pipeline import CheckJob, check_inputs

    settings = FetchSettings(max_concurrency=2, host_concurrency=1, host_interval=0, workers=1)
    job = CheckJob(
        inputs=(str(post),), settings=settings, db=None, report_dir=report_dir, formats=("json",)
    )
    return check_inputs(job, lambda _: _NoProgress())


def test_the_parent_holds_no_link_once_the_run_is_planned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`crawler check` plans the run into the store and lets the post's links go: while the
    run is worked, the live Link objects are only those of the hosts the worker has leased
    (before, the parent held every link and every URL's task to the end: ~0.6 KB a link)."""
    import gc

    n, hosts = 600, 60
    post = tmp_path / "post.md"
    post.write_text(
        "# Links\n\n"
        + "".join(f"https://h{i % hosts}.example/p/{i}\n\n标题 {i}\n\n" for i in range(n)),
        encoding="utf-8",
    )
    titles: dict[str, str | None] = {
        f"https://h{i % hosts}.example/p/{i}": f"标题 {i}" for i in range(n)
    }
    base = _fake_fetcher(titles)
    live: list[int] = []  # Link objects alive at every 50th request

    class Counting(base):  # type: ignore[valid-type, misc]
        async def fetch(self, url: str) -> FetchResult:
            if int(url.rsplit("/", 1)[1]) % 50 == 0:
                live.append(sum(isinstance(o, Link) for o in gc.get_objects()))
            return await super().fetch(url)

    monkeypatch.setattr(engine.fetch, "Fetcher", Counting)
    # gc.freeze() (few_collections) would hide the links from gc.get_objects()
    monkeypatch.setattr(gc, "freeze", lambda: None)
    done = _check_in_process(post, tmp_path / "r")
    assert done.run.counts()["ok"] == n  # every link checked, as before
    assert len(live) == n // 50
    assert max(live) < n // 3, live  # a few hosts' links, not the post's 600


def test_a_worker_whose_places_are_taken_leases_no_more_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker leases hosts beyond those that fill its places only while more than half of
    its places are idle: every host it holds is checked alongside the others and its pending
    URLs held until its last one. Counted by the Fetcher's requests on the wire instead, a
    busy worker (whose requests wait for its loop, holding their places: here, none is ever
    on the wire) leased host after host and held their URLs (~0.9 KB each): at 100,000 links
    over 500 hosts each of two workers held 120-150 hosts by 21,000 checks, and grew from
    ~40 to ~90 MB."""
    import asyncio
    import gc

    from crawler.frontier import UrlTask

    n, hosts = 600, 60
    links = [
        Link(f"https://h{i % hosts}.example/p/{i}", i + 1, f"标题 {i}", (), "p.md")
        for i in range(n)
    ]
    titles: dict[str, str | None] = {link.url: link.listed_title for link in links}
    base = _fake_fetcher(titles)
    live: list[int] = []  # UrlTasks alive (the leased hosts' pending URLs) at every 50th request

    class Held(base):  # type: ignore[valid-type, misc]
        async def fetch(self, url: str) -> FetchResult:
            if int(url.rsplit("/", 1)[1]) % 50 == 0:
                live.append(sum(isinstance(o, UrlTask) for o in gc.get_objects()))
            await asyncio.sleep(0.001)  # the request holds its place a while
            return await super().fetch(url)

    monkeypatch.setattr(engine.fetch, "Fetcher", Held)
    settings = FetchSettings(max_concurrency=8, host_concurrency=8, host_interval=0, workers=1)
    run = asyncio.run(check_links(links, settings))
    assert run.counts()["ok"] == n  # every link checked, as before
    assert len(live) == n // 50
    # Two hosts fill the 8 places (4 each at most), two more at the start while none is
    # taken: 4 hosts of 10 URLs, where the run has 60.
    assert max(live) <= 6 * n // hosts, live


def test_the_parent_plans_the_run_as_the_links_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`crawler check` writes each link into the run's plan as it reads it and lets it go: no
    URL's task is built for the whole run (before: a task per URL, with its occurrences and
    host, ~0.25 KB each next to the links themselves, the parent's peak while planning
    100,000 links), and the links read are gone while the rest is planned."""
    import gc

    from crawler.frontier import UrlTask

    n, hosts = 600, 60
    post = tmp_path / "post.md"
    post.write_text(
        "# Links\n\n"
        + "".join(f"https://h{i % hosts}.example/p/{i % 500}\n\n标题 {i}\n\n" for i in range(n)),
        encoding="utf-8",
    )
    titles: dict[str, str | None] = {
        f"https://h{i % hosts}.example/p/{i % 500}": f"标题 {i}" for i in range(n)
    }
    monkeypatch.setattr(engine.fetch, "Fetcher", _fake_fetcher(titles))
    monkeypatch.setattr(gc, "freeze", lambda: None)  # it would hide them from gc.get_objects()
    seen: list[tuple[int, int, int]] = []  # (links planned, UrlTasks alive, Links alive)
    host_key = engine.host_key

    def alive() -> tuple[int, int]:
        objs = gc.get_objects()
        return sum(isinstance(o, UrlTask) for o in objs), sum(isinstance(o, Link) for o in objs)

    # what earlier tests of the session left alive is not this run's
    gc.collect()
    tasks_before, links_before = alive()

    def counting(url: str) -> str:
        if len(seen) % 50 == 0:
            tasks, links = alive()
            seen.append((len(seen), tasks - tasks_before, links - links_before))
        else:
            seen.append((len(seen), -1, -1))
        return host_key(url)

    monkeypatch.setattr(engine, "host_key", counting)
    done = _check_in_process(post, tmp_path / "r")
    assert done.run.counts()["ok"] == n  # every link checked, as before
    assert [c.link.line for c in done.run.checks] == [4 * i + 3 for i in range(n)]
    sampled = [s for s in seen if s[0] % 50 == 0]
    assert len(sampled) >= n // 50
    for planned, tasks, links in sampled:
        assert tasks <= 2, sampled  # the one being written
        assert links <= n - planned + 2, sampled  # those read are gone


def test_the_parent_reads_the_post_as_the_links_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`crawler check` reads a plain post's links as it plans them, a few at a time (before:
    the post read whole, its text, lines and every Link held at once, ~70 MB at 100,000
    links), and the run is the same: every link, line and title in order."""
    import gc

    import crawler.pipeline as pipeline

    n, hosts, ahead = 600, 60, 40
    post = tmp_path / "post.md"
    post.write_text(
        "# Links\n\n"
        + "".join(f"https://h{i % hosts}.example/p/{i}\n\n标题 {i}\n\n" for i in range(n)),
        encoding="utf-8",
    )
    monkeypatch.setattr(
        engine.fetch,
        "Fetcher",
        _fake_fetcher({f"https://h{i % hosts}.example/p/{i}": f"标题 {i}" for i in range(n)}),
    )
    monkeypatch.setattr(pipeline, "READ_AHEAD", ahead)
    monkeypatch.setattr(gc, "freeze", lambda: None)  # it would hide them from gc.get_objects()
    gc.collect()
    before = sum(isinstance(o, Link) for o in gc.get_objects())  # earlier tests' leftovers
    alive: list[int] = []  # Links alive at every 25th link planned
    host_key = engine.host_key
    planned = 0

    def counting(url: str) -> str:
        nonlocal planned
        if planned % 25 == 0:
            alive.append(sum(isinstance(o, Link) for o in gc.get_objects()) - before)
        planned += 1
        return host_key(url)

    monkeypatch.setattr(engine, "host_key", counting)
    done = _check_in_process(post, tmp_path / "r")
    assert [(c.link.line, c.link.listed_title) for c in done.run.checks] == [
        (4 * i + 3, f"标题 {i}") for i in range(n)
    ]
    assert done.run.counts()["ok"] == n
    assert len(alive) >= n // 25
    assert max(alive) <= ahead + 2, alive  # those read ahead, and the one in hand


def test_a_worker_s_batches_of_every_size_reuse_a_few_statements(tmp_path: Path) -> None:
    """A worker's batches (`states`, `write_finished`) come in every size up to a chunk. The
    sqlite3 module keeps each distinct statement's compiled program, which grows with its IN
    list: one statement per size held ~5 MB more in a worker by the end of a long run (issue
    14: 33-35 MB a worker at 10,000 links, 37-38 at 100,000). Padded to powers of two, the
    batches of 1 to 90 URLs send a few IN lists, and every URL is written once."""
    import re

    from crawler.engine import RunOptions, judge, plan_run, url_tasks
    from crawler.history import ConfirmRule
    from tests.factories import T0, answer

    links = [Link(f"https://h{i % 50}.example/p/{i}", i + 1, f"Title {i}") for i in range(8200)]
    tasks = url_tasks(links)
    store = Store.open(tmp_path / "h.sqlite")
    try:
        run_id = plan_run(
            store, tasks, started=T0, sources=["p.md"], digests={}, history=True,
            options=RunOptions(),
        )  # fmt: skip
        sent: list[str] = []
        store.conn.set_trace_callback(sent.append)
        at = written = 0
        for size in [*range(1, 91), *range(90, 0, -1)]:  # each size twice
            part = tasks[at : at + size]
            at += size
            states = store.states(t.url for t in part)
            done = [
                judge(
                    t,
                    *answer(t.url, t.links[0][1].listed_title, 0, T0),
                    states.get(t.url),
                    accept=frozenset(),
                    now=T0,
                    history=True,
                    confirm=ConfirmRule(),
                )  # fmt: skip
                for t in part
            ]
            written += store.write_finished(run_id, done)
        store.conn.set_trace_callback(None)
        assert at == 8190 and written == at
        assert store.written(run_id) == at
    finally:
        store.close()
    # the statements as sent, each value as '?' (the expanded SQL of the trace has them in)
    lists = {re.sub(r"'(?:[^']|'')*'|\b\d+\b", "?", s) for s in sent if " IN (" in s}
    assert 2 <= len(lists) <= 2 * 8  # states and write_finished: 1, 2, 4, … 128 values
