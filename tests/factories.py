"""Builders for stage values, so classify and report tests need no server."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crawler.types import (
    BROKEN,
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

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def make_fetch_result(
    url: str = "https://example.com/a",
    status: int | None = 200,
    hops: tuple[tuple[int, str], ...] = (),
    final_url: str | None = None,
    error: ErrorKind | None = None,
    **kw: Any,
) -> FetchResult:
    return FetchResult(
        url=url,
        final_url=final_url or url,
        status=status,
        hops=tuple(Hop(s, u) for s, u in hops),
        error=error,
        fetched_at=T0,
        **kw,
    )


def make_meta(
    title: str | None = "A title", kind: PageKind = PageKind.ARTICLE, **kw: Any
) -> PageMeta:
    return PageMeta(title=title, kind=kind, **kw)


def make_check(
    url: str = "https://example.com/a",
    verdict: Verdict = Verdict.OK,
    listed: str | None = "A title",
    title: str | None = "A title",
    section: tuple[str, ...] = ("S",),
    line: int = 1,
    reason: str = "alive",
    detail: str = "alive",
) -> Check:
    return Check(
        link=Link(url=url, line=line, listed_title=listed, section=section, source="post.md"),
        fetch=make_fetch_result(url),
        meta=make_meta(title),
        verdict=verdict,
        reason=reason,
        detail=detail,
        checked_at=T0,
    )


def make_run(*checks: Check, network_down: bool = False) -> Run:
    return Run(
        started_at=T0,
        finished_at=T0,
        sources=("post.md",),
        checks=tuple(checks),
        network_down=network_down,
    )


def with_history(
    check: Check,
    *earlier: Verdict,
    previous_title: str | None = None,
    every: timedelta = timedelta(days=1),
) -> Check:
    """The check with a history: `earlier` verdicts `every` apart, oldest first, then this run.

    `since` is the start of the current verdict's streak, `first_failed_at` and
    `consecutive_failures` that of the current failing streak, as crawler/history.py fills them.
    """
    verdicts = (*earlier, check.verdict)
    at = [check.checked_at - every * (len(verdicts) - 1 - i) for i in range(len(verdicts))]
    start = len(verdicts) - 1
    while start > 0 and verdicts[start - 1] is check.verdict:
        start -= 1
    failing = 0
    while failing < len(verdicts) and verdicts[-1 - failing] in BROKEN:
        failing += 1
    history = LinkHistory(
        previous_verdict=earlier[-1] if earlier else None,
        previous_title=previous_title,
        previous_checked_at=at[-2] if earlier else None,
        since=at[start],
        first_failed_at=at[-failing] if failing else None,
        consecutive_failures=failing,
        recent=tuple(zip(at, verdicts, strict=True)),
    )
    return replace(check, history=history)


def make_totals(days_ago: float, network_down: bool = False, **counts: int) -> RunTotals:
    """An earlier run's counts for the trend, `days_ago` before T0; unnamed verdicts count 0."""
    full = {v.value: 0 for v in Verdict if v is not Verdict.SKIPPED} | counts
    return RunTotals(
        run_id=int(1000 - days_ago * 10),
        started_at=T0 - timedelta(days=days_ago),
        counts=full,
        network_down=network_down,
    )


def with_trend(run: Run, *totals: RunTotals) -> Run:
    """The run with earlier runs' totals, oldest first."""
    return replace(run, trend=tuple(totals))


def _draw(url: str, run: int) -> int:
    """0..999 for the URL's answer at run `run`: one draw for most runs, a tenth drawn again."""
    if zlib.crc32(f"{run}:{url}".encode()) % 10 == 0:
        return zlib.crc32(f"again {run}:{url}".encode()) % 1000
    return zlib.crc32(url.encode()) % 1000


def answer(
    url: str, listed: str | None, run: int, at: datetime
) -> tuple[FetchResult, PageMeta | None]:
    """What a site might answer for url at run `run`, drawn from the URL's hash: mostly alive
    with the listed title; a changed title, 404, 503, a timeout, a permanent redirect, 403."""
    d = _draw(url, run)
    n = zlib.crc32(url.encode())
    title = listed or f"Page {n % 9973}"
    summary = f"{title}: a summary of the page as its meta description gives it, " * 2
    meta = PageMeta(title=title, summary=summary[:160], kind=PageKind.ARTICLE)

    def result(status: int | None, **kw: Any) -> FetchResult:
        final = kw.pop("final_url", url)
        return FetchResult(url, final, status, elapsed_ms=20 + n % 400, fetched_at=at, **kw)

    if d < 60:  # the page's title moved
        return result(200), PageMeta(title=f"{title} (new edition {d})", kind=PageKind.ARTICLE)
    if d < 100:
        return result(404), PageMeta(title="404 Not Found", kind=PageKind.NOT_FOUND)
    if d < 140:
        return result(503, attempts=3), None
    if d < 150:
        return result(
            None, error=ErrorKind.TIMEOUT, error_detail="read timed out", attempts=3
        ), None
    if d < 190:
        moved = url.rstrip("/") + "/moved"
        return result(200, final_url=moved, hops=(Hop(301, url),)), meta
    if d < 230:
        return result(403), PageMeta(title="Forbidden", kind=PageKind.OTHER)
    return result(200), meta


def write_history(
    db: Path, links: Sequence[Link], sources: Sequence[str], runs: int, start: datetime = T0
) -> None:
    """`runs` runs of links, a day apart, written into a new history at db without the
    network (answers drawn by `answer`), judged and written by the engine's own code."""
    from crawler.engine import RunOptions, judge, plan_run, url_tasks
    from crawler.history import ConfirmRule
    from crawler.store import BATCH, Store

    tasks = url_tasks(links)
    store = Store.open(db)
    try:
        for run in range(runs):
            now = start + timedelta(days=run)
            run_id = plan_run(
                store, tasks, started=now, sources=sources, digests={}, history=True,
                options=RunOptions(),
            )  # fmt: skip
            for i in range(0, len(tasks), BATCH):
                part = tasks[i : i + BATCH]
                states = store.states(t.url for t in part)
                done = []
                for t in part:
                    res, meta = answer(t.url, t.links[0][1].listed_title, run, now)
                    state = states.get(t.url)
                    done.append(
                        judge(t, res, meta, state, accept=frozenset(), now=now, history=True,
                              confirm=ConfirmRule())
                    )  # fmt: skip
                store.write_finished(run_id, done)
            store.finish_run(run_id, now + timedelta(minutes=20), "complete")
    finally:
        store.close()
