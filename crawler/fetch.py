"""Fetch stage: URL → FetchResult, politely, with redirects recorded and retries.

httpx exceptions are caught here and nowhere else, through one table (`ERROR_TABLE`); a URL that
fails becomes a FetchResult with an ErrorKind, never an exception.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

from crawler.config import RETRY_STATUSES, FetchSettings
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

#: Content types whose body is read for extraction; anything else is judged on status alone.
_TEXT_TYPES = ("text/", "application/xhtml", "application/xml", "application/json", "+xml")


def classify_exception(exc: BaseException) -> tuple[ErrorKind, str]:
    """Map an exception from the HTTP stack to (ErrorKind, one-line detail)."""
    kind = ErrorKind.CONNECT
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            kind = ERROR_TABLE[cls]
            break
    chain = _exception_chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, ssl.SSLError) for e in chain) or (
        kind is ErrorKind.CONNECT and any(h in text for h in _TLS_HINTS)
    ):
        kind = ErrorKind.TLS
    elif kind in (ErrorKind.CONNECT, ErrorKind.TIMEOUT) and any(h in text for h in _DNS_HINTS):
        kind = ErrorKind.DNS
    detail = next((str(e) for e in chain if str(e)), type(exc).__name__)
    return kind, f"{type(exc).__name__}: {detail}"[:300]


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


def host_key(url: str) -> str:
    """The politeness key of a URL: its lower-cased host (port included when not default)."""
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return ""
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

    async def __aenter__(self) -> Self:
        if self._client is None:
            self._client = make_client(self.settings)
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

    def _gate(self, url: str) -> HostGate:
        key = host_key(url)
        gate = self._gates.get(key)
        if gate is None:
            s = self.settings
            gate = self._gates[key] = HostGate(s.host_concurrency, s.host_interval, time.monotonic)
        return gate

    async def fetch_all(self, urls: Iterable[str]) -> AsyncIterator[FetchResult]:
        """Fetch every URL concurrently; yield results as they complete."""
        tasks = [asyncio.create_task(self.fetch(u)) for u in urls]
        try:
            for fut in asyncio.as_completed(tasks):
                yield await fut
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

        attempts = 0

        async def attempt() -> FetchResult:
            nonlocal attempts
            attempts += 1
            async with self._gate(url), self._global:
                return await self._attempt(url)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.retries + 1),
            retry=retry_if_result(self._retryable),
            wait=self._wait,
            sleep=self._sleep,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            reraise=True,
        )
        result: FetchResult = await retrying(attempt)
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

    async def _attempt(self, url: str) -> FetchResult:
        """One try: GET with redirects followed by hand, within the attempt deadline."""
        hops: list[Hop] = []
        current = url
        try:
            async with asyncio.timeout(self.settings.attempt_deadline):
                return await self._follow(url, hops)
        except TimeoutError:
            return FetchResult(
                url=url,
                final_url=hops[-1].url if hops else current,
                status=None,
                hops=tuple(hops),
                error=ErrorKind.TIMEOUT,
                error_detail=f"no complete answer within {self.settings.attempt_deadline:g} s",
            )

    async def _follow(self, url: str, hops: list[Hop]) -> FetchResult:
        assert self._client is not None, "Fetcher used outside 'async with'"
        s = self.settings
        current = url
        seen = {url}
        while True:
            try:
                status, headers, body, truncated, location = await self._get(current)
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
                    nxt = str(httpx.URL(current).join(location.strip()))
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
                current = nxt
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

    async def _get(self, url: str) -> tuple[int, dict[str, str], bytes | None, bool, str | None]:
        """GET one URL, streaming at most max_body bytes of a text body."""
        assert self._client is not None
        cap = self.settings.max_body
        async with self._client.stream("GET", url) as resp:
            headers = {k: resp.headers[k] for k in KEPT_HEADERS if k in resp.headers}
            location = resp.headers.get("location")
            if resp.status_code in REDIRECT_STATUSES and location is not None:
                return resp.status_code, headers, None, False, location
            ctype = resp.headers.get("content-type", "").lower()
            if ctype and not any(t in ctype for t in _TEXT_TYPES):
                return resp.status_code, headers, None, False, None
            chunks: list[bytes] = []
            size = 0
            truncated = False
            async for chunk in resp.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= cap:
                    truncated = True
                    break
            body = b"".join(chunks)[:cap]
            return resp.status_code, headers, body, truncated, None


def make_client(settings: FetchSettings) -> httpx.AsyncClient:
    """An AsyncClient on the chosen transport; proxies and CA bundle come from the environment."""
    timeout = httpx.Timeout(settings.timeout)
    limits = httpx.Limits(
        max_connections=max(settings.max_concurrency, 1),
        max_keepalive_connections=max(settings.max_concurrency, 1),
    )
    headers = {
        "User-Agent": settings.user_agent,
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
    }
    # trust_env=True: HTTP(S)_PROXY, NO_PROXY and SSL_CERT_FILE work as they do for curl.
    if settings.transport == "aiohttp":
        from httpx_aiohttp import HttpxAiohttpClient

        return HttpxAiohttpClient(
            timeout=timeout, limits=limits, headers=headers, trust_env=True, follow_redirects=False
        )
    return httpx.AsyncClient(
        timeout=timeout, limits=limits, headers=headers, trust_env=True, follow_redirects=False
    )


def _replace(r: FetchResult, **changes: object) -> FetchResult:
    import dataclasses

    return dataclasses.replace(r, **changes)  # type: ignore[arg-type]
