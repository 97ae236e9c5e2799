"""Each host's pace, learned: requests in flight and the interval between their starts.

A pure controller (no I/O, an injected clock): the engine asks it how many requests a host may
have in flight and how long to wait between starts, and tells it how each answer went.

The rule (additive increase, multiplicative decrease, as TCP does):

- start where the last run ended (`Pace`, kept on the store's `hosts`), or at START_LIMIT
  requests in flight and START_INTERVAL seconds between starts for a host never seen; the
  start is the host's proven level (`good`);
- after a run of CLEAN_RUN clean answers in a row: half the interval (an interval under
  MIN_INTERVAL becomes 0) and, if the run did fill the limit (the interval or a short queue
  may keep fewer requests in flight), the limit is proven and one more request is allowed;
- a verification page (an anti-robot page) or a 429 is read by where it came from, since
  some URLs show one at any pace:
  - above the proven level (a probe), the first: the URL's own or the probe's, which only
    asking the URL again tells; until then the level it came at is not asked again
    (`known_max` becomes one under it; a host one under its limit shows the page to one
    request in so many, which a run of clean answers would otherwise take for a proof);
  - above the proven level, the PROBE_PAGES-th from distinct URLs within the last BURST_SPAN
    answers: the pace goes back to the proven level and the lowest requests in flight that met
    one of those pages are remembered as too much (`known_max` becomes one less), so the pace
    grows back to just under it and no further: probing costs a few verification pages once,
    not at every cycle. Such URLs are asked again later; all blocked again at the proven level,
    they were the cause, and the pace is what it was before the first of them;
  - at the proven level, fewer than BURST: the URL's own, the pace holds (the URL is asked
    again later); if the URL then passes, the page was the pace's: `known_max` becomes one under
    the requests in flight it met for the rest of the run (one step down, no halving; as a probe
    that failed); the next run is told only once a second URL of the run says so, and then of
    the fewest requests in flight that two of them met (one such page, under a loaded client,
    kept WeChat a level lower for a whole next run);
  - from a URL asked again after a page: no news about the pace (such URLs come back together,
    after their cool-down); the URL's own if shown at the proven level, else asked once more;
  - at the proven level, the BURST-th from distinct URLs within the last BURST_SPAN answers
    (or twice the limit, if more): the host's limit fell; half the requests in flight (at
    least 1), twice the interval (at least BACKOFF_INTERVAL, at most MAX_INTERVAL), the most
    requests in flight that met one of those pages remembered as too much (a URL blocked at
    any pace meets its page at any count: the fewest may be its own);
- a burst of timeouts (TIMEOUT_BURST within TIMEOUT_WINDOW seconds) halves the requests in
  flight and doubles the interval likewise (a timeout says the host is slow, not where its
  limit is: `known_max` stays);
- answers to requests started before the last slowdown say nothing new (they were sent at the
  old pace) and are not counted, neither as clean nor as trouble;
- after REPROBE clean answers in a row at `known_max`, it is raised by one (the real limits
  change), so a host that got more generous is found again; each probe costs the pages of the
  requests already sent at the higher level, so each that fails doubles the wait for the next
  (at most REPROBE_GROWTH times REPROBE), one that passes resets it, and a run that starts from
  a kept `known_max` (where the last run's probes stopped) waits twice REPROBE for its first;
- a 429's Retry-After (as it comes, before its retry) is waited by the whole host when
  another URL of the host got one within the last BURST_SPAN answers (RATE_LIMITED: the host
  limits the rate), else by its URL alone (one URL's 429 among clean answers says no more
  about the pace than one verification page does);
- a ceiling is never crossed: the `concurrency` the user sets for a host, else
  `--host-concurrency`; an `interval` the user sets for a host is a floor never crossed.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from crawler.sanitize import terminal as safe

#: Requests in flight and seconds between starts for a host with no learned pace.
START_LIMIT = 2
START_INTERVAL = 0.2
#: Clean answers in a row before one more request in flight.
CLEAN_RUN = 10
#: Intervals below this are 0 (the limit in flight binds first).
MIN_INTERVAL = 0.01
#: The shortest interval after a slowdown, and the longest ever.
BACKOFF_INTERVAL = 0.05
MAX_INTERVAL = 5.0
#: This many timeouts within TIMEOUT_WINDOW seconds are a burst.
TIMEOUT_BURST = 3
TIMEOUT_WINDOW = 10.0
#: Verification pages from this many distinct URLs within the last BURST_SPAN answers (or
#: twice the limit) say the host's limit fell. One URL in fifty showing one at any pace (as
#: on WeChat) makes three within eight answers a once-a-run coincidence.
BURST = 3
BURST_SPAN = 8
#: Above the proven level, pages from this many distinct URLs within BURST_SPAN answers say
#: the probe went too far (one alone is as likely a URL shown the page at any pace).
PROBE_PAGES = 2
#: 429s from this many distinct URLs within BURST_SPAN answers: the host limits the rate, and
#: each such 429's Retry-After is waited by the whole host.
RATE_LIMITED = 2
#: Clean answers in a row at the learned maximum before it is probed one higher. Each probe
#: that fails doubles the wait for the next, up to REPROBE_GROWTH times REPROBE; one that
#: passes resets it; a run starting from a kept maximum waits twice REPROBE for its first.
REPROBE = 2000
REPROBE_GROWTH = 16


class Outcome(enum.Enum):
    """What one answer says about the pace."""

    CLEAN = "clean"  # an answer (any status but 429), not a verification page
    SLOW_DOWN = "slow-down"  # a verification page or a 429
    TIMEOUT = "timeout"  # no answer in time
    NEUTRAL = "neutral"  # says nothing about the pace (DNS failure, refused connection, ...)


class Blame(enum.Enum):
    """What a verification page or a 429 was put down to (PaceController.record)."""

    PACE = "pace"  # the requests in flight: the pace slowed down, or it came at the old pace
    URL = "url"  # the URL itself: it came at the proven level, alone; the pace held


@dataclass(frozen=True, slots=True)
class Pace:
    """A host's pace, as the store keeps it between runs."""

    limit: int  # requests in flight
    interval: float  # seconds between starts
    known_max: int | None = None  # the most in flight known to pass (None: never slowed down)


@dataclass(slots=True)
class _Slowdown:
    """A slowdown put down to verification pages, until their URLs are asked again."""

    urls: set[str]  # not yet asked again
    before: Pace  # the pace before it
    good: int  # the proven level before it
    known_max: int  # what it set


class PaceController:
    """One host's pace within a run."""

    def __init__(
        self,
        ceiling: int,
        *,
        start: Pace | None = None,
        min_interval: float = 0.0,
        clock: Callable[[], float],
        clean_run: int = CLEAN_RUN,
        reprobe: int = REPROBE,
    ) -> None:
        self.ceiling = max(1, ceiling)
        self.min_interval = max(0.0, min_interval)
        self._clock = clock
        self._clean_run = max(1, clean_run)
        self._reprobe = max(1, reprobe)
        if start is None:
            start = Pace(START_LIMIT, START_INTERVAL)
        # clean answers at known_max before the next probe (a kept maximum: one probe failed)
        self._reprobe_wait = self._reprobe * (1 if start.known_max is None else 2)
        self._probe: int | None = None  # the level a reprobe raised known_max to, until told
        self.known_max = start.known_max
        self._kept_max = start.known_max  # known_max but for a reprobe not yet proven
        self.limit = self._clamp(start.limit)
        self.good = self.limit  # the most in flight proven to pass in this run
        self.interval = self._clamp_interval(start.interval)
        self._clean = 0  # clean answers in a row
        self._filled = 0  # the most in flight during that run of clean answers
        self._at_max = 0  # clean answers in a row while at known_max
        self._timeouts: deque[float] = deque()
        self._answers = 0  # answers counted
        # (answer number, URL, requests in flight, above the proven level) of the last pages
        self._pages: deque[tuple[int, str | None, int, bool]] = deque()
        self._suspects: dict[str, _Slowdown] = {}  # URL -> the slowdown its page was in
        self._paged: set[str] = set()  # URLs shown a page in this run
        self._own: dict[str, int] = {}  # URL -> in flight when its page was put down to it
        self._passed: list[int] = []  # in flight at each page whose URL then passed (_own)
        self._429s: deque[tuple[int, str]] = deque()  # (answer number, URL) of the last 429s
        self._slowed_at = float("-inf")  # when the last slowdown happened
        self.slowdowns = 0  # in this run

    def _cap(self) -> int:
        cap = self.ceiling
        if self.known_max is not None:
            cap = min(cap, self.known_max)
        return max(1, cap)

    def _clamp(self, limit: int) -> int:
        return max(1, min(limit, self._cap()))

    def _clamp_interval(self, interval: float) -> float:
        if interval < MIN_INTERVAL:
            interval = 0.0
        return min(MAX_INTERVAL, max(self.min_interval, interval))

    def pace(self) -> Pace:
        """What to keep for the next run: the proven level, not a probe above it."""
        return Pace(max(1, min(self.limit, self.good)), self.interval, self._kept_max)

    def record(
        self,
        outcome: Outcome,
        started: float,
        inflight: int | None = None,
        url: str | None = None,
    ) -> Blame | None:
        """Take one answer into account; `started` is when its request started (clock time),
        `inflight` how many requests to the host were in flight then, itself included (None:
        the limit), `url` what was asked (tells a URL asked again from another). For a
        verification page or a 429, says what it was put down to."""
        if outcome is Outcome.NEUTRAL:
            return None
        if started < self._slowed_at:
            if outcome is not Outcome.SLOW_DOWN:
                return None
            if url is not None:
                self._paged.add(url)
            return Blame.PACE
        now = self._clock()
        inflight = self.limit if inflight is None else max(1, inflight)
        self._answers += 1
        if outcome is Outcome.CLEAN:
            if url is not None:
                self._confirm(url)
                if (n := self._own.pop(url, None)) is not None:
                    self._passed_after_page(n)
            self._clean += 1
            self._filled = max(self._filled, inflight)
            if self.known_max is not None and self.limit >= self.known_max:
                self._at_max += 1
                if self._at_max >= self._reprobe_wait and self.known_max < self.ceiling:
                    self.known_max += 1
                    self._probe = self.known_max
                    self._at_max = 0
            if self._clean >= self._clean_run:
                if self._filled >= self.limit:
                    self.good = max(self.good, self.limit)
                    if self._probe is not None and self.good >= self._probe:
                        # a reprobe that passed
                        self._kept_max = self._probe
                        self._probe, self._reprobe_wait = None, self._reprobe
                    self.limit = self._clamp(self.limit + 1)
                self.interval = self._clamp_interval(self.interval / 2)
                self._clean = self._filled = 0
            return None
        if outcome is Outcome.TIMEOUT:
            self._clean = self._filled = self._at_max = 0
            self._timeouts.append(now)
            while self._timeouts and now - self._timeouts[0] > TIMEOUT_WINDOW:
                self._timeouts.popleft()
            if len(self._timeouts) >= TIMEOUT_BURST:
                self._timeouts.clear()
                self._halve(now)
            return None
        return self._page(now, inflight, url)

    def rate_limited(self, url: str) -> bool:
        """A 429 as it comes (before its retry, which waits its Retry-After): whether the whole
        host waits it too (the module's rule). Its answer is recorded when the URL is done."""
        self._429s.append((self._answers, url))
        while self._answers - self._429s[0][0] >= BURST_SPAN:
            self._429s.popleft()
        return len({u for _, u in self._429s}) >= RATE_LIMITED

    def _page(self, now: float, inflight: int, url: str | None) -> Blame:
        """A verification page or a 429 (see the module's rule)."""
        if url is not None and url in self._paged:  # asked again
            if inflight > self.good:
                return Blame.PACE
            self._own.pop(url, None)
            self._blocked_again(url)
            return Blame.URL
        if url is not None:
            self._paged.add(url)
        span = max(BURST_SPAN, 2 * self.limit)
        probe = inflight > self.good
        self._pages.append((self._answers, url, inflight, probe))
        while self._pages and self._answers - self._pages[0][0] >= span:
            self._pages.popleft()
        distinct = {u if u is not None else i for i, u, _, _ in self._pages}
        above: dict[str | int, int] = {}  # the probe's pages: the fewest in flight each met
        for i, u, n, a in self._pages:
            if a:
                key = u if u is not None else i
                above[key] = min(n, above.get(key, n))
        if probe and len(above) >= PROBE_PAGES:  # a probe too far: back (no burst: the
            # proven level was not what met them)
            self._suspect(set(above), max(1, min(above.values()) - 1))
            self._clean = self._filled = self._at_max = 0
            self.slowdowns += 1
            self._slowed_at = now
            self.limit = self._clamp(self.good)
            return Blame.PACE
        if len(distinct) >= BURST:  # the most in flight that met one is too much: a URL
            # blocked at any pace meets its page at any count, the fewest may be its own
            most = max(n for _, _, n, _ in self._pages)
            self._suspect(distinct, max(1, min(self.limit, most) - 1))
            self._halve(now)
            return Blame.PACE
        if probe and url is not None:  # the first: that level waits for the URL's next answer
            self._suspect({url}, inflight - 1, keep_pages=True)
            self.limit = self._clamp(self.limit)
        elif url is not None:
            self._own[url] = inflight  # told by its next answer (_passed_after_page)
        return Blame.URL  # the clean run goes on: one URL says nothing of the pace yet

    def _passed_after_page(self, inflight: int) -> None:
        """A URL shown a page at the proven level passed when asked again: the page was the
        pace's, so `inflight` is too much (the proven level was not, or is no longer) for this
        run; for the next one, what two such URLs say: the second fewest in flight is too much
        (the fewest, or more, for both)."""
        self._passed.append(inflight)
        if len(self._passed) >= 2:
            kept = max(1, sorted(self._passed)[1] - 1)
            if self._kept_max is None or kept < self._kept_max:
                self._kept_max = kept
        known_max = max(1, inflight - 1)
        if known_max >= self._cap():
            return  # the pace is below it already
        self.known_max = known_max
        self._probe_failed()  # as a probe that failed
        self._clean = self._filled = self._at_max = 0
        self.limit = self._clamp(self.limit)
        self.good = min(self.good, self.limit)

    def _probe_failed(self) -> None:
        """The next reprobe waits twice as long (at most REPROBE_GROWTH times REPROBE)."""
        self._probe = None
        self._reprobe_wait = min(REPROBE_GROWTH * self._reprobe, 2 * self._reprobe_wait)

    def _suspect(self, urls: set[str | int], known_max: int, keep_pages: bool = False) -> None:
        """A slowdown for the pages of `urls`: the pace before it kept until they are asked
        again (see _blocked_again); `known_max` becomes what is known to pass. A slowdown that
        takes in the page of an earlier one undoes to the pace before that one."""
        if not keep_pages:
            self._pages.clear()
        names = {u for u in urls if isinstance(u, str)}
        earlier = {id(s): s for u in names if (s := self._suspects.get(u)) is not None}
        if earlier:
            first = max(earlier.values(), key=lambda s: s.known_max)
            before, good = first.before, first.good
            for s in earlier.values():
                names |= s.urls
        else:
            before, good = Pace(self.limit, self.interval, self._kept_max), self.good
        slowdown = _Slowdown(names, before, good, known_max)
        for u in slowdown.urls:
            self._suspects[u] = slowdown
        if self._probe is not None and known_max < self._probe:  # the reprobe failed
            self._probe_failed()
        self.known_max = self._kept_max = known_max

    def _confirm(self, url: str) -> None:
        """A URL that was shown a page passed: the slowdown it was in was the pace's."""
        slowdown = self._suspects.pop(url, None)
        if slowdown is not None:
            for u in slowdown.urls:
                self._suspects.pop(u, None)

    def _blocked_again(self, url: str) -> None:
        """A URL shown a page again at the proven level: once every URL of the slowdown it
        was in is, the slowdown was theirs, not the pace's: the pace goes back to before it
        (unless it moved since)."""
        slowdown = self._suspects.pop(url, None)
        if slowdown is None:
            return
        slowdown.urls.discard(url)
        if slowdown.urls or self.known_max != slowdown.known_max:
            return
        before = slowdown.before
        self.known_max = self._kept_max = before.known_max
        self.good = max(self.good, slowdown.good)
        self.limit = self._clamp(max(self.limit, before.limit))
        self.interval = self._clamp_interval(min(self.interval, before.interval))

    def _halve(self, now: float) -> None:
        self._clean = self._filled = self._at_max = 0
        self.slowdowns += 1
        self._slowed_at = now
        self.limit = self._clamp(self.limit // 2)
        self.good = min(self.good, self.limit)
        self.interval = self._clamp_interval(max(BACKOFF_INTERVAL, self.interval * 2))


def host_lines(rows: Iterable[Mapping[str, Any]], as_json: bool) -> Iterator[str]:
    """What `crawler hosts` prints: a JSON object a host, or a header and a table line a host."""
    if as_json:
        for h in rows:
            yield json.dumps(h, ensure_ascii=False)
        return
    yield (
        f"{'host':<32} {'requests':>8}  {'2xx/3xx/4xx/5xx/none':<22} {'verify':>6}  "
        f"{'pace':<16} {'median':>7}  last lease"
    )
    for h in rows:
        a = h["answers"]
        answers = "/".join(str(a[k]) for k in ("2xx", "3xx", "4xx", "5xx", "none"))
        p = h["pace"]
        pace = "-"
        if p is not None and p["concurrency"] is not None:
            pace = f"{p['concurrency']}x {p['interval'] or 0:.2f}s"
            if p["known_max"] is not None:
                pace += f" <={p['known_max']}"
        median = "-" if h["median_latency_ms"] is None else f"{h['median_latency_ms']}ms"
        yield (
            f"{safe(h['host'])[:32]:<32} {h['requests']:>8}  {answers:<22} "
            f"{h['verification_pages']:>6}  {pace:<16} {median:>7}  {(h['last_lease'] or '-')[:19]}"
        )
