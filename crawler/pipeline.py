"""One run: links → fetch → extract → classify → history → store → Run.

The only module that wires the stages together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING
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
    Classification,
    FetchResult,
    FieldReplacer,
    Link,
    LinkHistory,
    PageKind,
    PageMeta,
    Run,
    Verdict,
)

if TYPE_CHECKING:
    from crawler.workers import FetchPool

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
#: Results handled within this many seconds share one checked_at (and, for URLs new to the
#: history, one LinkHistory): a run of 100,000 links keeps less.
TICK = 0.01
_NO_HEADERS: dict[str, str] = {}  # shared by every kept result: never written to
#: next_state() looks only at the verdicts of the classifications it is given.
_VERDICT_ONLY = {v: Classification(v, "", "") for v in Verdict}
ProgressFn = Callable[[Check], None]
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a run uses the history."""

    max_age: timedelta | None = None  # reuse results younger than this (never error/blocked)
    only_failing: bool = False  # refetch only URLs whose last verdict was not ok
    confirm: ConfirmRule = field(default_factory=ConfirmRule)
    anchors_for: frozenset[str] = frozenset()  # pages whose anchors are read (fragments)


def _meta_for(result: FetchResult, with_hash: bool = True) -> PageMeta | None:
    if result.body is None:
        return None
    return extract_meta(
        result.body,
        url=result.final_url,
        content_type=result.headers.get("content-type"),
        status=result.status,
        with_hash=with_hash,
    )


def _meta_without_hash(result: FetchResult) -> PageMeta | None:
    """_meta_for for a run without a history, which has no use for the main-text hash."""
    return _meta_for(result, with_hash=False)


def _with_anchors(
    extract: Callable[[FetchResult], PageMeta | None],
    wanted: frozenset[str],
    result: FetchResult,
) -> PageMeta | None:
    """extract, plus the page's anchors when it is one of `wanted` (crawler/fragments.py)."""
    meta = extract(result)
    if meta is not None and result.url in wanted:
        from crawler.fragments import page_anchors

        meta = _ANCHORS.replace(meta, page_anchors(result))
    return meta


def reads_as_anti_robot(result: FetchResult, meta: PageMeta | None) -> bool:
    """Retry predicate: an anti-robot page may pass on a slower retry."""
    return (
        result.status is not None
        and result.status < 300
        and meta is not None
        and meta.kind is PageKind.ANTI_ROBOT
    )


def network_is_down(results: Sequence[FetchResult]) -> bool:
    """True when no host answered at all and every failure was at the network level (URLs never
    requested, such as invalid ones, say nothing either way)."""
    results = [r for r in results if r.attempts]
    if not results:
        return False
    answered = {host_key(r.url) for r in results if r.status is not None}
    if answered:
        return False
    return all(r.error in NETWORK_ERRORS for r in results)


def start_pool(
    links: Sequence[Link],
    settings: FetchSettings,
    *,
    with_hash: bool = True,
    anchors_for: frozenset[str] = frozenset(),
) -> FetchPool[PageMeta | None] | None:
    """Fork fetch workers for these links when the settings and the list call for more than
    one (crawler/workers.py); None means fetch in this process. `with_hash`: the pages' main-text
    hash is wanted (only the history keeps it)."""
    if settings.workers == 1:
        return None
    from crawler.workers import FetchPool, plan_workers, site_key

    urls = unique_urls(links)
    sites = len({site_key(host_key(u)) for u in urls})
    n = plan_workers(settings.workers, len(urls), sites, settings.max_concurrency)
    if n <= 1:
        return None
    extract = _meta_for if with_hash else _meta_without_hash
    if anchors_for:
        extract = partial(_with_anchors, extract, anchors_for)
    return FetchPool(n, extract, reads_as_anti_robot).start()


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
        self.links = links
        # url -> position of its first occurrence, in order of first appearance; the positions
        # of every occurrence only for the URLs used more than once (few).
        self.first: dict[str, int] = {}
        self.more: dict[str, list[int]] = {}
        for i, link in enumerate(links):
            j = self.first.setdefault(link.url, i)
            if j != i:
                self.more.setdefault(link.url, [j]).append(i)
        self.store = store
        self.options = options
        self.clock = clock
        self.progress = progress
        self.states: dict[str, UrlState] = store.states(self.first) if store else {}
        self.checks: list[Check | None] = [None] * len(links)  # in the links' order
        self.pending: list[tuple[Check, Verdict]] = []
        # the raw verdict of each URL's first occurrence, when fetched with a history: what
        # new_states() needs besides the checks (a UrlState per URL would cost ten times more)
        self.raw: list[Verdict | None] = [None] * len(links) if store is not None else []
        # network_is_down() of the fetched results, kept as they come
        self.fetched = 0
        self.answered = False
        self.only_network_errors = True
        self.run_id: int | None = None
        self._tick = 0.0
        self._now: datetime | None = None
        self._first_histories: dict[
            tuple[Classification, datetime], tuple[Classification, LinkHistory]
        ] = {}

    def occurrences(self, url: str) -> list[int]:
        """Positions of every occurrence of url among the links."""
        return self.more.get(url) or [self.first[url]]

    def network_down(self) -> bool:
        """network_is_down() of every result fetched so far."""
        return self.fetched > 0 and not self.answered and self.only_network_errors

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
            if url in opts.anchors_for:  # the history keeps no anchors: fetch the page again
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
            listed = self.links[self.first[url]].compared_title
            again = classify(fetch, meta, listed, self.accept_for(url))
            if again.verdict in (Verdict.ERROR, Verdict.BLOCKED):
                continue
            out[url] = (fetch, meta)
        return out

    def now(self) -> datetime:
        """The clock, read at most once per TICK: results handled together share a moment."""
        tick = time.monotonic()
        if self._now is None or tick - self._tick >= TICK:
            self._tick, self._now = tick, self.clock()
            self._first_histories.clear()
        return self._now

    def first_history(
        self, raw: Classification, now: datetime
    ) -> tuple[Classification, LinkHistory]:
        """apply_history for a URL the history has never seen: it depends only on the
        classification and the moment, so URLs checked at the same moment share it."""
        key = (raw, now)
        got = self._first_histories.get(key)
        if got is None:
            got = apply_history(None, raw, None, None, now, self.options.confirm)
            self._first_histories[key] = got
        return got

    def accept_for(self, url: str) -> frozenset[int]:
        """Statuses declared alive for url's host: global ones and the host rule's."""
        s = self.settings
        if not s.hosts:
            return s.accept
        rule = host_rule(s.hosts, urlsplit(url).hostname or "")
        return s.accept | rule.accept if rule is not None else s.accept

    def handle(self, result: FetchResult, meta: PageMeta | None, cached: bool) -> None:
        """Classify every occurrence of one fetched URL and queue the checks for the store."""
        if not cached and result.attempts:  # requested (an invalid URL never is)
            self.fetched += 1
            if result.status is not None:
                self.answered = True
            elif result.error not in NETWORK_ERRORS:
                self.only_network_errors = False
        if result.headers:
            # Read already (content type, redirects): a Run keeps every result, keep it small.
            result = _HEADERS.replace(result, _NO_HEADERS)
        url = result.url
        title = meta.title if meta else None
        stored_meta = meta  # what the history gets; the run keeps a slimmer copy
        if meta is not None:
            listed = self.links[self.first[url]].listed_title
            if title is not None and title == listed and title is not listed:
                title = listed  # the usual case: keep the listed title's string once
            if meta.text_hash is not None or meta.title is not title:
                # The main-text hash is for the history only: no report shows it.
                meta = _SLIM.replace(meta, title, None)
        now = self.now()
        state = self.states.get(url)
        accept = self.accept_for(url)
        store, links, checks, pending, progress = (
            self.store,
            self.links,
            self.checks,
            self.pending,
            self.progress,
        )
        checked_at = now if not cached else (result.fetched_at or now)
        first = True
        for i in self.occurrences(url):
            link = links[i]
            raw = classify(result, meta, link.compared_title, accept)
            hist: LinkHistory | None = None
            final = raw
            if store is not None:
                if cached:
                    hist = _unchanged_history(state)
                elif state is None:
                    final, hist = self.first_history(raw, now)
                    if first:
                        self.raw[i] = raw.verdict
                else:
                    final, hist = apply_history(
                        state, raw, title, link.listed_title, now, self.options.confirm
                    )
                    if first:
                        self.raw[i] = raw.verdict
            first = False
            check = Check(
                link=link,
                fetch=result,
                meta=meta,
                verdict=final.verdict,
                reason=final.reason,
                detail=final.detail,
                checked_at=checked_at,
                history=hist,
                cached=cached,
            )
            checks[i] = check
            if stored_meta is not None and stored_meta.text_hash is not None and store is not None:
                pending.append((_META.replace(check, stored_meta), raw.verdict))
            else:
                pending.append((check, raw.verdict))
            if progress is not None:
                progress(check)
        # Batches keep the writes cheap; `flush_periodically` keeps a killed run's work on disk.
        if len(pending) >= BATCH:
            self.flush()

    def new_states(self) -> Iterator[UrlState]:
        """The state of every URL fetched in this run, to remember for the next one."""
        for i, raw in enumerate(self.raw):
            check = self.checks[i]
            if raw is None or check is None:
                continue
            url = check.url
            yield next_state(
                self.states.get(url),
                url,
                _VERDICT_ONLY[check.verdict],
                _VERDICT_ONLY[raw],
                check.meta.title if check.meta else None,
                check.checked_at,
                check.history or LinkHistory(),
            )

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


_HEADERS = FieldReplacer(FetchResult, "headers")
_META = FieldReplacer(Check, "meta")
#: The run's copy of a page's meta: the listed title's string, no main-text hash.
_SLIM = FieldReplacer(PageMeta, "title", "text_hash")
_ANCHORS = FieldReplacer(PageMeta, "anchors")


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
    pool: FetchPool[PageMeta | None] | None = None,
) -> Run:
    """Fetch every distinct URL once, classify each occurrence, record it; return the Run.

    With a `pool` (start_pool()), its workers fetch and read the pages; `sleep` is then unused.
    """
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
        to_fetch = [u for u in run.first if u not in reuse]
        # Each page is read once (the retry predicate shares the reading) and its body dropped
        # right after, so memory stays flat on long lists.
        extract = _meta_for if store is not None else _meta_without_hash
        if run.options.anchors_for:
            extract = partial(_with_anchors, extract, run.options.anchors_for)
        pairs = (
            pool.fetch_pages(to_fetch, settings)
            if pool is not None
            else fetch_pages(
                to_fetch,
                settings,
                extract=extract,
                retry_on=reads_as_anti_robot,
                sleep=sleep,
            )
        )
        async for result, meta in pairs:
            run.handle(result, meta, cached=False)
        status = "complete"
    finally:
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        run.flush()
        network_down = run.network_down()
        finished = clock()
        result_run = Run(
            started_at=started,
            finished_at=finished,
            sources=tuple(sources),
            checks=tuple(c for c in run.checks if c is not None),
            network_down=network_down,
            run_id=run.run_id,
            trend=store.trend(run.run_id) if store is not None and run.run_id else (),
        )
        if store is not None and run.run_id is not None:
            store.finish_run(
                run.run_id, finished, status, result_run.counts(), network_down, run.new_states()
            )
    return result_run
