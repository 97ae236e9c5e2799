"""Builders for stage values, so classify and report tests need no server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crawler.types import Check, ErrorKind, FetchResult, Hop, Link, PageKind, PageMeta, Run, Verdict

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
