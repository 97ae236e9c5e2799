"""report.html: one self-contained page for people — charts, per-section tables, filter, search.

Pure: Run → text. Everything fetched from the web is hostile: the jinja2 template autoescapes
every value, only http(s) URLs become links, control and bidi-override characters are removed and
long text is capped (CSS wraps what remains). Nothing is loaded from the network: CSS, JavaScript
and the charts (SVG, drawn here) are inline, and a Content-Security-Policy forbids any load. The
page is complete without JavaScript; the script only adds the filter, the search and sorting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from urllib.parse import quote, urlsplit

import jinja2

from crawler import __version__
from crawler.config import RECENT_RUNS, TREND_RUNS
from crawler.types import BROKEN, Check, Run, Verdict

#: Verdicts worst first: the order of the legend, the filter and the verdict column's sort.
SEVERITY: tuple[Verdict, ...] = (
    Verdict.DEAD,
    Verdict.ERROR,
    Verdict.CHANGED,
    Verdict.REDIRECTED,
    Verdict.BLOCKED,
    Verdict.OK,
    Verdict.SKIPPED,
)
#: Stacking order in the trend chart, bottom up: the problems sit on top where they show.
STACK: tuple[Verdict, ...] = tuple(v for v in reversed(SEVERITY) if v is not Verdict.SKIPPED)
#: What each verdict means, for tooltips and the legend.
MEANING: dict[Verdict, str] = {
    Verdict.OK: "alive, the title matches",
    Verdict.REDIRECTED: "moved permanently: the post should be updated",
    Verdict.CHANGED: "alive, but the title is not the listed one",
    Verdict.DEAD: "gone: 404/410 or the site's own removal notice",
    Verdict.BLOCKED: "the site refused the robot: liveness unknown",
    Verdict.ERROR: "could not tell this time",
    Verdict.SKIPPED: "not checkable",
}

MAX_HREF = 4096  # longer URLs are shown, not linked
MAX_TEXT = 300  # listed and fetched titles, details
MAX_SUMMARY = 1200
MAX_ATTR = 2000  # full text in a title attribute (tooltip)

_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Bidi overrides/isolates and zero-width marks could reorder or hide what a reader sees.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u061c]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SPACES = re.compile(r"\s{2,}")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
# Characters that are never valid in a URL; in an href they are percent-encoded.
_HREF_SAFE = "!#$%&'()*+,-./:;=?@[]_~"


def clean(text: str | None) -> str:
    """Fetched text as one plain line: no control, bidi-override or zero-width characters."""
    if not text:
        return ""
    s = _SURROGATE.sub("\ufffd", text)
    s = _INVISIBLE.sub("", _CTRL.sub(" ", s))
    return _SPACES.sub(" ", s).strip()


def clip(text: str | None, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking the cut."""
    s = text or ""
    return s if len(s) <= limit else s[: limit - 1] + "…"


def midclip(text: str | None, limit: int) -> str:
    """At most `limit` characters, cut in the middle (URLs: keep the host and the end)."""
    s = text or ""
    if len(s) <= limit:
        return s
    head = (limit - 1) * 2 // 3
    tail = limit - 1 - head
    return s[:head] + "…" + s[-tail:]


def safe_href(url: str | None) -> str | None:
    """The URL as an href if it is a plain absolute http(s) URL, else None (shown as text).

    Anything with whitespace or control characters is refused, whatever a browser would make of
    it (`java\\tscript:`), so are URLs with credentials; characters that are never valid in a URL
    are percent-encoded, so the value cannot leave its attribute even before escaping.
    """
    if not url or len(url) > MAX_HREF or url != url.strip() or _CTRL.search(url):
        return None
    if any(ch.isspace() for ch in url) or _INVISIBLE.search(url) or _SURROGATE.search(url):
        return None
    if not re.match(r"(?i)https?://", url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    return quote(url, safe=_HREF_SAFE)


def text_lang(text: str | None) -> str | None:
    """A BCP 47 tag for CJK text, so the browser picks the right glyphs; None otherwise."""
    if not text:
        return None
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    if _HAN.search(text):
        return "zh"
    return None


def _utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC) if dt.tzinfo else dt


def fmt_time(dt: datetime) -> str:
    """A moment as people read it in the report: UTC, minutes."""
    return f"{_utc(dt):%Y-%m-%d %H:%M} UTC"


def fmt_age(then: datetime, now: datetime) -> str:
    """How long ago, coarse: '3 h', '12 d', '5 w'."""
    try:
        secs = (now - then).total_seconds()
    except TypeError:  # naive vs aware
        secs = (_utc(now).replace(tzinfo=None) - _utc(then).replace(tzinfo=None)).total_seconds()
    secs = max(secs, 0.0)
    if secs < 3600:
        return f"{int(secs // 60)} min"
    if secs < 86400:
        return f"{int(secs // 3600)} h"
    days = int(secs // 86400)
    if days < 60:
        return f"{days} d"
    return f"{days // 7} w"


def _before(a: datetime, b: datetime) -> bool:
    try:
        return a < b
    except TypeError:
        return _utc(a).replace(tzinfo=None) < _utc(b).replace(tzinfo=None)


# ---------------------------------------------------------------------------------------------
# View model: everything the template shows, already cleaned; the template only escapes and lays
# it out.


@dataclass(frozen=True, slots=True)
class Square:
    """One run in a link's strip."""

    verdict: str
    label: str  # tooltip


@dataclass(frozen=True, slots=True)
class Segment:
    """One verdict's part of a trend column; y and height in percent of the chart."""

    verdict: str
    y: float
    height: float


@dataclass(frozen=True, slots=True)
class Column:
    """One run in the post's trend chart; x and width in percent."""

    x: float
    width: float
    day: str
    label: str
    segments: tuple[Segment, ...]
    network_down: bool
    current: bool


@dataclass(frozen=True, slots=True)
class Bar:
    """One verdict in the counts chart."""

    verdict: str
    count: int
    percent: float
    meaning: str


@dataclass(frozen=True, slots=True)
class Row:
    """One check, as a table row."""

    verdict: str
    rank: int  # position in SEVERITY, for sorting
    line: int
    source: str
    section: str
    url: str
    href: str | None
    listed: str
    listed_lang: str | None
    title: str
    title_lang: str | None
    title_same: bool  # fetched title is the listed one, letter for letter
    previous_title: str  # when it differs from this run's title
    previous_verdict: str | None  # when it differs from this run's verdict
    summary: str
    summary_lang: str | None
    reason: str
    detail: str
    status: int | None
    cached: bool
    since: str  # what the since column says: a date, "this run", "first check" or "—"
    since_note: str  # "5 d ago, 3 failing runs"
    since_title: str
    since_sort: str
    final_url: str
    final_href: str | None
    hops: str  # "301 → 302"
    recent: tuple[Square, ...]
    recent_label: str
    flag: str  # "newly-broken", "recovered" or ""


@dataclass(frozen=True, slots=True)
class Section:
    """One section of the post: its heading path and its rows in post order."""

    anchor: str
    title: str
    title_lang: str | None
    rows: tuple[Row, ...]
    counts: tuple[tuple[str, int], ...]  # non-ok verdicts present, worst first


def _row(check: Check, run: Run, multi_source: bool) -> Row:
    link, f, m, h = check.link, check.fetch, check.meta, check.history
    listed = clean(link.listed_title)
    title = clean(m.title) if m else ""
    summary = clean(m.summary) if m else ""
    url = clean(link.url)

    prev_title = ""
    prev_verdict: str | None = None
    since, since_note, since_title, since_sort = "—", "", "no history for this link", ""
    recent: tuple[Square, ...] = ()
    if h is not None:
        if h.previous_title and clean(h.previous_title) != title:
            prev_title = clean(h.previous_title)
        if h.previous_verdict is not None and h.previous_verdict is not check.verdict:
            prev_verdict = h.previous_verdict.value
        start = h.first_failed_at if check.verdict in BROKEN and h.first_failed_at else h.since
        if start is not None:
            since_sort = _utc(start).isoformat()
            if h.previous_verdict is None:
                since, since_title = "first check", f"first checked {fmt_time(start)}"
            elif not _before(start, run.started_at):
                since, since_title = "this run", f"{check.verdict.value} since this run"
            else:
                since = f"{_utc(start):%Y-%m-%d}"
                since_note = f"{fmt_age(start, run.started_at)} ago"
                since_title = f"{check.verdict.value} since {fmt_time(start)}"
            if check.verdict in BROKEN and h.consecutive_failures > 1:
                since_note = ", ".join(
                    x for x in (since_note, f"{h.consecutive_failures} failing runs") if x
                )
                since_title += f", failing in {h.consecutive_failures} runs in a row"
        recent = tuple(
            Square(v.value, f"{fmt_time(at)}: {v.value}") for at, v in h.recent[-RECENT_RUNS:]
        )

    final_url, final_href, hops = "", None, ""
    if f is not None:
        if f.final_url and f.final_url != link.url:
            final_url = clean(f.final_url)
            final_href = safe_href(f.final_url)
        hops = " → ".join(str(hop.status) for hop in f.hops)

    section = " / ".join(clean(s) for s in link.section) or "(no section)"
    if multi_source:
        section = f"{clean(link.source)}: {section}"
    flag = "newly-broken" if check.newly_broken else "recovered" if check.recovered else ""
    return Row(
        verdict=check.verdict.value,
        rank=SEVERITY.index(check.verdict),
        line=link.line,
        source=clean(link.source),
        section=section,
        url=url,
        href=safe_href(link.url),
        listed=listed,
        listed_lang=text_lang(listed),
        title=title,
        title_lang=text_lang(title),
        title_same=bool(title) and title == listed,
        previous_title=prev_title,
        previous_verdict=prev_verdict,
        summary=summary,
        summary_lang=text_lang(summary),
        reason=clean(check.reason),
        detail=clean(check.detail),
        status=f.status if f else None,
        cached=check.cached,
        since=since,
        since_note=since_note,
        since_title=since_title,
        since_sort=since_sort,
        final_url=final_url,
        final_href=final_href,
        hops=hops,
        recent=recent,
        recent_label="last runs: " + ", ".join(s.verdict for s in recent) if recent else "",
        flag=flag,
    )


def _present(checks: Iterable[Check]) -> tuple[tuple[str, int], ...]:
    counts: dict[Verdict, int] = {}
    for c in checks:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    return tuple((v.value, counts[v]) for v in SEVERITY if v is not Verdict.OK and v in counts)


def _sections(run: Run, multi_source: bool) -> tuple[Section, ...]:
    groups: dict[tuple[str, tuple[str, ...]], list[Check]] = {}
    for c in run.checks:
        groups.setdefault((c.link.source if multi_source else "", c.link.section), []).append(c)
    out = []
    for i, ((source, path), checks) in enumerate(groups.items(), start=1):
        title = " / ".join(clean(s) for s in path) or "(no section)"
        if multi_source:
            title = f"{clean(source)}: {title}"
        out.append(
            Section(
                anchor=f"s-{i}",
                title=title,
                title_lang=text_lang(title),
                rows=tuple(_row(c, run, multi_source) for c in checks),
                counts=_present(checks),
            )
        )
    return tuple(out)


def _bars(counts: Mapping[str, int]) -> tuple[Bar, ...]:
    top = max(counts.values(), default=0) or 1
    return tuple(
        Bar(
            v.value,
            counts.get(v.value, 0),
            round(100 * counts.get(v.value, 0) / top, 2),
            MEANING[v],
        )
        for v in SEVERITY
        if v is not Verdict.SKIPPED or counts.get(v.value)
    )


def _trend(run: Run) -> tuple[tuple[Column, ...], str]:
    """The trend chart's columns (earlier runs, then this one) and a sentence saying it."""
    points: list[tuple[datetime, Mapping[str, int], bool, bool]] = [
        (t.started_at, t.counts, t.network_down, False) for t in run.trend[-(TREND_RUNS - 1) :]
    ]
    points.append((run.started_at, run.counts(), run.network_down, True))
    totals = [
        sum(n for k, n in counts.items() if k != Verdict.SKIPPED.value) for _, counts, *_ in points
    ]
    top = max(totals, default=0) or 1
    slot = min(100 / len(points), 100 / 12)
    offset = 100 - slot * len(points)  # right-aligned: this run at the right edge
    columns = []
    for i, (at, counts, down, current) in enumerate(points):
        segments: list[Segment] = []
        y = 100.0
        if not down:
            for v in STACK:
                n = counts.get(v.value, 0)
                if n:
                    height = 100 * n / top
                    y -= height
                    segments.append(Segment(v.value, round(y, 3), round(height, 3)))
        parts = ", ".join(f"{v.value} {counts[v.value]}" for v in SEVERITY if counts.get(v.value))
        label = f"{fmt_time(at)}{' (this run)' if current else ''}: " + (
            "network down, nothing judged" if down else parts or "no links"
        )
        columns.append(
            Column(
                x=round(offset + i * slot + slot * 0.14, 3),
                width=round(slot * 0.72, 3),
                day=f"{_utc(at):%Y-%m-%d}",
                label=label,
                segments=tuple(segments),
                network_down=down,
                current=current,
            )
        )

    def broken(counts: Mapping[str, int]) -> int:
        return sum(counts.get(v.value, 0) for v in BROKEN)

    judged = [(at, counts) for at, counts, down, _ in points if not down]
    if run.network_down:
        note = "The network was down during this run: nothing was judged." + (
            f" Broken (dead + error) at the last judged run, {_utc(judged[-1][0]):%Y-%m-%d}: "
            f"{broken(judged[-1][1])}."
            if judged
            else ""
        )
    elif len(points) == 1:
        note = "First run: the trend appears from the next run on."
    elif len(judged) < 2:
        note = "No earlier judged run to compare with (the network was down)."
    else:
        (first_at, first), (_, prev), (_, now) = judged[0], judged[-2], judged[-1]
        note = (
            f"Broken (dead + error): {broken(first)} on {_utc(first_at):%Y-%m-%d}, "
            f"{broken(prev)} at the previous run, {broken(now)} now."
        )
    return tuple(columns), note


@dataclass(frozen=True, slots=True)
class Page:
    """Everything the template renders."""

    sources: str
    sources_lang: str | None
    total: int
    started: str
    finished: str
    duration: str
    network_down: bool
    counts: tuple[tuple[str, int], ...]  # every verdict, worst first
    broken: int
    bars: tuple[Bar, ...]
    trend: tuple[Column, ...]
    trend_note: str
    newly_broken: tuple[Row, ...]
    recovered: tuple[Row, ...]
    sections: tuple[Section, ...]
    verdicts: tuple[tuple[str, str], ...]  # (value, meaning) for the legend and filter
    version: str


def page(run: Run) -> Page:
    """The view model of a run: cleaned, capped, grouped, ordered."""
    multi = len(set(c.link.source for c in run.checks)) > 1
    sections = _sections(run, multi)
    rows = [r for s in sections for r in s.rows]
    counts = run.counts()
    trend, note = _trend(run)
    seconds = max((run.finished_at - run.started_at).total_seconds(), 0.0)
    return Page(
        sources=clean(", ".join(run.sources)) or "input",
        sources_lang=text_lang(", ".join(run.sources)),
        total=len(run.checks),
        started=fmt_time(run.started_at),
        finished=fmt_time(run.finished_at),
        duration=f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min",
        network_down=run.network_down,
        counts=tuple((v.value, counts.get(v.value, 0)) for v in SEVERITY if v.value in counts),
        broken=sum(counts.get(v.value, 0) for v in BROKEN),
        bars=_bars(counts),
        trend=trend,
        trend_note=note,
        newly_broken=tuple(r for r in rows if r.flag == "newly-broken"),
        recovered=tuple(r for r in rows if r.flag == "recovered"),
        sections=sections,
        verdicts=tuple((v.value, MEANING[v]) for v in SEVERITY if v.value in counts),
        version=__version__,
    )


@cache
def environment() -> jinja2.Environment:
    """The template environment: autoescaping everywhere, undefined names are errors."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("crawler.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["clip"] = clip
    env.filters["midclip"] = midclip
    return env


def render(run: Run) -> str:
    """The whole HTML report: one file, no external resources."""
    return environment().get_template("report.html.j2").render(p=page(run))
