"""report.html: one self-contained page for people — charts, per-section tables, filter, search.

Pure: Run → text. Everything fetched from the web is hostile: the jinja2 template autoescapes
every value, only http(s) URLs become links, escape sequences, control and bidi-override
characters are removed (crawler.sanitize) and long text is capped (CSS wraps what remains).
Nothing is loaded from the network: CSS, JavaScript and the charts (SVG, drawn here) are inline,
and a Content-Security-Policy forbids any load. The page is complete without JavaScript; the
script only adds the filter, the search and sorting.
"""

from __future__ import annotations

import contextlib
import io
import marshal
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from itertools import chain, islice
from pathlib import Path
from typing import Any, NamedTuple, TextIO
from urllib.parse import quote, urlsplit

import jinja2
from markupsafe import Markup, escape

from crawler import __version__
from crawler.config import RECENT_RUNS, TREND_RUNS
from crawler.errors import CrawlerError
from crawler.report.notes import coverage_note, partial_note
from crawler.sanitize import html_text, visible
from crawler.types import BROKEN, Check, Key, LazyChecks, Run, Verdict

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

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")
# Characters that are never valid in a URL; in an href they are percent-encoded.
_HREF_SAFE = "!#$%&'()*+,-./:;=?@[]_~"
# A plain http(s) URL: host of letters, digits, dots and hyphens, no credentials, and only
# characters quote() keeps as they are. safe_href() returns it unchanged.
_PLAIN_URL = re.compile(
    r"(?i:https?)://[A-Za-z0-9.\-]+(?::[0-9]*)?(?:[/?#][A-Za-z0-9\-._~!$&'()*+,;=:@%/?#\[\]]*)?"
)


# What markupsafe's escape replaces: a text without any of these is escaped as itself.
_SPECIAL = re.compile("[&<>'\"]")


def _escape(value: Any) -> str:
    """markupsafe's `escape`, as a plain str, without its work for the plain texts most values
    are (a row escapes ~21 values: the Markup made for each was a fifth of report.html's CPU)."""
    if type(value) is str and _SPECIAL.search(value) is None:
        return value
    return escape(value)


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
    if not url or len(url) > MAX_HREF:
        return None
    if _PLAIN_URL.fullmatch(url):
        return url
    if visible(url) != url or any(ch.isspace() for ch in url):
        return None  # controls, escapes, bidi or zero-width characters, surrogates, whitespace
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
    if not text or text.isascii():
        return None
    if _KANA_HANGUL.search(text):  # rare: only then is it worth telling the two apart
        if _KANA.search(text):
            return "ja"
        if _HANGUL.search(text):
            return "ko"
    if _HAN.search(text):
        return "zh"
    return None


def _utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC) if dt.tzinfo else dt


@lru_cache(maxsize=4096)  # a run's checks share their moments: since, the last runs' strip
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


class Segment(NamedTuple):
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
    as_of: str  # for a cached row: " YYYY-MM-DD", the day of the check that stands
    since: str  # what the since column says: a date, "this run", "first check" or "—"
    since_note: str  # "5 d ago, 3 failing runs"
    since_title: str
    since_sort: str
    final_url: str
    final_href: str | None
    hops: str  # "301 → 302"
    recent: tuple[Square, ...]
    recent_label: str
    strip: Markup | str  # the strip of recent runs, rendered, or ""
    flag: str  # "newly-broken", "recovered" or ""


class Rows:
    """A table's rows, made one at a time as the template writes them (never all at once)."""

    __slots__ = ("checks", "run", "multi_source", "labels", "n")

    def __init__(
        self,
        checks: Iterable[Check | str],
        run: Run,
        multi_source: bool,
        labels: dict[tuple[str, tuple[str, ...]], str],
        n: int | None = None,
    ) -> None:
        # a list, or a _Window on the run's checks as they stream by (where its rows were made
        # by another process, each of those comes made: RowMaker)
        self.checks = checks
        self.run = run
        self.multi_source = multi_source
        self.labels = labels  # (source, section path) -> the section as shown
        self.n = len(checks) if n is None else n  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n

    def __bool__(self) -> bool:
        return self.n > 0

    def __iter__(self) -> Iterator[Row]:
        for c in self.checks:
            if isinstance(c, str):
                raise TypeError("a row made by another process is text, not a Row")
            yield self._row(c)

    def _row(self, c: Check) -> Row:
        multi, labels = self.multi_source, self.labels
        key = (c.link.source if multi else "", c.link.section)
        label = labels.get(key)
        if label is None:
            label = labels[key] = _section_label(key, multi)
        return _row(c, self.run, multi, label)

    def html(self, main: bool, badges: Mapping[str, Markup]) -> Iterator[Markup]:
        """Each row's <tr> element, made as the template writes it (_row_html)."""
        for c in self.checks:
            yield Markup(c if isinstance(c, str) else _row_html(self._row(c), main, badges))


@dataclass(frozen=True, slots=True)
class Section:
    """One section of the post: its heading path and its rows in post order."""

    anchor: str
    title: str
    title_lang: str | None
    rows: Rows
    counts: tuple[tuple[str, int], ...]  # non-ok verdicts present, worst first


@dataclass(frozen=True, slots=True)
class Table:
    """One table of the page: the newly broken, the recovered, or one section's links."""

    kind: str  # "newly-broken", "recovered" or "section"
    rows: Rows
    main: bool  # the section tables: every link once (data-main), in post order
    toc: bool  # the table of contents comes before this table
    anchor: str = ""
    title: str = ""
    title_lang: str | None = None
    counts: tuple[tuple[str, int], ...] = ()


_RANK = {v: i for i, v in enumerate(SEVERITY)}
_VALUE = {v: v.value for v in Verdict}


def _section_label(key: tuple[str, tuple[str, ...]], multi_source: bool) -> str:
    source, path = key
    title = " / ".join(html_text(s) for s in path) or "(no section)"
    return f"{html_text(source)}: {title}" if multi_source else title


# A run's checks share much: reasons and details (one per status for most links), moments
# (the checks of one moment share their history). These make each such value once.


@lru_cache(maxsize=4096)
def _clean_shared(text: str | None) -> str:
    return html_text(text)


@lru_cache(maxsize=4096)
def _iso_utc(at: datetime) -> str:
    return _utc(at).isoformat()


@lru_cache(maxsize=4096)
def _squares(recent: tuple[tuple[datetime, Verdict], ...]) -> tuple[Square, ...]:
    return tuple(Square(_VALUE[v], f"{fmt_time(at)}: {_VALUE[v]}") for at, v in recent)


@lru_cache(maxsize=4096)
def _recent_label(recent: tuple[Square, ...]) -> str:
    return "last runs: " + ", ".join(s.verdict for s in recent)


@cache
def _macros() -> Any:
    """The template's shared pieces (macros.html.j2), to render each distinct one once."""
    return environment().get_template("macros.html.j2").module


@lru_cache(maxsize=4096)
def _strip(recent: tuple[Square, ...]) -> Markup:
    """A row's strip of recent runs, rendered by its macro (autoescaped)."""
    return Markup(_macros().strip(recent, _recent_label(recent)))


def _row(check: Check, run: Run, multi_source: bool, section: str | None = None) -> Row:
    link, f, m, h = check.link, check.fetch, check.meta, check.history
    verdict = _VALUE[check.verdict]
    listed = html_text(link.listed_title)
    title = html_text(check.page_title)
    summary = html_text(m.summary) if m else ""
    url = html_text(link.url)
    listed_lang = text_lang(listed)

    prev_title = ""
    prev_verdict: str | None = None
    since, since_note, since_title, since_sort = "—", "", "no history for this link", ""
    recent: tuple[Square, ...] = ()
    if h is not None:
        if h.previous_title and html_text(h.previous_title) != title:
            prev_title = html_text(h.previous_title)
        if h.previous_verdict is not None and h.previous_verdict is not check.verdict:
            prev_verdict = _VALUE[h.previous_verdict]
        start = h.first_failed_at if check.verdict in BROKEN and h.first_failed_at else h.since
        if start is not None:
            since_sort = _iso_utc(start)
            if h.previous_verdict is None:
                since, since_title = "first check", f"first checked {fmt_time(start)}"
            elif not _before(start, run.started_at):
                since, since_title = "this run", f"{verdict} since this run"
            else:
                since = f"{_utc(start):%Y-%m-%d}"
                since_note = f"{fmt_age(start, run.started_at)} ago"
                since_title = f"{verdict} since {fmt_time(start)}"
            if check.verdict in BROKEN and h.consecutive_failures > 1:
                since_note = ", ".join(
                    x for x in (since_note, f"{h.consecutive_failures} failing runs") if x
                )
                since_title += f", failing in {h.consecutive_failures} runs in a row"
        if h.recent:
            recent = _squares(h.recent[-RECENT_RUNS:])

    final_url, final_href, hops = "", None, ""
    if f is not None:
        if f.final_url and f.final_url != link.url:
            final_url = html_text(f.final_url)
            final_href = safe_href(f.final_url)
        if f.hops:
            hops = " → ".join(str(hop.status) for hop in f.hops)

    if section is None:
        section = _section_label((link.source, link.section), multi_source)
    flag = "newly-broken" if check.newly_broken else "recovered" if check.recovered else ""
    return Row(
        verdict=verdict,
        rank=_RANK[check.verdict],
        line=link.line,
        source=html_text(link.source),
        section=section,
        url=url,
        href=safe_href(link.url),
        listed=listed,
        listed_lang=listed_lang,
        title=title,
        title_lang=listed_lang if title == listed else text_lang(title),
        title_same=bool(title) and title == listed,
        previous_title=prev_title,
        previous_verdict=prev_verdict,
        summary=summary,
        summary_lang=text_lang(summary),
        reason=_clean_shared(check.reason),
        detail=_clean_shared(check.detail),
        status=f.status if f else None,
        cached=check.cached,
        as_of=f" {check.checked_at:%Y-%m-%d}" if check.cached else "",
        since=since,
        since_note=since_note,
        since_title=since_title,
        since_sort=since_sort,
        final_url=final_url,
        final_href=final_href,
        hops=hops,
        recent=recent,
        recent_label=_recent_label(recent) if recent else "",
        strip=_strip(recent) if recent else "",
        flag=flag,
    )


def _row_html(r: Row, main: bool, badges: Mapping[str, Markup]) -> str:
    """A table row's <tr> element, every value escaped as the template's autoescape does it.

    Written here, not in the template's loop: there a row was ~64 pieces yielded through
    jinja2's generator, each value looked up by `environment.getattr` and escaped apart, and
    that loop was most of report.html's cost (bench/reports.py --profile html). The markup
    is the one the template's loop wrote, byte for byte.
    """
    e = _escape
    out = ['<tr data-verdict="', e(r.verdict), '"']
    if main:
        out.append(" data-main")
    if r.flag:
        out += (' class="', e(r.flag), '"')
    line = e(r.line)
    out += ('>\n<td class="c-line num" data-label="Line" data-sort="', line, '">', line)
    out.append('</td>\n<td class="c-link" data-label="Listed title">\n')
    lang = f' lang="{e(r.listed_lang)}"' if r.listed_lang else ""
    listed = e(clip(r.listed or r.url, 160))
    if r.href:
        out += ('<a href="', e(r.href), '" rel="noopener noreferrer nofollow" target="_blank"')
        out += (lang, ">", listed, "</a>\n")
    else:
        out += ('<span class="nolink" title="not an http(s) URL: not clickable"', lang, ">")
        out += (listed, "</span>\n")
    out += ('<div class="url" title="', e(clip(r.url, MAX_ATTR)), '">', e(midclip(r.url, 90)))
    out.append("</div>\n")
    if not main:
        out += ('<div class="where">', e(clip(r.section, 200)), " · line ", line, "</div>")
    out.append('</td>\n<td class="c-title" data-label="Fetched title">\n')
    lang = f' lang="{e(r.title_lang)}"' if r.title_lang else ""
    if not r.title:
        out.append('<span class="muted">no title</span>\n')
    elif r.title_same:
        out += ('<span class="muted same" title="', e(clip(r.title, MAX_ATTR)))
        out.append('">= listed title</span>\n')
    else:
        out += ("<span", lang, ">", e(clip(r.title, 160)), "</span>\n")
    if r.previous_title:
        out += ('<div class="prev">was: <span', lang, ">", e(clip(r.previous_title, 160)))
        out.append("</span></div>")
    if r.summary:
        out.append("<details><summary>summary</summary><p")
        if r.summary_lang:
            out += (' lang="', e(r.summary_lang), '"')
        out += (">", e(clip(r.summary, MAX_SUMMARY)), "</p></details>")
    out += ('</td>\n<td class="c-verdict" data-label="Verdict" data-sort="', e(r.rank), '">')
    out += (e(badges[r.verdict]), "\n")
    if r.previous_verdict:
        out += ('<div class="was">was ', e(badges[r.previous_verdict]), "</div>")
    if r.cached:
        out.append(
            '<div class="muted small" title="reused from the history, not fetched this run">'
        )
        out += ("cached", e(r.as_of), "</div>")
    out += ('</td>\n<td class="c-reason" data-label="Reason"><code>', e(clip(r.reason, 80)))
    out.append("</code>")
    if r.status:
        out += (' <span class="status">HTTP ', e(r.status), "</span>")
    if r.detail and r.detail != r.reason:
        out += ('<div class="detail">', e(clip(r.detail, MAX_TEXT)), "</div>")
    out.append('</td>\n<td class="c-since')
    if not r.since_sort:
        out.append(" blank")
    out += ('" data-label="Since" data-sort="', e(r.since_sort), '"><span title="')
    out += (e(r.since_title), '">', e(r.since), "</span>")
    if r.since_note:
        out += ('<div class="small muted">', e(r.since_note), "</div>")
    out.append('</td>\n<td class="c-final')
    if not (r.final_url or r.hops):
        out.append(" blank")
    out.append('" data-label="Final URL">\n')
    if r.final_url:
        title, shown = e(clip(r.final_url, MAX_ATTR)), e(midclip(r.final_url, 70))
        if r.final_href:
            out += ('<a href="', e(r.final_href), '" rel="noopener noreferrer nofollow" ')
            out += ('target="_blank" title="', title, '">', shown, "</a>\n")
        else:
            out += ('<span class="nolink" title="', title, '">', shown, "</span>\n")
    else:
        out.append('<span class="muted">—</span>\n')
    if r.hops:
        out += ('<div class="small muted">via ', e(r.hops), "</div>")
    out.append('</td>\n<td class="c-runs')
    if not r.recent:
        out.append(" blank")
    out.append('" data-label="Last runs">\n')
    if r.recent:
        out.append(e(r.strip))
    else:
        out.append('<span class="muted" title="no history for this link yet">—</span>\n')
    out.append("</td>\n</tr>\n")
    return "".join(out)


class _Stream:
    """One pass over a run's checks shared by the section tables in page order: each table
    takes its stretch as the template writes it; the checks of a section that come after other
    sections (`strays`, rare) were set aside by index and are added to their own table."""

    def __init__(self, checks: Iterable[Check], strays: set[int], rest: Iterable[str] = ()) -> None:
        self.checks = checks
        self.strays = strays
        self.rest = rest  # the rows after `checks`, made by another process (RowMaker)
        self.it: Iterator[Check | str] | None = None
        self.at = 0  # checks taken (strays not counted)

    def take(self, start: int, n: int) -> Iterator[Check | str]:
        if self.it is None:
            mine = (c for i, c in enumerate(self.checks) if i not in self.strays)
            self.it = chain(mine, self.rest)
        for _ in range(start - self.at):  # a table before was not written out: skip its rows
            next(self.it)
        self.at = max(self.at, start)
        for c in islice(self.it, n):
            self.at += 1
            yield c


class _Window:
    """A section's rows: its stretch of the shared stream, then its strays."""

    def __init__(self, stream: _Stream, start: int, n: int, strays: list[Check]) -> None:
        self.stream, self.start, self.n, self.strays = stream, start, n, strays

    def __iter__(self) -> Iterator[Check | str]:
        yield from self.stream.take(self.start, self.n)
        yield from self.strays


def _sections(
    run: Run, multi_source: bool, checks: Iterable[Check] | None = None, rest: Iterable[str] = ()
) -> tuple[tuple[Section, ...], list[Check], list[Check]]:
    """The section tables, in the order the sections first appear, and the newly broken and
    recovered checks in the order their rows come in them. Where each section's checks come is
    the run's tally (its layout); the checks are streamed into the tables as the template writes
    them, from `checks` (a pass over the run's checks: by default one of its own), then the
    rows `rest` (made by another process for the checks after those: RowMaker): only the
    flagged checks and the few of a section that comes back after another are held."""
    layout = run.tally().layout

    def mine(key: Key) -> Key:  # one input: its sections alone are the tables
        return key if multi_source else ("", key[1])

    order = [mine(key) for key in layout.keys]
    stretch = {mine(key): span for key, span in layout.stretch.items()}
    counts = {mine(key): n for key, n in layout.verdicts.items()}
    stray_at = {i: mine(key) for i, key in layout.strays.items()}
    flagged_at = {i: mine(key) for i, key in layout.flagged.items()}
    # the few checks held, read again in full (their rows show their strips of recent runs)
    strays: dict[Key, list[Check]] = {}
    flagged: dict[Key, list[Check]] = {}
    held = sorted(stray_at.keys() | flagged_at.keys())
    if held:
        picked = run.checks.pick(held) if isinstance(run.checks, LazyChecks) else None
        for i, c in zip(held, picked or (run.checks[i] for i in held), strict=True):
            if i in stray_at:
                strays.setdefault(stray_at[i], []).append(c)
            if i in flagged_at:
                flagged.setdefault(flagged_at[i], []).append(c)
    stream = _Stream(run.checks if checks is None else checks, set(stray_at), rest)
    labels = {key: _section_label(key, multi_source) for key in order}
    sections = []
    for i, key in enumerate(order, start=1):
        start, n = stretch[key]
        extra = strays.get(key, [])
        sections.append(
            Section(
                anchor=f"s-{i}",
                title=labels[key],
                title_lang=text_lang(labels[key]),
                rows=Rows(
                    _Window(stream, start, n, extra), run, multi_source, labels, n + len(extra)
                ),
                counts=tuple(
                    (v.value, counts[key][v])
                    for v in SEVERITY
                    if v is not Verdict.OK and v in counts[key]
                ),
            )
        )
    in_order = [c for key in order for c in flagged.get(key, ())]
    newly = [c for c in in_order if c.newly_broken]
    recovered = [c for c in in_order if not c.newly_broken and c.recovered]
    return tuple(sections), newly, recovered


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
        note = _trend_note([(at, broken(counts)) for at, counts in judged])
    return tuple(columns), note


def _trend_note(judged: Sequence[tuple[datetime, int]]) -> str:
    """The sentence under the chart: broken links now against the previous and the first
    judged run shown, saying only what differs (at least two runs)."""
    (first_at, first), (prev_at, prev), (_, now) = judged[0], judged[-2], judged[-1]
    text = f"Broken (dead + error): {now} now"
    if now == prev == first:
        return text + f", unchanged since {_utc(first_at):%Y-%m-%d}."
    text += f", {prev} at the previous run ({_utc(prev_at):%Y-%m-%d})"
    if len(judged) > 2 and first != prev:
        text += f", {first} on {_utc(first_at):%Y-%m-%d}"
    return text + "."


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
    partial: str | None  # why the run is not complete, when it is not
    coverage: str | None  # how many verdicts are from earlier runs or missing (a budget)
    counts: tuple[tuple[str, int], ...]  # every verdict, worst first
    broken: int
    bars: tuple[Bar, ...]
    trend: tuple[Column, ...]
    trend_note: str
    newly_broken: Rows
    recovered: Rows
    sections: tuple[Section, ...]
    verdicts: tuple[tuple[str, str], ...]  # (value, meaning) for the legend and filter
    version: str
    badges: Mapping[str, Markup]  # verdict -> its badge, rendered by its macro

    @property
    def tables(self) -> tuple[Table, ...]:
        """Every table in page order; the table of contents precedes the first section's."""
        out = [
            Table(k, rows, False, False)
            for k, rows in (("newly-broken", self.newly_broken), ("recovered", self.recovered))
            if rows
        ]
        out += (
            Table("section", s.rows, True, i == 0, s.anchor, s.title, s.title_lang, s.counts)
            for i, s in enumerate(self.sections)
        )
        return tuple(out)


def page(run: Run, checks: Iterable[Check] | None = None, rest: Iterable[str] = ()) -> Page:
    """The view model of a run: cleaned, capped, grouped, ordered; the section tables' rows
    come from `checks` (a pass over the run's checks: by default one of its own), then from
    `rest` (the rows of the checks after those, made by another process: RowMaker)."""
    multi = len(run.tally().sources) > 1
    sections, newly, recovered = _sections(run, multi, checks, rest)
    labels = sections[0].rows.labels if sections else {}
    counts = run.counts()
    trend, note = _trend(run)
    seconds = max((run.finished_at - run.started_at).total_seconds(), 0.0)
    return Page(
        sources=html_text(", ".join(run.sources)) or "input",
        sources_lang=text_lang(", ".join(run.sources)),
        total=len(run.checks),
        started=fmt_time(run.started_at),
        finished=fmt_time(run.finished_at),
        duration=f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min",
        network_down=run.network_down,
        partial=partial_note(run),
        coverage=coverage_note(run),
        counts=tuple((v.value, counts.get(v.value, 0)) for v in SEVERITY if v.value in counts),
        broken=sum(counts.get(v.value, 0) for v in BROKEN),
        bars=_bars(counts),
        trend=trend,
        trend_note=note,
        newly_broken=Rows(newly, run, multi, labels),
        recovered=Rows(recovered, run, multi, labels),
        sections=sections,
        verdicts=tuple((v.value, MEANING[v]) for v in SEVERITY if v.value in counts),
        version=__version__,
        badges=_badges(),
    )


@cache
def _badges() -> Mapping[str, Markup]:
    """Each verdict's badge, rendered by its macro."""
    return {v.value: Markup(_macros().badge(v.value)) for v in Verdict}


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


def write(
    run: Run, out: TextIO, checks: Iterable[Check] | None = None, rest: Iterable[str] = ()
) -> None:
    """Write the whole HTML report to out, a piece at a time (rows are made as they go);
    `checks`: the pass over the run's checks to take the rows from (by default its own), and
    `rest` the rows of the checks after those when another process made them (RowMaker)."""
    pieces = environment().get_template("report.html.j2").generate(p=page(run, checks, rest))
    # The template yields many small pieces, and each row as one (~1.5 KB): a write takes a
    # few hundred rows at most.
    while chunk := list(islice(pieces, 128)):
        out.write("".join(chunk))


def render(run: Run) -> str:
    """The whole HTML report: one file, no external resources."""
    out = io.StringIO()
    write(run, out)
    return out.getvalue()


class Handoff:
    """The section tables' rows made by one process (RowMaker) for the page another one writes:
    an unnamed temporary file in the report's directory they go into as they are made, and a
    pipe on which the maker says they are all there. Made before the fork; then the maker calls
    `making`, `put` and `done`, the page's writer `reading`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            self.file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by close
        except OSError as exc:
            raise CrawlerError(f"cannot write in {directory}: {exc.strerror or exc}") from exc
        self.ready, self.said = os.pipe()

    def making(self) -> None:
        """In the maker: the reading end is the writer's."""
        os.close(self.ready)
        self.ready = -1

    def put(self, row: str) -> None:
        try:
            marshal.dump(row, self.file)
        except OSError as exc:
            raise CrawlerError(f"cannot write in {self.directory}: {exc.strerror or exc}") from exc

    def done(self) -> None:
        """Every row is in the file: the writer may read it (from the start: the file's offset
        is one, shared by both processes, and the maker does not touch it again)."""
        try:
            self.file.flush()
        except OSError as exc:
            raise CrawlerError(f"cannot write in {self.directory}: {exc.strerror or exc}") from exc
        self.file.seek(0)
        with contextlib.suppress(BrokenPipeError):  # the writer is gone: its join says why
            os.write(self.said, b".")

    def reading(self) -> Iterator[str]:
        """In the page's writer: the rows, in order, once the maker is done (the first one
        waits for it)."""
        os.close(self.said)  # so that a maker gone without a word is an end of file here
        self.said = -1

        def rows() -> Iterator[str]:
            if os.read(self.ready, 1) != b".":
                raise RuntimeError("the rows of report.html made aside never came")
            while True:
                try:
                    row = marshal.load(self.file)
                except EOFError:
                    return
                yield row

        return rows()

    def close(self) -> None:
        self.file.close()
        for fd in (self.ready, self.said):
            if fd >= 0:
                os.close(fd)
        self.ready = self.said = -1


class RowMaker:
    """The section tables' rows of the run's checks from `start` on, made from another pass
    than the page writer's, in another process: given every check of the run in order (a
    report Feed's way), it puts each of those rows into `handoff` as the page's writer would
    have made it. The strays (the checks of a section that comes back after another one) are
    not among them: the page's writer holds and makes those."""

    def __init__(self, run: Run, start: int, handoff: Handoff) -> None:
        tally = run.tally()
        multi = len(tally.sources) > 1
        self.rows = Rows((), run, multi, {}, 0)
        self.strays = frozenset(tally.layout.strays)
        self.start, self.handoff, self.badges = start, handoff, _badges()
        self.i = 0

    def __call__(self, check: Check) -> None:
        i = self.i
        self.i = i + 1
        if i >= self.start and i not in self.strays:
            self.handoff.put(_row_html(self.rows._row(check), True, self.badges))
