"""Politeness: one host at a time, within its limits.

Requests are keyed by host (`host_key`); each host has a gate (`HostGate`: requests in flight,
the interval between starts, and a pause when the host asked for one longer than we wait);
`interleave_by_host` takes the hosts in turn; `NetworkWatch` stops asking at all when no host
answers (the network is down).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from crawler.types import NETWORK_ERRORS, FetchResult

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

_SIMPLE_ORIGIN = re.compile(r"(https?)://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?(?=[/?#]|$)")
DEFAULT_PORTS = {"http": 80, "https": 443}


def host_key(url: str) -> str:
    """The politeness key of a URL: its lower-cased host (port included when not default)."""
    m = _SIMPLE_ORIGIN.match(url)
    if m is not None and not m.group(2).startswith(".") and "xn--" not in url[: m.end()].lower():
        # Plain ASCII origin: what httpx.URL would say, without parsing the whole URL.
        host, port = m.group(2).lower(), m.group(3)
        if port is None or int(port) == DEFAULT_PORTS[m.group(1)]:
            return host
        return f"{host}:{int(port)}"
    import httpx  # here: a parent that only plans a run keys its hosts without it

    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return ""
    return url_host_key(u)


def url_host_key(u: httpx.URL) -> str:
    """host_key of a parsed URL."""
    host = u.host.lower()
    return f"{host}:{u.port}" if u.port else host


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
    """A host that answered 429 (or 503) with a Retry-After longer than we wait: left alone
    until then."""

    until: float  # on the gate's clock
    retry_at: datetime  # the same moment on the wall clock, for people
    asked: float  # the Retry-After, seconds
    status: int = 429  # the answer that asked

    def detail(self, cap: float) -> str:
        """What the report says about every URL of the host, the one that asked included."""
        what = "rate-limited (429)" if self.status == 429 else f"unavailable ({self.status})"
        return (
            f"{what}: the server asked for a pause of {self.asked:.0f} s, longer than "
            f"the {cap:g} s we wait; come back after {self.retry_at:%Y-%m-%d %H:%M:%S} UTC"
        )


class HostGate:
    """At most `limit` requests in flight to one host, and starts at least `interval` s apart.

    A host that asked for a pause we wait (a 429's Retry-After within the cap: `hold`) starts
    nothing until then, whichever URL is next. A host that asked for longer (`pause_for`) lets
    its waiting URLs through without the interval: they are not requested (Fetcher.fetch
    checks `paused()`).
    """

    def __init__(
        self,
        limit: int,
        interval: float,
        clock: Callable[[], float],
        idle: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sem = asyncio.Semaphore(max(1, limit))
        self._lock = asyncio.Lock()
        self._interval = interval
        self._clock = clock
        self._idle = idle  # True when no request will be made (the network is down)
        self._sleep = sleep  # for holds (the interval is waited in real time)
        self._next_start = 0.0
        self._held: tuple[float, str] | None = None  # until (gate clock), the URL that asked
        self.pause: HostPause | None = None

    def hold(self, seconds: float, asked_by: str) -> None:
        """Start no request for `seconds` (a Retry-After within the cap). The URL whose answer
        asked waits it in its retry policy instead (it is not held twice)."""
        until = self._clock() + seconds
        if self._held is None or until > self._held[0]:
            self._held = (until, asked_by)

    def quiet_until(self) -> float | None:
        """Until when (gate clock) the host asked to be left alone, held or paused; None when
        it did not, or no longer does."""
        p = self.paused()
        if p is not None:
            return p.until
        if self._held is not None and self._held[0] > self._clock():
            return self._held[0]
        return None

    def turn(self, url: str) -> _Turn:
        """`async with gate.turn(url):` the host's turn for a request to `url`."""
        return _Turn(self, url)

    def paused(self) -> HostPause | None:
        """The host's pause while it lasts, else None."""
        p = self.pause
        if p is not None and self._clock() >= p.until:
            self.pause = p = None
        return p

    def pause_for(self, seconds: float, now: datetime, status: int = 429) -> HostPause:
        """Leave the host alone for `seconds` (its Retry-After), from `now` on the wall clock."""
        try:
            retry_at = now + timedelta(seconds=seconds)
        except OverflowError:  # "Retry-After: 1e999" or the year 9999
            retry_at = datetime.max.replace(tzinfo=UTC)
        self.pause = HostPause(self._clock() + seconds, retry_at, seconds, status)
        return self.pause

    async def _enter(self, url: str) -> None:
        await self._sem.acquire()
        try:
            if self.paused() is None and not self._idle():
                held = self._held
                if held is not None and held[1] != url:
                    wait = held[0] - self._clock()
                    if wait > 0:
                        await self._sleep(wait)
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

    def _leave(self) -> None:
        self._sem.release()


class _Turn:
    """A host's turn for one URL (HostGate.turn)."""

    __slots__ = ("_gate", "_url")

    def __init__(self, gate: HostGate, url: str) -> None:
        self._gate = gate
        self._url = url

    async def __aenter__(self) -> None:
        await self._gate._enter(self._url)  # noqa: SLF001 - the gate's own helper

    async def __aexit__(self, *exc: object) -> None:
        self._gate._leave()  # noqa: SLF001
