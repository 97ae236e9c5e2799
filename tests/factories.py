"""Builders for stage values, so classify and report tests need no server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
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
