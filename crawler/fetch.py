"""Fetch stage: URL → FetchResult, politely, with redirects recorded and retries.

httpx exceptions are caught here and nowhere else, through one table (`ERROR_TABLE`); a URL that
fails becomes a FetchResult with an ErrorKind, never an exception.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email.utils
import ipaddress
import itertools
import logging
import math
import re
import socket
import ssl
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import httpx

from crawler.config import RETRY_STATUSES, FetchSettings, HostRule, host_rule
from crawler.errors import ConfigError
from crawler.types import NETWORK_ERRORS, ErrorKind, FetchResult, Hop

if TYPE_CHECKING:
    from tenacity import RetryCallState

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

#: The content codings asked for: only those decoded here with a bound on the decoded size (a
#: gzip bomb stops at max_body). Any other coding a server sends anyway is read as it is.
ACCEPT_ENCODING = "gzip, deflate"

#: How long a host's resolved addresses stay judged under --no-private, seconds.
ADDRESS_TTL = 30.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud metadata services: AWS, GCP, Azure, OpenStack; AWS over IPv6; Alibaba; AWS ECS tasks.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def forbidden_address(ip: IPAddress) -> str | None:
    """What makes `ip` off limits under --no-private, or None for a public address.

    Loopback, private (RFC 1918, fc00::/7), shared (100.64/10), link-local (169.254/16,
    fe80::/10), cloud metadata, unspecified, multicast, reserved and documentation ranges: every
    address that is not globally routable unicast. An IPv4 address inside IPv6 (mapped,
    compatible, 6to4, Teredo, NAT64) is judged by the IPv4 address too.
    """
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(ip, ipaddress.IPv6Address):
        inner: list[ipaddress.IPv4Address] = []
        if ip.ipv4_mapped is not None:
            inner.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            inner.append(ip.sixtofour)
        if ip.teredo is not None:
            inner.extend(ip.teredo)
        if any(ip in net for net in _NAT64) or 1 < int(ip) < 1 << 32:
            inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        for v4 in inner:
            why = forbidden_address(v4)
            if why is not None:
                return why
    for label, hit in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
    ):
        if hit:
            return label
    if not ip.is_global:
        return "non-public"
    return None


_IPV4_LIKE = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?$")


def private_url(url: str) -> str | None:
    """Why --no-private excludes `url` by its own address, else None (no name is resolved).

    As lychee's --exclude-private: the URL's host is `localhost` (or a name under it, RFC 6761)
    or an IP address --no-private refuses, in any spelling a URL parser reads as one
    (`127.1`, `2130706433`, `0x7f000001`, `[::ffff:127.0.0.1]`). A name that resolves to such an
    address is refused when it is fetched instead (Fetcher, at every hop).
    """
    try:
        host = httpx.URL(url).host.lower().rstrip(".")
    except (httpx.InvalidURL, ValueError, TypeError):
        return None
    if not host:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is a loopback name"
    ip: IPAddress
    if ":" in host:
        try:
            ip = ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            return None
    elif _IPV4_LIKE.match(host):
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    else:
        return None
    label = forbidden_address(ip)
    if label is None:
        return None
    return f"{host} is {'an' if label[0] in 'aeiou' else 'a'} {label} address"


class ForbiddenAddress(Exception):
    """A host resolved to an address --no-private refuses."""


class _Redirect(Exception):
    """A redirect, raised by the fetcher's response hook before httpx reads its Location.

    The fetcher follows redirects itself, hop by hop, and judges each Location (a bad one is a
    `bad-redirect`); httpx's client would parse it first and raise, with the answer lost.
    """

    def __init__(self, status: int, headers: dict[str, str], location: str) -> None:
        super().__init__(status, location)
        self.status = status
        self.headers = headers
        self.location = location


async def _stop_at_redirect(response: httpx.Response) -> None:
    """Response hook: raise _Redirect for an answer that redirects."""
    if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
        headers, _ = _read_headers(response.headers.raw)
        raise _Redirect(response.status_code, headers, headers["location"])


#: Under the aiohttp transport an httpx exception is caused by an aiohttp one, which says more
#: (crawler.transport keeps httpx-aiohttp's table, which maps a dropped connection to
#: ConnectTimeout, for instance). By class name,
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


def _port(u: httpx.URL) -> int:
    return u.port or _DEFAULT_PORTS.get(u.scheme, 80)


def _url_host_key(u: httpx.URL) -> str:
    host = u.host.lower()
    return f"{host}:{u.port}" if u.port else host


#: Distinct hosts that must fail at the network level, with no answer from any host, before new
#: requests wait to see whether the network is down (NetworkWatch).
NETWORK_DOWN_HOSTS = 3


class NetworkWatch:
    """Tells a dead network early, without waiting out every host's politeness schedule.

    Once requests to NETWORK_DOWN_HOSTS distinct hosts have failed at the network level and no
    host has answered, new requests wait for those in flight: if one of them answers, all go on
    (and the watch never stops anything again); if none does, the network is down and no further
    request is made. A few dead host names at the start of a list only hold the others for as
    long as the requests already in flight take.
    """

    def __init__(self, hosts: int = NETWORK_DOWN_HOSTS) -> None:
        self.hosts = hosts
        self.answered = False
        self.down = False
        self.failed: set[str] = set()  # hosts with a network-level failure
        self.active = 0  # requests in flight
        self._event: asyncio.Event | None = None

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def before(self) -> bool:
        """Wait while the network is in doubt; True to make the request, False when it is down."""
        while True:
            if self.down:
                return False
            if self.answered or len(self.failed) < self.hosts:
                self.active += 1
                return True
            if self.active == 0:
                self.down = True
                self._wake()
                log.info("no host answered and %d failed: the network looks down", self.hosts)
                return False
            if self._event is None:
                self._event = asyncio.Event()
            await self._event.wait()

    def after(self, host: str, result: FetchResult | None) -> None:
        """Count a request that ended (None: it was cancelled)."""
        self.active -= 1
        if result is not None:
            if result.status is not None:
                self.answered = True
            elif result.error in NETWORK_ERRORS:
                self.failed.add(host)
        self._wake()

    def detail(self) -> str:
        """What the report says about a URL not requested because of it."""
        return (
            f"not requested: no host answered and {len(self.failed)} hosts failed "
            "at the network level"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class HostPause:
    """A host that answered 429 with a Retry-After longer than we wait: left alone until then."""

    until: float  # on the gate's clock
    retry_at: datetime  # the same moment on the wall clock, for people
    asked: float  # the Retry-After, seconds

    def detail(self, cap: float) -> str:
        """What the report says about every URL of the host, the one that got the 429 included."""
        return (
            f"rate-limited (429): the server asked for a pause of {self.asked:.0f} s, longer than "
            f"the {cap:g} s we wait; come back after {self.retry_at:%Y-%m-%d %H:%M:%S} UTC"
        )


class HostGate:
    """At most `limit` requests in flight to one host, and starts at least `interval` s apart.

    A host that asked for a pause (`pause`) lets its waiting URLs through without the interval:
    they are not requested (Fetcher.fetch checks `paused()`).
    """

    def __init__(
        self,
        limit: int,
        interval: float,
        clock: Callable[[], float],
        idle: Callable[[], bool] = lambda: False,
    ) -> None:
        self._sem = asyncio.Semaphore(max(1, limit))
        self._lock = asyncio.Lock()
        self._interval = interval
        self._clock = clock
        self._idle = idle  # True when no request will be made (the network is down)
        self._next_start = 0.0
        self.pause: HostPause | None = None

    def paused(self) -> HostPause | None:
        """The host's pause while it lasts, else None."""
        p = self.pause
        if p is not None and self._clock() >= p.until:
            self.pause = p = None
        return p

    def pause_for(self, seconds: float, now: datetime) -> HostPause:
        """Leave the host alone for `seconds` (its Retry-After), from `now` on the wall clock."""
        try:
            retry_at = now + timedelta(seconds=seconds)
        except OverflowError:  # "Retry-After: 1e999" or the year 9999
            retry_at = datetime.max.replace(tzinfo=UTC)
        self.pause = HostPause(self._clock() + seconds, retry_at, seconds)
        return self.pause

    async def __aenter__(self) -> None:
        await self._sem.acquire()
        try:
            if self._interval > 0 and self.paused() is None and not self._idle():
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
        forbidden: Callable[[IPAddress], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self._should_retry = should_retry
        # --no-private: which resolved addresses are refused (tests treat one loopback as public)
        self._forbidden = forbidden or forbidden_address
        self._resolved: dict[tuple[str, int], tuple[float, str | None]] = {}
        self._sleep = sleep
        self._client = client
        self._own_client = client is None
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
            self._client = make_client(self.settings, forbidden=self._forbidden)
        _hook(self._client)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None and not self._own_client:
            hooks = self._client.event_hooks
            hooks["response"] = [h for h in hooks["response"] if h is not _stop_at_redirect]
            self._client.event_hooks = hooks
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
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
                limit, interval, time.monotonic, lambda: self._watch.down
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

        `attempts` counts the requests made and `elapsed_ms` their time alone: not the waits
        for the host's turn, for a free slot or between retries.
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

        key = _url_host_key(parsed)
        gate = self._gate(key, parsed.host)
        watch = self._watch

        alt = False  # after a protocol failure on aiohttp, the retries go through httpx's own
        attempts = 0
        spent = 0.0  # seconds in requests

        async def attempt() -> FetchResult:
            nonlocal alt, attempts, spent
            if watch.down:
                return self._down_result(url)
            pause = gate.paused()
            if pause is None:
                async with gate, self._global:
                    pause = gate.paused()  # asked for while this URL waited for its turn
                    if pause is None:
                        if not await watch.before():
                            return self._down_result(url)
                        attempts += 1
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
            if r.status == 429:
                asked = parse_retry_after(r.headers.get("retry-after"))
                if asked is not None and asked > self.settings.retry_after_max:
                    # Longer than we wait: no retry, and the host's other URLs are left alone.
                    pause = gate.pause_for(asked, datetime.now(UTC))
                    r = dataclasses.replace(
                        r, retry_at=pause.retry_at, error_detail=pause.detail(self._cap)
                    )
            return r

        # The first attempt runs without tenacity: most links need no retry, and building the
        # retry machinery for each of them costs more than the request itself.
        result = await attempt()
        if self.settings.retries > 0 and self._retryable(result):
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

            # tenacity is imported here, when a link first needs a retry.
            from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt

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
        return dataclasses.replace(
            result, attempts=attempts, elapsed_ms=int(spent * 1000), fetched_at=fetched_at
        )

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

    def _paused_result(self, url: str, pause: HostPause) -> FetchResult:
        """The result of a URL not requested because its host asked for a pause."""
        return FetchResult(
            url=url,
            final_url=url,
            status=None,
            error=ErrorKind.RATE_LIMITED,
            error_detail=pause.detail(self._cap),
            retry_at=pause.retry_at,
        )

    def _retryable(self, r: FetchResult) -> bool:
        if r.retry_at is not None or self._watch.down:
            return False  # the host asked for longer than we wait; the network is down
        if r.error is not None:
            return r.error in RETRY_ERRORS
        if r.status in RETRY_STATUSES:
            return True
        return bool(self._should_retry and r.status and self._should_retry(r))

    def _wait(self, state: RetryCallState) -> float:
        """Honour Retry-After (capped: a longer one on a 429 is not retried at all, see fetch);
        otherwise exponential backoff with full jitter."""
        s = self.settings
        from tenacity import wait_random_exponential

        backoff = wait_random_exponential(multiplier=s.backoff_initial, max=s.backoff_max)(state)
        if state.outcome is not None and not state.outcome.failed:
            r = state.outcome.result()
            if isinstance(r, FetchResult):
                ra = parse_retry_after(r.headers.get("retry-after"))
                if ra is not None:
                    return min(ra, s.retry_after_max)
        return float(backoff)

    async def _attempt(self, url: str, parsed: httpx.URL, alt: bool = False) -> FetchResult:
        """One try: GET with redirects followed by hand, within the attempt deadline."""
        hops: list[Hop] = []
        current = url
        try:
            async with asyncio.timeout(self.settings.attempt_deadline):
                return await self._follow(url, parsed, hops, alt)
        except TimeoutError:
            return FetchResult(
                url=url,
                final_url=hops[-1].url if hops else current,
                status=None,
                hops=tuple(hops),
                error=ErrorKind.TIMEOUT,
                error_detail=f"no complete answer within {self.settings.attempt_deadline:g} s",
            )

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
                    await self._check_address(current_url)
                status, headers, body, truncated, location = await self._get(
                    current_url, alt, secrets
                )
            except ForbiddenAddress as exc:
                return FetchResult(
                    url=url,
                    final_url=current,
                    status=None,
                    hops=tuple(hops),
                    error=ErrorKind.PRIVATE_ADDRESS,
                    error_detail=str(exc)[:300],
                )
            except Exception as exc:  # noqa: BLE001 - every failure of a link is a value
                kind, detail = classify_exception(exc)
                if kind is ErrorKind.TIMEOUT and isinstance(exc, httpx.TimeoutException):
                    # httpcore's messages name cancel scopes; say what happened instead.
                    detail = f"{type(exc).__name__}: nothing for {s.timeout:g} s"
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
                    nxt_url = redirect_target(current_url, location)
                    nxt = str(nxt_url)
                except httpx.UnsupportedProtocol:
                    nxt, error = location.strip()[:300], ErrorKind.BAD_REDIRECT
                    detail = f"redirect to non-http URL {nxt[:100]!r}"
                except (httpx.InvalidURL, ValueError, TypeError) as exc:
                    nxt, error = current, ErrorKind.BAD_REDIRECT
                    detail = f"bad Location {location[:100]!r}: {exc}"
                else:
                    if nxt in seen:
                        error = ErrorKind.REDIRECT_LOOP
                        detail = f"redirect loop back to {nxt[:200]}"
                    elif len(hops) > s.max_redirects:
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

    async def _check_address(self, url: httpx.URL) -> None:
        """Raise ForbiddenAddress when url's host resolves to any address --no-private refuses.

        The host is resolved here, before the request; a name that resolves to several
        addresses is refused when any of them is private. A resolver failure raises as the
        transport's would (an OSError: a DNS error).
        """
        host = url.raw_host.decode("ascii", "replace")
        port = _port(url)
        key = (host.lower(), port)
        now = time.monotonic()
        hit = self._resolved.get(key)
        if hit is None or hit[0] < now:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            why: str | None = None
            for info in infos:
                addr = str(info[4][0]).split("%")[0]  # drop an IPv6 zone
                ip = ipaddress.ip_address(addr)
                label = self._forbidden(ip)
                if label is not None:
                    why = (
                        f"{addr} is a {label} address"
                        if host == addr
                        else f"{host} resolves to {addr}, a {label} address"
                    )
                    break
            hit = self._resolved[key] = (now + ADDRESS_TTL, why)
        if hit[1] is not None:
            raise ForbiddenAddress(hit[1])

    async def _get(
        self, url: httpx.URL, alt: bool = False, secrets: bool = True
    ) -> tuple[int, dict[str, str], bytes | None, bool, str | None]:
        """GET one URL, streaming at most max_body bytes of a text body."""
        client = self._client
        assert client is not None
        if alt:
            if self._alt_client is None:
                self._alt_client = make_client(
                    dataclasses.replace(self.settings, transport="httpx")
                )
                self._alt_client.cookies = client.cookies.jar  # one jar (shared) for both
                _hook(self._alt_client)
            client = self._alt_client
        rule = self._rule(url.host)
        headers: dict[str, str] | None = None
        if rule is not None and (rule.headers or rule.user_agent):
            # A host's own headers are computed for each request, redirects included, so they
            # never reach another host.
            headers = dict(rule.headers) if secrets else {}
            if rule.user_agent:
                headers["User-Agent"] = rule.user_agent
        request = client.build_request("GET", url, headers=headers)
        if rule is not None and rule.cookies and secrets:
            own = "; ".join(f"{k}={v}" for k, v in rule.cookies.items())
            jar = request.headers.get("Cookie")
            request.headers["Cookie"] = f"{jar}; {own}" if jar else own
        try:
            response = await client.send(request, stream=True)
        except _Redirect as hop:
            return hop.status, hop.headers, None, False, hop.location
        try:
            headers_kept, coding = _read_headers(response.headers.raw)
            status = response.status_code
            ctype = headers_kept.get("content-type", "").lower()
            if ctype and not any(t in ctype for t in _TEXT_TYPES):
                return status, headers_kept, None, False, None
            cap = self.settings.max_body
            chunks: list[bytes] = []
            size = 0
            truncated = False
            # Raw bytes, decoded here: httpx's decoders inflate a whole network chunk at once
            # (64 KB of a gzip bomb is 64 MB); this one stops at the cap.
            inflater = _inflater_for(coding)
            async for chunk in response.aiter_raw():
                if inflater is not None:
                    chunk = inflater.decode(chunk, cap - size)
                chunks.append(chunk)
                size += len(chunk)
                if size >= cap:
                    truncated = True
                    break
            body = b"".join(chunks)[:cap]
            return status, headers_kept, body, truncated, None
        finally:
            await response.aclose()


_KEPT = frozenset(KEPT_HEADERS)


def _hook(client: httpx.AsyncClient) -> None:
    """Make `client` stop at redirects (see _Redirect)."""
    hooks = client.event_hooks
    if _stop_at_redirect not in hooks["response"]:
        hooks["response"].append(_stop_at_redirect)
        client.event_hooks = hooks


def _read_headers(raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], str | None]:
    """The kept headers (repeated ones joined with ", ", as httpx does) and the content coding."""
    kept: dict[str, str] = {}
    coding: str | None = None
    for k, v in raw:
        name = k.decode("latin-1").lower()
        if name in _KEPT or name == "content-encoding":
            try:
                value = v.decode("utf-8")
            except UnicodeDecodeError:
                value = v.decode("latin-1")
            if name == "content-encoding":
                coding = value if coding is None else f"{coding}, {value}"
            else:
                kept[name] = f"{kept[name]}, {value}" if name in kept else value
    return kept, coding


class _Inflater:
    """gzip or deflate, decoded at most `limit` bytes at a time (a bomb never expands)."""

    def __init__(self, coding: str) -> None:
        self._deflate = coding == "deflate"
        self._fresh = True  # nothing decoded yet: deflate may still turn out to be raw
        wbits = zlib.MAX_WBITS if self._deflate else zlib.MAX_WBITS | 16
        self._z = zlib.decompressobj(wbits)

    def decode(self, data: bytes, limit: int) -> bytes:
        given = data
        out: list[bytes] = []
        room = limit
        z = self._z
        try:
            while data and room > 0 and not z.eof:
                piece = z.decompress(data, room)
                tail = z.unconsumed_tail
                if piece:
                    self._fresh = False
                    out.append(piece)
                    room -= len(piece)
                elif tail == data:
                    break
                data = tail
        except zlib.error as exc:
            if self._deflate and self._fresh:
                # "deflate" sent as a raw deflate stream, without the zlib header (as httpx does)
                self._fresh = False
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.decode(given, limit)
            coding = "deflate" if self._deflate else "gzip"
            raise httpx.DecodingError(f"bad {coding} body: {exc}") from exc
        return b"".join(out)


def _inflater_for(content_encoding: str | None) -> _Inflater | None:
    """The decoder for a Content-Encoding; None to read the bytes as they come."""
    if not content_encoding:
        return None
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return _Inflater("deflate" if codings[0] == "deflate" else "gzip")
    return None  # none, or a coding not asked for (br, zstd, chains): the bytes as they are


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


def make_client(
    settings: FetchSettings, forbidden: Callable[[IPAddress], str | None] | None = None
) -> httpx.AsyncClient:
    """An AsyncClient on the chosen transport; proxies and CA bundle come from the environment.

    With --no-private, aiohttp's resolver refuses forbidden addresses too (`forbidden`, default
    `forbidden_address`): the address it connects to is the address checked, so a name that
    resolves to a public address for the fetcher's check and to a private one a moment later
    (DNS rebinding) is refused all the same.
    """
    timeout = httpx.Timeout(settings.timeout)
    limits = httpx.Limits(
        max_connections=max(settings.max_concurrency, 1),
        max_keepalive_connections=max(settings.max_concurrency, 1),
    )
    headers = {
        "User-Agent": settings.user_agent,
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
        "Accept-Encoding": ACCEPT_ENCODING,
        **settings.headers,  # --header: every host (a host's own [hosts] headers win)
    }
    cookies = load_cookie_jar(settings.cookie_jar) if settings.cookie_jar else None
    transport: httpx.AsyncBaseTransport | None = None
    mounts: dict[str, httpx.AsyncBaseTransport | None] | None = None
    if settings.transport == "aiohttp":
        guard = (forbidden or forbidden_address) if settings.no_private else None
        transport = aiohttp_transport(limits, guard=guard)
        # httpx reads the environment's proxies only for a transport of its own making.
        mounts = environment_proxies(lambda proxy: aiohttp_transport(limits, proxy=proxy))
    # trust_env=True: HTTP(S)_PROXY, NO_PROXY and SSL_CERT_FILE work as they do for curl.
    return httpx.AsyncClient(
        timeout=timeout,
        limits=limits,
        headers=headers,
        cookies=cookies,
        trust_env=True,
        follow_redirects=False,
        transport=transport,
        mounts=mounts,
    )


def aiohttp_transport(
    limits: httpx.Limits,
    *,
    guard: Callable[[IPAddress], str | None] | None = None,
    proxy: httpx.Proxy | None = None,
) -> httpx.AsyncBaseTransport:
    """httpx-aiohttp's transport over a session made for the fetcher.

    The session keeps no cookies (httpx's jar does: a host's own cookies are sent by the fetcher
    alone) and, with `guard`, resolves through a resolver that refuses forbidden addresses.
    (A proxy is the user's own: its address is not judged.) Bodies arrive as sent: the fetcher
    inflates them with a cap.
    """
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    # trust_env: SSL_CERT_FILE and SSL_CERT_DIR, as for httpx's own transport
    ssl_context = httpx.create_ssl_context(trust_env=True)

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            ssl=ssl_context,
            limit=limits.max_connections or 100,
            keepalive_timeout=limits.keepalive_expiry,
            resolver=None if guard is None else _guarded_resolver(guard),
        )
        return aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
        )

    if proxy is None or proxy.auth is None:
        return AiohttpTransport(client=session, proxy=proxy, limits=limits)
    # Credentials go as a header of our own: httpx-aiohttp would hand them to aiohttp's
    # deprecated BasicAuth. aiohttp sends proxy headers with the CONNECT of an https URL; an http
    # URL carries them itself (_ProxyCredentials).
    token = base64.b64encode(f"{proxy.auth[0]}:{proxy.auth[1]}".encode()).decode("ascii")
    value = f"Basic {token}"
    bare = httpx.Proxy(proxy.url, headers={**proxy.headers, "Proxy-Authorization": value})
    return _ProxyCredentials(AiohttpTransport(client=session, proxy=bare, limits=limits), value)


class _ProxyCredentials(httpx.AsyncBaseTransport):
    """A proxy transport that sends Proxy-Authorization with each plain-http request."""

    def __init__(self, inner: httpx.AsyncBaseTransport, value: str) -> None:
        self._inner = inner
        self._value = value

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            request.headers["Proxy-Authorization"] = self._value
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _guarded_resolver(forbidden: Callable[[IPAddress], str | None]) -> Any:
    """A resolver that refuses a host whose addresses --no-private forbids (at connect time)."""
    import aiohttp

    class GuardedResolver(aiohttp.ThreadedResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[aiohttp.abc.ResolveResult]:
            found = await super().resolve(host, port, family)
            for r in found:
                label = forbidden(ipaddress.ip_address(r["host"].split("%")[0]))
                if label is not None:
                    raise ForbiddenAddress(
                        f"{host} resolves to {r['host']}, a {label} address (at connect time)"
                    )
            return found

    return GuardedResolver()


def environment_proxies(
    make: Callable[[httpx.Proxy], httpx.AsyncBaseTransport],
) -> dict[str, httpx.AsyncBaseTransport | None]:
    """HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY as httpx mounts, read as httpx reads them
    (a None mount goes to the client's own transport: no proxy)."""
    found = urllib.request.getproxies()
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
    for scheme in ("http", "https", "all"):
        where = found.get(scheme)
        if where:
            mounts[f"{scheme}://"] = make(
                httpx.Proxy(where if "://" in where else f"http://{where}")
            )
    if not mounts:
        return mounts
    for name in (n.strip() for n in found.get("no", "").split(",")):
        if name == "*":
            return {}
        if not name:
            continue
        # As curl reads NO_PROXY: a name covers its subdomains, an address itself only.
        if "://" in name:
            mounts[name] = None
        elif name.lower() == "localhost" or _is_ip(name.split("/")[0], 4):
            mounts[f"all://{name}"] = None
        elif _is_ip(name, 6):
            mounts[f"all://[{name}]"] = None
        else:
            mounts[f"all://*{name}"] = None
    return mounts


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def load_cookie_jar(path: str) -> httpx.Cookies:
    """Cookies from a Netscape cookies.txt; each is sent only to its own domain and path."""
    import http.cookiejar

    jar = http.cookiejar.MozillaCookieJar(path)
    try:
        jar.load(ignore_discard=True, ignore_expires=False)
    except (OSError, http.cookiejar.LoadError) as exc:
        raise ConfigError(f"{path}: cannot read the cookie jar: {exc}") from None
    return httpx.Cookies(jar)


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
