"""Fetch stage: URL → FetchResult, politely, with redirects recorded and retries.

httpx exceptions are caught here and nowhere else, through one table (`ERROR_TABLE`); a URL that
fails becomes a FetchResult with an ErrorKind, never an exception.
"""

from __future__ import annotations

import asyncio
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
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self, TypeVar

import httpx

from crawler.config import RETRY_STATUSES, FetchSettings, HostRule, host_rule
from crawler.errors import ConfigError
from crawler.types import NETWORK_ERRORS, ErrorKind, FetchResult, FieldReplacer, Hop

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

#: Origins whose request headers are kept prepared (past this the cache starts afresh).
PREPARED_MAX = 4096

#: The body of every GET: none (what httpx.Request makes of no content).
_NO_BODY = httpx.ByteStream(b"")

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
        self._transports: dict[
            tuple[str, str, int | None, bool], httpx.AsyncBaseTransport | None
        ] = {}
        # httpx's own stack, for the retries of a protocol failure on aiohttp's (which refuses
        # some answers h11 reads, such as a body longer than its Content-Length).
        self._alt_client: httpx.AsyncClient | None = None
        self._alt_possible = client is None and settings.transport == "aiohttp"
        self._extensions: dict[str, object] = {}
        # Request headers with Host, per origin (see _prepared_headers)
        self._base_raw: list[tuple[bytes, bytes]] = []
        self._with_host: dict[bytes, httpx.Headers] = {}
        # Tasks in progress in fetch_all: enough for every host to have work queued behind its
        # limits, few enough that memory does not grow with the length of the list.
        self._window = max(WINDOW_MIN, WINDOW_PER_SLOT * settings.max_concurrency)
        self._moment_at: tuple[float, datetime] | None = None

    async def __aenter__(self) -> Self:
        if self._client is None:
            self._client = make_client(self.settings, forbidden=self._forbidden)
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
        started = time.monotonic()
        fetched_at = self._moment(started)
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
                    r = _RETRY_AT.replace(r, pause.retry_at, pause.detail(self._cap))
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
        return _FINISHED.replace(result, attempts, int(spent * 1000), fetched_at)

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

    def _moment(self, tick: float) -> datetime:
        """The wall clock, read at most once per 10 ms: fetches started together share one
        datetime (a run of 100,000 links keeps fewer objects)."""
        if self._moment_at is None or tick - self._moment_at[0] >= 0.01:
            self._moment_at = (tick, datetime.now(UTC))
        return self._moment_at[1]

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
        """GET one URL, streaming at most max_body bytes of a text body.

        The request goes straight to the client's transport for the URL (its proxy mount or
        the default pool), with the client's headers, timeouts and cookies: the same request
        `client.stream()` sends, without the per-request cost of the client's send machinery.
        """
        client = self._client
        assert client is not None
        rule = self._rule(url.host)
        if rule is not None and (rule.headers or rule.user_agent):
            # A host's own headers are computed for each request, redirects included, so they
            # never reach another host.
            req_headers = httpx.Headers(client.headers)
            if secrets:
                req_headers.update(rule.headers)
            if rule.user_agent:
                req_headers["User-Agent"] = rule.user_agent
            request = httpx.Request("GET", url, headers=req_headers, extensions=self._extensions)
        else:
            # The request httpx.Request("GET", url, headers=client.headers) makes, from headers
            # prepared once per origin: no body to encode, no Host to add.
            request = httpx.Request(
                "GET",
                url,
                headers=self._prepared_headers(client.headers, url.netloc),
                stream=_NO_BODY,
                extensions=self._extensions,
            )
            request.read()
        if client.cookies:
            client.cookies.set_cookie_header(request)
        if rule is not None and rule.cookies and secrets:
            own = "; ".join(f"{k}={v}" for k, v in rule.cookies.items())
            jar = request.headers.get("Cookie")
            request.headers["Cookie"] = f"{jar}; {own}" if jar else own
        if alt:
            if self._alt_client is None:
                self._alt_client = make_client(
                    dataclasses.replace(self.settings, transport="httpx")
                )
            sender = self._alt_client
        else:
            sender = client
        transport = self._transport_for(request.url, sender)
        if transport is None:
            response = await sender.send(request, stream=True)
        else:
            response = await transport.handle_async_request(request)
        try:
            headers, cookies, coding = _read_headers(response.headers.raw)
            if cookies:
                client.cookies.extract_cookies(response)
            status = response.status_code
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
            # Raw bytes, decoded here: httpx's decoders inflate a whole network chunk at once
            # (64 KB of a gzip bomb is 64 MB); this one stops at the cap.
            inflater = _inflater_for(coding)
            # The stream itself, as Response.aiter_raw() reads it (without its per-chunk
            # wrappers); the response is closed below either way.
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            async for chunk in stream:
                if inflater is not None:
                    chunk = inflater.decode(chunk, cap - size)
                chunks.append(chunk)
                size += len(chunk)
                if size >= cap:
                    truncated = True
                    break
            body = chunks[0] if len(chunks) == 1 and size < cap else b"".join(chunks)[:cap]
            return status, headers, body, truncated, None
        finally:
            await response.aclose()

    def _prepared_headers(self, base: httpx.Headers, netloc: bytes) -> httpx.Headers:
        """`base` with the Host header for `netloc` first, as httpx.Request adds it; cached
        per origin while the client's headers stay the same."""
        raw = base.raw
        if raw != self._base_raw:
            self._base_raw = raw
            self._with_host.clear()
        headers = self._with_host.get(netloc)
        if headers is None:
            if len(self._with_host) >= PREPARED_MAX:
                self._with_host.clear()
            has_host = any(k.lower() == b"host" for k, _ in raw)
            headers = httpx.Headers(raw if has_host else [(b"Host", netloc), *raw])
            self._with_host[netloc] = headers
        return headers

    def _transport_for(
        self, url: httpx.URL, client: httpx.AsyncClient
    ) -> httpx.AsyncBaseTransport | None:
        """The client's transport for `url` (proxy mounts honoured), cached per origin.

        None when the client does not expose the choice: the request then goes through
        `client.send`.
        """
        key = (url.scheme, url.host, url.port, client is self._alt_client)
        try:
            return self._transports[key]
        except KeyError:
            pick = getattr(client, "_transport_for_url", None)
            transport = pick(url) if callable(pick) else None
            if not isinstance(transport, httpx.AsyncBaseTransport):
                transport = None
            self._transports[key] = transport
            return transport


_KEPT = frozenset(KEPT_HEADERS)


def _read_headers(raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], bool, str | None]:
    """The kept headers (repeated ones joined with ", ", as httpx does), whether any cookie
    was set, and the content coding: one pass over the raw list instead of a lookup each."""
    kept: dict[str, str] = {}
    cookies = False
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
        elif name == "set-cookie":
            cookies = True
    return kept, cookies, coding


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
        "Accept-Encoding": ACCEPT_ENCODING,
        **settings.headers,  # --header: every host (a host's own [hosts] headers win)
    }
    cookies = load_cookie_jar(settings.cookie_jar) if settings.cookie_jar else None
    # trust_env=True: HTTP(S)_PROXY, NO_PROXY and SSL_CERT_FILE work as they do for curl.
    client_class: type[httpx.AsyncClient] = httpx.AsyncClient
    transport: httpx.AsyncBaseTransport | None = None
    if settings.transport == "aiohttp":
        try:
            from crawler.transport import AiohttpClient
        except ImportError:
            log.warning("aiohttp is not installed: using httpx's own transport")
        else:
            client_class = AiohttpClient
            if settings.no_private:
                transport = _guarded_aiohttp_transport(limits, forbidden or forbidden_address)
    return client_class(
        timeout=timeout,
        limits=limits,
        headers=headers,
        cookies=cookies,
        trust_env=True,
        follow_redirects=False,
        transport=transport,
    )


def _guarded_aiohttp_transport(
    limits: httpx.Limits, forbidden: Callable[[IPAddress], str | None]
) -> httpx.AsyncBaseTransport:
    """The aiohttp transport with a resolver that refuses forbidden addresses.

    (Proxy mounts keep their own transports: the proxy is the user's, and is not checked.)
    """
    import aiohttp

    from crawler.transport import AiohttpTransport

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

    # trust_env: SSL_CERT_FILE and SSL_CERT_DIR, as for the client's own transport
    return AiohttpTransport(trust_env=True, limits=limits, resolver=GuardedResolver)


def load_cookie_jar(path: str) -> httpx.Cookies:
    """Cookies from a Netscape cookies.txt; each is sent only to its own domain and path."""
    import http.cookiejar

    jar = http.cookiejar.MozillaCookieJar(path)
    try:
        jar.load(ignore_discard=True, ignore_expires=False)
    except (OSError, http.cookiejar.LoadError) as exc:
        raise ConfigError(f"{path}: cannot read the cookie jar: {exc}") from None
    return httpx.Cookies(jar)


_BODY = FieldReplacer(FetchResult, "body")


#: dataclasses.replace(r, attempts=…, elapsed_ms=…, fetched_at=…) for every fetched URL.
_FINISHED = FieldReplacer(FetchResult, "attempts", "elapsed_ms", "fetched_at")
_RETRY_AT = FieldReplacer(FetchResult, "retry_at", "error_detail")


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
            yield (_BODY.replace(result, None) if result.body is not None else result), meta
