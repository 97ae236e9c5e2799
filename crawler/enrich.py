"""Enrich a post in place: add fetched titles and summaries, mark dead links, update moved ones.

The engine is pure (`enrich_text`: bytes in, bytes out) and works in three jobs: plan the edits
(where each link is written comes from `crawler.post.scan_post`'s spans: enrich has no link
scanner of its own), verify them by parsing the result again, and write (the CLI, with
`write_atomic_with_backup`). The CLI looks up the latest check in the history
(`Store.latest_check_of`) and the archive's snapshots (`crawler.archive`).

Conventions (all reversible, all read back by `crawler.post.parse_post` as the same URLs):

- **Title, the post's own layout.** A URL alone on its line at column 0, with no listed title and
  followed by a blank line (or the end of the file), gets a blank line and the title line after
  it, with the URL line's own line ending: ``URL⏎⏎title⏎``.
- **Title, other styles.** ``[](url)`` becomes ``[title](url)``. A bare URL (or ``<url>``) in
  prose, in a list item, or anywhere the layout does not fit gets `` （title）`` right after it;
  any ``（`` right after a bare URL counts as its title, so it is never added twice.
- **Summary** (layout entries only): a blank line and a blockquote line ``> summary`` under the
  title line, unless the next block after the title is already a blockquote.
- **Dead mark:** `` （已失效，YYYY-MM-DD）`` right after the link (after ``)`` of a Markdown
  link, after the URL of a bare one), dated with the check. ``unmark`` removes exactly these
  marks; with ``mark_dead`` a marked link that is alive again loses its mark.
- **Archive:** `` [存档](snapshot)`` right after the dead mark; ``archive`` implies ``mark_dead``.
- **Redirects:** the URL text is replaced by the final URL of a permanent redirect chain.

Fetched text is sanitised before it is written: control, bidi and zero-width characters are
dropped, whitespace collapsed, Markdown/HTML specials and Liquid's ``{{``/``{%`` backslash-escaped
(``http:`` too, so no new URL appears), a leading block marker escaped, the length capped with an
ellipsis, and characters the post's encoding cannot hold (an emoji in a GBK post) dropped. Every
edit is verified by re-parsing the result; an edit that would change another link, a section or a
listed title, or that would change the post's blocks (a list cut in two by a summary), is
dropped, so every other byte stays as it was and a second run changes nothing.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from glob import escape as glob_escape
from pathlib import Path
from typing import TYPE_CHECKING

from crawler.archive import SNAPSHOT_URL, safe_snapshot_url
from crawler.classify import PERMANENT
from crawler.errors import ConfigError, CrawlerError, InputError, NetworkDownError
from crawler.post import (
    DEAD_MARK,
    Span,
    block_structure,
    clean_url,
    detect_encoding,
    is_escaped,
    is_http_url,
    mask_code_spans,
    parse_post,
    scan_post,
    url_as_read,
)
from crawler.redact import redact_url, unredact
from crawler.sanitize import markdown_text
from crawler.types import ALIVE, Check, Link, Verdict

if TYPE_CHECKING:
    from crawler.config import FetchSettings
    from crawler.db import Db
    from crawler.store import Store

__all__ = [
    "EnrichOptions",
    "Finding",
    "PostChangedError",
    "add_archive_urls",
    "changed_entries",
    "check_unchanged",
    "count_changed_lines",
    "enrich_text",
    "findings_from_checks",
    "post_digest",
    "strip_marks",
    "unified_diff",
    "write_atomic_with_backup",
]

ARCHIVE_LABEL = "存档"


# --- the public values ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrichOptions:
    """What `enrich_text` may change."""

    titles: bool = True
    summaries: bool = False
    mark_dead: bool = False
    unmark: bool = False
    update_redirects: bool = False
    update_titles: bool = False
    archive: bool = False
    max_len: int = 200

    def __post_init__(self) -> None:
        """Reject contradictory or unusable settings."""
        if self.unmark and (self.mark_dead or self.archive):
            raise ConfigError("--unmark cannot be combined with --mark-dead or --archive")
        if self.max_len < 8:
            raise ConfigError(f"max_len must be at least 8, not {self.max_len}")


@dataclass(frozen=True, slots=True)
class Finding:
    """The facts about one URL that enrich needs, taken from its latest check."""

    url: str
    verdict: Verdict
    title: str | None
    summary: str | None
    final_url: str | None
    permanent_redirect: bool
    checked_at: datetime
    archive_url: str | None = None
    listed_titles: frozenset[str | None] = frozenset()  # as the check read the post


def _last_permanent_target(c: Check) -> str | None:
    """Where the permanent hops at the start of the chain lead (a later 302 is not followed)."""
    f = c.fetch
    if f is None:
        return None
    hops = f.hops
    for n, hop in enumerate(hops):
        if hop.status not in PERMANENT:
            return hop.url if n else f.final_url
    return f.final_url


def findings_from_checks(checks: Iterable[Check]) -> dict[str, Finding]:
    """One Finding per URL from a run's checks (the first check of a URL; titles of all)."""
    out: dict[str, Finding] = {}
    titles: dict[str, set[str | None]] = {}
    for c in checks:
        titles.setdefault(c.url, set()).add(c.link.listed_title)
        if c.url in out:
            continue
        out[c.url] = Finding(
            url=c.url,
            verdict=c.verdict,
            title=c.meta.title if c.meta else None,
            summary=c.meta.summary if c.meta else None,
            final_url=_last_permanent_target(c),
            permanent_redirect=c.verdict is Verdict.REDIRECTED,
            checked_at=c.checked_at,
        )
    return {url: replace(f, listed_titles=frozenset(titles[url])) for url, f in out.items()}


class PostChangedError(CrawlerError):
    """The post changed since the check enrich relies on."""

    def __init__(self, name: str, link: Link | None = None) -> None:
        """One line: which file (and entry), and what to do."""
        where = f" line {link.line} ({link.url})" if link is not None else ""
        super().__init__(
            f"{name}:{where} changed since the last check; run `crawler check` again or use --fresh"
        )


def post_digest(raw: bytes) -> str:
    """The sha256 of a post's bytes, hex: the history keeps it to detect later edits."""
    return hashlib.sha256(raw).hexdigest()


def check_unchanged(raw: bytes, digest: str, name: str) -> None:
    """Raise PostChangedError unless `raw` still has the digest recorded at check time."""
    if post_digest(raw) != digest:
        raise PostChangedError(name)


def changed_entries(
    raw: bytes, findings: Mapping[str, Finding], options: EnrichOptions
) -> list[Link]:
    """The entries enrich would touch whose listed title is not the one the check read.

    Findings are facts about URLs, so an edit elsewhere in the post (a blank line, a new entry,
    another entry's title) does not make them stale; an entry enrich would write to does.
    """
    post = _read(raw)
    stale = [
        link
        for link in post.links
        if (f := findings.get(redact_url(link.url))) is not None
        and f.listed_titles
        and link.listed_title not in f.listed_titles
    ]
    if not stale:
        return []
    urls = {link.url for link in stale}
    kept = {url: f for url, f in findings.items() if url not in urls}
    with_all = enrich_text(raw, findings, options)
    if with_all == enrich_text(raw, kept, options):
        return []  # enrich leaves the changed entries alone
    return stale


def count_changed_lines(old: bytes, new: bytes) -> int:
    """Lines added or changed between two versions of a post (a changed line counts once)."""
    try:
        encoding = detect_encoding(old)
    except InputError:
        encoding = "utf-8"
    a = old.decode(encoding, errors="replace").splitlines()
    b = new.decode(encoding, errors="replace").splitlines()
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    return sum(
        max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal"
    )


# --- sanitising fetched text ---------------------------------------------------------------

# --- marks -----------------------------------------------------------------------------------

_MARK = re.compile(
    r" （" + DEAD_MARK + r"，\d{4}-\d{2}-\d{2}）"
    r"(?P<archive> \[" + ARCHIVE_LABEL + r"\]\((?P<url>" + SNAPSHOT_URL.pattern + r")\))?"
)
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


@dataclass(frozen=True, slots=True)
class _Mark:
    """A dead mark found in a line, at an offset of the line with its marks removed."""

    pos: int
    text: str
    archive: str | None


def _split_marks(line: str) -> tuple[str, list[_Mark]]:
    """A line without its dead marks, and the marks."""
    if DEAD_MARK not in line:
        return line, []
    marks: list[_Mark] = []
    parts: list[str] = []
    prev = removed = 0
    for m in _MARK.finditer(line):
        parts.append(line[prev : m.start()])
        marks.append(_Mark(m.start() - removed, m.group(), m.group("url")))
        removed += m.end() - m.start()
        prev = m.end()
    parts.append(line[prev:])
    return "".join(parts), marks


def strip_marks(text: str) -> str:
    """The text with every dead mark (and its archive link) removed; lines stay where they are.

    `parse_post(strip_marks(text))` reads a marked post as it was before marking, listed titles
    of marked layout entries included.
    """
    return "".join(_split_marks(line)[0] for line in _LINE.findall(text))


def _mark_text(finding: Finding, archive: str | None) -> str:
    """A new dead mark dated with the check, with its archive link when there is one."""
    at = finding.checked_at
    day = (at.astimezone() if at.tzinfo is not None else at).date()
    text = f" （{DEAD_MARK}，{day.isoformat()}）"
    return text + (f" [{ARCHIVE_LABEL}]({archive})" if archive else "")


# --- where the links are written -------------------------------------------------------------

# Context, not URLs: crawler.post finds the links and says where each is written.
# where a destination is written: a `](`, a `]:` (a definition, or text that looks like one),
# an attribute's `=`
_IN_DESTINATION = re.compile(r"(?:\]\(\s*<?|\]:[ \t]*<?|=\s*[\"']?)\Z")
_INLINE_TITLE = re.compile(r"[ \t]*（")
_INLINE_TITLE_GROUP = re.compile(r"[ \t]*（[^（）]*）")
#: crawler.post's span kinds -> how enrich may edit them
_KIND = {
    "bare": "bare",
    "autolink": "auto",
    "inline": "link",
    "image": "image",
    "html": "html",
    "reference": "def",
}


@dataclass(frozen=True, slots=True)
class _Construct:
    """One link as written in a line: its kind, extent and URL span."""

    kind: str  # "bare", "auto", "link", "image", "html", "def"
    start: int
    end: int
    url_start: int
    url_end: int
    url: str  # decoded, as parse_post reads it
    angle: bool = False  # a `<…>` link destination
    empty_text: bool = False  # `[](url)`
    editable: bool = True
    own_line: bool = False  # alone on its line in a paragraph (the post's layout)


def _construct(span: Span, url: str, line: str) -> _Construct | None:
    """The construct of a link at `span` of `line`, or None when it is not on one line."""
    if span.first < 0 or span.last < 0:
        return None
    own = "auto" if span.angle else "bare"
    kind = own if span.kind == "own-line" else _KIND[span.kind]
    editable = kind != "html"
    if kind == "bare":
        written = line[span.start : span.end]
        masked = mask_code_spans(line)
        editable = not (
            _IN_DESTINATION.search(masked, 0, span.start)
            or "[" in written
            or "]" in written
            or _bracket_depth(masked, span.start) > 0  # link text or a reference label
        )
    return _Construct(
        kind,
        span.first,
        span.last,
        span.start,
        span.end,
        url,
        span.angle,
        span.empty_text,
        editable,
        span.kind == "own-line",
    )


def _bracket_depth(s: str, end: int) -> int:
    """How many unescaped `[` are still open before offset `end`."""
    depth = 0
    for i in range(end):
        if s[i] == "[" and not is_escaped(s, i):
            depth += 1
        elif s[i] == "]" and not is_escaped(s, i) and depth:
            depth -= 1
    return depth


# --- the post as lines ---------------------------------------------------------------------

_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class _Line:
    """One line of the post: its bytes, line ending, text and text without dead marks."""

    raw: bytes
    eol: bytes
    text: str
    clean: str
    marks: list[_Mark]
    roundtrips: bool  # text encodes back to exactly raw


@dataclass(slots=True)
class _Post:
    """A decoded post, its links (read with the dead marks removed) and where they are written."""

    bom: bytes
    codec: str
    insert_codec: str | None
    lines: list[_Line]
    links: list[Link]
    by_line: dict[int, list[int]]  # 0-based line -> link indexes
    constructs: dict[int, list[_Construct]]
    matched: dict[int, tuple[int, int]]  # link index -> (line, construct index)
    default_eol: bytes


def _split_lines(body: bytes) -> list[tuple[bytes, bytes]]:
    """(content, line ending) pairs, splitting where crawler.post splits (CRLF, CR, LF)."""
    out: list[tuple[bytes, bytes]] = []
    for chunk in body.splitlines(keepends=True):
        content = chunk.rstrip(b"\r\n")
        out.append((content, chunk[len(content) :]))
    return out


def _codec_of(raw: bytes) -> tuple[bytes, str, str | None]:
    """(BOM bytes, codec for the lines, codec that new text must fit in)."""
    if b"\x00" in raw:
        raise InputError("is a binary file (contains NUL bytes), not a text post")
    encoding = detect_encoding(raw)
    if encoding == "utf-8-sig":
        return _UTF8_BOM, "utf-8", None
    if encoding == "utf-8":
        return b"", "utf-8", None
    return b"", "gb18030", "gbk"


def _read(raw: bytes) -> _Post:
    """Decode a post into lines and find where each of its links is written."""
    bom, codec, insert_codec = _codec_of(raw)
    lines: list[_Line] = []
    for content, eol in _split_lines(raw[len(bom) :]):
        text = content.decode(codec)
        clean, marks = _split_marks(text)
        lines.append(_Line(content, eol, text, clean, marks, text.encode(codec) == content))
    eols = Counter(line.eol for line in lines if line.eol)
    default_eol = eols.most_common(1)[0][0] if eols else b"\n"
    found = scan_post("\n".join(line.clean for line in lines))
    links = [link for link, _ in found]
    by_line: dict[int, list[int]] = {}
    constructs: dict[int, list[_Construct]] = {}
    matched: dict[int, tuple[int, int]] = {}
    for k, (link, span) in enumerate(found):
        i = link.line - 1
        by_line.setdefault(i, []).append(k)
        c = _construct(span, link.url, lines[i].clean) if span and i < len(lines) else None
        if c is not None:
            constructs.setdefault(i, []).append(c)
            matched[k] = (i, len(constructs[i]) - 1)
    return _Post(bom, codec, insert_codec, lines, links, by_line, constructs, matched, default_eol)


# --- planning the edits --------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """The edits of one attempt: changed lines, inserted lines, what the parser must read back."""

    line_text: dict[int, str] = field(default_factory=dict)  # line -> new text
    inserts: dict[int, list[tuple[str, int]]] = field(default_factory=dict)  # after line -> lines
    new_urls: dict[int, str] = field(default_factory=dict)  # link -> replacement URL
    titled: set[int] = field(default_factory=set)  # links whose listed title appears
    retitled: dict[int, str] = field(default_factory=dict)  # link -> its new listed title
    layout: set[int] = field(default_factory=set)  # links titled by an inserted line
    insert_owner_line: dict[int, int] = field(default_factory=dict)  # link -> line it inserts after


@dataclass(slots=True)
class _Limits:
    """Edits dropped after a failed verification."""

    frozen: set[int] = field(default_factory=set)  # lines left exactly as they are
    force_inline: set[int] = field(default_factory=set)  # links titled inline, not by a line
    no_insert: set[int] = field(default_factory=set)  # links that may not insert lines


def _valid_target(url: str | None) -> bool:
    """A redirect target that can be written into the post."""
    return bool(
        url
        and is_http_url(url)
        and len(url) <= 2048
        and not any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in url)
    )


def _resolve(findings: Mapping[str, Finding], url: str) -> tuple[str | None, Finding | None]:
    """(URL at the end of a permanent redirect chain or None, the finding that governs it)."""
    first = findings.get(url)
    if first is None:
        return None, None
    cur, gov, seen = url, first, {url}
    while (
        gov.verdict is Verdict.REDIRECTED
        and gov.permanent_redirect
        and gov.final_url is not None
        and gov.final_url != cur
        and _valid_target(gov.final_url)
    ):
        cur = gov.final_url
        if cur in seen or len(seen) > 20:
            return None, first  # a loop: leave the URL alone
        seen.add(cur)
        nxt = findings.get(cur)
        if nxt is None:
            break
        gov = nxt
    return (cur if cur != url else None), gov


def _blank_line(post: _Post, i: int) -> bool:
    """True for a line that is blank (or past the end of the file)."""
    return i >= len(post.lines) or not post.lines[i].clean.strip()


def _next_nonblank(post: _Post, i: int) -> int | None:
    """The index of the first non-blank line after line i."""
    for j in range(i + 1, len(post.lines)):
        if post.lines[j].clean.strip():
            return j
    return None


def _as_title(line: str) -> str:
    """A title line as crawler.post reads it."""
    return line.strip().strip("\u200b\ufeff").strip()


def _raw_url(c: _Construct, url: str) -> str | None:
    """How to write `url` in place of the construct's URL text, or None if it cannot be."""
    if c.kind == "bare":  # the parser must not cut or unescape it
        return url if clean_url(url) == url and url_as_read(url) == url else None
    if c.kind == "auto":
        return None if any(ch in "<>" or ch.isspace() for ch in url) else url
    if c.kind in ("link", "image", "def"):
        if c.angle:
            return None if any(ch in "<>" for ch in url) else url
        if any(ch in " <>" for ch in url):
            return None
        return url if url.count("(") == url.count(")") else None
    return None


def _plan(post: _Post, findings: Mapping[str, Finding], opt: EnrichOptions, lim: _Limits) -> _Plan:
    """Decide every edit, honouring the limits of earlier failed attempts."""
    plan = _Plan()
    for i, ks in sorted(post.by_line.items()):
        if i >= len(post.lines):
            continue
        line = post.lines[i]
        if i in lim.frozen or not line.roundtrips:
            continue
        edits: list[tuple[int, int, int, str]] = []  # (start, end, order, text)
        owned: set[int] = set()
        for k in ks:
            if k not in post.matched:
                continue
            ci = post.matched[k][1]
            c = post.constructs[i][ci]
            _plan_link(post, findings, opt, lim, plan, edits, owned, i, k, c)
        for n, mark in enumerate(line.marks):
            if n not in owned and not opt.unmark:
                edits.append((mark.pos, mark.pos, 2, mark.text))
        text = _apply(line.clean, edits)
        if text != line.text:
            plan.line_text[i] = text
    return plan


def _plan_link(
    post: _Post,
    findings: Mapping[str, Finding],
    opt: EnrichOptions,
    lim: _Limits,
    plan: _Plan,
    edits: list[tuple[int, int, int, str]],
    owned: set[int],
    i: int,
    k: int,
    c: _Construct,
) -> None:
    """Add the edits of one link (and its inserted lines) to the plan."""
    link = post.links[k]
    line = post.lines[i]
    s = line.clean
    recorded = redact_url(link.url)  # a password as ***, as the checks have it
    if opt.update_redirects:
        target, finding = _resolve(findings, recorded)
        if target is not None:  # the post keeps the user's own password
            target = unredact(target, link.url)
    else:
        target, finding = None, findings.get(recorded)
    inline_title = c.kind in ("bare", "auto") and bool(_INLINE_TITLE.match(s, c.end))
    group = _INLINE_TITLE_GROUP.match(s, c.end) if inline_title else None
    anchor = group.end() if group else c.end
    # the marks that belong to this link: right after it, or after its inline title
    mine = [n for n, m in enumerate(line.marks) if m.pos in (c.end, anchor) and n not in owned]
    owned.update(mine)
    if finding is None or not c.editable:
        for n in mine:  # nothing known: keep the marks as they are (unless unmarking)
            if not opt.unmark:
                edits.append((line.marks[n].pos, line.marks[n].pos, 2, line.marks[n].text))
        return
    alive = finding.verdict in ALIVE
    dead = finding.verdict is Verdict.DEAD
    # redirects
    if target is not None:
        raw = _raw_url(c, target)
        if raw is not None:
            edits.append((c.url_start, c.url_end, 0, raw))
            plan.new_urls[k] = target
    # titles
    has_title = link.listed_title is not None or inline_title or c.kind not in ("bare", "auto")
    if c.kind == "link" and c.empty_text and link.listed_title is None:
        has_title = False
    alone = c.own_line and c.start == 0
    title_line = ""
    enc = post.insert_codec
    if opt.titles and alive and finding.title and not has_title:
        layout_ok = alone and _blank_line(post, i + 1) and k not in lim.force_inline
        if layout_ok and k not in lim.no_insert:
            title_line = markdown_text(finding.title, opt.max_len, context="line", encoding=enc)
            if title_line:
                plan.layout.add(k)
                plan.titled.add(k)
        elif c.kind in ("bare", "auto"):
            t = markdown_text(finding.title, opt.max_len, context="inline", encoding=enc)
            if t:
                edits.append((c.end, c.end, 1, f" （{t}）"))
                anchor = c.end
        elif c.kind == "link" and c.empty_text:
            t = markdown_text(finding.title, opt.max_len, context="link", encoding=enc)
            if t:
                edits.append((c.start + 1, c.start + 1, 1, t))
                plan.titled.add(k)
    # the listed title of a `changed` entry becomes the page's (the user accepts the change)
    if opt.update_titles and finding.verdict is Verdict.CHANGED and finding.title and alone:
        _plan_retitle(post, lim, plan, i, k, finding.title, opt.max_len)
    # summaries: layout entries only, under their title line
    inserted: list[str] = []
    after = i
    if opt.summaries and alive and finding.summary and alone and k not in lim.no_insert:
        summary = markdown_text(finding.summary, opt.max_len, context="line", encoding=enc)
        if title_line:
            if summary and summary != title_line:
                inserted = ["", title_line, "", "> " + summary]
        elif link.listed_title is not None:
            j = _next_nonblank(post, i)
            if (
                j is not None
                and j not in post.by_line
                and _as_title(post.lines[j].clean) == link.listed_title
                and _blank_line(post, j + 1)
            ):
                nxt = _next_nonblank(post, j)
                quoted = nxt is not None and post.lines[nxt].clean.lstrip().startswith(">")
                if summary and not quoted and summary != link.listed_title:
                    inserted, after = ["", "> " + summary], j
    if title_line and not inserted:
        inserted = ["", title_line]
    if inserted:
        plan.inserts.setdefault(after, []).extend((t, k) for t in inserted)
        plan.insert_owner_line[k] = after
    # marks
    marking = opt.mark_dead or opt.archive  # --archive implies --mark-dead
    archive = safe_snapshot_url(finding.archive_url) if opt.archive else None
    if mine:
        n = mine[0]
        mark = line.marks[n]
        text: str | None = mark.text
        if opt.unmark or (marking and alive):
            text = None
        elif dead and archive and mark.archive is None:
            text = mark.text + f" [{ARCHIVE_LABEL}]({archive})"
        if text is not None:
            edits.append((mark.pos, mark.pos, 2, text))
        for extra in mine[1:]:
            if not opt.unmark:
                edits.append(
                    (line.marks[extra].pos, line.marks[extra].pos, 2, line.marks[extra].text)
                )
    elif dead and marking and c.kind != "def":
        edits.append((anchor, anchor, 2, _mark_text(finding, archive)))


def _plan_retitle(
    post: _Post, lim: _Limits, plan: _Plan, i: int, k: int, title: str, max_len: int
) -> None:
    """Rewrite the title line under the URL line i (link k) with the fetched title."""
    listed = post.links[k].listed_title
    j = _next_nonblank(post, i)
    if listed is None or j is None or j in post.by_line or j in lim.frozen or j in plan.line_text:
        return
    line = post.lines[j]
    if not line.roundtrips or line.marks or _as_title(line.clean) != listed:
        return
    new = markdown_text(title, max_len, context="line", encoding=post.insert_codec)
    if new and new != listed:
        plan.line_text[j] = line.clean[: len(line.clean) - len(line.clean.lstrip())] + new
        plan.retitled[k] = new


def _apply(s: str, edits: list[tuple[int, int, int, str]]) -> str:
    """s with the edits (start, end, order, text) applied; insertions at one offset keep order."""
    out: list[str] = []
    prev = 0
    for start, end, _, text in sorted(edits, key=lambda e: (e[0], e[1] != e[0], e[2])):
        if start < prev:
            continue  # overlapping edit: keep the earlier one
        out.append(s[prev:start])
        out.append(text)
        prev = end
    out.append(s[prev:])
    return "".join(out)


# --- assembling and verifying ------------------------------------------------------------------


@dataclass(slots=True)
class _Output:
    """The new bytes and where each new line came from."""

    data: bytes
    new_index: list[int]  # old line -> new line
    origin: list[tuple[str, int]]  # new line -> ("line", old line) or ("insert", link)


def _assemble(post: _Post, plan: _Plan) -> _Output:
    """The new post bytes for a plan; unchanged lines keep their exact bytes."""
    parts: list[bytes] = [post.bom]
    new_index: list[int] = []
    origin: list[tuple[str, int]] = []
    enc = post.insert_codec or post.codec
    for i, line in enumerate(post.lines):
        new_index.append(len(origin))
        origin.append(("line", i))
        content = line.raw
        if i in plan.line_text:
            content = plan.line_text[i].encode(post.codec)
        added = plan.inserts.get(i, [])
        if not added:
            parts += [content, line.eol]
            continue
        eol = line.eol or post.default_eol
        parts += [content, eol]
        for n, (text, owner) in enumerate(added):
            origin.append(("insert", owner))
            last = n == len(added) - 1
            parts += [text.encode(enc, errors="ignore"), line.eol if last else eol]
    return _Output(b"".join(parts), new_index, origin)


# What an inserted title or summary may add to the post's blocks; any other change of its block
# structure (a list cut in two by a summary after a lazy continuation line, a setext underline
# turned into a rule) damages the document.
_INSERTED_BLOCKS = frozenset(
    {"paragraph_open", "paragraph_close", "blockquote_open", "blockquote_close", "inline"}
)


def _containers(text: str) -> list[tuple[str, int | None]]:
    """The block structure an enrichment must keep."""
    return [b for b in block_structure(text) if b[0] not in _INSERTED_BLOCKS]


def _verify(
    post: _Post, plan: _Plan, out: _Output, blocks: list[tuple[str, int | None]]
) -> tuple[int, int | None] | None:
    """None when the new post reads as intended, else (old line to blame, inserting link).

    `blocks` is the old post's `_containers`."""
    text = out.data[len(post.bom) :].decode(post.codec)
    actual = parse_post(strip_marks(text))
    for n in range(max(len(actual), len(post.links))):
        exp = post.links[n] if n < len(post.links) else None
        act = actual[n] if n < len(actual) else None
        if exp is not None and act is not None:
            url = plan.new_urls.get(n, exp.url)
            titled = n in plan.titled
            if (
                act.line - 1 == out.new_index[exp.line - 1]
                and act.url == url
                and act.section == exp.section
                and (
                    act.listed_title is not None
                    if titled
                    else act.listed_title == plan.retitled.get(n, exp.listed_title)
                )
            ):
                continue
            if titled and n in plan.layout and act.url == url and act.listed_title is None:
                return exp.line - 1, n
        return _where(
            out,
            exp.line - 1 if exp is not None else None,
            act.line - 1 if act is not None else None,
        )
    # the marks must not change what the parser reads from the marked lines
    archives: set[str] = set()
    for m in _MARK.finditer(text):
        if m.group("url"):
            archives |= {m.group("url"), url_as_read(m.group("url"))}
    marked = [link for link in parse_post(text) if link.url not in archives]
    new_lines = _LINE.findall(text)
    for n in range(max(len(marked), len(actual))):
        a = actual[n] if n < len(actual) else None
        b = marked[n] if n < len(marked) else None
        if (
            a is not None
            and b is not None
            and (a.line, a.url, a.section) == (b.line, b.url, b.section)
            and (
                a.listed_title == b.listed_title
                # a mark after a URL alone on its line hides its title from the parser
                or (b.listed_title is None and DEAD_MARK in new_lines[b.line - 1])
            )
        ):
            continue
        lines = [x.line - 1 for x in (a, b) if x is not None]
        return _where(out, None, min(lines))
    if plan.inserts:
        new_blocks = _containers(strip_marks(text))
        if [t for t, _ in new_blocks] != [t for t, _ in blocks]:  # lines move: types only
            pairs = enumerate(zip(blocks, new_blocks, strict=False))  # the shorter one ends it
            d = next((n for n, (x, y) in pairs if x[0] != y[0]), min(len(blocks), len(new_blocks)))
            old_line = next((ln for _, ln in blocks[d:] if ln is not None), len(post.lines) - 1)
            new_line = next((ln for _, ln in new_blocks[d:] if ln is not None), None)
            return _where(out, old_line, new_line)
    return None


def _where(out: _Output, old_line: int | None, new_line: int | None) -> tuple[int, int | None]:
    """The old line nearest a difference, or (-1, link) when it is in a link's inserted lines."""
    lines: list[int] = [] if old_line is None else [old_line]
    if new_line is not None and out.origin:
        kind, ref = out.origin[min(new_line, len(out.origin) - 1)]
        if kind == "insert":
            return -1, ref
        lines.append(ref)
    return (min(lines) if lines else len(out.new_index)), None


def _restrict(post: _Post, plan: _Plan, lim: _Limits, where: tuple[int, int | None]) -> bool:
    """Drop the edit responsible for a failed verification; False when none is left to drop."""
    line, link = where
    if link is not None:
        if link in plan.layout and link not in lim.force_inline and line >= 0:
            lim.force_inline.add(link)
            return True
        if link not in lim.no_insert:
            lim.no_insert.add(link)
            return True
    sites: list[tuple[int, int, int | None]] = [(i, 1, None) for i in plan.line_text]
    sites += [(after, 0, k) for k, after in plan.insert_owner_line.items()]
    before = [s for s in sites if s[0] <= line] if line >= 0 else []
    pick = max(before) if before else (min(sites) if sites else None)
    if pick is None:
        return False
    if pick[2] is not None:
        lim.no_insert.add(pick[2])
    else:
        lim.frozen.add(pick[0])
    return True


def _same_encoding(data: bytes, codec: str) -> bool:
    """True when the new bytes are still read with the post's codec."""
    try:
        return _codec_of(data)[1] == codec
    except InputError:
        return False


def enrich_text(raw: bytes, findings: Mapping[str, Finding], options: EnrichOptions) -> bytes:
    """The post with titles, summaries, marks and redirects applied; every other byte kept.

    Pure and idempotent. Raises InputError when the bytes are not a UTF-8 or GBK text post.
    """
    post = _read(raw)
    if not post.links:
        return raw
    lim = _Limits()
    blocks: list[tuple[str, int | None]] | None = None
    for _ in range(2 * (len(post.lines) + len(post.links)) + 4):
        plan = _plan(post, findings, options, lim)
        if not plan.line_text and not plan.inserts:
            return raw
        out = _assemble(post, plan)
        if blocks is None and plan.inserts:
            blocks = _containers("\n".join(line.clean for line in post.lines))
        where = _verify(post, plan, out, blocks or [])
        if where is None:
            if post.insert_codec == "gbk" and not _same_encoding(out.data, post.codec):
                post.insert_codec = "gb2312"  # keep the post recognisable as GBK
                continue
            return out.data
        if not _restrict(post, plan, lim, where):
            break
    return raw


# --- dry run and writing ---------------------------------------------------------------------


def unified_diff(old: bytes, new: bytes, name: str) -> str:
    """A unified diff of two versions of a post, decoded with the post's encoding ("" if equal)."""
    if old == new:
        return ""
    try:
        encoding = detect_encoding(old)
    except InputError:
        encoding = "utf-8"
    a = _LINE.findall(old.decode(encoding, errors="replace"))
    b = _LINE.findall(new.decode(encoding, errors="replace"))
    out: list[str] = []
    for line in difflib.unified_diff(a, b, f"a/{name}", f"b/{name}"):
        out.append(line)
        if not line.endswith(("\n", "\r")):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out)


def next_backup(path: Path) -> Path:
    """`<name>.bak.N` with N one more than the highest backup beside the file (from 1)."""
    taken = [0]
    for p in path.parent.glob(glob_escape(path.name) + ".bak.*"):
        n = p.name[len(path.name) + len(".bak.") :]
        if n.isascii() and n.isdigit():
            taken.append(int(n))
    return path.with_name(f"{path.name}.bak.{max(taken) + 1}")


def write_atomic_with_backup(path: Path, data: bytes) -> Path:
    """Replace a file's content atomically (temp file, fsync, rename), keeping a backup.

    Each write keeps the previous version as a new `<name>.bak.N` (numbered from 1), so no
    backup is ever overwritten. The file's mode is kept; a symlink is followed, so the link
    stays and its target changes. Returns the backup's path.
    """
    path = Path(path)
    backup = next_backup(path)
    target = Path(os.path.realpath(path))
    if not target.is_file():
        raise InputError(f"{path}: no such file")
    try:
        mode = target.stat().st_mode & 0o7777
        _replace_with(backup, target.read_bytes(), mode)
        _replace_with(target, data, mode)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return backup


def _replace_with(path: Path, data: bytes, mode: int) -> None:
    """Write data to a temp file next to path, fsync it, then rename it over path."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# --- the Internet Archive ----------------------------------------------------------------------


def add_archive_urls(
    findings: Mapping[str, Finding], snapshots: Mapping[str, str]
) -> dict[str, Finding]:
    """The findings with `archive_url` filled in for dead URLs that have a snapshot."""
    out = dict(findings)
    for url, finding in findings.items():
        snap = snapshots.get(url)
        if finding.verdict is Verdict.DEAD and finding.archive_url is None and snap is not None:
            out[url] = replace(finding, archive_url=snap)
    return out


# --- the command's jobs: read the post, the findings from the history, the archive ----------


def read_post_bytes(post: Path) -> bytes:
    """The post's bytes; CrawlerError when it cannot be read."""
    try:
        return post.read_bytes()
    except FileNotFoundError:
        raise CrawlerError(f"{post}: no such file") from None
    except OSError as exc:
        raise CrawlerError(f"{post}: cannot read ({exc.strerror})") from None


def uses_history(options: EnrichOptions) -> bool:
    """Whether the options need the checks (--unmark alone needs none)."""
    o = options
    return not o.unmark or o.titles or o.summaries or o.update_redirects or o.update_titles


def _latest_run_for(store: Store, post: Path) -> tuple[int, str]:
    """The newest complete run that checked post, and the post's digest then."""
    found = store.latest_check_of(os.path.realpath(post))
    if found is not None:
        return int(found[0]), str(found[1])
    raise CrawlerError(
        f"{post}: no complete check in the history; run 'crawler check {post}' or use --fresh"
    )


def history_findings(db: Db, post: Path, raw: bytes, options: EnrichOptions) -> dict[str, Finding]:
    """The findings of the newest complete check of post; PostChangedError when the post was
    edited since where an entry they would change is."""
    from crawler.db import open_store

    store = open_store(db)
    try:
        run_id, digest = _latest_run_for(store, post)
        trusted = {digest} | store.enrichment_digests(run_id)
        run = store.load_run(run_id, stream=True)
    finally:
        store.close()
    findings = findings_from_checks(run.checks)
    if post_digest(raw) not in trusted:
        stale = changed_entries(raw, findings, options)
        if stale:
            raise PostChangedError(str(post), stale[0])
    return findings


def record_enrichment(db: Db, post: Path, new: bytes) -> None:
    """Remember the post as enrich wrote it, so the next enrich trusts it as checked."""
    from crawler.db import open_store

    store = open_store(db)
    try:
        run_id, _ = _latest_run_for(store, post)
        store.add_enrichment(run_id, str(post), post_digest(new), datetime.now(UTC))
    finally:
        store.close()


def with_snapshots(
    post: Path,
    raw: bytes,
    findings: dict[str, Finding],
    endpoint: str,
    before: datetime | None,
    settings: FetchSettings,
) -> tuple[dict[str, Finding], str | None]:
    """The findings with the archive's snapshots of dead URLs, and a warning when it answered
    for some only; NetworkDownError when it answered for none."""
    import asyncio

    from crawler import archive
    from crawler.sanitize import terminal as safe

    cutoff = archive.archive_cutoff(
        raw, post, before.date() if before else None, datetime.now().date()
    )
    dead = [url for url, f in findings.items() if f.verdict is Verdict.DEAD]
    snaps = asyncio.run(archive.find_snapshots(dead, cutoff, settings, endpoint))
    if snaps.failed and len(snaps.failed) == snaps.asked:
        why = next(iter(snaps.failed.values()))
        raise NetworkDownError(
            f"the archive at {endpoint} did not answer ({safe(why)}); nothing written"
        )
    warning = None
    if snaps.failed:
        warning = (
            f"{post}: the archive did not answer for {len(snaps.failed)} of {snaps.asked} dead "
            "links; they are marked without a snapshot (run again later to add it)"
        )
    return add_archive_urls(findings, snaps.found), warning
