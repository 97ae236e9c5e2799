"""Data that flows between the stages: Link → FetchResult → PageMeta → Check → Run.

Standard library only, no I/O. Enum values are what the JSON report and the history store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar, overload

from crawler.pagekind import PageKind as PageKind

T = TypeVar("T")


class Verdict(StrEnum):
    """What a check concluded about one URL."""

    OK = "ok"
    REDIRECTED = "redirected"  # permanent hop to another URL: the post should be updated
    CHANGED = "changed"  # alive, but the title no longer matches
    DEAD = "dead"  # definitive: 404/410 or the site's own "removed" page
    BLOCKED = "blocked"  # the site refused the robot: liveness unknown
    ERROR = "error"  # could not tell this time (network, 5xx after retries)
    SKIPPED = "skipped"  # not checkable (mailto:, relative, excluded)


#: Verdicts that make a run "broken" for the exit code and the report.
BROKEN = frozenset({Verdict.DEAD, Verdict.ERROR})
#: Verdicts that say the page is there.
ALIVE = frozenset({Verdict.OK, Verdict.REDIRECTED, Verdict.CHANGED})


class ErrorKind(StrEnum):
    """Why no usable response arrived."""

    TIMEOUT = "timeout"
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    PROXY = "proxy"
    TOO_MANY_REDIRECTS = "too-many-redirects"
    REDIRECT_LOOP = "redirect-loop"
    BAD_REDIRECT = "bad-redirect"
    PROTOCOL = "protocol"
    TOO_LARGE = "too-large"
    INVALID_URL = "invalid-url"
    PRIVATE_ADDRESS = "private-address"  # refused by --no-private
    RATE_LIMITED = "rate-limited"  # not requested: the host asked for a pause longer than we wait
    UNAVAILABLE = "unavailable"  # not requested: the same, asked with a 503
    NETWORK_DOWN = "network-down"  # not requested: the network looks down (crawler.fetch)


#: Network-level failures: if every host ends in one of these, the network is down.
NETWORK_ERRORS = frozenset(
    {
        ErrorKind.TIMEOUT,
        ErrorKind.DNS,
        ErrorKind.CONNECT,
        ErrorKind.PROXY,
        ErrorKind.TLS,
        ErrorKind.NETWORK_DOWN,
    }
)

#: The statuses of a redirect (with a Location, followed by the fetcher hop by hop).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Link:
    """One occurrence of a URL in the post."""

    url: str
    line: int  # 1-based line of the URL in the source file
    listed_title: str | None = None  # the title the author wrote for it
    section: tuple[str, ...] = ()  # heading path, outermost first
    source: str = ""  # the file it came from
    #: listed_title is the link's own text (`[text](url)`, `<a>`, an image's alt, a reference's
    #: label), not a title the post's layout gives the URL: never compared with the page's title
    anchor_text: bool = False

    @property
    def compared_title(self) -> str | None:
        """The title the page's must match: the listed title, unless it is only anchor text."""
        return None if self.anchor_text else self.listed_title


@dataclass(frozen=True, slots=True)
class Hop:
    """One response in a redirect chain."""

    status: int
    url: str  # the URL that answered with `status`


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What the network said about one URL, after redirects and retries."""

    url: str
    final_url: str
    status: int | None  # None when no response arrived
    hops: tuple[Hop, ...] = ()  # every redirect response, in order
    headers: Mapping[str, str] = field(default_factory=dict)  # kept subset, lower-case names
    body: bytes | None = None  # capped; None for no response
    elapsed_ms: int = 0
    attempts: int = 1
    error: ErrorKind | None = None
    error_detail: str | None = None
    fetched_at: datetime | None = None
    truncated: bool = False  # body hit the size cap
    retry_at: datetime | None = None  # the host asked (429) not to be asked again before this


@dataclass(frozen=True, slots=True)
class PageMeta:
    """What the extractor read from a page."""

    title: str | None = None
    summary: str | None = None
    site_name: str | None = None
    canonical_url: str | None = None
    lang: str | None = None
    kind: PageKind = PageKind.OTHER
    notice: str | None = None  # the text of a removal / anti-robot notice
    site: str | None = None  # the site rule that matched, if any
    text_hash: str | None = None  # short hash of the main content's text (articles only)
    anchors: frozenset[str] | None = None  # ids and names, read only for --include-fragments


@dataclass(frozen=True, slots=True)
class Classification:
    """A verdict with its machine-readable reason and a sentence for people."""

    verdict: Verdict
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class LinkHistory:
    """What the history knew about a URL, combined with this run's verdict."""

    previous_verdict: Verdict | None = None
    previous_title: str | None = None
    previous_checked_at: datetime | None = None
    since: datetime | None = None  # when the current verdict began
    first_failed_at: datetime | None = None  # start of the current failing streak
    consecutive_failures: int = 0  # failing runs in a row, this one included
    recent: tuple[tuple[datetime, Verdict], ...] = ()  # last runs, oldest first, this one last


@dataclass(frozen=True, slots=True)
class RunTotals:
    """One past run's counts, for the health trend."""

    run_id: int
    started_at: datetime
    counts: Mapping[str, int]
    network_down: bool = False


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome for one occurrence of a URL; occurrences of one URL share one fetch."""

    link: Link
    fetch: FetchResult | None
    meta: PageMeta | None
    verdict: Verdict
    reason: str
    detail: str
    checked_at: datetime
    history: LinkHistory | None = None
    cached: bool = False  # reused from the history instead of fetched (--max-age)

    @property
    def url(self) -> str:
        """The URL as written in the post."""
        return self.link.url

    @property
    def page_title(self) -> str | None:
        """The page's title as the reports give it: only a page that is there has one (the title
        of a 404 page, "404 - 知乎", or of a verification page is not the linked page's)."""
        if self.meta is None or self.verdict not in ALIVE:
            return None
        return self.meta.title

    @property
    def checked_this_run(self) -> bool:
        """Fetched by this run: not a result of an earlier run standing in for one (--max-age,
        a budgeted run's links not due or not reached), nor a link never checked at all."""
        return not self.cached and self.reason != "unchecked"

    @property
    def never_checked(self) -> bool:
        """A link a budgeted run did not reach and the history has no verdict for."""
        return self.reason == "unchecked" and self.verdict is Verdict.SKIPPED

    @property
    def newly_broken(self) -> bool:
        """Dead or error now, and not broken at the previous check of this URL."""
        prev = self.history.previous_verdict if self.history else None
        return newly_broken(self.verdict, prev)

    @property
    def recovered(self) -> bool:
        """Broken at the previous check, alive now."""
        prev = self.history.previous_verdict if self.history else None
        return recovered(self.verdict, prev)

    def survey(self) -> Survey:
        """What the run's tally reads of this check."""
        prev = self.history.previous_verdict if self.history else None
        link = self.link
        return (
            link.url, link.source, link.section, self.verdict, self.reason, self.cached,
            self.checked_at, prev,
        )  # fmt: skip


def newly_broken(verdict: Verdict, previous: Verdict | None) -> bool:
    """Check.newly_broken of a verdict and the previous one."""
    return verdict in BROKEN and previous is not None and previous not in BROKEN


def recovered(verdict: Verdict, previous: Verdict | None) -> bool:
    """Check.recovered of a verdict and the previous one."""
    return previous in BROKEN and verdict in ALIVE


#: What a run's tally reads of a check (Check.survey): url, source, section, verdict, reason,
#: cached, checked_at, previous verdict. The history reads it without making the checks.
Survey = tuple[str, str, tuple[str, ...], Verdict, str, bool, datetime, Verdict | None]


class LazyChecks(Sequence["Check"]):
    """A run's checks, read again (from the history) at every pass and never all in memory at
    once: what the reports and enrich go through at any size.

    `lean()` is a cheaper pass for what does not show a link's strip of recent runs: its
    checks' histories may lack `recent` (by default it is the full pass). `pick(indices)`
    reads only the checks at those places (by default a pass that keeps them). `survey()`
    reads each check's Check.survey() in order (by default from a lean pass; the history
    reads it from a few columns). `keep` is what must live as long as they do (a scratch
    store's temporary directory)."""

    __slots__ = ("_make", "_n", "_memo", "_lean", "_pick", "_keep", "_survey")

    def __init__(
        self,
        make: Callable[[], Iterator[Check]],
        n: int,
        lean: Callable[[], Iterator[Check]] | None = None,
        pick: Callable[[Sequence[int]], Iterator[Check]] | None = None,
        keep: object = None,
        survey: Callable[[], Iterator[Survey]] | None = None,
    ) -> None:
        self._keep = keep
        self._make = make
        self._n = n
        self._memo: dict[str, Any] = {}
        self._lean = lean or make
        self._pick = pick or self._pass_picking
        self._survey = survey or (lambda: (c.survey() for c in self._lean()))

    def once(self, name: str, fn: Callable[[Iterable[Check]], T]) -> T:
        """fn over the checks (a lean pass), computed the first time it is asked for (each
        pass reads the whole run again: the reports ask for their counts several times)."""
        if name not in self._memo:
            self._memo[name] = fn(_Pass(self._lean))
        return self._memo[name]  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Check]:
        return self._make()

    def tally(self) -> Tally:
        """The checks' tally, counted from their surveys the first time it is asked for."""
        if "tally" not in self._memo:
            self._memo["tally"] = Tally.of_surveys(self._survey())
        return self._memo["tally"]  # type: ignore[no-any-return]

    def survey(self) -> Iterator[Survey]:
        """Each check's Check.survey(), in order."""
        return self._survey()

    def lean(self) -> Iterator[Check]:
        """A pass whose checks may lack their strips of recent runs (`history.recent`)."""
        return self._lean()

    def pick(self, indices: Sequence[int]) -> Iterator[Check]:
        """The checks at these places (ascending), in full."""
        return self._pick(indices)

    def _pass_picking(self, indices: Sequence[int]) -> Iterator[Check]:
        wanted = set(indices)
        return (c for i, c in enumerate(self._make()) if i in wanted)

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    @overload
    def __getitem__(self, i: int) -> Check: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Check]: ...
    def __getitem__(self, i: int | slice) -> Check | Sequence[Check]:
        return tuple(self)[i]  # a whole pass: for the odd caller that indexes

    def keeping(self, keep: object) -> LazyChecks:
        """These checks, keeping `keep` alive as long as they are."""
        return LazyChecks(
            self._make, self._n, self._lean, self._pick, (self._keep, keep), self._survey
        )

    def map(self, fn: Callable[[Check], Check]) -> LazyChecks:
        """These checks, each through fn, as lazily."""
        make, lean, pick = self._make, self._lean, self._pick
        return LazyChecks(
            lambda: map(fn, make()),
            self._n,
            lambda: map(fn, lean()),
            lambda indices: map(fn, pick(indices)),
            keep=self,
        )


class _Pass:
    """One lean pass of LazyChecks as an iterable."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Iterator[Check]]) -> None:
        self.make = make

    def __iter__(self) -> Iterator[Check]:
        return self.make()


def lean(checks: Iterable[Check]) -> Iterable[Check]:
    """The checks for a pass that does not show their strips of recent runs (cheaper when
    they stream from the history)."""
    return _Pass(checks.lean) if isinstance(checks, LazyChecks) else checks


@dataclass(frozen=True, slots=True)
class Run:
    """One check of one or more posts."""

    started_at: datetime
    finished_at: datetime
    sources: tuple[str, ...]
    #: in the links' order; LazyChecks when read from the history (each pass reads it again)
    checks: Sequence[Check]
    network_down: bool = False
    run_id: int | None = None  # id in the history, when one is kept
    trend: tuple[RunTotals, ...] = ()  # earlier runs' counts, oldest first (this run excluded)
    #: complete | interrupted (stopped before every link was checked) | running (read from the
    #: history while the check goes on, or after it was killed without closing)
    status: str = "complete"

    def __repr__(self) -> str:
        # asyncio formats the repr of a finished task's result; a Run of 10,000 checks would
        # cost a noticeable fraction of a second.
        n = len(self.checks)
        return f"Run(run_id={self.run_id!r}, started_at={self.started_at!r}, checks=<{n}>)"

    def counts(self) -> dict[str, int]:
        """Number of checked URLs per verdict, every verdict present."""
        return dict(self.tally().counts)

    def tally(self) -> Tally:
        """What the reports say of the run as a whole, counted in one pass (once, when the
        checks stream from the history)."""
        if isinstance(self.checks, LazyChecks):
            return self.checks.tally()
        return Tally.of(self.checks)


#: A table's key in the reports that group the checks: (input, section heading path).
Key = tuple[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each (input, section) of a run's checks comes, for the tables that group them.

    `keys` in the order they first appear; `stretch`: each key's first run of checks in a row
    (its start among the checks that are not strays, its length); `strays`: the place of each
    check of a key that comes back after another key's (rare), with its key; `verdicts`: each
    key's checks per verdict; `flagged`: the place and key of each newly broken or recovered
    check."""

    keys: tuple[Key, ...]
    stretch: Mapping[Key, tuple[int, int]]
    strays: Mapping[int, Key]
    verdicts: Mapping[Key, Mapping[Verdict, int]]
    flagged: Mapping[int, Key]


@dataclass(frozen=True, slots=True)
class Tally:
    """A run's checks counted: per verdict, by where their verdicts come from, by input, and
    laid out by section (what every report and the terminal say of the run as a whole)."""

    counts: Mapping[str, int]  # every verdict but skipped present, skipped when there is one
    fetched: int  # checked this run
    earlier: int  # verdicts that stand from an earlier run
    never: int  # never checked (a budget ran out)
    oldest: datetime | None  # the oldest of the earlier verdicts
    sources: tuple[str, ...]  # the checks' inputs, each once, in order of appearance
    by_source: Mapping[str, Mapping[str, int]]  # input -> verdict -> checks (those present)
    grouped: bool  # each input's checks come in one stretch
    urls: int = 0  # distinct URLs
    cached: int = 0  # reused from the history (--max-age)
    layout: Layout = Layout((), {}, {}, {}, {})

    @classmethod
    def of(cls, checks: Iterable[Check]) -> Tally:
        """The tally of checks."""
        return cls.of_surveys(c.survey() for c in checks)

    @classmethod
    def of_surveys(cls, surveys: Iterable[Survey]) -> Tally:
        """The tally of the checks with these surveys (Check.survey), in order."""
        counts = {v.value: 0 for v in Verdict if v is not Verdict.SKIPPED}
        fetched = earlier = never = cached = 0
        oldest = None
        by_source: dict[str, dict[str, int]] = {}
        grouped = True
        source: str | None = None
        here: dict[str, int] = {}
        urls: set[str] = set()
        keys: list[Key] = []
        stretch: dict[Key, tuple[int, int]] = {}
        strays: dict[int, Key] = {}
        verdicts: dict[Key, dict[Verdict, int]] = {}
        flagged: dict[int, Key] = {}
        current: Key | None = None
        in_key: dict[Verdict, int] = {}
        taken = 0
        skipped = Verdict.SKIPPED
        for i, (url, src, section, verdict, reason, was_cached, at, prev) in enumerate(surveys):
            v = verdict.value
            counts[v] = counts.get(v, 0) + 1
            if src != source:
                source = src
                if source in by_source:
                    grouped = False
                here = by_source.setdefault(source, {})
            here[v] = here.get(v, 0) + 1
            urls.add(url)
            unchecked = reason == "unchecked"
            if was_cached:
                cached += 1
            if not was_cached and not unchecked:  # Check.checked_this_run
                fetched += 1
            elif unchecked and verdict is skipped:  # Check.never_checked
                never += 1
            else:
                earlier += 1
                oldest = at if oldest is None else min(oldest, at)
            key = (src, section)
            if key == current:
                start, n = stretch[key]
                stretch[key] = (start, n + 1)
                taken += 1
            else:
                if key not in stretch:
                    keys.append(key)
                    stretch[key] = (taken, 1)
                    current = key
                    taken += 1
                else:
                    strays[i] = key
                    current = None
                in_key = verdicts.setdefault(key, {})
            in_key[verdict] = in_key.get(verdict, 0) + 1
            if prev is not None and (newly_broken(verdict, prev) or recovered(verdict, prev)):
                flagged[i] = key
        layout = Layout(tuple(keys), stretch, strays, verdicts, flagged)
        return cls(
            counts,
            fetched,
            earlier,
            never,
            oldest,
            tuple(by_source),
            by_source,
            grouped,
            len(urls),
            cached,
            layout,
        )
