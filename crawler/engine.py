"""The engine: a run planned into the store, worked by workers that lease hosts, then closed.

plan_run() writes the run and its distinct URLs in one transaction. A Worker (one asyncio loop)
leases hosts with pending URLs, fetches each host's URLs within its limits, reads and judges
every page (fetch → extract → classify → history rules), writes the checks in batches and gives
the host back. A host is in one worker at a time, so its limits hold across processes; a lease
that is not renewed expires (a killed worker) and another worker finishes the host. Writes are
idempotent per (run, url), so a URL is checked into the run exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crawler import extract, fetch
from crawler.classify import classify, verification_redirect
from crawler.config import FetchSettings, HostRule, host_rule
from crawler.fetch import host_key
from crawler.frontier import (
    NOT_DUE,
    UNCHECKED,
    Finished,
    Recheck,
    UrlTask,
    due,
)
from crawler.history import ConfirmRule, UrlState, apply_history, next_state
from crawler.pace import START_LIMIT, Blame, Outcome, Pace, PaceController
from crawler.redact import redact_url
from crawler.types import Check, ErrorKind, FetchResult, Link, PageKind, PageMeta, Verdict

if TYPE_CHECKING:
    from crawler.store import Store  # PgStore is one too

log = logging.getLogger(__name__)

#: Seconds a host lease lasts unless renewed; workers renew every third of it.
LEASE_SECONDS = 60.0
#: Seconds between looks at the store while other workers hold the hosts left.
POLL_SECONDS = 0.5
#: Finished URLs are written at least this often (and every BATCH checks).
FLUSH_SECONDS = 1.0
BATCH = 1000
#: The most a leased host counts for against a worker's requests in flight (see _lease_more).
HOST_SHARE = 4
#: A URL answered by a verification page waits this long (seconds, times its tries so far)
#: and goes back to the front of its host's queue. It is judged blocked when it is shown one
#: again that the pace puts down to the URL (crawler/pace.py: Blame), or after COOL_DOWN_TRIES
#: such waits.
COOL_DOWN = 3.0
#: A wait shorter than this keeps its place: a hold that ends within it may no longer show.
HELD_MARGIN = 0.05
COOL_DOWN_TRIES = 3

Clock = Callable[[], datetime]
ProgressFn = Callable[[int], None]  # called with the number of checks just written


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a run uses the history."""

    max_age: timedelta | None = None  # reuse results younger than this (never error/blocked)
    only_failing: bool = False  # refetch only URLs whose last verdict was not ok
    confirm: ConfirmRule = field(default_factory=ConfirmRule)
    anchors_for: frozenset[str] = frozenset()  # pages whose anchors are read (fragments)
    budget: timedelta | None = None  # stop claiming URLs this long after the run started
    recheck: Recheck = field(default_factory=Recheck)  # when a verdict is due again (budget)


# ----------------------------------------------------------------------------------- planning


def url_tasks(links: Iterable[Link]) -> list[UrlTask]:
    """The run's distinct URLs in order of first appearance, each with every occurrence. A
    URL is recorded with its password as *** (redact_url); the first one written is fetched."""
    by_url: dict[str, list[tuple[int, Link]]] = {}
    written: dict[str, str] = {}
    for i, link in enumerate(links):
        url = redact_url(link.url)
        if url != link.url:
            written.setdefault(url, link.url)
        by_url.setdefault(url, []).append((i, link))
    return [
        UrlTask(url, host_key(url), tuple(occ), fetch_url=written.get(url))
        for url, occ in by_url.items()
    ]


def occurrences(links: Iterable[Link]) -> Iterator[UrlTask]:
    """url_tasks as a stream, for plan_run: a task per link, in order, holding only that
    link (the store gathers a URL's occurrences); nothing of a link read is kept here."""
    for i, link in enumerate(links):
        url = redact_url(link.url)
        yield UrlTask(
            url, host_key(url), ((i, link),), fetch_url=link.url if url != link.url else None
        )


def plan_run(
    store: Store,
    tasks: Iterable[UrlTask],
    *,
    started: datetime,
    sources: Sequence[str],
    digests: Mapping[str, str],
    history: bool,
    options: RunOptions,
    lease_seconds: float = LEASE_SECONDS,
) -> int:
    """Write the run and its distinct URLs to the store (one transaction); its id. `tasks`
    may name a URL more than once (occurrences): its occurrences are gathered in order."""
    plan: dict[str, Any] = {
        "history": history,
        "confirm_runs": options.confirm.runs,
        "confirm_days": options.confirm.days,
        "lease_seconds": lease_seconds,
        "anchors_for": sorted(options.anchors_for),
    }
    if options.budget is not None:
        plan["deadline"] = (started + options.budget).isoformat()
    return store.plan_run(started, sources, digests, plan, tasks)


def deadline_of(plan: Mapping[str, Any]) -> datetime | None:
    """When a run's workers stop claiming URLs (its budget), if it has one."""
    text = plan.get("deadline")
    return datetime.fromisoformat(text) if text else None


def sort_due(
    store: Store, tasks: Sequence[UrlTask], now: datetime, recheck: Recheck
) -> tuple[list[UrlTask], list[UrlTask]]:
    """A budgeted run's URLs: (those due, each with how due it is; those whose last verdict
    still stands)."""
    states = store.states(t.url for t in tasks)
    todo: list[UrlTask] = []
    stands: list[UrlTask] = []
    for task in tasks:
        st = states.get(task.url)
        rank = due(st, now, recheck)
        if rank is None:
            stands.append(replace(task, due=NOT_DUE))
        else:
            last = st.last_checked_at if st is not None else None
            todo.append(replace(task, due=rank, last_checked=last))
    return todo, stands


def write_known(store: Store, run_id: int, tasks: Iterable[UrlTask], now: datetime) -> int:
    """Write, for URLs this run does not fetch (not due, or left when its budget ran out), the
    last known check of each (as a cached check: its verdict and its age stand), or one that
    says it was never checked; the number of checks written."""
    tasks = list(tasks)
    known = store.latest_checks([t.url for t in tasks])
    states = store.states(t.url for t in tasks if t.url in known)
    out = []
    for task in tasks:
        last = known.get(task.url)
        checks = []
        for pos, listed in task.links:
            link = listed if listed.url == task.url else replace(listed, url=task.url)
            if last is None:
                check = Check(
                    link=link,
                    fetch=None,
                    meta=None,
                    verdict=Verdict.SKIPPED,
                    reason=UNCHECKED,
                    detail="not checked yet: the run's time budget ran out before its turn",
                    checked_at=now,
                )
                checks.append((pos, check, Verdict.SKIPPED))
            else:
                hist = _unchanged_history(states.get(task.url))
                check = replace(last, link=link, cached=True, history=hist)
                checks.append((pos, check, last.verdict))
        out.append(Finished(task.url, tuple(checks), None))
    store.write_finished(run_id, out)
    return sum(len(f.checks) for f in out)


def reads_as_anti_robot(result: FetchResult, meta: PageMeta | None) -> bool:
    """Retry predicate: an anti-robot page (or a redirect to the site's verification page,
    not followed) may pass on a slower retry."""
    return (
        result.status is not None
        and (result.status < 300 or verification_redirect(result))
        and meta is not None
        and meta.kind is PageKind.ANTI_ROBOT
    )


def pace_outcome(result: FetchResult, meta: PageMeta | None) -> Outcome:
    """What an answer says about its host's pace (crawler/pace.py)."""
    if result.status == 429 or result.error is ErrorKind.RATE_LIMITED:
        return Outcome.SLOW_DOWN
    if reads_as_anti_robot(result, meta):
        return Outcome.SLOW_DOWN
    if result.error is ErrorKind.TIMEOUT:
        return Outcome.TIMEOUT
    if result.status is None:
        return Outcome.NEUTRAL
    return Outcome.CLEAN


def _blocked_before(state: UrlState | None, result: FetchResult, meta: PageMeta | None) -> bool:
    """A verification page from a URL the last run judged `blocked`: most such URLs show it at
    any pace (a whole-blog run's 366 on WeChat), and clusters of them halved the pace."""
    return (
        state is not None
        and state.last_verdict is Verdict.BLOCKED
        and reads_as_anti_robot(result, meta)
    )


def _unpaced(settings: FetchSettings) -> FetchSettings:
    """The settings the engine's Fetcher runs with: the pace controller spaces the starts, so
    the Fetcher's own per-host interval is off (its per-host limit stays, as the ceiling)."""
    hosts = {name: replace(rule, interval=None) for name, rule in settings.hosts.items()}
    return replace(settings, host_interval=0.0, hosts=hosts)


class _PacedHost:
    """One leased host's requests in flight and starts, as its PaceController says."""

    def __init__(
        self,
        name: str,
        pace: PaceController,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.name = name  # the host_key
        self.pace = pace
        self.clock = clock
        self._sleep = sleep
        self._places = 0  # places taken: at most the pace's limit
        self.on_wire = 0  # of those, requests past the worker's limit on requests in flight
        self.verification_pages = 0  # met on this lease (crawler hosts)
        self.left: Callable[[], int] = lambda: 0  # URLs left to check (_Wire's order)
        self._next_start = float("-inf")
        self._cond = asyncio.Condition()

    async def start(self) -> None:
        """Wait for a free place and the interval."""
        async with self._cond:
            await self._cond.wait_for(lambda: self._places < self.pace.limit)
            self._places += 1
        try:
            now = self.clock()
            wait = self._next_start - now
            self._next_start = max(now, self._next_start) + self.pace.interval
            if wait > 0:
                await self._sleep(wait)
        except BaseException:
            await self.done()
            raise

    async def done(self) -> None:
        async with self._cond:
            self._places -= 1
            self._cond.notify_all()


class _Wire:
    """The worker's places for requests on the wire (as many as the Fetcher's own limit),
    given first to the waiting request of the host with the most URLs left: a run lasts at
    least as long as its biggest host takes at its pace, so that host never waits for a place
    behind hosts that can wait."""

    def __init__(self, places: int) -> None:
        self.places = places
        self.free = places
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []  # (-left, order, ...)
        self._order = itertools.count()

    async def acquire(self, left: int) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (-left, next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just as this waiter was cancelled: pass it on
            raise

    def taken(self) -> int:
        """Places taken: all of them while a request waits for one."""
        if any(not w[2].done() for w in self._waiting):
            return self.places
        return self.places - self.free

    def release(self) -> None:
        while self._waiting:
            fut = heapq.heappop(self._waiting)[2]
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


class _Slot:
    """One URL's place among its host's requests in flight: taken to start, given back while
    the Fetcher waits between retries (a request asleep is not on the wire).

    The host's requests in flight that the pace hears of are those on the wire: past the
    worker's own limit (`wire`, the size of the Fetcher's), which other hosts' requests may
    hold; a request waiting there is not yet at the host."""

    def __init__(self, host: _PacedHost, wire: _Wire) -> None:
        self.host = host
        self.wire = wire
        self.held = False
        self.started = 0.0  # when its last request started (the pace's clock)
        self.inflight = 0  # the host's requests on the wire then, itself included

    async def take(self) -> None:
        await self.host.start()
        try:
            await self.wire.acquire(self.host.left())
        except BaseException:
            await self.host.done()
            raise
        self.host.on_wire += 1
        self.held = True
        self.started, self.inflight = self.host.clock(), self.host.on_wire

    async def give_back(self) -> None:
        if self.held:
            self.held = False
            self.host.on_wire -= 1
            self.wire.release()
            await self.host.done()


#: The slot of the URL a task checks: the Fetcher's retries sleep in that task.
_SLOT: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("pace_slot", default=None)


def read_page(
    result: FetchResult, with_hash: bool = True, anchors_for: frozenset[str] = frozenset()
) -> PageMeta | None:
    """What a response says (None without a body); with its anchors when its URL is one of
    `anchors_for` (crawler/fragments.py). A redirect to the site's verification page, not
    followed, reads as that page."""
    if result.body is None:
        return _VERIFICATION if verification_redirect(result) else None
    meta = extract.extract_meta(  # (the parser loads in a worker, not in a parent that plans)
        result.body,
        url=result.final_url,
        content_type=result.headers.get("content-type"),
        status=result.status,
        with_hash=with_hash,
    )
    if meta is not None and anchors_for and redact_url(result.url) in anchors_for:
        from crawler.fragments import page_anchors

        meta = replace(meta, anchors=page_anchors(result))
    return meta


#: What a redirect to a site's verification page says of the page (known by its path).
_VERIFICATION = PageMeta(kind=PageKind.ANTI_ROBOT)


def accept_for(settings: FetchSettings, url: str) -> frozenset[int]:
    """Statuses declared alive for url's host: global ones and the host rule's."""
    if not settings.hosts:
        return settings.accept
    rule = host_rule(settings.hosts, urlsplit(url).hostname or "")
    return settings.accept | rule.accept if rule is not None else settings.accept


def judge(
    task: UrlTask,
    result: FetchResult,
    meta: PageMeta | None,
    state: UrlState | None,
    *,
    accept: frozenset[int],
    now: datetime,
    history: bool,
    confirm: ConfirmRule,
    cached: bool = False,
) -> Finished:
    """Classify every occurrence of one URL, apply the history rules (a pure function of the
    URL's previous state and this check) and say what the history is to remember."""
    if result.headers or result.body is not None:
        result = replace(result, headers={}, body=None)  # read already: what the store keeps
    checked_at = (result.fetched_at or now) if cached else now
    title = meta.title if meta else None
    checks: list[tuple[int, Check, Verdict]] = []
    new_state: UrlState | None = None
    for n, (pos, listed) in enumerate(task.links):
        link = listed if listed.url == task.url else replace(listed, url=task.url)
        raw = classify(result, meta, link.compared_title, accept)
        final, hist = raw, None
        if history:
            if cached:
                hist = _unchanged_history(state)
            else:
                final, hist = apply_history(state, raw, title, link.listed_title, now, confirm)
                if n == 0:
                    new_state = next_state(state, task.url, final, raw, title, now, hist)
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
        checks.append((pos, check, raw.verdict))
    return Finished(task.url, tuple(checks), new_state)


def _unchanged_history(state: UrlState | None) -> Any:
    from crawler.types import LinkHistory

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


def reuse_stored(
    store: Store,
    run_id: int,
    tasks: Sequence[UrlTask],
    settings: FetchSettings,
    options: RunOptions,
    clock: Clock,
) -> int:
    """Write, as cached checks, the URLs whose stored result may stand in for a fetch this time
    (--max-age, --only failing); the number of checks written."""
    if options.max_age is None and not options.only_failing:
        return 0
    now = clock()
    states = store.states(t.url for t in tasks)
    out: list[Finished] = []
    for task in tasks:
        st = states.get(task.url)
        if st is None or st.last_checked_at is None or st.last_verdict is None:
            continue
        if task.url in options.anchors_for:  # the history keeps no anchors: fetch it again
            continue
        fresh = (
            options.max_age is not None
            and now - st.last_checked_at <= options.max_age
            and st.last_verdict not in (Verdict.ERROR, Verdict.BLOCKED)
        )
        settled = options.only_failing and st.last_verdict is Verdict.OK
        if not (fresh or settled):
            continue
        last = store.last_check(task.url)
        if last is None:
            continue
        fetch, meta, _ = last
        accept = accept_for(settings, task.url)
        # Never reuse a result that is an error or a block when judged again.
        again = classify(fetch, meta, task.links[0][1].compared_title, accept)
        if again.verdict in (Verdict.ERROR, Verdict.BLOCKED):
            continue
        out.append(
            judge(
                task,
                fetch,
                meta,
                st,
                accept=accept,
                now=now,
                history=True,
                confirm=options.confirm,
                cached=True,
            )
        )
    store.write_finished(run_id, out)
    return sum(len(f.checks) for f in out)


# ------------------------------------------------------------------------------------- worker


def worker_id() -> str:
    """machine:pid:nonce: unique, and says which process on which machine holds a lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


class Worker:
    """One asyncio loop working one run: leases hosts, checks their URLs, writes, releases.

    `capacity` is this worker's share of the requests in flight; it leases hosts until their
    limits fill it. It returns when no host of the run is left open; while other workers hold
    the last hosts it looks again every `poll` seconds (their leases may expire).
    """

    def __init__(
        self,
        store: Store,
        run_id: int,
        settings: FetchSettings,
        *,
        clock: Clock = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        progress: ProgressFn | None = None,
        owner: str | None = None,
        poll: float = POLL_SECONDS,
        alive: Callable[[], bool] = lambda: True,
        monotonic: Callable[[], float] = time.monotonic,
        cool_down: float | None = None,
    ) -> None:
        self.store = store
        self.monotonic = monotonic
        self.cool_down = COOL_DOWN if cool_down is None else cool_down
        self.run_id = run_id
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.progress = progress
        self.owner = owner or worker_id()
        self.poll = poll
        self.alive = alive
        plan = store.run_plan(run_id)
        self.history = bool(plan.get("history", True))
        self.confirm = ConfirmRule(
            runs=int(plan.get("confirm_runs", ConfirmRule().runs)),
            days=float(plan.get("confirm_days", ConfirmRule().days)),
        )
        self.lease_seconds = float(plan.get("lease_seconds", LEASE_SECONDS))
        self.anchors_for = frozenset(plan.get("anchors_for", ()))
        self.deadline = deadline_of(plan)
        self.capacity = max(1, settings.max_concurrency)
        # the Fetcher's limit on requests in flight, taken before it (see _Slot)
        self._wire = _Wire(self.capacity)
        self._fetcher: fetch.Fetcher | None = None
        self._queue: list[Finished] = []
        self._queued_checks = 0
        self._writing = asyncio.Lock()  # one write of finished URLs at a time
        self._held: dict[str, int] = {}  # leased host -> requests it may have in flight
        # leased host -> wall time (time.time(), as the leases') its lease lasts till, as far
        # as this worker knows; a lost one is out of it and in _lost (see _lease_holds)
        self._lease_until: dict[str, float] = {}
        self._lost: set[str] = set()
        self._renewing = asyncio.Lock()  # one renewal at a time
        self._renewed_at = 0.0  # wall time the last renewal started
        self._stopping = False  # cancelled: start no new host or URL

    def _host_limit(self, host: str) -> int:
        s = self.settings
        if s.hosts:
            rule: HostRule | None = host_rule(s.hosts, host.rsplit(":", 1)[0])
            if rule is not None and rule.concurrency:
                return rule.concurrency
        return s.host_concurrency

    async def run(self) -> None:
        """Work until every host of the run is done.

        Cancelled (SIGTERM, Ctrl-C), it stops: no new host or URL is started, the requests in
        flight get up to the fetch timeout to finish, their checks are written, every lease is
        given back, and CancelledError goes on to the caller. A second cancellation stops the
        wait at once.
        """
        # A verification page is asked again by the pace after a cool-down, not retried at once:
        # the Fetcher needs no reading of the page, which is read once the host's place is back.
        unpaced = _unpaced(self.settings)
        async with fetch.Fetcher(unpaced, sleep=self._retry_sleep, holds=self._holds) as f:
            self._fetcher = f
            keeper = asyncio.create_task(self._keep_leases())
            flusher = asyncio.create_task(self._flush_periodically())
            active: dict[asyncio.Task[None], str] = {}
            try:
                while True:
                    await self._lease_more(active, f)
                    if not active:
                        if (
                            await self.store.off_loop(self.store.open_hosts, self.run_id) == 0
                            or not self.alive()
                            or self.out_of_time()
                        ):
                            return
                        await asyncio.sleep(self.poll)  # the rest is leased by other workers
                        continue
                    done, _ = await asyncio.wait(
                        active, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        await self._host_done(active, task)
            except asyncio.CancelledError:
                await self._finish_in_flight(active, f)
                raise
            finally:
                for task in active:
                    task.cancel()
                await asyncio.gather(*active, return_exceptions=True)
                for t in (keeper, flusher):
                    t.cancel()
                await asyncio.gather(keeper, flusher, return_exceptions=True)
                # Every finished check is kept, whatever ended the loop; on the loop's thread,
                # as nothing else is left to wait for (no step handed off is still going:
                # off_loop waits for its step even when cancelled).
                self._write(self._take())
                for host in list(self._held) + list(active.values()):
                    with contextlib.suppress(Exception):
                        self.store.release_host(self.run_id, host, self.owner)
                self._held.clear()

    async def _host_done(
        self, active: dict[asyncio.Task[None], str], task: asyncio.Task[None]
    ) -> None:
        host = active.pop(task)
        task.result()  # a bug in the worker surfaces here
        await self.flush()  # before the host is given back: nothing is fetched twice
        await self.store.off_loop(self.store.release_host, self.run_id, host, self.owner)
        self._held.pop(host, None)  # only now: stopped before, run's cleanup gives it back
        self._lease_until.pop(host, None)
        self._lost.discard(host)

    async def _finish_in_flight(
        self, active: dict[asyncio.Task[None], str], fetcher: fetch.Fetcher
    ) -> None:
        """On a stop: start nothing more, and give the requests in flight up to the fetch
        timeout to finish (what they find is written by run's cleanup)."""
        self._stopping = True
        if not active:
            return
        log.info(
            "stopping: finishing %d requests in flight (at most %g s)",
            fetcher.in_flight,
            self.settings.timeout,
        )
        done, _ = await asyncio.wait(active, timeout=self.settings.timeout)
        for task in done:
            await self._host_done(active, task)

    async def _lease_more(
        self, active: dict[asyncio.Task[None], str], fetcher: fetch.Fetcher
    ) -> None:
        # Hosts held up to the worker's capacity by their limits; then a few more per call
        # while fewer than half its places for requests are taken (_Wire): hosts that wait
        # out their interval leave places idle (a politeness-bound list), and a worker that
        # is busy leaves the rest of the run's hosts to the other workers. Places, not the
        # Fetcher's requests on the wire: a busy worker's requests wait for the loop, holding
        # their places, and every host held more is checked alongside the others (the wire
        # serves the host with the most URLs left first) and its URLs held until the end.
        # The Fetcher's global limit still caps the requests in flight.
        if self.out_of_time():
            return  # the budget is spent: what is left stays pending
        idle = self.capacity // 2 - self._wire.taken()
        extra = max(1, idle // 2) if idle > 0 else 0
        while (sum(self._held.values()) < self.capacity or extra) and not self._stopping:
            if sum(self._held.values()) >= self.capacity:
                extra -= 1
            db = self.store
            now = time.time()
            host = await db.off_loop(
                db.lease_host, self.run_id, self.owner, self.lease_seconds, now
            )
            if host is None:
                return
            self._lease_until[host] = now + self.lease_seconds
            self._lost.discard(host)
            tasks = await db.off_loop(db.pending, self.run_id, host)
            if not tasks:
                await db.off_loop(db.release_host, self.run_id, host, self.owner)
                continue
            # A host counts for at most HOST_SHARE of the worker's requests in flight, so a
            # worker spreads them over several hosts: its connections stay warm (one host at a
            # time at a high limit would reopen them all at every host) and a slow host does
            # not hold the whole worker.
            self._held[host] = min(self._host_limit(host), len(tasks), HOST_SHARE)
            work = asyncio.create_task(self._work_host(tasks, fetcher))
            active[work] = host

    async def _pace_for(self, host: str) -> PaceController:
        s = self.settings
        rule = host_rule(s.hosts, host.rsplit(":", 1)[0]) if s.hosts else None
        floor = rule.interval if rule is not None and rule.interval is not None else 0.0
        known = await self.store.off_loop(self.store.host_paces, [host])
        start = known.get(host) or Pace(START_LIMIT, s.host_interval)
        return PaceController(
            self._host_limit(host), start=start, min_interval=floor, clock=self.monotonic
        )

    def _holds(self, url: str) -> bool:
        """The Fetcher's question at a 429 (within the cap): does the whole host wait its
        Retry-After, or only the URL (crawler/pace.py: PaceController.rate_limited)?"""
        slot = _SLOT.get()
        return slot is None or slot.host.pace.rate_limited(url)

    async def _retry_sleep(self, seconds: float) -> None:
        """The Fetcher's wait between retries: the URL's pace slot is given back meanwhile.

        Not while its host is held by a Retry-After: the Fetcher waits a hold in the host's
        turn (HostGate), and a request in it that then waited for a place again could wait
        for requests that wait for its turn."""
        slot = _SLOT.get()
        fetcher = self._fetcher
        held = fetcher is not None and slot is not None and fetcher.quiet_until(slot.host.name)
        if slot is None or held or seconds < HELD_MARGIN:
            await self.sleep(seconds)
            return
        await slot.give_back()
        await self.sleep(seconds)
        await slot.take()

    async def _work_host(self, tasks: list[UrlTask], fetcher: fetch.Fetcher) -> None:
        """Check a host's URLs at its learned pace: each URL starts when the pace lets one more
        request be in flight; a URL answered by a verification page goes back to the front of
        the queue after a cool-down, and is judged blocked only if it stays so."""
        host = tasks[0].host
        db = self.store
        states = await db.off_loop(db.states, [t.url for t in tasks]) if self.history else {}
        accept = accept_for(self.settings, tasks[0].url)
        paced = _PacedHost(host, await self._pace_for(host), self.monotonic, self.sleep)
        wire = self._wire
        todo = list(reversed(tasks))  # popped from the end
        cooling: list[tuple[float, int, UrlTask]] = []  # heap of (ready at, order, task)
        order = itertools.count()
        tries: dict[str, int] = {}
        running: set[asyncio.Task[None]] = set()
        paced.left = lambda: len(todo) + len(cooling) + len(running)

        async def check(task: UrlTask, slot: _Slot) -> None:
            _SLOT.set(slot)
            try:
                result = await fetcher.fetch(task.fetch_url or task.url)
            finally:
                await slot.give_back()  # before reading the page: the request is over
            meta = read_page(result, self.history, self.anchors_for)
            outcome = pace_outcome(result, meta)
            if outcome is Outcome.SLOW_DOWN and _blocked_before(states.get(task.url), result, meta):
                outcome = Outcome.NEUTRAL  # its own page again: no news about the pace
            blame = paced.pace.record(outcome, slot.started, slot.inflight, task.url)
            if outcome is not Outcome.CLEAN:
                log.debug(
                    "pace %s: %s (%s) %s at %d in flight -> %s",
                    host,
                    outcome.value,
                    blame and blame.value,
                    task.url,
                    slot.inflight,
                    paced.pace.pace(),
                )
            if reads_as_anti_robot(result, meta):
                paced.verification_pages += 1
                n = tries.get(task.url, 0)
                if n < COOL_DOWN_TRIES and (n == 0 or blame is Blame.PACE):
                    tries[task.url] = n + 1
                    ready = self.monotonic() + self.cool_down * (n + 1)
                    heapq.heappush(cooling, (ready, next(order), task))
                    return
            await self._finished(
                judge(
                    task,
                    result,
                    meta,
                    states.get(task.url),
                    accept=accept,
                    now=self.clock(),
                    history=self.history,
                    confirm=self.confirm,
                )
            )

        lost = False  # the lease went to another worker
        try:
            # Stopped, out of time or lost: claims nothing more, the requests in flight finish;
            # the host goes back with what is left.
            while (todo or cooling or running) and not ((self._no_more() or lost) and not running):
                now = self.monotonic()
                while cooling and cooling[0][0] <= now:
                    todo.append(heapq.heappop(cooling)[2])  # asked again first
                if todo and not self._no_more() and not lost:
                    slot = _Slot(paced, wire)
                    await slot.take()
                    if self._no_more():  # stopped, or the budget ran out, while it waited
                        await slot.give_back()
                        continue
                    if not await self._lease_holds(host):
                        # Another worker has the host now: what is left is its, and what is
                        # in flight here is written by the first of the two to finish it.
                        lost = True
                        await slot.give_back()
                        continue
                    t = asyncio.create_task(check(todo.pop(), slot))
                    running.add(t)
                elif running:
                    wait = cooling[0][0] - now if cooling else None
                    await asyncio.wait(running, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                elif cooling:
                    await self.sleep(cooling[0][0] - now)
                for t in [t for t in running if t.done()]:
                    running.discard(t)
                    t.result()  # a bug in the worker surfaces here
        finally:
            for t in running:
                t.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        if lost:
            return  # the pace the host ends at is its new holder's to keep
        # where the next run starts
        await db.off_loop(
            db.save_pace, host, paced.pace.pace(), self.clock(), paced.verification_pages
        )

    def _no_more(self) -> bool:
        """Whether no URL is to be started any more: stopping, or out of time."""
        return self._stopping or self.out_of_time()

    def out_of_time(self) -> bool:
        """Whether the run's budget is spent (on the worker's clock)."""
        return self.deadline is not None and self.clock() >= self.deadline

    async def _finished(self, item: Finished) -> None:
        self._queue.append(item)
        self._queued_checks += len(item.checks)
        if self.progress is not None:
            self.progress(len(item.checks))
        if self._queued_checks >= BATCH:
            await self.flush()

    def _take(self) -> list[Finished]:
        items, self._queue = self._queue, []
        self._queued_checks = 0
        return items

    def _write(self, items: list[Finished]) -> None:
        if items:
            self.store.write_finished(self.run_id, items)

    async def flush(self) -> None:
        """Write the finished URLs, after any write already going (one at a time: when a
        flush returns, every check finished before it is written)."""
        async with self._writing:
            items = self._take()
            if items:
                await self.store.off_loop(self.store.write_finished, self.run_id, items)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            await self._renew()

    async def _renew(self, asked: float | None = None) -> None:
        """Renew every lease this worker holds (unless a renewal started after `asked`). A
        host missing from the renewed ones is lost: its lease expired (the worker stalled
        longer than a lease: a stopped process, a suspended machine) and another worker
        took it."""
        async with self._renewing:
            if asked is not None and self._renewed_at >= asked:
                return
            held = dict(self._lease_until)  # leases taken before this renewal
            now = self._renewed_at = time.time()
            kept = await self.store.off_loop(
                self.store.renew_leases, self.owner, self.lease_seconds, now
            )
            for host, until in held.items():
                if self._lease_until.get(host) != until:
                    continue  # given back meanwhile (and perhaps leased again)
                if (self.run_id, host) in kept:
                    self._lease_until[host] = now + self.lease_seconds
                else:
                    log.warning(
                        "lost the lease on %s to another worker (this one stalled for "
                        "longer than the lease); its URLs are left to that worker",
                        host,
                    )
                    del self._lease_until[host]
                    self._lost.add(host)

    async def _lease_holds(self, host: str) -> bool:
        """Whether a request on host may start: its lease has a third of its length left on
        this worker's clock (a renewal is due every third), or a renewal now keeps it. After
        a stall, the worker so asks before it starts anything on a host another worker may
        have taken."""
        asked = time.time()
        if host not in self._lost and asked < self._lease_until.get(host, 0.0) - (
            self.lease_seconds / 3
        ):
            return True
        if host not in self._lost:
            await self._renew(asked)
        return host not in self._lost


# ----------------------------------------------------------------------------- worker count

#: Fewer distinct URLs than this are checked in-process: starting processes costs more.
MIN_URLS = 1000
#: At most this many worker processes, whatever the core count.
MAX_WORKERS = 8


def plan_workers(requested: int | None, urls: int, hosts: int, max_concurrency: int) -> int:
    """How many worker processes a run gets; 1 means in-process, 0 none (other processes').

    `requested` None is automatic: one per usable core for lists of MIN_URLS distinct URLs or
    more. Never more workers than hosts, than requests allowed in flight, or MAX_WORKERS.
    """
    from crawler.config import usable_cpus

    if requested == 0:
        return 0
    if hosts < 2 or max_concurrency < 2:
        return 1
    if requested is None:
        if urls < MIN_URLS:
            return 1
        requested = usable_cpus()
    return max(1, min(requested, hosts, max_concurrency, MAX_WORKERS))


# ------------------------------------------------------------- settings for worker processes


def settings_to_json(settings: FetchSettings) -> dict[str, Any]:
    """FetchSettings as JSON (for a worker process; host rules hold secrets: never stored)."""
    out: dict[str, Any] = {}
    for f in fields(FetchSettings):
        value = getattr(settings, f.name)
        if f.name == "hosts":
            value = {
                name: {
                    "headers": dict(r.headers),
                    "cookies": dict(r.cookies),
                    "user_agent": r.user_agent,
                    "concurrency": r.concurrency,
                    "interval": r.interval,
                    "accept": sorted(r.accept),
                }
                for name, r in value.items()
            }
        elif isinstance(value, frozenset):
            value = sorted(value)
        out[f.name] = value
    return out


def settings_from_json(data: Mapping[str, Any]) -> FetchSettings:
    """The inverse of settings_to_json."""
    kw: dict[str, Any] = dict(data)
    kw["accept"] = frozenset(kw.get("accept", ()))
    kw["hosts"] = {
        name: HostRule(
            headers=r["headers"],
            cookies=r["cookies"],
            user_agent=r["user_agent"],
            concurrency=r["concurrency"],
            interval=r["interval"],
            accept=frozenset(r["accept"]),
        )
        for name, r in kw.get("hosts", {}).items()
    }
    names = {f.name for f in fields(FetchSettings)}
    return FetchSettings(**{k: v for k, v in kw.items() if k in names})


def chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
