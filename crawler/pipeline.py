"""One run: links → fetch → extract → classify → history → store → Run.

The only module that wires the stages together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from crawler.classify import classify
from crawler.config import FetchSettings, host_rule
from crawler.extract import extract_meta
from crawler.fetch import fetch_pages, host_key
from crawler.history import ConfirmRule, UrlState, apply_history, next_state
from crawler.store import BATCH, Store
from crawler.types import (
    NETWORK_ERRORS,
    Check,
    FetchResult,
    Link,
    LinkHistory,
    PageKind,
    PageMeta,
    Run,
    Verdict,
)

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
ProgressFn = Callable[[Check], None]
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a run uses the history."""

    max_age: timedelta | None = None  # reuse results younger than this (never error/blocked)
    only_failing: bool = False  # refetch only URLs whose last verdict was not ok
    confirm: ConfirmRule = field(default_factory=ConfirmRule)


def _meta_for(result: FetchResult) -> PageMeta | None:
    if result.body is None:
        return None
    return extract_meta(
        result.body,
        url=result.final_url,
        content_type=result.headers.get("content-type"),
        status=result.status,
    )


def reads_as_anti_robot(result: FetchResult, meta: PageMeta | None) -> bool:
    """Retry predicate: an anti-robot page may pass on a slower retry."""
    return (
        result.status is not None
        and result.status < 300
        and meta is not None
        and meta.kind is PageKind.ANTI_ROBOT
    )


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


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Run:
    """The mutable state of one run in progress."""

    def __init__(
        self,
        links: Sequence[Link],
        store: Store | None,
        options: RunOptions,
        clock: Clock,
        progress: ProgressFn | None,
        settings: FetchSettings,
    ) -> None:
        self.settings = settings
        self.by_url: dict[str, list[Link]] = {}
        for link in links:
            self.by_url.setdefault(link.url, []).append(link)
        self.order = {id(link): i for i, link in enumerate(links)}
        self.store = store
        self.options = options
        self.clock = clock
        self.progress = progress
        self.states: dict[str, UrlState] = store.states(self.by_url) if store else {}
        self.checks: dict[int, Check] = {}
        self.pending: list[tuple[Check, Verdict]] = []
        self.new_states: list[UrlState] = []
        self.fetched: list[FetchResult] = []
        self.run_id: int | None = None

    def reusable(self) -> dict[str, tuple[FetchResult, PageMeta]]:
        """URLs whose stored result may stand in for a fetch this time."""
        opts, store = self.options, self.store
        if store is None or (opts.max_age is None and not opts.only_failing):
            return {}
        now = self.clock()
        out: dict[str, tuple[FetchResult, PageMeta]] = {}
        for url, st in self.states.items():
            if st.last_checked_at is None or st.last_verdict is None:
                continue
            fresh = (
                opts.max_age is not None
                and now - st.last_checked_at <= opts.max_age
                and st.last_verdict not in (Verdict.ERROR, Verdict.BLOCKED)
            )
            settled = opts.only_failing and st.last_verdict is Verdict.OK
            if not (fresh or settled):
                continue
            last = store.last_check(url)
            if last is None:
                continue
            fetch, meta, _ = last
            # Never reuse a result that is an error or a block when judged again.
            again = classify(fetch, meta, self.by_url[url][0].listed_title, self.accept_for(url))
            if again.verdict in (Verdict.ERROR, Verdict.BLOCKED):
                continue
            out[url] = (fetch, meta)
        return out

    def accept_for(self, url: str) -> frozenset[int]:
        """Statuses declared alive for url's host: global ones and the host rule's."""
        s = self.settings
        if not s.hosts:
            return s.accept
        rule = host_rule(s.hosts, urlsplit(url).hostname or "")
        return s.accept | rule.accept if rule is not None else s.accept

    def handle(self, result: FetchResult, meta: PageMeta | None, cached: bool) -> None:
        """Classify every occurrence of one fetched URL and queue the checks for the store."""
        now = self.clock()
        state = self.states.get(result.url)
        first = True
        accept = self.accept_for(result.url)
        for link in self.by_url[result.url]:
            raw = classify(result, meta, link.listed_title, accept)
            title = meta.title if meta else None
            hist: LinkHistory | None = None
            final = raw
            if self.store is not None:
                if cached:
                    hist = _unchanged_history(state)
                else:
                    final, hist = apply_history(
                        state, raw, title, link.listed_title, now, self.options.confirm
                    )
                    if first:
                        self.new_states.append(
                            next_state(state, result.url, final, raw, title, now, hist)
                        )
            first = False
            check = Check(
                link=link,
                fetch=result,
                meta=meta,
                verdict=final.verdict,
                reason=final.reason,
                detail=final.detail,
                checked_at=now if not cached else (result.fetched_at or now),
                history=hist,
                cached=cached,
            )
            self.checks[self.order[id(link)]] = check
            self.pending.append((check, raw.verdict))
            if self.progress is not None:
                self.progress(check)
        # Batches keep the writes cheap; `flush_periodically` keeps a killed run's work on disk.
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Write the queued checks to the history."""
        if self.store is not None and self.run_id is not None and self.pending:
            self.store.add_checks(self.run_id, self.pending)
        self.pending = []

    async def flush_periodically(self) -> None:
        """Flush every FLUSH_SECONDS while the run goes on."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()


def _unchanged_history(state: UrlState | None) -> LinkHistory | None:
    if state is None:
        return None
    return LinkHistory(
        previous_verdict=state.last_verdict,
        previous_title=state.last_title,
        previous_checked_at=state.last_checked_at,
        since=state.verdict_since,
        first_failed_at=state.first_failed_at,
        consecutive_failures=state.fail_runs,
        recent=state.recent,
    )


async def check_links(
    links: Sequence[Link],
    settings: FetchSettings,
    *,
    sources: Sequence[str] = (),
    digests: dict[str, str] | None = None,
    store: Store | None = None,
    options: RunOptions | None = None,
    progress: ProgressFn | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Clock = _utcnow,
) -> Run:
    """Fetch every distinct URL once, classify each occurrence, record it; return the Run."""
    started = clock()
    run = _Run(links, store, options or RunOptions(), clock, progress, settings)
    reuse = run.reusable()
    if store is not None:
        run.run_id = store.begin_run(started, sources, digests or {})
    status = "interrupted"
    flusher = asyncio.create_task(run.flush_periodically()) if store is not None else None
    try:
        for fetch, stored_meta in reuse.values():
            run.handle(fetch, stored_meta, cached=True)
        to_fetch = [u for u in run.by_url if u not in reuse]
        # Each page is read once (the retry predicate shares the reading) and its body dropped
        # right after, so memory stays flat on long lists.
        async for result, meta in fetch_pages(
            to_fetch, settings, extract=_meta_for, retry_on=reads_as_anti_robot, sleep=sleep
        ):
            run.fetched.append(result)
            run.handle(result, meta, cached=False)
        status = "complete"
    finally:
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        run.flush()
        network_down = network_is_down(run.fetched)
        finished = clock()
        result_run = Run(
            started_at=started,
            finished_at=finished,
            sources=tuple(sources),
            checks=tuple(run.checks[i] for i in sorted(run.checks)),
            network_down=network_down,
            run_id=run.run_id,
            trend=store.trend(run.run_id) if store is not None and run.run_id else (),
        )
        if store is not None and run.run_id is not None:
            store.finish_run(
                run.run_id, finished, status, result_run.counts(), network_down, run.new_states
            )
    return result_run
