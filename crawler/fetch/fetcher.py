"""The fetcher: URL → FetchResult, politely, with redirects recorded and retries.

The send path, one job a method: `fetch` (retries) → `_attempt` (the per-attempt deadline) →
`_follow` (redirects, hop by hop, and the exception table) → `_get` (one GET, its body read
with a cap). A failure of a link is a FetchResult with an ErrorKind; an exception the table
(crawler/fetch/errors.py) does not know is a bug, and propagates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self, TypeVar

import httpx

from crawler.config import FetchSettings, HostRule, host_rule
from crawler.fetch import guard
from crawler.fetch.body import is_text, read_body, read_headers
from crawler.fetch.client import (
    SENDS,
    Answer,
    Redirect,
    Sender,
    Sends,
    make_client,
    make_clients,
    stop_at_redirects,
)
from crawler.fetch.errors import classify_exception
from crawler.fetch.guard import AddressGuard, Forbidden, ForbiddenAddress
from crawler.fetch.politeness import (
    DEFAULT_PORTS,
    HostGate,
    HostPause,
    NetworkWatch,
    interleave_by_host,
    url_host_key,
)
from crawler.fetch.retry import (
    RetryPredicate,
    asks_for_pause,
    retry_after,
    retry_policy,
    retryable,
)
from crawler.sites import anti_robot_path
from crawler.types import REDIRECT_STATUSES, ErrorKind, FetchResult, Hop

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState

#: fetch_all keeps max(WINDOW_MIN, WINDOW_PER_SLOT * max_concurrency) fetches in progress.
WINDOW_MIN = 1024
WINDOW_PER_SLOT = 16

_HOST_RE = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})\.?)+$|^\[?[0-9A-Fa-f:.]+\]?$")


def check_url(u: httpx.URL, text: str) -> None:
    """Raise unless `u` is an http(s) URL with a plausible host and port."""
    if u.scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"not an http(s) URL: {text[:80]}")
    if not u.host:
        raise httpx.InvalidURL(f"no host in URL: {text[:80]}")
    if not _HOST_RE.match(u.raw_host.decode("ascii", "replace")):
        raise httpx.InvalidURL(f"invalid host in URL: {text[:80]}")
    if u.port is not None and not 0 < u.port < 65536:
        raise httpx.InvalidURL(f"port out of range in URL: {text[:80]}")


def redirect_target(base: httpx.URL, location: str) -> httpx.URL:
    """Where a Location leads from `base`; raises as check_url does for a bad target."""
    loc = location.strip()
    target = base.join(loc)
    given = httpx.URL(loc)
    if given.scheme and given.scheme in ("http", "https") and not given.host:
        # "http:///x" or "https:x": joining would borrow the base's host
        raise httpx.InvalidURL("no host")
    check_url(target, str(target))
    return target


def _failure(
    url: str,
    final_url: str,
    hops: Iterable[Hop],
    kind: ErrorKind,
    detail: str,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> FetchResult:
    """A redirect chain that ended in a failure of the link: no answer (status None), or the
    answer that could not be followed; the detail cut to 300 characters."""
    return FetchResult(
        url=url,
        final_url=final_url,
        status=status,
        hops=tuple(hops),
        headers=headers if headers is not None else {},
        error=kind,
        error_detail=detail[:300],
    )


def _port(u: httpx.URL) -> int:
    return u.port or DEFAULT_PORTS.get(u.scheme, 80)


class Fetcher:
    """Fetches URLs with global and per-host limits, redirects recorded, and tenacity retries.

    Usage::

        async with Fetcher(FetchSettings()) as f:
            async for result in f.fetch_all(urls):
                ...
    """

    def __init__(
        self,
        settings: FetchSettings,
        *,
        should_retry: RetryPredicate | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        client: httpx.AsyncClient | None = None,
        forbidden: Forbidden | None = None,
        holds: Callable[[str], bool] | None = None,
    ) -> None:
        self.settings = settings
        # Asked, with its URL, at a 429 whose Retry-After is within the cap: whether every URL
        # of its host waits it (None: always), or only the URL that got it, in its retry.
        self._holds = holds
        self._should_retry = should_retry
        # --no-private: which resolved addresses are refused (tests treat one loopback as public)
        self._forbidden = forbidden or guard.forbidden_address
        self._guard = AddressGuard(self._forbidden)
        self._sleep = sleep
        self._retrying: AsyncRetrying | None = None  # the retry policy, built at first need
        self._client = client
        self._own_client = client is None
        # The bulk path: GETs straight through the client's aiohttp session (None: through
        # the client, as with a client given or httpx's own transport).
        self._sender: Sender | None = None
        self._global = asyncio.Semaphore(max(1, settings.max_concurrency))
        #: requests on the wire now (not those waiting for their host's turn or a free slot)
        self.in_flight = 0
        self._gates: dict[str, HostGate] = {}
        self._watch = NetworkWatch()
        self._rules: dict[str, HostRule | None] = {}
        # httpx's own stack, for the retries of a protocol failure on aiohttp's (which refuses
        # some answers h11 reads, such as a body longer than its Content-Length).
        self._alt_client: httpx.AsyncClient | None = None
        self._alt_possible = client is None and settings.transport == "aiohttp"
        # Tasks in progress in fetch_all: enough for every host to have work queued behind its
        # limits, few enough that memory does not grow with the length of the list.
        self._window = max(WINDOW_MIN, WINDOW_PER_SLOT * settings.max_concurrency)

    async def __aenter__(self) -> Self:
        if self._client is None:
            self._client, self._sender = make_clients(self.settings, forbidden=self._forbidden)
        stop_at_redirects(self._client)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None and not self._own_client:
            stop_at_redirects(self._client, stop=False)
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._sender is not None:
            await self._sender.aclose()
            self._sender = None
        if self._alt_client is not None:
            await self._alt_client.aclose()
            self._alt_client = None

    def _gate(self, key: str, host: str) -> HostGate:
        gate = self._gates.get(key)
        if gate is None:
            s = self.settings
            rule = self._rule(host)
            limit = rule.concurrency if rule and rule.concurrency else s.host_concurrency
            interval = rule.interval if rule and rule.interval is not None else s.host_interval
            gate = self._gates[key] = HostGate(
                limit, interval, time.monotonic, lambda: self._watch.down, self._sleep
            )
        return gate

    def _rule(self, host: str) -> HostRule | None:
        """The configured rule for a host, looked up once per host."""
        if not self.settings.hosts:
            return None
        try:
            return self._rules[host]
        except KeyError:
            rule = self._rules[host] = host_rule(self.settings.hosts, host)
            return rule

    async def fetch_all(self, urls: Iterable[str]) -> AsyncIterator[FetchResult]:
        """Fetch every URL concurrently; yield results as they complete.

        URLs are started in an order that takes the hosts in turn, and only a window of them
        is in progress at a time (each task holds a coroutine, and a finished one its body until
        it is consumed): memory stays flat on long lists while every host has work queued.
        """
        order = iter(interleave_by_host(urls))
        done: asyncio.Queue[asyncio.Task[FetchResult]] = asyncio.Queue()
        tasks: set[asyncio.Task[FetchResult]] = set()

        def start(url: str) -> None:
            task = asyncio.create_task(self.fetch(url))
            tasks.add(task)
            task.add_done_callback(done.put_nowait)

        try:
            for url in itertools.islice(order, self._window):
                start(url)
            while tasks:
                task = await done.get()
                tasks.discard(task)
                nxt = next(order, None)
                if nxt is not None:
                    start(nxt)
                yield task.result()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def fetch(self, url: str) -> FetchResult:
        """Fetch one URL with retries; never raises for a failure of the link.

        `attempts` counts the requests made (aiohttp's resend of a dropped one included: see
        client.Sends) and `elapsed_ms` their time alone: not the waits for the host's turn, for
        a free slot or between retries.
        """
        fetched_at = datetime.now(UTC)
        try:
            parsed = httpx.URL(url)
            check_url(parsed, url)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError) as exc:
            return FetchResult(
                url=url,
                final_url=url,
                status=None,
                error=ErrorKind.INVALID_URL,
                error_detail=str(exc)[:300],
                fetched_at=fetched_at,
                attempts=0,
            )

        key = url_host_key(parsed)
        gate = self._gate(key, parsed.host)
        watch = self._watch

        alt = False  # after a protocol failure on aiohttp, the retries go through httpx's own
        sends = Sends(self.settings.retries + 1)
        spent = 0.0  # seconds in requests

        async def attempt() -> FetchResult:
            nonlocal alt, spent
            if watch.down:
                return self._down_result(url)
            pause = gate.paused()
            if pause is None:
                async with gate.turn(url), self._global:
                    pause = gate.paused()  # asked for while this URL waited for its turn
                    if pause is None:
                        if not await watch.before():
                            return self._down_result(url)
                        sends.attempt()
                        t0 = time.monotonic()
                        got: FetchResult | None = None
                        self.in_flight += 1
                        try:
                            r = got = await self._attempt(url, parsed, alt)
                        finally:
                            self.in_flight -= 1
                            watch.after(key, got)
                        spent += time.monotonic() - t0
            if pause is not None:
                return self._paused_result(url, pause)
            if r.error is ErrorKind.PROTOCOL and self._alt_possible:
                alt = True
            asked = asks_for_pause(r, self._cap)
            if asked is not None:
                # Longer than we wait: no retry, and the host's other URLs are left alone.
                pause = gate.pause_for(asked, datetime.now(UTC), r.status or 429)
                r = dataclasses.replace(
                    r, retry_at=pause.retry_at, error_detail=pause.detail(self._cap)
                )
            elif r.status == 429:
                wait = retry_after(r)
                # within the cap: the whole host waits it, unless `holds` says the URL alone does
                # (it waits in its retry either way)
                if wait is not None and (self._holds is None or self._holds(url)):
                    gate.hold(wait, url)
            return r

        counting = SENDS.set(sends)  # what client._resend_counted reads
        try:
            result = await self._retried(attempt, sends)
        finally:
            SENDS.reset(counting)
        return dataclasses.replace(
            result, attempts=sends.made, elapsed_ms=int(spent * 1000), fetched_at=fetched_at
        )

    async def _retried(
        self, attempt: Callable[[], Awaitable[FetchResult]], sends: Sends
    ) -> FetchResult:
        """The first attempt, and the retries it needs while `sends` has attempts left."""
        # The first attempt runs outside tenacity: most links need no retry.
        result = await attempt()
        if sends.left > 0 and self._retryable(result):
            first: FetchResult | None = result
            last = result

            async def again() -> FetchResult:
                nonlocal first, last
                if first is not None:  # tenacity judges the attempt already made first
                    r, first = first, None
                    return r
                r = await attempt()
                if r.error is ErrorKind.NETWORK_DOWN:
                    return last  # the failure the request met says more
                last = r
                return r

            if self._retrying is None:
                self._retrying = retry_policy(self.settings, self._retryable, self._sleep)
            retries = self.settings.retries

            def no_attempt_left(state: RetryCallState) -> bool:
                # tenacity's count, or sooner when a resend took an attempt's place
                return sends.left <= 0 or state.attempt_number > retries

            result = await self._retrying.copy(stop=no_attempt_left)(again)
        return result

    @property
    def _cap(self) -> float:
        return self.settings.retry_after_max

    def _down_result(self, url: str) -> FetchResult:
        """The result of a URL not requested because the network looks down."""
        return FetchResult(
            url=url,
            final_url=url,
            status=None,
            error=ErrorKind.NETWORK_DOWN,
            error_detail=self._watch.detail(),
        )

    def quiet_until(self, host: str) -> datetime | None:
        """Until when `host` (a host_key) asked to be left alone (a 429's or 503's Retry-After,
        held within the cap or paused beyond it), on the wall clock; None if it did not."""
        gate = self._gates.get(host)
        until = gate.quiet_until() if gate is not None else None
        if until is None:
            return None
        try:
            return datetime.now(UTC) + timedelta(seconds=until - time.monotonic())
        except OverflowError:
            return datetime.max.replace(tzinfo=UTC)

    def _paused_result(self, url: str, pause: HostPause) -> FetchResult:
        """The result of a URL not requested because its host asked for a pause."""
        return FetchResult(
            url=url,
            final_url=url,
            status=None,
            error=ErrorKind.RATE_LIMITED if pause.status == 429 else ErrorKind.UNAVAILABLE,
            error_detail=pause.detail(self._cap),
            retry_at=pause.retry_at,
        )

    def _retryable(self, r: FetchResult) -> bool:
        return not self._watch.down and retryable(r, self._should_retry)

    async def _attempt(self, url: str, parsed: httpx.URL, alt: bool = False) -> FetchResult:
        """One try: GET with redirects followed by hand, within the attempt deadline."""
        hops: list[Hop] = []
        current = url
        try:
            async with asyncio.timeout(self.settings.attempt_deadline):
                return await self._follow(url, parsed, hops, alt)
        except TimeoutError:
            detail = f"no complete answer within {self.settings.attempt_deadline:g} s"
            return _failure(url, hops[-1].url if hops else current, hops, ErrorKind.TIMEOUT, detail)

    async def _follow(
        self, url: str, parsed: httpx.URL, hops: list[Hop], alt: bool = False
    ) -> FetchResult:
        assert self._client is not None, "Fetcher used outside 'async with'"
        s = self.settings
        current = url
        current_url = parsed
        seen = {url}
        # Where each host was first met in the chain: its secrets follow a redirect only to
        # that scheme and port, or to https on 443 (never a downgrade or another port).
        origins: dict[str, tuple[str, int]] = {}
        while True:
            secrets = True
            if hops:
                if not origins:
                    origins[parsed.host] = (parsed.scheme, _port(parsed))
                where = (current_url.scheme, _port(current_url))
                first = origins.setdefault(current_url.host, where)
                secrets = where in (first, ("https", 443))
            try:
                if s.no_private:  # every hop: a public host may redirect to a private one
                    await self._guard.check(current_url)
                status, headers, body, truncated, location = await self._get(
                    current_url, alt, secrets
                )
            except ForbiddenAddress as exc:
                return _failure(url, current, hops, ErrorKind.PRIVATE_ADDRESS, str(exc))
            except Exception as exc:
                known = classify_exception(exc)
                if known is None:
                    raise  # a bug, not a failure of the link
                kind, detail = known
                if kind is ErrorKind.TIMEOUT and isinstance(exc, httpx.TimeoutException):
                    # httpcore's messages name cancel scopes; say what happened instead.
                    detail = f"{type(exc).__name__}: nothing for {s.timeout:g} s"
                return _failure(url, current, hops, kind, detail)
            if status in REDIRECT_STATUSES and location is not None:
                hops.append(Hop(status, current))
                error: ErrorKind | None = None
                detail = ""
                try:
                    nxt_url = redirect_target(current_url, location)
                    nxt = str(nxt_url)
                except httpx.UnsupportedProtocol:
                    nxt, error = location.strip()[:300], ErrorKind.BAD_REDIRECT
                    detail = f"redirect to non-http URL {nxt[:100]!r}"
                except (httpx.InvalidURL, ValueError, TypeError) as exc:
                    nxt, error = current, ErrorKind.BAD_REDIRECT
                    detail = f"bad Location {location[:100]!r}: {exc}"
                else:
                    if anti_robot_path(nxt_url.host, nxt_url.path):
                        # The site's verification page, known by its path: not asked for
                        # (classify.verification_redirect), one request fewer each time.
                        return FetchResult(
                            url=url, final_url=nxt, status=status, hops=tuple(hops), headers=headers
                        )
                    if nxt in seen:
                        error = ErrorKind.REDIRECT_LOOP
                        detail = f"redirect loop back to {nxt[:200]}"
                    elif len(hops) > s.max_redirects:
                        error = ErrorKind.TOO_MANY_REDIRECTS
                        detail = f"more than {s.max_redirects} redirects"
                if error is not None:
                    return _failure(url, nxt, hops, error, detail, status, headers)
                seen.add(nxt)
                current, current_url = nxt, nxt_url
                continue
            return FetchResult(
                url=url,
                final_url=current,
                status=status,
                hops=tuple(hops),
                headers=headers,
                body=body,
                truncated=truncated,
            )

    async def _get(self, url: httpx.URL, alt: bool = False, secrets: bool = True) -> Answer:
        """GET one URL, streaming at most max_body bytes of a text body."""
        client = self._client
        assert client is not None
        rule = self._rule(url.host)
        extra: dict[str, str] | None = None
        if rule is not None and (rule.headers or rule.user_agent):
            # A host's own headers are computed for each request, redirects included, so they
            # never reach another host.
            extra = dict(rule.headers) if secrets else {}
            if rule.user_agent:
                extra["User-Agent"] = rule.user_agent
        own: str | None = None
        if rule is not None and rule.cookies and secrets:
            own = "; ".join(f"{k}={v}" for k, v in rule.cookies.items())
        if self._sender is not None and not alt:
            return await self._sender.get(url, extra, own, self.settings.max_body)
        if alt:
            if self._alt_client is None:
                self._alt_client = make_client(
                    dataclasses.replace(self.settings, transport="httpx")
                )
                self._alt_client.cookies = client.cookies.jar  # one jar (shared) for both
                stop_at_redirects(self._alt_client)
            client = self._alt_client
        request = client.build_request("GET", url, headers=extra)
        if own:
            jar = request.headers.get("Cookie")
            request.headers["Cookie"] = f"{jar}; {own}" if jar else own
        try:
            response = await client.send(request, stream=True)
        except Redirect as hop:
            return hop.status, hop.headers, None, False, hop.location
        try:
            headers, coding = read_headers(response.headers.raw)
            if not is_text(headers.get("content-type", "")):
                return response.status_code, headers, None, False, None
            body, truncated = await read_body(response.aiter_raw(), coding, self.settings.max_body)
            return response.status_code, headers, body, truncated, None
        finally:
            await response.aclose()


# ------------------------------------------------------------------------- fetch and read once

M = TypeVar("M")


class _ReadOnce(Generic[M]):
    """Runs `extract` once per response: in the retry predicate, kept for the caller."""

    def __init__(
        self, extract: Callable[[FetchResult], M], retry_on: Callable[[FetchResult, M], bool] | None
    ) -> None:
        self.extract = extract
        self.retry_on = retry_on
        self.kept: dict[int, tuple[bytes, M]] = {}

    def should_retry(self, r: FetchResult) -> bool:
        meta = self.extract(r)
        if self.retry_on is not None and self.retry_on(r, meta):
            return True
        if r.body is not None:
            self.kept[id(r.body)] = (r.body, meta)
        return False

    def take(self, r: FetchResult) -> M:
        if r.body is not None:
            hit = self.kept.pop(id(r.body), None)
            if hit is not None and hit[0] is r.body:
                return hit[1]
        return self.extract(r)


async def fetch_pages(
    urls: Iterable[str],
    settings: FetchSettings,
    *,
    extract: Callable[[FetchResult], M],
    retry_on: Callable[[FetchResult, M], bool] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[tuple[FetchResult, M]]:
    """Fetch every URL and read each response once; yield (result without body, what was read).

    `extract(result)` reads a response (once per response, with a body or without);
    `retry_on(result, read)` asks for another attempt of a response that came back fine but
    reads badly (an anti-robot page): the retry predicate and the caller share one reading.
    Results come in order of completion; bodies are dropped once read, so memory stays flat.
    """
    once = _ReadOnce(extract, retry_on)
    async with Fetcher(settings, should_retry=once.should_retry, sleep=sleep) as fetcher:
        async for result in fetcher.fetch_all(urls):
            meta = once.take(result)
            yield (
                (dataclasses.replace(result, body=None) if result.body is not None else result),
                meta,
            )
