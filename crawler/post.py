"""The post stage: read a Markdown post and list every http(s) link it cites, in document order.

markdown-it-py gives the block structure (with line maps), so fenced and indented code are
skipped and headings give each link its section; the inline source of every paragraph, heading,
table cell and HTML block is then scanned here with regular expressions, which keeps URLs
exactly as written and line numbers exact. Code spans and HTML comments are masked first.
"""

from __future__ import annotations

import glob
import html
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from crawler.errors import InputError
from crawler.extract.decode import detect_encoding, is_binary
from crawler.types import Link

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

__all__ = [
    "DEAD_MARK",
    "Span",
    "clean_url",
    "detect_encoding",
    "expand_inputs",
    "is_escaped",
    "is_http_url",
    "mask_code_spans",
    "parse_post",
    "read_post",
    "read_stdin",
    "scan_post",
    "stream_post",
    "survey_post",
    "url_as_read",
]


#: What `crawler enrich --mark-dead` writes after a dead link （已失效，DATE）: the one copy,
#: read by enrich and by `crawler check` (a marked post's links are what the author listed).
DEAD_MARK = "已失效"

# --- reading -------------------------------------------------------------------------------


def read_post(
    path: str | os.PathLike[str], every: bool = False, data: bytes | None = None
) -> tuple[str, list[Link]]:
    """Read a post file and return its decoded text and its links; InputError if unreadable.
    `every`: as parse_post's. `data`: the file's bytes, already read (read_post_bytes)."""
    name = os.fspath(path)
    if data is None:
        data = read_post_bytes(name)
    if is_binary(data):
        raise InputError(f"{name}: is a binary file (contains NUL bytes), not a text post")
    try:
        encoding = detect_encoding(data)
    except InputError:
        raise InputError(f"{name}: is not UTF-8 or GBK text") from None
    text = data.decode(encoding)
    return text, parse_post(text, name, every)


def read_post_bytes(name: str) -> bytes:
    """A post file's bytes; InputError, one line, when it cannot be read."""
    try:
        return Path(name).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, not a post file") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None


#: File types read when a directory is given.
POST_SUFFIXES = (".md", ".markdown", ".html", ".htm", ".txt")


def read_stdin(data: bytes, every: bool = False) -> tuple[str, list[Link]]:
    """Decode a post given on standard input and return its text and links (source "-")."""
    if is_binary(data):
        raise InputError("-: standard input is binary (contains NUL bytes), not a text post")
    try:
        encoding = detect_encoding(data)
    except InputError:
        raise InputError("-: standard input is not UTF-8 or GBK text") from None
    text = data.decode(encoding)
    return text, parse_post(text, "-", every)


def expand_inputs(args: Sequence[str]) -> list[str]:
    """Files to read: directories searched recursively for posts, globs expanded, "-" kept."""
    out: list[str] = []
    for arg in args:
        if arg == "-":
            out.append(arg)
            continue
        p = Path(arg)
        if p.is_dir():
            found = sorted(
                str(f)
                for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in POST_SUFFIXES and ".git" not in f.parts
            )
            if not found:
                raise InputError(f"{arg}: is a directory with no posts (*.md, *.html, *.txt)")
            out.extend(found)
        elif not p.exists() and any(ch in arg for ch in "*?["):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise InputError(f"{arg}: no file matches this pattern")
            out.extend(m for m in matches if Path(m).is_file())
        else:
            out.append(arg)
    return list(dict.fromkeys(out))


# --- URL cleaning ----------------------------------------------------------------------------

# A bare URL ends at whitespace, at a CJK or full-width character, at '<', or at '"' (never
# valid unescaped in a URL; stopping there keeps HTML attribute values clean).
_STOP = re.compile('[\\s<"\u3000-\u9fff\uff00-\uffef]')
#: Punctuation stripped from the end of a bare URL (ASCII and full-width).
TRAILING_PUNCTUATION = _TRAILING = frozenset(".,;:!?'\")]}>*" + "）。，、；：！？」』】》”’“‘…")
#: Closing bracket → its opener: a closer is kept when balanced inside the URL.
BRACKET_OPENERS = _OPENER = {
    ")": "(",
    "]": "[",
    "}": "{",
    ">": "<",
    "）": "（",
    "」": "「",
    "』": "『",
    "】": "【",
    "》": "《",
    "”": "“",
    "’": "‘",
}


def clean_url(candidate: str) -> str:
    """Cut a bare-URL candidate at its first stop character and strip trailing punctuation."""
    stop = _STOP.search(candidate)
    return _strip_trailing(candidate[: stop.start()] if stop else candidate)


def _strip_trailing(url: str) -> str:
    """Drop trailing punctuation, keeping a closer that balances an opener inside the URL."""
    while url and url[-1] in _TRAILING:
        opener = _OPENER.get(url[-1])
        if opener is not None and url.count(opener) >= url.count(url[-1]):
            break  # the closer balances an opener inside the URL: Foo_(bar)
        url = url[:-1]
    return url


_HTTP_URL = re.compile(r"https?://[^\s/?#]", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def _decode_entities(s: str) -> str:
    """Decode `&name;` / `&#n;` references only (never the legacy forms without ';')."""
    if "&" not in s:
        return s
    return _ENTITY.sub(lambda m: html.unescape(m.group()), s)


def is_http_url(url: str) -> bool:
    """True for an http(s) URL with a host, as this module counts links."""
    return _HTTP_URL.match(url) is not None


def url_as_read(written: str, markdown: bool = True) -> str:
    """The URL this module reads from URL text as written (escapes and entities decoded)."""
    return _unescape(written, markdown)


def _unescape(s: str, markdown: bool) -> str:
    """The URL a reader's browser would use: backslash escapes (Markdown) and entities."""
    if markdown and "\\" in s:
        s = _ESCAPE.sub(r"\1", s)
    return _decode_entities(s)


# --- inline scanning -------------------------------------------------------------------------

_HTTP_HINT = re.compile(r"https?:", re.IGNORECASE)
# What a chunk needs to hold a link: an http(s) URL, or a link construct (any target).
_LINK_HINT = re.compile(r"https?:|\]\(|<(?:a|img)\s", re.IGNORECASE)
#: Schemes that are never a link's target in a post (script, inline data).
_NOT_TARGETS = ("javascript:", "data:", "vbscript:")


_SCHEME_OR_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|[./#]")


def is_target(url: str) -> bool:
    """Whether an explicit link's target is listed: http(s), other schemes (mailto:, ftp: …, to
    be counted as skipped) and local paths; not script or inline data, and not a bare word
    without '.', '/' or '#' (TeX such as `$[a](x,y)$` reads as a link to `x,y`)."""
    return (
        bool(url)
        and not url.lower().startswith(_NOT_TARGETS)
        and _SCHEME_OR_PATH.search(url) is not None
    )


_BACKTICKS = re.compile(r"`+")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_ATTR = r"""\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))"""
_A_OPEN = re.compile(r"<a\s[^>]*?\bhref" + _ATTR + r"[^>]*>", re.IGNORECASE)
_A_CLOSE = re.compile(r"</a\s*>", re.IGNORECASE)
_IMG = re.compile(r"<img\s[^>]*?\bsrc" + _ATTR + r"[^>]*>", re.IGNORECASE)
_ALT = re.compile(r"\balt" + _ATTR, re.IGNORECASE)
_TAGS = re.compile(r"<[^>]*>")
# `](` destination and optional title, per CommonMark (one level of nested parentheses).
_DEST = re.compile(
    r"""\(\s*(?:<([^<>\n]*)>|((?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))*))"""
    r"""(?:\s+("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\((?:[^()\\]|\\.)*\)))?\s*\)""",
    re.DOTALL,
)
_AUTOLINK = re.compile(r"<(https?://[^\s<>\x00-\x1f]*)>", re.IGNORECASE)
_BARE = re.compile(r"(?<![A-Za-z0-9])https?://[^\s<\"\u3000-\u9fff\uff00-\uffef]+", re.IGNORECASE)
# `[text][label]`, `[label][]` or `[label]` (not followed by `(`): a use of a reference label
_REF_USE = re.compile(r"(?<![\\\]])\[((?:[^\[\]\\]|\\.)+)\](?:\[((?:[^\[\]\\]|\\.)*)\])?(?!\()")
_DEF_DEST = re.compile(r"\[(?:[^\[\]\\]|\\.)*\]:(?:[ \t]|\n[ \t>]*)*(<[^<>\n]*>|\S+)")
_MD_SPECIAL = re.compile(r"[\\`*_\[\]<>&!]")
_ALONE_EXTRA = frozenset(" \t*_") | _TRAILING
_NOT_TITLE = ("|", "![", "$$", "<")
# A line that introduces what follows ("例如：", "安装:"), or a sentence, is prose, not a title;
# so is a line with a Markdown link in it (`[anchor](#local)`).
_PROSE_END = tuple("：:。；")
_LINK_SYNTAX = re.compile(r"(?<!\\)\](?:\(|\[)")
# The text before a URL points at it ("讨论见"): the URL is cited in prose, and the
# line after it goes on with the prose.
_POINTS_AT = ("见",)


class _Hit(NamedTuple):
    """One URL found in a chunk of inline source."""

    pos: int  # offset of the URL in the chunk
    url: str
    title: str | None
    end: int  # end offset of the whole construct (for the URL-alone-on-its-line test)
    start: int  # start offset of the whole construct
    bare: bool  # a bare URL or an autolink: may take its title from the next line
    url_end: int  # end offset of the URL as written
    kind: str  # inline | image | autolink | bare | html
    angle: bool = False  # written in <…>
    empty_text: bool = False  # `[](url)`


@dataclass(frozen=True, slots=True)
class Span:
    """Where a link is written in its post, as lychee's RawUri keeps it: enrich edits by it.

    Columns are 0-based offsets into the URL's line (end exclusive). `first`/`last` bound the
    whole construct (`[text](url)`, `<a …>…</a>`, `<url>`) on that line; -1 when it starts on
    an earlier line or ends on a later one. `kind` is inline, image, reference, autolink, bare,
    html (an attribute, or a URL in the text of an HTML block: no escapes apply) or own-line (a
    bare URL or autolink alone on its line in a paragraph: an entry of the post's own layout,
    whose listed title is the next line).
    """

    line: int
    start: int
    end: int
    kind: str
    first: int
    last: int
    angle: bool = False  # the URL is written in <…>
    empty_text: bool = False  # `[](url)`: a link without text


def _blank(s: str, spans: list[tuple[int, int]]) -> str:
    """Replace every character inside the spans by a space, keeping newlines and offsets."""
    if not spans:
        return s
    parts: list[str] = []
    prev = 0
    for a, b in sorted(spans):
        if a < prev:
            a = prev
        if b <= a:
            continue
        parts.append(s[prev:a])
        parts.append("".join("\n" if c == "\n" else " " for c in s[a:b]))
        prev = b
    parts.append(s[prev:])
    return "".join(parts)


def is_escaped(s: str, i: int) -> bool:
    """True when s[i] is preceded by an odd number of backslashes."""
    n = 0
    while i - n - 1 >= 0 and s[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def mask_code_spans(s: str) -> str:
    """Blank out inline code spans (CommonMark backtick-run matching)."""
    if "`" not in s:
        return s
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(s)]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(runs):
        start, end = runs[i]
        if is_escaped(s, start):
            start += 1
        width = end - start
        closer = next(
            (j for j in range(i + 1, len(runs)) if runs[j][1] - runs[j][0] == width), None
        )
        if width == 0 or closer is None:
            i += 1
            continue
        spans.append((start, runs[closer][1]))
        i = closer + 1
    return _blank(s, spans)


def _plain(tokens: list[Token] | None) -> str:
    """The text a reader sees for parsed inline tokens."""
    parts: list[str] = []
    for t in tokens or ():
        if t.type in ("text", "text_special", "code_inline"):
            parts.append(t.content)
        elif t.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif t.type == "image":
            parts.append(_plain(t.children))
    return "".join(parts)


def _render_text(markdown_source: str) -> str:
    """Plain text of a piece of inline Markdown, whitespace collapsed."""
    if _MD_SPECIAL.search(markdown_source):
        tokens = _inline_parser().parseInline(markdown_source)
        markdown_source = _plain(tokens[0].children) if tokens else ""
    return " ".join(markdown_source.split())


def _html_text(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(html.unescape(_TAGS.sub(" ", fragment)).split())


def _attr(m: re.Match[str], first: int) -> str:
    """The value of an attribute matched by _ATTR whose groups start at `first`."""
    for g in (first, first + 1, first + 2):
        value = m.group(g)
        if value is not None:
            return value
    return ""


def _value_span(m: re.Match[str]) -> tuple[int, int]:
    """Where the (stripped) attribute value matched by _ATTR's groups 1-3 is written."""
    g = next(g for g in (1, 2, 3) if m.group(g) is not None)
    value = m.group(g)
    lead = len(value) - len(value.lstrip())
    return m.start(g) + lead, m.start(g) + lead + len(value.strip())


def _html_links(s: str, hits: list[_Hit]) -> str:
    """Collect <a href> and <img src> links; return s with them blanked."""
    spans: list[tuple[int, int]] = []
    for m in _A_OPEN.finditer(s):
        if spans and m.start() < spans[-1][1]:
            continue
        close = _A_CLOSE.search(s, m.end())
        end = close.end() if close else m.end()
        url = _decode_entities(_attr(m, 1).strip())
        if is_target(url):
            inner = s[m.end() : close.start()] if close else ""
            text = _html_text(inner)
            if not text and (img := _IMG.search(inner)) and (alt := _ALT.search(img.group())):
                text = _html_text(_attr(alt, 1))  # an image link: its alt text
            pos, url_end = _value_span(m)
            hits.append(_Hit(pos, url, text or None, end, m.start(), False, url_end, "html"))
        spans.append((m.start(), end))
    for m in _IMG.finditer(s):
        url = _decode_entities(_attr(m, 1).strip())
        if is_target(url):
            alt = _ALT.search(m.group())
            title = _html_text(_attr(alt, 1)) if alt else ""
            pos, url_end = _value_span(m)
            hits.append(_Hit(pos, url, title or None, m.end(), m.start(), False, url_end, "html"))
        spans.append((m.start(), m.end()))
    return _blank(s, spans)


def _markdown_links(original: str, s: str, hits: list[_Hit]) -> str:
    """Collect [text](url) links and ![alt](url) images; return s with them blanked."""
    if "](" not in s:
        return s
    found: dict[int, int] = {}  # last index of a link construct -> its first index
    spans: list[tuple[int, int]] = []
    pos = s.find("](")
    while pos != -1:
        m = _DEST.match(s, pos + 1)
        if m is None or is_escaped(s, pos):
            pos = s.find("](", pos + 1)
            continue
        # find the matching '[' walking backwards, jumping over links already found
        depth = 0
        k = pos - 1
        opener = -1
        while k >= 0:
            if k in found:
                k = found[k] - 1
                continue
            ch = s[k]
            if ch == "]" and not is_escaped(s, k):
                depth += 1
            elif ch == "[" and not is_escaped(s, k):
                if depth == 0:
                    opener = k
                    break
                depth -= 1
            k -= 1
        if opener == -1:
            pos = s.find("](", pos + 1)
            continue
        image = opener > 0 and s[opener - 1] == "!" and not is_escaped(s, opener - 1)
        start = opener - 1 if image else opener
        found[m.end() - 1] = start
        spans.append((start, m.end()))
        dest_group = 1 if m.group(1) is not None else 2
        written = m.group(dest_group)
        url = _unescape(written.strip(), markdown=True)
        if is_target(url):
            title = _render_text(original[opener + 1 : pos])
            if not title and m.group(3):
                title = " ".join(_unescape(m.group(3)[1:-1], markdown=True).split())
            at = m.start(dest_group) + len(written) - len(written.lstrip())
            hits.append(
                _Hit(
                    at,
                    url,
                    title or None,
                    m.end(),
                    start,
                    False,
                    at + len(written.strip()),
                    "image" if image else "inline",
                    dest_group == 1,
                    not image and opener + 1 == pos,
                )
            )
        pos = s.find("](", m.end())
    return _blank(s, spans)


def _scan(content: str, markdown: bool) -> list[_Hit]:
    """Every http(s) URL in a paragraph / heading / cell (markdown) or an HTML block."""
    hits: list[_Hit] = []
    s = mask_code_spans(content) if markdown else content
    if "<!--" in s:
        s = _blank(s, [(m.start(), m.end()) for m in _COMMENT.finditer(s)])
    if "<" in s:
        s = _html_links(s, hits)
    if markdown:
        s = _markdown_links(content, s, hits)
        if "<" in s:
            spans: list[tuple[int, int]] = []
            for m in _AUTOLINK.finditer(s):
                if _HTTP_URL.match(m.group(1)):
                    hits.append(
                        _Hit(
                            m.start(1),
                            m.group(1),
                            None,
                            m.end(),
                            m.start(),
                            True,
                            m.end(1),
                            "autolink",
                            True,
                        )
                    )
                spans.append((m.start(), m.end()))
            s = _blank(s, spans)
    for m in _BARE.finditer(s):
        raw = _whole_line_url(s, m) or clean_url(m.group())
        url = _unescape(raw, markdown)
        if _HTTP_URL.match(url):
            end = m.start() + len(raw)
            # in raw HTML a backslash is the URL's own: the span is html, read without unescaping
            kind = "bare" if markdown else "html"
            hits.append(_Hit(m.start(), url, None, end, m.start(), True, end, kind))
    hits.sort(key=lambda h: h.pos)
    return hits


def _whole_line_url(s: str, m: re.Match[str]) -> str | None:
    """A URL with CJK in its path (`.../item/图灵机/5459283`) that fills its line, else None.

    In prose a CJK character ends a bare URL, but when the URL is the only thing on its line
    (but for a `（note）` after a space) and the CJK text starts a path segment (right after '/'
    or '='), it belongs to the URL.
    """
    end = m.end()
    if end >= len(s) or not ("\u3000" <= s[end] <= "\u9fff" or "\uff00" <= s[end] <= "\uffef"):
        return None
    if s[end - 1] not in "/=" or s[s.rfind("\n", 0, m.start()) + 1 : m.start()].strip(" \t*"):
        return None
    line_end = s.find("\n", end)
    token, _, note = s[m.start() : len(s) if line_end == -1 else line_end].partition(" ")
    # what may follow: nothing, or a note in full-width parentheses (enrich's title or mark)
    if note.strip() and not note.lstrip().startswith("（"):
        return None
    if any(c.isspace() or c in '<"' for c in token):
        return None
    return _strip_trailing(token)


def _span(
    content: str, hit: _Hit, source: str, line: int, own_line: bool, cell_from: int = -1
) -> Span | None:
    """The Span of a hit in `content`, whose line holding it is the source line `source`.

    A content line is its source line less what the block structure took from its start (a
    quote marker, an indent) and trailing whitespace, so it is found at its last occurrence;
    a table cell is found from `cell_from`, the end of the cell before it. None when it is not
    there (a tab expanded into spaces): such a link is not edited.
    """
    ls = content.rfind("\n", 0, hit.pos) + 1
    le = content.find("\n", hit.pos)
    if le == -1:
        le = len(content)
    x = source.find(content, cell_from) if cell_from >= 0 else source.rfind(content[ls:le])
    if x < 0 or hit.url_end > le:
        return None
    return Span(
        line,
        x + hit.pos - ls,
        x + hit.url_end - ls,
        "own-line" if own_line else hit.kind,
        x + hit.start - ls if hit.start >= ls else -1,
        x + hit.end - ls if hit.end <= le else -1,
        hit.angle,
        hit.empty_text,
    )


def _alone_on_line(content: str, hit: _Hit) -> bool:
    """True when nothing but whitespace and punctuation shares the URL's line."""
    line_start = content.rfind("\n", 0, hit.start) + 1
    line_end = content.find("\n", hit.end)
    if line_end == -1:
        line_end = len(content)
    rest = content[line_start : hit.start] + content[hit.end : line_end]
    return all(c in _ALONE_EXTRA for c in rest)


def _as_title(line: str) -> str | None:
    """The listed title if this line is plain text (not a URL, table row, image, code or math)."""
    title = line.strip().strip("\u200b\ufeff").strip()
    if not title or _HTTP_HINT.search(title) or title.startswith(_NOT_TITLE):
        return None
    if title.startswith("`") and title.endswith("`"):
        return None  # a command line in a code span, not a title
    if title.endswith(_PROSE_END) or _LINK_SYNTAX.search(title):
        return None
    return title


def _cited_in_prose(before: str | None) -> bool:
    """True when the line before a URL alone on its line points at it ("讨论见", "详见")."""
    return before is not None and before.rstrip().endswith(_POINTS_AT)


def _title_below(tokens: list[Token], i: int, line_offset: int) -> str | None:
    """The plain-text line under a URL that stands alone in the paragraph tokens[i]."""
    content_lines = tokens[i].content.split("\n")
    if line_offset > 0:
        before: str | None = content_lines[line_offset - 1]
    elif i >= 3 and tokens[i - 2].type == "paragraph_close" and tokens[i - 3].type == "inline":
        before = tokens[i - 3].content.rsplit("\n", 1)[-1]
    else:
        before = None
    if _cited_in_prose(before):
        return None
    if line_offset + 1 < len(content_lines):
        return _as_title(content_lines[line_offset + 1])
    # else the next non-blank line must open the very next paragraph of the same container
    # (anything in between, even a reference definition, is a token of its own)
    if not (
        i + 3 < len(tokens)
        and tokens[i + 1].type == "paragraph_close"
        and tokens[i + 2].type == "paragraph_open"
    ):
        return None
    return _as_title(tokens[i + 3].content.split("\n", 1)[0])


# --- the document ----------------------------------------------------------------------------


# markdown-it is imported on first use: a post of plain reference lines (the fast path below)
# never needs it, and the first request of a check should not wait for it.


@cache
def _block_parser() -> MarkdownIt:
    """CommonMark + tables, block rules only, reference definitions kept as tokens."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"inline_definitions": True}).enable("table")
    md.disable("inline")  # the core rule that parses inline children: we scan sources instead
    return md


def block_structure(text: str) -> list[tuple[str, int | None]]:
    """The post's blocks as markdown-it reads them: (token type, first line or None), in order."""
    return [(t.type, t.map[0] if t.map else None) for t in _block_parser().parse(text)]


@cache
def _inline_parser() -> MarkdownIt:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark")


def _normalize_reference(label: str) -> str:
    from markdown_it.common.utils import normalizeReference

    return normalizeReference(label)


#: What markdown-it trims paragraph and heading content with (its mdTrim: str.strip with the
#: CommonMark whitespace set); tests/test_post.py checks it against markdown-it's own.
MD_TRIM_CHARS = (
    "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _md_trim(text: str) -> str:
    return text.strip(MD_TRIM_CHARS)


_NEWLINE = re.compile(r"\r\n?")


def _prepare(text: str) -> list[str]:
    """Source lines as markdown-it numbers them, with YAML front matter blanked out."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = _NEWLINE.sub("\n", text).replace("\x00", "\ufffd").split("\n")
    if lines[0].rstrip() == "---":
        for j in range(1, len(lines)):
            if lines[j].rstrip() in ("---", "..."):
                lines[: j + 1] = [""] * (j + 1)
                break
    return lines


def _reference_usages(tokens: list[Token]) -> dict[str, str]:
    """Normalised label -> link text of its first use (`[text][label]`, `[label]`)."""
    usages: dict[str, str] = {}
    for t in tokens:
        if t.type == "inline" and "[" in t.content:
            masked = mask_code_spans(t.content)
            for m in _REF_USE.finditer(masked):
                label = _normalize_reference(m.group(2) or m.group(1))
                if label and label not in usages:
                    usages[label] = _render_text(t.content[m.start(1) : m.end(1)])
    return usages


def _definition(
    tok: Token, span: list[int], lines: list[str], usages: dict[str, str]
) -> tuple[str, int, str | None, Span | None]:
    """(url, 1-based line, listed title, Span) of a reference definition token spanning `span`."""
    chunk = "\n".join(lines[span[0] : span[1]])
    label = str(tok.meta.get("label", ""))
    m = _DEF_DEST.search(chunk)
    where: Span | None = None
    if m is None:
        url, line = str(tok.meta.get("url", "")), span[0] + 1
    else:
        raw = m.group(1)
        angle = raw.startswith("<") and raw.endswith(">")
        if angle:
            raw = raw[1:-1]
        url = _unescape(raw, markdown=True)
        line = span[0] + chunk.count("\n", 0, m.start(1)) + 1
        ls = chunk.rfind("\n", 0, m.start(1)) + 1
        at = m.start(1) - ls + angle
        first = m.start() - ls if m.start() >= ls else -1
        where = Span(line, at, at + len(raw), "reference", first, m.end(1) - ls, angle)
    title = " ".join(str(tok.meta.get("title", "")).split())
    if not title:  # else the text the label is used with, else the label; `[1]` is no title
        used = (usages.get(_normalize_reference(label), ""), _render_text(label))
        title = next((t for t in used if t and not t.isdigit()), "")
    return url, line, title or None, where


# --- the plain-post fast path ------------------------------------------------------------------
#
# Most posts are only ATX headings and paragraphs (a reading list: URL line, blank, title line).
# For them the block structure is plain to see, and markdown-it's tokens (three per paragraph,
# built and kept for the whole post) would cost most of the parsing time and memory. A post
# with any line that could start another kind of block takes the markdown-it path instead, so
# both paths give the same links (tests/test_post.py checks them against each other).

# A line start that is not "plain": indented or other whitespace first; a block marker (quote,
# list, rule, setext underline, table delimiter row, HTML, fence); an ordered-list number; a
# `#` that does not open an ATX heading. Reference definitions are ruled out by "]:" (below).
_NOT_PLAIN = re.compile(
    r"^(?:[ \t]+[^ \t\n]|[^\S \t\n]|[>\-*+_=|<`~:]|[0-9]{1,9}[.)](?:[ \t]|$)"
    r"|#(?!#{0,5}(?:[ \t]|$)))",
    re.MULTILINE,
)
_ATX = re.compile(r"#{1,6}")


def _is_plain(source: str) -> bool:
    """True when every block of the (prepared) source is an ATX heading or a paragraph."""
    return "]:" not in source and _NOT_PLAIN.search(source) is None


def _heading(line: str) -> tuple[int, str]:
    """Level and inline content of an ATX heading line, as markdown-it's heading rule cuts it."""
    level = _ATX.match(line).end()  # type: ignore[union-attr]
    end = len(line.rstrip(" \t"))
    if end < level:
        end = level
    tail = end
    while tail > level and line[tail - 1] == "#":
        tail -= 1
    if tail < end and tail > level and line[tail - 1] in " \t":
        end = tail  # a closing sequence: `## title ##`
    return level, _md_trim(line[level:end])


def _plain_blocks(lines: Iterable[str]) -> Iterator[tuple[int, int, list[str]]]:
    """(heading level or 0 for a paragraph, first line, its lines) of each block of a plain
    post, read from its lines as they come."""
    block: list[str] = []
    start = -1
    for n, line in enumerate(lines):
        if not line.strip(" \t"):
            if block:
                yield 0, start, block
                block = []
        elif line[0] == "#":
            if block:
                yield 0, start, block
                block = []
            yield len(_ATX.match(line).group()), n, [line]  # type: ignore[union-attr]
        else:
            if not block:
                start = n
            block.append(line)
    if block:
        yield 0, start, block


def _parse_plain(
    lines: list[str], source: str, spans: list[Span | None] | None = None
) -> list[Link]:
    """parse_post for a post of ATX headings and paragraphs only: no token stream is built."""
    return list(_plain_links(lines, source, spans))


def _plain_links(
    lines: Iterable[str], source: str, spans: list[Span | None] | None = None
) -> Iterator[Link]:
    """_parse_plain's links as the lines come: only a block and the next are held."""
    headings: list[tuple[int, str]] = []
    section: tuple[str, ...] = ()
    blocks = _plain_blocks(lines)
    block = next(blocks, None)
    previous: str | None = None  # the last line of the paragraph before this block
    while block is not None:
        level, first, text = block
        following = next(blocks, None)
        if level:
            _, content = _heading(text[0])
            heading = _render_text(content)
            headings = [h for h in headings if h[0] < level]
            if heading:
                headings.append((level, heading))
            section = tuple(h[1] for h in headings)
        else:
            content = _md_trim("\n".join(text))
        if _LINK_HINT.search(content):
            for hit in _scan(content, True):
                offset = content.count("\n", 0, hit.pos)
                title = hit.title
                own_line = hit.bare and not level and _alone_on_line(content, hit)
                if own_line:
                    below = content.split("\n")
                    if _cited_in_prose(below[offset - 1] if offset else previous):
                        title = None
                    elif offset + 1 < len(below):
                        title = _as_title(below[offset + 1])
                    elif following is not None and following[0] == 0:
                        after = _md_trim("\n".join(following[2]))
                        title = _as_title(after.split("\n", 1)[0])
                    else:
                        title = None
                yield Link(hit.url, first + offset + 1, title, section, source, not hit.bare)
                if spans is not None:
                    spans.append(_span(content, hit, text[offset], first + offset + 1, own_line))
        previous = None if level else content.rsplit("\n", 1)[-1]
        block = following


def parse_post(text: str, source: str = "", every: bool = False) -> list[Link]:
    """Every http(s) link in a Markdown post, one Link per occurrence, in document order.

    `every`: also the other targets of explicit links (`[t](mailto:…)`, `![](/images/x.png)`,
    `<a href="../a.md#part">`, reference definitions): local paths and other schemes.
    """
    lines = _prepare(text)
    joined = "\n".join(lines)
    if _is_plain(joined):
        links = _parse_plain(lines, source)
    else:
        links = _parse_tokens(lines, joined, source)
    if every:
        return links
    return [link for link in links if _HTTP_URL.match(link.url)]


# --- a post read as its lines come -------------------------------------------------------------
#
# A post of 100,000 links read whole holds its bytes, its text, its lines and every Link at once
# (~70 MB traced). A plain post in UTF-8, which is what long reading lists are, is read twice
# instead: once through its bytes (the digest, the encoding, whether it is plain), then line by
# line, each Link handed on as its block is read. Any other post is read whole, as before: the
# same links either way (tests/test_post.py), and the same errors, which the first read never
# raises itself (read_post reports a file it cannot read, decode or accept).

_SURVEY_CHUNK = 1 << 18


@dataclass(frozen=True, slots=True)
class Survey:
    """A post file read through once: the sha256 of its bytes, and the encoding its links can
    be read with as its lines come (None: read it whole, with read_post)."""

    digest: str | None  # None: not a regular file (a pipe is not read twice here)
    encoding: str | None


def survey_post(path: str | os.PathLike[str]) -> Survey:
    """Read a post file's bytes once, in pieces: their digest, and whether its links can be
    read as its lines come: UTF-8 text with no NUL byte, no front matter, no dead marks or
    crawler-ignore comments, and only ATX headings and paragraphs (parse_post's plain path)."""
    import codecs
    import stat
    from hashlib import sha256

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe's bytes are for read_post
            return Survey(None, None)
    except OSError:
        return Survey(None, None)  # read_post says what is wrong
    digest = sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    streams = True
    first = True  # the first line is still to be looked at (BOM, front matter)
    bom = False
    carry = ""  # an incomplete last line, or a CR that may be half of a CRLF
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(_SURVEY_CHUNK)
                digest.update(chunk)
                if not streams:
                    if not chunk:
                        break
                    continue
                if not chunk:
                    final = True
                elif b"\x00" in chunk:
                    streams = False
                    continue
                else:
                    final = False
                try:
                    text = decoder.decode(chunk, final)
                except UnicodeDecodeError:
                    streams = False
                    continue
                if first and not bom and carry == "" and text.startswith("\ufeff"):
                    bom, text = True, text[1:]  # utf-8-sig's BOM (_prepare drops one more)
                text = carry + text
                if final:
                    piece, carry = text, ""
                else:
                    end = len(text) - 1 if text.endswith("\r") else len(text)
                    cut = max(text.rfind("\n", 0, end), text.rfind("\r", 0, end)) + 1
                    piece, carry = text[:cut], text[cut:]
                piece = _NEWLINE.sub("\n", piece)
                if first and (piece or final):
                    first = False
                    piece = piece.removeprefix("\ufeff")  # as _prepare: one more
                    if piece.split("\n", 1)[0].rstrip() == "---":
                        streams = False  # front matter: read whole
                if streams and (
                    not _is_plain(piece) or DEAD_MARK in piece or "crawler-ignore" in piece
                ):
                    streams = False
                if final:
                    break
    except OSError:
        return Survey(None, None)  # read_post says what is wrong
    return Survey(digest.hexdigest(), ("utf-8-sig" if bom else "utf-8") if streams else None)


def stream_post(path: str | os.PathLike[str], encoding: str, every: bool = False) -> Iterator[Link]:
    """parse_post's links of a post that survey_post found plain, read as its lines come.
    InputError if the file changed so that it cannot be read as it was."""
    name = os.fspath(path)
    links = _plain_links(_post_lines(name, encoding), name)
    return links if every else (link for link in links if _HTTP_URL.match(link.url))


def _post_lines(name: str, encoding: str) -> Iterator[str]:
    """A post file's lines as _prepare gives them (split at CRLF, CR or LF; no BOM)."""
    try:
        with open(name, encoding=encoding, newline="") as f:
            for n, line in enumerate(f):
                line = line.rstrip("\r\n")
                yield line[1:] if n == 0 and line.startswith("\ufeff") else line
    except (OSError, UnicodeDecodeError):
        raise InputError(f"{name}: changed while it was read; run again") from None


_IGNORE = re.compile(r"<!--\s*crawler-ignore(-line|-start|-end)?\s*-->")


def drop_ignored(text: str, links: list[Link]) -> tuple[list[Link], int]:
    """links less those an inline comment asks to skip, and how many were dropped.

    `<!-- crawler-ignore -->` skips the next link after it, `<!-- crawler-ignore-line -->` every
    link on its line, `<!-- crawler-ignore-start -->` … `<!-- crawler-ignore-end -->` every link
    between them (as markdown-link-check's disable comments do).
    """
    if "crawler-ignore" not in text:
        return links, 0
    lines = _prepare(text)
    directives = [
        (n + 1, m.start(), m.group(1) or "")
        for n, line in enumerate(lines)
        for m in _IGNORE.finditer(line)
    ]
    if not directives:
        return links, 0

    def column(link: Link) -> int:
        line = lines[link.line - 1] if 0 < link.line <= len(lines) else ""
        col = line.find(link.url)
        return col if col >= 0 else len(line)

    kept: list[Link] = []
    next_wanted: list[tuple[int, int]] = []  # positions of pending crawler-ignore comments
    pending = sorted(directives)
    block_from: tuple[int, int] | None = None
    i = 0
    for link in links:
        where = (link.line, column(link))
        while i < len(pending) and pending[i][:2] < where:
            line_no, col, kind = pending[i]
            if kind == "":
                next_wanted.append((line_no, col))
            elif kind == "-start":
                block_from = (line_no, col)
            elif kind == "-end":
                block_from = None
            i += 1
        on_line = any(d[0] == link.line and d[2] == "-line" for d in directives)
        if next_wanted:
            next_wanted.clear()
            continue
        if on_line or block_from is not None:
            continue
        kept.append(link)
    return kept, len(links) - len(kept)


def scan_post(text: str, source: str = "", every: bool = False) -> list[tuple[Link, Span | None]]:
    """parse_post's links, each with where it is written (None: not mappable to columns).

    Lines are those of `text` split at CRLF, CR or LF; the front matter counts as lines.
    """
    lines = _prepare(text)
    joined = "\n".join(lines)
    spans: list[Span | None] = []
    if _is_plain(joined):
        links = _parse_plain(lines, source, spans)
    else:
        links = _parse_tokens(lines, joined, source, spans)
    pairs = list(zip(links, spans, strict=True))
    return pairs if every else [(link, s) for link, s in pairs if _HTTP_URL.match(link.url)]


def _parse_tokens(
    lines: list[str], joined: str, source: str, spans: list[Span | None] | None = None
) -> list[Link]:
    """parse_post through markdown-it's block tokens: any post."""
    tokens = _block_parser().parse(joined)
    usages = _reference_usages(tokens) if any(t.type == "definition" for t in tokens) else {}
    links: list[Link] = []
    headings: list[tuple[int, str]] = []
    section: tuple[str, ...] = ()
    cell_from = 0  # where the next table cell's text is looked for in its row
    for i, tok in enumerate(tokens):
        if tok.type == "tr_open":
            cell_from = 0
        if tok.type == "heading_open":
            level = int(tok.tag[1:])
            heading = _render_text(tokens[i + 1].content) if i + 1 < len(tokens) else ""
            headings = [h for h in headings if h[0] < level]
            if heading:
                headings.append((level, heading))
            section = tuple(h[1] for h in headings)
        elif tok.map is None:
            continue
        elif tok.type in ("inline", "html_block"):
            markdown = tok.type == "inline"
            in_cell = markdown and i > 0 and tokens[i - 1].type in ("td_open", "th_open")
            start_of_cell = cell_from
            if in_cell and spans is not None and tok.content:
                found = lines[tok.map[0]].find(tok.content, cell_from)
                cell_from = found + len(tok.content) if found >= 0 else cell_from
            if not _LINK_HINT.search(tok.content):
                continue
            in_paragraph = markdown and i > 0 and tokens[i - 1].type == "paragraph_open"
            for hit in _scan(tok.content, markdown):
                offset = tok.content.count("\n", 0, hit.pos)
                title = hit.title
                own_line = hit.bare and in_paragraph and _alone_on_line(tok.content, hit)
                if own_line:
                    title = _title_below(tokens, i, offset)
                n = tok.map[0] + offset
                links.append(Link(hit.url, n + 1, title, section, source, not hit.bare))
                if spans is not None:
                    at = start_of_cell if in_cell else -1
                    spans.append(_span(tok.content, hit, lines[n], n + 1, own_line, at))
        elif tok.type == "definition":
            url, line, title, where = _definition(tok, tok.map, lines, usages)
            if is_target(url):
                # a title given in the definition is the author's; the text it is used with is not
                anchor = not str(tok.meta.get("title", "")).strip()
                links.append(Link(url, line, title, section, source, anchor))
                if spans is not None:
                    spans.append(where)
    return links
