"""Fetch stage: URL → FetchResult, politely, with redirects recorded and retries.

httpx exceptions are caught here and nowhere else, through one table (`ERROR_TABLE`); a URL that
fails becomes a FetchResult with an ErrorKind, never an exception.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import itertools
import logging
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Generic, Self, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

from crawler.config import RETRY_STATUSES, FetchSettings, HostRule, host_rule
from crawler.errors import ConfigError
from crawler.types import ErrorKind, FetchResult, Hop

log = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: httpx exception → ErrorKind. The most specific class in the exception's MRO wins.
ERROR_TABLE: dict[type[BaseException], ErrorKind] = {
    httpx.TimeoutException: ErrorKind.TIMEOUT,
    httpx.ConnectError: ErrorKind.CONNECT,
    httpx.ProxyError: ErrorKind.PROXY,
    httpx.ReadError: ErrorKind.PROTOCOL,
    httpx.WriteError: ErrorKind.PROTOCOL,
    httpx.RemoteProtocolError: ErrorKind.PROTOCOL,
    httpx.LocalProtocolError: ErrorKind.PROTOCOL,
    httpx.DecodingError: ErrorKind.PROTOCOL,
    httpx.UnsupportedProtocol: ErrorKind.INVALID_URL,
    httpx.InvalidURL: ErrorKind.INVALID_URL,
    httpx.TransportError: ErrorKind.CONNECT,
    ssl.SSLError: ErrorKind.TLS,
    TimeoutError: ErrorKind.TIMEOUT,
    ConnectionError: ErrorKind.CONNECT,
    OSError: ErrorKind.CONNECT,
}

# Connect errors carry the resolver's or the TLS layer's message; these refine CONNECT.
_DNS_HINTS = (
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "no address associated",
    "getaddrinfo",
    "name resolution",
)
_TLS_HINTS = ("certificate", "ssl", "tls", "handshake")

#: Errors worth another attempt: the next try may well succeed.
RETRY_ERRORS = frozenset(
    {ErrorKind.TIMEOUT, ErrorKind.CONNECT, ErrorKind.PROTOCOL, ErrorKind.PROXY}
)

_HOST_RE = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})\.?)+$|^\[?[0-9A-Fa-f:.]+\]?$")

#: Response headers kept in a FetchResult.
KEPT_HEADERS = ("content-type", "content-length", "retry-after", "server", "location")

#: fetch_all keeps max(WINDOW_MIN, WINDOW_PER_SLOT * max_concurrency) fetches in progress.
WINDOW_MIN = 1024
WINDOW_PER_SLOT = 16

#: Content types whose body is read for extraction; anything else is judged on status alone.
_TEXT_TYPES = ("text/", "application/xhtml", "application/xml", "application/json", "+xml")


#: Under the aiohttp transport an httpx exception is caused by an aiohttp one, which says more
#: (httpx-aiohttp maps a dropped connection to ConnectTimeout, for instance). By class name,
#: matched along the MRO, most specific first; aiohttp is not imported for this.
AIOHTTP_ERRORS: dict[str, ErrorKind] = {
    "ClientConnectorDNSError": ErrorKind.DNS,
    "ClientConnectorCertificateError": ErrorKind.TLS,
    "ClientSSLError": ErrorKind.TLS,
    "ServerFingerprintMismatch": ErrorKind.TLS,
    "ClientProxyConnectionError": ErrorKind.PROXY,
    "ClientHttpProxyError": ErrorKind.PROXY,
    "ServerTimeoutError": ErrorKind.TIMEOUT,
    "ClientConnectorError": ErrorKind.CONNECT,
    "ServerDisconnectedError": ErrorKind.PROTOCOL,
    "ServerConnectionError": ErrorKind.PROTOCOL,
    "ClientConnectionResetError": ErrorKind.PROTOCOL,
    "ClientPayloadError": ErrorKind.PROTOCOL,
    "ClientResponseError": ErrorKind.PROTOCOL,
    "InvalidURL": ErrorKind.INVALID_URL,
    "NonHttpUrlClientError": ErrorKind.INVALID_URL,
    "ClientOSError": ErrorKind.PROTOCOL,  # after connecting: a reset, as httpx's ReadError
}


def _aiohttp_kind(chain: list[BaseException]) -> tuple[ErrorKind, BaseException] | None:
    for e in chain:
        if not type(e).__module__.startswith("aiohttp"):
            continue
        for cls in type(e).__mro__:
            kind = AIOHTTP_ERRORS.get(cls.__name__)
            if kind is not None:
                return kind, e
    return None


def classify_exception(exc: BaseException) -> tuple[ErrorKind, str]:
    """Map an exception from the HTTP stack to (ErrorKind, one-line detail)."""
    kind = ErrorKind.CONNECT
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            kind = ERROR_TABLE[cls]
            break
    chain = _exception_chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    name = type(exc).__name__
    precise = _aiohttp_kind(chain)
    if precise is not None:
        kind, cause = precise
        name = type(cause).__name__
        if any(isinstance(e, ssl.SSLError) for e in chain):
            kind = ErrorKind.TLS
        # aiohttp's connect errors always say "ssl:default" (or "ssl:None"): only DNS hints count
        elif kind is ErrorKind.CONNECT and any(h in text for h in _DNS_HINTS):
            kind = ErrorKind.DNS
    elif any(isinstance(e, ssl.SSLError) for e in chain) or (
        kind is ErrorKind.CONNECT and any(h in text for h in _TLS_HINTS)
    ):
        kind = ErrorKind.TLS
    elif kind in (ErrorKind.CONNECT, ErrorKind.TIMEOUT) and any(h in text for h in _DNS_HINTS):
        kind = ErrorKind.DNS
    detail = next((str(e) for e in chain if str(e)), name)
    return kind, f"{name}: {detail}"[:300]


def _exception_chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 8:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        now = time.time() if now is None else now
        secs = when.timestamp() - now
    if math.isnan(secs):
        return None
    return max(0.0, secs)


_SIMPLE_ORIGIN = re.compile(r"(https?)://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?(?=[/?#]|$)")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_key(url: str) -> str:
    """The politeness key of a URL: its lower-cased host (port included when not default)."""
    m = _SIMPLE_ORIGIN.match(url)
    if m is not None and not m.group(2).startswith(".") and "xn--" not in url[: m.end()].lower():
        # Plain ASCII origin: what httpx.URL would say, without parsing the whole URL.
        host, port = m.group(2).lower(), m.group(3)
        if port is None or int(port) == _DEFAULT_PORTS[m.group(1)]:
            return host
        return f"{host}:{int(port)}"
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return ""
    return _url_host_key(u)


def _url_host_key(u: httpx.URL) -> str:
    host = u.host.lower()
    return f"{host}:{u.port}" if u.port else host


class HostGate:
    """At most `limit` requests in flight to one host, and starts at least `interval` s apart."""

    def __init__(self, limit: int, interval: float, clock: Callable[[], float]) -> None:
        self._sem = asyncio.Semaphore(max(1, limit))
        self._lock = asyncio.Lock()
        self._interval = interval
        self._clock = clock
        self._next_start = 0.0

    async def __aenter__(self) -> None:
        await self._sem.acquire()
        try:
            if self._interval > 0:
                async with self._lock:
                    now = self._clock()
                    wait = self._next_start - now
                    self._next_start = max(now, self._next_start) + self._interval
                if wait > 0:
                    await asyncio.sleep(wait)
        except BaseException:
            self._sem.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._sem.release()


RetryPredicate = Callable[[FetchResult], bool]


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
    ) -> None:
        self.settings = settings
        self._should_retry = should_retry
        self._sleep = sleep
        self._client = client
        self._own_client = client is None
        self._global = asyncio.Semaphore(max(1, settings.max_concurrency))
        self._gates: dict[str, HostGate] = {}
        self._rules: dict[str, HostRule | None] = {}
        self._transports: dict[tuple[str, str, int | None], httpx.AsyncBaseTransport | None] = {}
        self._extensions: dict[str, object] = {}
        # Tasks in progress in fetch_all: enough for every host to have work queued behind its
        # limits, few enough that memory does not grow with the length of the list.
        self._window = max(WINDOW_MIN, WINDOW_PER_SLOT * settings.max_concurrency)

    async def __aenter__(self) -> Self:
        if self._client is None:
            self._client = make_client(self.settings)
        self._extensions = {"timeout": self._client.timeout.as_dict()}
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _gate(self, key: str, host: str) -> HostGate:
        gate = self._gates.get(key)
        if gate is None:
            s = self.settings
            rule = self._rule(host)
            limit = rule.concurrency if rule and rule.concurrency else s.host_concurrency
            interval = rule.interval if rule and rule.interval is not None else s.host_interval
            gate = self._gates[key] = HostGate(limit, interval, time.monotonic)
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
        """Fetch one URL with retries; never raises for a failure of the link."""
        started = time.monotonic()
        fetched_at = datetime.now(UTC)
        try:
            parsed = httpx.URL(url)
            if parsed.scheme not in ("http", "https"):
                raise httpx.UnsupportedProtocol(f"not an http(s) URL: {url[:80]}")
            if not parsed.host:
                raise httpx.InvalidURL(f"no host in URL: {url[:80]}")
            if not _HOST_RE.match(parsed.raw_host.decode("ascii", "replace")):
                raise httpx.InvalidURL(f"invalid host in URL: {url[:80]}")
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

        gate = self._gate(_url_host_key(parsed), parsed.host)

        async def attempt() -> FetchResult:
            async with gate, self._global:
                return await self._attempt(url, parsed)

        # The first attempt runs without tenacity: most links need no retry, and building the
        # retry machinery for each of them costs more than the request itself.
        result = await attempt()
        attempts = 1
        if self.settings.retries > 0 and self._retryable(result):
            first: FetchResult | None = result

            async def again() -> FetchResult:
                nonlocal first, attempts
                if first is not None:  # tenacity judges the attempt already made first
                    r, first = first, None
                    return r
                attempts += 1
                return await attempt()

            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.settings.retries + 1),
                retry=retry_if_result(self._retryable),
                wait=self._wait,
                sleep=self._sleep,
                retry_error_callback=lambda state: (
                    state.outcome.result() if state.outcome else None
                ),
                reraise=True,
            )
            result = await retrying(again)
        return _replace(
            result,
            attempts=attempts,
            elapsed_ms=int((time.monotonic() - started) * 1000),
            fetched_at=fetched_at,
        )

    def _retryable(self, r: FetchResult) -> bool:
        if r.error is not None:
            return r.error in RETRY_ERRORS
        if r.status in RETRY_STATUSES:
            return True
        return bool(self._should_retry and r.status and self._should_retry(r))

    def _wait(self, state: RetryCallState) -> float:
        """Honour Retry-After (capped); otherwise exponential backoff with full jitter."""
        s = self.settings
        backoff = wait_random_exponential(multiplier=s.backoff_initial, max=s.backoff_max)(state)
        if state.outcome is not None and not state.outcome.failed:
            r = state.outcome.result()
            if isinstance(r, FetchResult):
                ra = parse_retry_after(r.headers.get("retry-after"))
                if ra is not None:
                    return min(ra, s.retry_after_max)
        return float(backoff)

    async def _attempt(self, url: str, parsed: httpx.URL) -> FetchResult:
        """One try: GET with redirects followed by hand, within the attempt deadline."""
        hops: list[Hop] = []
        current = url
        try:
            async with asyncio.timeout(self.settings.attempt_deadline):
                return await self._follow(url, parsed, hops)
        except TimeoutError:
            return FetchResult(
                url=url,
                final_url=hops[-1].url if hops else current,
                status=None,
                hops=tuple(hops),
                error=ErrorKind.TIMEOUT,
                error_detail=f"no complete answer within {self.settings.attempt_deadline:g} s",
            )

    async def _follow(self, url: str, parsed: httpx.URL, hops: list[Hop]) -> FetchResult:
        assert self._client is not None, "Fetcher used outside 'async with'"
        s = self.settings
        current = url
        current_url = parsed
        seen = {url}
        while True:
            try:
                status, headers, body, truncated, location = await self._get(current_url)
            except Exception as exc:  # noqa: BLE001 - every failure of a link is a value
                kind, detail = classify_exception(exc)
                return FetchResult(
                    url=url,
                    final_url=current,
                    status=None,
                    hops=tuple(hops),
                    error=kind,
                    error_detail=detail,
                )
            if status in REDIRECT_STATUSES and location is not None:
                hops.append(Hop(status, current))
                error: ErrorKind | None = None
                detail = ""
                try:
                    nxt_url = current_url.join(location.strip())
                    nxt = str(nxt_url)
                except (httpx.InvalidURL, ValueError, TypeError):
                    nxt, error, detail = (
                        current,
                        ErrorKind.BAD_REDIRECT,
                        f"bad Location {location!r}",
                    )
                if error is None and not nxt.lower().startswith(("http://", "https://")):
                    error, detail = ErrorKind.BAD_REDIRECT, f"redirect to non-http URL {nxt[:100]}"
                elif error is None and nxt in seen:
                    error, detail = ErrorKind.REDIRECT_LOOP, f"redirect loop back to {nxt[:200]}"
                elif error is None and len(hops) > s.max_redirects:
                    error = ErrorKind.TOO_MANY_REDIRECTS
                    detail = f"more than {s.max_redirects} redirects"
                if error is not None:
                    return FetchResult(
                        url=url,
                        final_url=nxt,
                        status=status,
                        hops=tuple(hops),
                        headers=headers,
                        error=error,
                        error_detail=detail[:300],
                    )
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

    async def _get(
        self, url: httpx.URL
    ) -> tuple[int, dict[str, str], bytes | None, bool, str | None]:
        """GET one URL, streaming at most max_body bytes of a text body.

        The request goes straight to the client's transport for the URL (its proxy mount or
        the default pool), with the client's headers, timeouts and cookies: the same request
        `client.stream()` sends, without the per-request cost of the client's send machinery.
        """
        client = self._client
        assert client is not None
        req_headers = client.headers
        rule = self._rule(url.host)
        if rule is not None and (rule.headers or rule.user_agent):
            # A host's own headers are computed for each request, redirects included, so they
            # never reach another host.
            req_headers = httpx.Headers(req_headers)
            req_headers.update(rule.headers)
            if rule.user_agent:
                req_headers["User-Agent"] = rule.user_agent
        request = httpx.Request("GET", url, headers=req_headers, extensions=self._extensions)
        if client.cookies:
            client.cookies.set_cookie_header(request)
        if rule is not None and rule.cookies:
            own = "; ".join(f"{k}={v}" for k, v in rule.cookies.items())
            jar = request.headers.get("Cookie")
            request.headers["Cookie"] = f"{jar}; {own}" if jar else own
        transport = self._transport_for(request.url)
        if transport is None:
            response = await client.send(request, stream=True)
        else:
            response = await transport.handle_async_request(request)
        try:
            rh = response.headers
            if "set-cookie" in rh:
                client.cookies.extract_cookies(response)
            status = response.status_code
            headers = {k: rh[k] for k in KEPT_HEADERS if k in rh}
            location = headers.get("location")
            if status in REDIRECT_STATUSES and location is not None:
                return status, headers, None, False, location
            ctype = headers.get("content-type", "").lower()
            if ctype and not any(t in ctype for t in _TEXT_TYPES):
                return status, headers, None, False, None
            cap = self.settings.max_body
            chunks: list[bytes] = []
            size = 0
            truncated = False
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= cap:
                    truncated = True
                    break
            body = chunks[0] if len(chunks) == 1 and size < cap else b"".join(chunks)[:cap]
            return status, headers, body, truncated, None
        finally:
            await response.aclose()

    def _transport_for(self, url: httpx.URL) -> httpx.AsyncBaseTransport | None:
        """The client's transport for `url` (proxy mounts honoured), cached per origin.

        None when the client does not expose the choice: the request then goes through
        `client.send`.
        """
        key = (url.scheme, url.host, url.port)
        try:
            return self._transports[key]
        except KeyError:
            pick = getattr(self._client, "_transport_for_url", None)
            transport = pick(url) if callable(pick) else None
            if not isinstance(transport, httpx.AsyncBaseTransport):
                transport = None
            self._transports[key] = transport
            return transport


def interleave_by_host(urls: Iterable[str]) -> list[str]:
    """The URLs with the hosts taken in turn (each host's own order kept): a, b, c, a, b, a …"""
    by_host: dict[str, list[str]] = {}
    for url in urls:
        by_host.setdefault(host_key(url), []).append(url)
    if len(by_host) <= 1:
        return next(iter(by_host.values()), [])
    queues = [q[::-1] for q in by_host.values()]
    out: list[str] = []
    while queues:
        out.extend(q.pop() for q in queues)
        queues = [q for q in queues if q]
    return out


def make_client(settings: FetchSettings) -> httpx.AsyncClient:
    """An AsyncClient on the chosen transport; proxies and CA bundle come from the environment."""
    timeout = httpx.Timeout(settings.timeout)
    # (A larger httpcore pool churns fewer connections but costs more CPU: it scans them all for
    # each request. aiohttp's pool keeps connections per host and reuses them either way.)
    limits = httpx.Limits(
        max_connections=max(settings.max_concurrency, 1),
        max_keepalive_connections=max(settings.max_concurrency, 1),
    )
    headers = {
        "User-Agent": settings.user_agent,
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
    }
    cookies = load_cookie_jar(settings.cookie_jar) if settings.cookie_jar else None
    # trust_env=True: HTTP(S)_PROXY, NO_PROXY and SSL_CERT_FILE work as they do for curl.
    if settings.transport == "aiohttp":
        try:
            from httpx_aiohttp import HttpxAiohttpClient
        except ImportError:
            log.warning("httpx-aiohttp is not installed: using httpx's own transport")
        else:
            return HttpxAiohttpClient(
                timeout=timeout,
                limits=limits,
                headers=headers,
                cookies=cookies,
                trust_env=True,
                follow_redirects=False,
            )
    return httpx.AsyncClient(
        timeout=timeout,
        limits=limits,
        headers=headers,
        cookies=cookies,
        trust_env=True,
        follow_redirects=False,
    )


def load_cookie_jar(path: str) -> httpx.Cookies:
    """Cookies from a Netscape cookies.txt; each is sent only to its own domain and path."""
    import http.cookiejar

    jar = http.cookiejar.MozillaCookieJar(path)
    try:
        jar.load(ignore_discard=True, ignore_expires=False)
    except (OSError, http.cookiejar.LoadError) as exc:
        raise ConfigError(f"{path}: cannot read the cookie jar: {exc}") from None
    return httpx.Cookies(jar)


def _replace(r: FetchResult, **changes: object) -> FetchResult:
    return dataclasses.replace(r, **changes)  # type: ignore[arg-type]


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
            yield (_replace(result, body=None) if result.body is not None else result), meta
