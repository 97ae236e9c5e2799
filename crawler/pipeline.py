"""One run: links → fetch → extract → classify → Run. The only module that wires the stages."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from crawler.classify import classify
from crawler.config import FetchSettings
from crawler.extract import extract_meta
from crawler.fetch import Fetcher, host_key
from crawler.types import (
    NETWORK_ERRORS,
    Check,
    FetchResult,
    Link,
    PageKind,
    PageMeta,
    Run,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[Check], None]


def _meta_for(result: FetchResult) -> PageMeta | None:
    if result.body is None:
        return None
    return extract_meta(
        result.body,
        url=result.final_url,
        content_type=result.headers.get("content-type"),
        status=result.status,
    )


def looks_like_anti_robot(result: FetchResult) -> bool:
    """Retry predicate: an anti-robot page may pass on a slower retry."""
    if result.body is None or result.status is None or result.status >= 300:
        return False
    meta = _meta_for(result)
    return meta is not None and meta.kind is PageKind.ANTI_ROBOT


def network_is_down(results: Sequence[FetchResult]) -> bool:
    """True when no host answered at all and every failure was at the network level."""
    if not results:
        return False
    answered = {host_key(r.url) for r in results if r.status is not None}
    if answered:
        return False
    return all(r.error in NETWORK_ERRORS for r in results)


def unique_urls(links: Sequence[Link]) -> list[str]:
    """The URLs to fetch, each once, in order of first appearance."""
    return list(dict.fromkeys(link.url for link in links))


async def check_links(
    links: Sequence[Link],
    settings: FetchSettings,
    *,
    sources: Sequence[str] = (),
    progress: ProgressFn | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Run:
    """Fetch every distinct URL once and classify each occurrence; return the Run."""
    started = datetime.now(UTC)
    by_url: dict[str, list[Link]] = {}
    for link in links:
        by_url.setdefault(link.url, []).append(link)
    checks: dict[int, Check] = {}
    order = {id(link): i for i, link in enumerate(links)}
    results: list[FetchResult] = []
    async with Fetcher(settings, should_retry=looks_like_anti_robot, sleep=sleep) as fetcher:
        async for result in fetcher.fetch_all(unique_urls(links)):
            meta = _meta_for(result)
            # Bodies are not kept past extraction: memory stays flat on long lists.
            result = dataclasses.replace(result, body=None)
            results.append(result)
            checked_at = result.fetched_at or datetime.now(UTC)
            for link in by_url[result.url]:
                c = classify(result, meta, link.listed_title)
                check = Check(
                    link=link,
                    fetch=result,
                    meta=meta,
                    verdict=c.verdict,
                    reason=c.reason,
                    detail=c.detail,
                    checked_at=checked_at,
                )
                checks[order[id(link)]] = check
                if progress is not None:
                    progress(check)
    ordered = tuple(checks[i] for i in sorted(checks))
    return Run(
        started_at=started,
        finished_at=datetime.now(UTC),
        sources=tuple(sources),
        checks=ordered,
        network_down=network_is_down(results),
    )
