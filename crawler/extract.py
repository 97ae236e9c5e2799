"""Extract stage: HTML bytes → PageMeta (title, summary, site, kind of page)."""

from __future__ import annotations

import codecs
import hashlib
import html
import json
import re
import sys
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborDocumentOptions, LexborHTMLParser, LexborNode

from crawler.sites import (
    GENERIC_ANTI_ROBOT_MARKERS,
    GENERIC_ANTI_ROBOT_TITLES,
    GENERIC_NOT_FOUND_TITLES,
    SITES,
    SiteRule,
    site_for_content,
    site_for_host,
)
from crawler.types import PageKind, PageMeta

TYPE_CHECKING = False  # typing is not imported at run time: start-up time counts
if TYPE_CHECKING:
    from typing import Any

__all__ = ["decode_html", "extract_meta", "normalize_space"]

TITLE_MAX = 1000  # characters of a title kept: a 5 MB <title> must not reach the reports
MAX_INPUT = 8 * 1024 * 1024  # bytes of a page looked at; the rest is dropped
PRESCAN = 4096  # bytes searched for a <meta charset> declaration
FINGERPRINT_WINDOW = 65536  # bytes searched for site fingerprints
SUMMARY_MAX = 300
PARAGRAPHS_LOOKED_AT = 30
MIN_LATIN = 40
MIN_CJK = 15
MIN_SHORT = 25  # a sentence this long may open an explicit content container

# ------------------------------------------------------------------------------------ decoding

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CT_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:\-]+)""", re.I)
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9._:\-]+)""", re.I | re.S
)
_GB_FAMILY = frozenset({"gb2312", "gbk", "gb18030"})
_UTF16_FAMILY = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})


def _codec_name(label: str | None) -> str | None:
    """Python codec name for a charset label, or None when unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in {"x-gbk", "gb_2312-80", "gb_2312", "csgb2312", "chinese", "iso-ir-58", "cp936"}:
        return "gb18030"
    if label in {"x-sjis", "shift-jis", "ms_kanji", "windows-31j"}:
        label = "shift_jis"
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    if name in _GB_FAMILY:
        return "gb18030"
    if name in {"latin-1", "iso8859-1", "ascii"}:
        return "cp1252"  # what browsers mean by these labels
    return name


def _strict(body: bytes, codec: str) -> str | None:
    """`body` decoded with `codec`, or None when it does not fit."""
    try:
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


#: Encodings a web page can have (the WHATWG Encoding Standard's legacy set, by Python name).
_WEB_ENCODINGS = (
    "utf_8",
    "gb18030",
    "big5",
    "shift_jis",
    "euc_jp",
    "iso2022_jp",
    "euc_kr",
    "cp1252",
    "cp1250",
    "cp1251",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "cp1258",
    "cp874",
    "koi8_r",
    "koi8_u",
    "iso8859_2",
    "iso8859_5",
    "iso8859_7",
    "iso8859_8",
    "iso8859_15",
    "utf_16_le",
    "utf_16_be",
)


def _detect(body: bytes) -> tuple[str, str]:
    """Decode with charset-normalizer's best guess (last resort: UTF-8 with replacement)."""
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(body[:200_000], cp_isolation=list(_WEB_ENCODINGS)).best()
    except Exception:  # detection must never break extraction
        best = None
    if best is not None and best.encoding:
        codec = _codec_name(best.encoding) or "utf-8"
        if codec in _UTF16_FAMILY and b"<" in body[:64]:  # markup in single bytes: not UTF-16
            return body.decode("utf-8", errors="replace"), "utf-8"
        text = _strict(body, codec)
        if text is not None:
            return text, codec
        if codec == "gb18030" or best.encoding.lower() in {"big5", "cp932", "shift_jis"}:
            return body.decode(codec, errors="replace"), codec
    return body.decode("utf-8", errors="replace"), "utf-8"


def _decode(body: bytes, content_type: str | None) -> tuple[str, str]:
    """The text of `body` and the codec that produced it."""
    if not body:
        return "", "utf-8"
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, errors="replace"), codec
    declared: list[str] = []
    if content_type:
        m = _CT_CHARSET.search(content_type)
        if m:
            declared.append(m.group(1))
    m2 = _META_CHARSET.search(body, 0, PRESCAN)
    if m2:
        declared.append(m2.group(1).decode("ascii", "replace"))
    utf8: str | None = None
    utf8_tried = False
    for label in declared:
        want = _codec_name(label)
        if want is None:
            continue
        if want in _UTF16_FAMILY:  # a readable ASCII declaration cannot be UTF-16
            want = "utf-8"
        if not utf8_tried:
            utf8, utf8_tried = _strict(body, "utf-8"), True
        if want == "utf-8":
            if utf8 is not None:
                return utf8, "utf-8"
            continue
        if utf8 is not None and not body.isascii():
            return utf8, "utf-8"  # declared something else, but the bytes are UTF-8
        text = _strict(body, want)
        if text is not None:
            return text, want
    if not utf8_tried:
        utf8 = _strict(body, "utf-8")
    if utf8 is not None:
        return utf8, "utf-8"
    if not declared:  # a declaration past the prescan window is still worth verifying
        late = _META_CHARSET.search(body)
        codec_late = _codec_name(late.group(1).decode("ascii", "replace")) if late else None
        if codec_late and codec_late != "utf-8" and codec_late not in _UTF16_FAMILY:
            text = _strict(body, codec_late)
            if text is not None:
                return text, codec_late
    return _detect(body)


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """Decode HTML bytes: BOM, HTTP charset, <meta> charset (all verified), then detection."""
    try:
        return _decode(bytes(body), content_type)[0]
    except Exception:  # never raises
        return bytes(body).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------- text helpers

_CJK_RANGES = (
    (0x3040, 0x30FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7AF),
    (0xF900, 0xFAFF),
)
_SENTENCE_END = re.compile(r"[.!?。！？](?=\s|$|[\"'”’」』）)])|[。！？]")


def normalize_space(s: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return " ".join(s.split())


def _substantial(text: str) -> bool:
    """Whether a paragraph is long enough to stand for the page."""
    if len(text) >= MIN_LATIN:
        return True
    if len(text) < MIN_CJK:
        return False
    cjk = 0
    for ch in text:
        o = ord(ch)
        if o >= 0x3040 and any(lo <= o <= hi for lo, hi in _CJK_RANGES):
            cjk += 1
            if cjk >= MIN_CJK:
                return True
    return False


def _trim(text: str, limit: int = SUMMARY_MAX) -> str:
    """Cut `text` to about `limit` characters, at a sentence end when there is one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= limit // 3:
        return head[: ends[-1]].strip()
    space = head.rfind(" ")
    if space >= limit // 2:
        head = head[:space]
    return head.rstrip(" ,;:，；：") + "…"


# ------------------------------------------------------------------------------- page reading

_JS_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|u\{[0-9a-fA-F]{1,6}\}|.)", re.S)
_JS_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "", "f": "", "v": "", "0": ""}


def _js_unescape(s: str) -> str:
    """Undo JavaScript string escapes."""

    def sub(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] in "xu" and len(e) > 1:
            digits = e[2:-1] if e.startswith("u{") else e[1:]
            try:
                return chr(int(digits, 16))
            except (ValueError, OverflowError):
                return e
        return _JS_SIMPLE.get(e, e)

    return _JS_ESCAPE.sub(sub, s) if "\\" in s else s


def _js_var(text: str, name: str) -> str | None:
    """The first non-empty string literal assigned to JS variable `name`."""
    pattern = re.compile(
        re.escape(name)
        + r"""\s*=\s*(?:htmlDecode\(\s*)?(?P<q>["'])(?P<v>(?:\\.|(?!(?P=q))[^\\\n])*)(?P=q)"""
    )
    for n, m in enumerate(pattern.finditer(text)):
        if n >= 5:
            break
        start = m.start()
        if start and (text[start - 1].isalnum() or text[start - 1] in "_$"):
            continue
        value = normalize_space(html.unescape(_js_unescape(m.group("v"))))
        if value:
            return value
    return None


#: Pages nested deeper than this are cut where they get there: the HTML parser's time grows
#: with the square of the depth (100,000 nested <div>s, 500 KB, take 12 s), and no real page
#: comes near it (browsers flatten the tree at 512 levels).
MAX_DEPTH = 1000
#: A tag as depth is counted: "</" closes one level, "<name" opens one unless the element is
#: void or the tag ends in "/>" (SVG), anything else is no tag.
_TAG_RE = re.compile(rb"<(/)|<([A-Za-z][A-Za-z0-9-]*)(?:[^<>]*?(/?)>)?")
_VOID = frozenset(b"area base br col embed hr img input link meta param source track wbr".split())
_VOID_NAMES = rb"(?:area|base|br|col|embed|hr|img|input|link|meta|param|source|track|wbr)"
#: In lower-cased HTML, the "<" of what opens no element: a void tag, and a "<" that starts
#: no tag (comments, "a < b"). Every alternative starts with "<", which the regex engine skips
#: to quickly; the second also drops self-closed tags, at a higher price.
_NOT_OPENING = (
    re.compile(rb"<(?:" + _VOID_NAMES + rb"(?![a-z0-9-])|(?![a-z/]))"),
    re.compile(rb"<(?:" + _VOID_NAMES + rb"(?![a-z0-9-])|(?![a-z/])|[a-z][^<>]*/>)"),
)
_DEPTH_CHUNK = 8192  # bytes counted at a time by _shallow


def _shallow(data: bytes, limit: int) -> bool:
    """True when _deep_at(data, limit) is surely None: an upper bound at C speed.

    Chunk by chunk, with o openings and c closings in the chunk, the depth inside it is at
    most start + o, and at its end at most max(start + o - c, o). Counting more openings
    only loosens the bound, so the first pass counts every "<" but "</" as an opening (most
    pages pass it); the next ones first drop what opens nothing.
    """
    if data.count(b"<") <= limit:
        return True
    lowered = b""
    for cleaner in (None, *_NOT_OPENING):
        if cleaner is None:
            text = data
        else:
            lowered = lowered or data.lower()
            text = cleaner.sub(b"", lowered)
        bound = 0
        for lo in range(0, len(text), _DEPTH_CHUNK):
            hi = lo + _DEPTH_CHUNK
            closes = text.count(b"</", lo, hi)
            opens = text.count(b"<", lo, hi) - closes
            if bound + opens > limit:
                break
            bound = max(bound + opens - closes, opens)
        else:
            return True
    return False


def _deep_at(data: bytes, limit: int) -> int | None:
    """Offset of the tag that opens level limit + 1 (a tag-by-tag scan), or None."""
    depth = 0
    for m in _TAG_RE.finditer(data):
        if m.group(1):
            depth = max(0, depth - 1)
        elif not m.group(3) and m.group(2).lower() not in _VOID:
            depth += 1
            if depth > limit:
                return m.start()
    return None


def _cut_deep_nesting(data: bytes) -> bytes:
    """data, cut where elements nest deeper than MAX_DEPTH (the scan is rarely needed)."""
    if _shallow(data, MAX_DEPTH):
        return data
    at = _deep_at(data, MAX_DEPTH)
    return data if at is None else data[:at]


def _shared(text: str | None) -> str | None:
    """A short string interned (the same object for equal values), else as it is."""
    if text and len(text) <= 40:
        return sys.intern(text)
    return text


def _cap(text: str | None, limit: int) -> str | None:
    """text cut to limit characters, with an ellipsis when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


class _Page:
    """One parsed page and what has been read from it so far."""

    def __init__(self, text: str, data: bytes, url: str | None) -> None:
        self.text = text
        self.url = url
        self.tree = LexborHTMLParser(
            _cut_deep_nesting(data), options=LexborDocumentOptions.WO_EVENTS
        )
        self.meta: dict[str, str] = {}
        for node in self.tree.css("meta"):
            attrs = node.attributes
            key = attrs.get("property") or attrs.get("name") or attrs.get("itemprop")
            content = attrs.get("content")
            if not key or content is None:
                http_equiv = attrs.get("http-equiv")
                if http_equiv and content:
                    self.meta.setdefault("http-equiv:" + http_equiv.lower(), content)
                continue
            value = normalize_space(content)
            if not value:
                continue
            for k in key.lower().split():
                self.meta.setdefault(k, value)
        self.title_tag = ""
        for node in self.tree.css("title"):
            t = normalize_space(node.text())
            if t:
                self.title_tag = t
                break
        self._jsonld: list[dict[str, Any]] | None = None
        self._h1: list[str] | None = None

    def css_text(self, selector: str) -> str | None:
        """Text of the first element matching `selector` that has any."""
        try:
            nodes = self.tree.css(selector)
        except Exception:
            return None
        for node in nodes[:5]:
            t = normalize_space(node.text(separator=" "))
            if t:
                return t
        return None

    @property
    def h1(self) -> list[str]:
        """Texts of the page's non-empty <h1> elements."""
        if self._h1 is None:
            self._h1 = [
                t for n in self.tree.css("h1") if (t := normalize_space(n.text(separator=" ")))
            ]
        return self._h1

    @property
    def jsonld(self) -> list[dict[str, Any]]:
        """Every JSON-LD object on the page, flattened out of lists and @graph."""
        if self._jsonld is None:
            out: list[dict[str, Any]] = []
            for node in self.tree.css('script[type="application/ld+json" i]'):
                raw = _strip_cdata(node.text() or "")
                if not raw:
                    continue
                try:
                    data = json.loads(raw, strict=False)
                except ValueError:
                    try:
                        data = json.loads(re.sub(r",\s*([}\]])", r"\1", raw), strict=False)
                    except ValueError:
                        continue
                out.extend(_flatten_jsonld(data))
            self._jsonld = out
        return self._jsonld

    def jsonld_value(self, keys: tuple[str, ...], types: frozenset[str] | None) -> str | None:
        """The first string under one of `keys` in a JSON-LD object of one of `types`."""
        for obj in self.jsonld:
            if types is not None and not (_jsonld_types(obj) & types):
                continue
            for key in keys:
                value = obj.get(key)
                if isinstance(value, list) and value:
                    value = value[0]
                if isinstance(value, str):
                    v = normalize_space(html.unescape(value))
                    if v:
                        return v
        return None


def _strip_cdata(raw: str) -> str:
    """JSON text without the CDATA or comment wrapper some pages put around it."""
    raw = raw.strip()
    for opener in ("//<![CDATA[", "<![CDATA[", "<!--"):
        if raw.startswith(opener):
            raw = raw[len(opener) :].lstrip()
            break
    for closer in ("//]]>", "]]>", "-->"):
        if raw.endswith(closer):
            raw = raw[: -len(closer)].rstrip()
            break
    return raw


def _flatten_jsonld(data: object, depth: int = 0) -> Iterator[dict[str, Any]]:
    """JSON-LD objects inside `data`, outermost first."""
    if depth > 4:
        return
    if isinstance(data, list):
        for item in data[:50]:
            yield from _flatten_jsonld(item, depth + 1)
    elif isinstance(data, dict):
        yield data
        graph = data.get("@graph")
        if graph is not None:
            yield from _flatten_jsonld(graph, depth + 1)
        main = data.get("mainEntity") or data.get("mainEntityOfPage")
        if isinstance(main, dict):
            yield from _flatten_jsonld(main, depth + 1)


def _jsonld_types(obj: dict[str, Any]) -> frozenset[str]:
    """The @type names of a JSON-LD object."""
    t = obj.get("@type")
    if isinstance(t, str):
        return frozenset({t})
    if isinstance(t, list):
        return frozenset(x for x in t if isinstance(x, str))
    return frozenset()


_STORY_TYPES = frozenset(
    {
        "Article",
        "NewsArticle",
        "BlogPosting",
        "TechArticle",
        "ScholarlyArticle",
        "Report",
        "ReportageNewsArticle",
        "AnalysisNewsArticle",
        "OpinionNewsArticle",
        "LiveBlogPosting",
        "SocialMediaPosting",
        "DiscussionForumPosting",
    }
)
_ARTICLE_TYPES = frozenset(
    {
        "Article",
        "NewsArticle",
        "BlogPosting",
        "TechArticle",
        "ScholarlyArticle",
        "Report",
        "ReportageNewsArticle",
        "AnalysisNewsArticle",
        "OpinionNewsArticle",
        "SocialMediaPosting",
        "LiveBlogPosting",
        "WebPage",
        "ItemPage",
        "AboutPage",
        "QAPage",
        "Question",
        "Recipe",
        "VideoObject",
        "Product",
        "Event",
        "Book",
        "Movie",
        "CreativeWork",
        "DiscussionForumPosting",
        "HowTo",
        "Course",
    }
)

# ---------------------------------------------------------------------------------- the title

_SEPARATORS = re.compile(r"\s+[-|–—·•:»/]\s+|\s*[_｜|]\s*|\s+-{2,}\s*|-{2,}")


def _strip_suffixes(title: str, rule: SiteRule | None) -> str:
    """`title` without the site's own title suffix."""
    if rule is None:
        return title
    for pattern in rule.title_suffixes:
        stripped = re.sub(pattern, "", title)
        if stripped != title and stripped.strip():
            return stripped.strip()
    return title


def _squash(s: str) -> str:
    """Lower-case letters and digits only, for loose comparison."""
    return "".join(c for c in s.casefold() if c.isalnum())


_SITE_WORDS = re.compile(
    r"(?:网|网站|官网|门户|频道|在线|新闻|日报|晚报|博客|论坛|社区|百科|文库|知乎)$"
)


def _site_strength(segment: str, rest: str, site_name: str | None, host: str | None) -> int:
    """How surely a `<title>` segment names the site: 2 surely, 1 perhaps, 0 not."""
    sq = _squash(segment)
    if not sq:
        return 2
    if site_name and (sq == _squash(site_name) or (len(sq) > 3 and sq in _squash(site_name))):
        return 2
    if host:
        labels = [x for x in host.lower().split(".") if x not in _HOST_NOISE]
        if any(len(x) > 2 and (sq == x or sq.startswith(x) or x.startswith(sq)) for x in labels):
            return 2
        if len(sq) > 3 and sq in _squash(host):
            return 2
    if _SITE_WORDS.search(segment) and len(segment) <= 20:
        return 2
    if len(segment) * 2 <= len(rest) and len(segment.split()) <= 4 and len(segment) <= 40:
        return 1
    return 0


_HOST_NOISE = frozenset(
    {"www", "com", "org", "net", "co", "uk", "cn", "edu", "gov", "blog", "news"}
)


def _clean_title_tag(title: str, page: _Page, site_name: str | None, host: str | None) -> str:
    """The page's own title out of a `<title>` that may carry the site name."""
    h1s = page.h1
    if len(h1s) == 1:
        inner = _inside(title, h1s[0])
        if inner:
            return inner
    seps = list(_SEPARATORS.finditer(title))
    if not seps:
        return title
    last_sep, first_sep = seps[-1], seps[0]
    head, tail = title[: last_sep.start()].strip(), title[last_sep.end() :].strip()
    lead, rest = title[: first_sep.start()].strip(), title[first_sep.end() :].strip()
    if not head or not rest:
        return title
    tail_site = _site_strength(tail, head, site_name, host)
    lead_site = _site_strength(lead, rest, site_name, host)
    if tail_site == 2:
        return head
    if lead_site == 2:
        return rest
    if tail_site == 1:
        return head
    return title


def _inside(title: str, part: str) -> str | None:
    """`part` when `title` is `part` plus a separator and more (before or after), else None."""
    if part == title or len(part) < 4:
        return None
    if title.startswith(part):
        rest = title[len(part) :]
        if _SEPARATORS.match(rest) or rest[:1] in "-|–—_｜·:":
            return part
    if title.endswith(part):
        rest = title[: -len(part)]
        if _SEPARATORS.search(rest[-4:]) or rest[-1:] in "-|–—_｜·:":
            return part
    return None


_TITLE_KEYS = (
    "dc:title",
    "dc.title",
    "dcterm:title",
    "dcterms.title",
    "og:title",
    "twitter:title",
    "parsely-title",
)
_DESCRIPTION_KEYS = (
    "dc:description",
    "dc.description",
    "dcterm:description",
    "dcterms.description",
    "og:description",
    "twitter:description",
    "description",
)


def _jsonld_title(page: _Page, types: frozenset[str] | None) -> str | None:
    """Headline or name of the first JSON-LD object of `types` (any type: headline only)."""
    for obj in page.jsonld:
        if types is not None and not (_jsonld_types(obj) & types):
            continue
        found = [
            normalize_space(html.unescape(v))
            for k in (("headline", "name") if types is not None else ("headline",))
            if isinstance(v := obj.get(k), str) and v.strip()
        ]
        if not found:
            continue
        if len(found) > 1 and found[0] != found[1] and page.title_tag:
            ref = set(_squash_words(page.title_tag))
            found.sort(key=lambda t: -len(ref & set(_squash_words(t))))
        return found[0]
    return None


def _squash_words(s: str) -> list[str]:
    """Lower-case words of `s`."""
    return re.findall(r"\w+", s.casefold())


def _title(
    page: _Page, rule: SiteRule | None, site_name: str | None, host: str | None
) -> str | None:
    """The page title from the site rule, then the generic chain."""
    meta = page.meta
    if rule is not None:
        for source in rule.title_order:
            value: str | None = None
            if source == "var":
                for name in rule.title_vars:
                    value = _js_var(page.text, name)
                    if value:
                        break
            elif source == "meta":
                value = meta.get("og:title") or meta.get("twitter:title")
            elif source == "css":
                for sel in rule.title_selectors:
                    value = page.css_text(sel)
                    if value:
                        break
            elif source == "title" and page.title_tag:
                value = _strip_suffixes(page.title_tag, rule)
                for sel in rule.title_selectors:
                    inner = page.css_text(sel)
                    if inner:
                        value = _inside(value, inner) or value
                        break
            if value:
                return _strip_suffixes(value, rule) or value
    value = _jsonld_title(page, _STORY_TYPES)
    if value:
        return _strip_suffixes(value, rule)
    for key in _TITLE_KEYS:
        value = meta.get(key)
        if value:
            return _strip_suffixes(value, rule)
    value = _jsonld_title(page, None)
    if value:
        return _strip_suffixes(value, rule)
    if page.title_tag:
        return _strip_suffixes(_clean_title_tag(page.title_tag, page, site_name, host), rule)
    if len(page.h1) == 1:
        return page.h1[0]
    return None


# -------------------------------------------------------------------------------- the summary

# Boilerplate filters, checked by walking a bounded number of ancestors (a CSS `:not(nav p)`
# looks at every ancestor of every element: quadratic on deeply nested pages).
MAX_ANCESTORS = 40
_PARA_SKIP_TAGS = frozenset(
    {"nav", "header", "footer", "aside", "figure", "figcaption", "blockquote", "form"}
)
_PARA_SKIP_ANCESTOR_CLASSES = (
    "byline", "caption", "author", "comment", "share", "related", "footer", "sidebar",
    "newsletter", "promo", "copyright",
)  # fmt: skip
_PARA_SKIP_OWN_CLASSES = ("byline", "caption", "author", "date", "meta")
_BLOCK_TAGS = frozenset({"div", "section", "td", "span"})
_P_TAGS = frozenset({"p"})
_BLOCK_SKIP_TAGS = frozenset({"nav", "header", "footer", "aside", "figure", "form"})
_BLOCK_SKIP_ANCESTOR_CLASSES = ("byline", "caption", "comment", "footer", "sidebar")
_BLOCK_SKIP_OWN_CLASSES = ("byline", "caption", "author", "meta")


def _boilerplate(
    node: LexborNode,
    own_classes: tuple[str, ...],
    ancestor_tags: frozenset[str],
    ancestor_classes: tuple[str, ...],
    ancestor_ids: tuple[str, ...] = (),
) -> bool:
    """Is node inside navigation, a byline, a caption, comments … (or one itself)?"""
    cls = node.attributes.get("class") or ""
    if cls and any(c in cls for c in own_classes):
        return True
    cur = node.parent
    for _ in range(MAX_ANCESTORS):
        if cur is None:
            return False
        if cur.tag in ancestor_tags:
            return True
        attrs = cur.attributes
        c = attrs.get("class") or ""
        if c and any(x in c for x in ancestor_classes):
            return True
        if ancestor_ids:
            i = attrs.get("id") or ""
            if i and any(x in i for x in ancestor_ids):
                return True
        cur = cur.parent
    return False


def _candidates(
    container: LexborNode, tags: frozenset[str], limit: int, para: bool
) -> list[LexborNode]:
    """The first `limit` elements with one of tags under container that are not boilerplate."""
    out: list[LexborNode] = []
    for node in container.traverse(include_text=False):
        if node.tag not in tags or node is container:
            continue
        if para:
            skip = _boilerplate(
                node,
                _PARA_SKIP_OWN_CLASSES,
                _PARA_SKIP_TAGS,
                _PARA_SKIP_ANCESTOR_CLASSES,
                ("comment",),
            )
        else:
            skip = _boilerplate(
                node, _BLOCK_SKIP_OWN_CLASSES, _BLOCK_SKIP_TAGS, _BLOCK_SKIP_ANCESTOR_CLASSES
            )
        if not skip:
            out.append(node)
            if len(out) >= limit:
                break
    return out


_CONTAINERS = ("[itemprop=articleBody]", "article", "main", "[role=main]")


def _description(page: _Page, rule: SiteRule | None) -> str | None:
    """The page's own description from meta tags, JS variables and JSON-LD."""
    meta = page.meta
    candidates: list[str | None] = []
    if rule is not None:
        candidates.extend(_js_var(page.text, name) for name in rule.summary_vars)
    candidates.append(page.jsonld_value(("description",), _STORY_TYPES))
    candidates.extend(meta.get(k) for k in _DESCRIPTION_KEYS)
    candidates.append(page.jsonld_value(("description",), None))
    for value in candidates:
        if value:
            cleaned = _clean_description(value, rule)
            if cleaned:
                return cleaned
    return None


def _clean_description(value: str, rule: SiteRule | None) -> str | None:
    """`value` without site boilerplate, or None when it says nothing about the page."""
    value = normalize_space(value)
    if rule is not None:
        if any(value.startswith(x) for x in rule.ignored_summaries):
            return None
        for pattern in rule.summary_prefixes:
            value = re.sub(pattern, "", value).strip()
    return value or None


def _mostly_links(node: LexborNode, text: str) -> bool:
    """Whether most of a paragraph's text is link text (a menu, not prose)."""
    links = node.css("a")
    if not links:
        return False
    linked = sum(len(normalize_space(a.text())) for a in links)
    return linked * 2 > len(text)


def _prose(text: str) -> bool:
    """Whether a short paragraph still reads as a sentence (for explicit content containers)."""
    return len(text) >= MIN_SHORT and len(text.split()) >= 4 and text[-1] in ".!?。！？"


def _first_paragraph(page: _Page, rule: SiteRule | None) -> str | None:
    """The first substantial paragraph of the main content."""
    tree = page.tree
    containers: list[LexborNode] = []
    selectors = (rule.summary_selectors if rule is not None else ()) + _CONTAINERS
    for sel in selectors:
        node = tree.css_first(sel)
        if node is not None:
            containers.append(node)
            break
    body = tree.body
    if body is not None:
        containers.append(body)
    for container in containers:
        explicit = container is not body
        paragraphs = _candidates(container, _P_TAGS, PARAGRAPHS_LOOKED_AT, para=True)
        for node in paragraphs:
            text = normalize_space(node.text(separator=""))
            if not text:
                continue
            if (_substantial(text) or (explicit and _prose(text))) and not _mostly_links(
                node, text
            ):
                return _trim(text)
        # no paragraph: text straight inside a block (div soup, WeChat sections)
        for node in _candidates(container, _BLOCK_TAGS, PARAGRAPHS_LOOKED_AT * 2, para=False):
            own = normalize_space(node.text(deep=False, separator=" "))
            if _substantial(own):
                text = normalize_space(node.text(separator=""))
                if not _mostly_links(node, text):
                    return _trim(text)
        if explicit and rule is not None and container.css_first("p") is None:
            text = normalize_space(container.text(separator=" "))
            if _substantial(text):
                return _trim(text)
    return None


def _text_hash(page: _Page, rule: SiteRule | None) -> str | None:
    """A short hash of the main content's text, to notice an article edited under its title.

    Scripts and styles are dropped first (they carry timestamps and tokens that change on
    every fetch), so this mutates the tree: call last.
    """
    tree = page.tree
    tree.strip_tags(["script", "style", "noscript", "template", "svg"])
    node = None
    for sel in (rule.summary_selectors if rule is not None else ()) + _CONTAINERS:
        node = tree.css_first(sel)
        if node is not None:
            break
    node = node or tree.body
    if node is None:
        return None
    text = normalize_space(node.text(separator=" "))
    if not text:
        return None
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


# ----------------------------------------------------------------------------------- the kind


def _visible_text(page: _Page) -> str:
    """The page's text without scripts and styles (mutates the tree: call last)."""
    tree = page.tree
    tree.strip_tags(["script", "style", "noscript", "template", "svg"])
    root = tree.body or tree.root
    body = normalize_space(root.text(separator=" ")) if root is not None else ""
    return body[:20000]


def _notice_texts(page: _Page, selectors: tuple[str, ...]) -> list[str]:
    """Texts of the notice elements on the page, in document order, outermost only."""
    out: list[str] = []
    if not selectors:
        return out
    taken: set[int] = set()
    for node in page.tree.css(", ".join(dict.fromkeys(selectors)))[:8]:
        parent, inside = node.parent, False
        for _ in range(12):
            if parent is None:
                break
            if parent.mem_id in taken:
                inside = True
                break
            parent = parent.parent
        if inside:
            continue
        taken.add(node.mem_id)
        t = normalize_space(node.text(separator=" "))
        if t and t not in out:
            out.append(t)
    return out


def _site_evidence(page: _Page, rule: SiteRule) -> bool:
    """Whether the page carries the marks of a real content page of its site."""
    for sel in rule.article_selectors:
        if page.css_text(sel):
            return True
    if rule.strict_article:
        if page.meta.get("og:title"):
            return True
        return any(_js_var(page.text, name) for name in rule.title_vars)
    return False


def _match_marker(markers: tuple[str, ...], haystacks: list[str]) -> str | None:
    """The first marker found in any of the haystacks."""
    for marker in markers:
        for h in haystacks:
            if marker in h:
                return marker
    return None


def _notice_kind(
    page: _Page, rule: SiteRule | None, generic_article: bool, cleaned_title: str | None
) -> tuple[PageKind, str] | None:
    """The kind of notice page this is, and its text; None for an ordinary page.

    `cleaned_title` is the title without the site's name: `Page not found - Example` is a
    soft 404 as surely as `Page not found`.
    """
    rules: tuple[SiteRule, ...] = (rule,) if rule is not None else SITES
    title = page.title_tag
    folded = {title.casefold(), (cleaned_title or "").casefold()}
    if not folded.isdisjoint(GENERIC_ANTI_ROBOT_TITLES):
        return PageKind.ANTI_ROBOT, title
    if not folded.isdisjoint(GENERIC_NOT_FOUND_TITLES):
        return PageKind.NOT_FOUND, title
    if generic_article and rule is None:
        return None
    notice_selectors = tuple(s for r in rules for s in r.notice_selectors)
    notices = _notice_texts(page, notice_selectors)
    raw = page.text[:200_000]
    visible = _visible_text(page) if not notices else ""
    haystacks = [*notices, title, visible]

    def notice_text(marker: str) -> str:
        hits = [n for n in notices if marker in n]
        if hits or notices:
            return " ".join(notices)[:500]
        return marker

    for r in rules:
        # markers in words are read in the visible text; code-like (ASCII) ones in the source too
        marker = _match_marker(r.anti_robot_markers, haystacks) or _match_marker(
            tuple(m for m in r.anti_robot_markers if m.isascii()), [raw]
        )
        if marker:
            return PageKind.ANTI_ROBOT, notice_text(marker)
    for r in rules:
        marker = _match_marker(r.not_found_markers, haystacks)
        if marker:
            return PageKind.NOT_FOUND, notice_text(marker)
    for r in rules:
        marker = _match_marker(r.removed_markers, haystacks)
        if marker:
            return PageKind.REMOVED, notice_text(marker)
    if not generic_article:
        marker = _match_marker(GENERIC_ANTI_ROBOT_MARKERS, [raw])
        if marker:
            return PageKind.ANTI_ROBOT, title or marker
    return None


# --------------------------------------------------------------------------------- entry point

_PUBLISHER_TYPES = frozenset({"WebSite", "Organization", "NewsMediaOrganization"})
_LANG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")


def _host(url: str | None) -> str | None:
    """Lower-case host of `url`."""
    if not url:
        return None
    try:
        return urlsplit(url.strip()).hostname
    except ValueError:
        return None


def _path(url: str | None) -> str:
    """Path of `url`."""
    if not url:
        return ""
    try:
        return urlsplit(url.strip()).path
    except ValueError:
        return ""


def _extract(
    body: bytes | str,
    url: str | None,
    content_type: str | None,
    status: int | None,
    with_hash: bool = True,
) -> PageMeta:
    """extract_meta without the safety net."""
    if isinstance(body, str):
        text = body[:MAX_INPUT]
        data = text.encode("utf-8", errors="replace")
    else:
        raw = bytes(body[:MAX_INPUT])
        text, codec = _decode(raw, content_type)
        data = raw if codec == "utf-8" and not raw.startswith(codecs.BOM_UTF8) else b""
        if not data:
            data = text.encode("utf-8", errors="replace")
    page = _Page(text, data, url)
    meta = page.meta

    canonical: str | None = None
    for node in page.tree.css("link[rel~=canonical i]"):
        href = (node.attributes.get("href") or "").strip()
        if href:
            canonical = href
            break
    canonical = canonical or meta.get("og:url")
    if canonical and url:
        try:
            canonical = urljoin(url, canonical)
        except ValueError:
            canonical = None

    host = _host(url)
    rule = site_for_host(host)
    if rule is None:
        # A page that states its own address is judged by it; fingerprints are for the rest
        # (saved pages, mirrors, and hosts we have no rule for that serve a known site's pages).
        canonical_host = _host(canonical)
        rule = site_for_host(canonical_host)
        if rule is not None:
            host = host or canonical_host
        else:
            rule = site_for_content(data[:FINGERPRINT_WINDOW])

    site_name = (
        meta.get("og:site_name")
        or page.jsonld_value(("name",), _PUBLISHER_TYPES)
        or meta.get("application-name")
        or (rule.site_name if rule is not None else None)
    )
    lang = None
    root = page.tree.root
    if root is not None:
        lang = normalize_space(root.attributes.get("lang") or root.attributes.get("xml:lang") or "")
    lang = lang or meta.get("http-equiv:content-language") or meta.get("og:locale")
    if lang:
        lang = lang.replace("_", "-").split(",")[0].strip()
        lang = lang if _LANG.match(lang) and not lang.lower().startswith("utf") else None
    # Few distinct values across a run of many pages: one string each, not one per page.
    lang = _shared(lang)
    site_name = _shared(site_name)

    title = _title(page, rule, site_name, host)
    summary = _description(page, rule) or _first_paragraph(page, rule)
    if summary:
        summary = _trim(summary)

    if rule is not None:
        evidence = _site_evidence(page, rule)
        generic_article = evidence or (not rule.strict_article and bool(title and summary))
    else:
        evidence = False
        generic_article = bool(title and summary)

    kind = PageKind.ARTICLE if generic_article else PageKind.OTHER
    notice: str | None = None
    path = _path(url)
    if rule is not None and any(path.startswith(p) for p in rule.anti_robot_paths):
        kind, notice = PageKind.ANTI_ROBOT, None
    elif not evidence:
        found = _notice_kind(page, rule, generic_article, title)
        if found is not None:
            kind, notice = found
    if status in (404, 410) and kind is not PageKind.REMOVED:
        kind = PageKind.NOT_FOUND
    if kind not in (PageKind.ARTICLE, PageKind.OTHER):
        summary = None
    text_hash = _text_hash(page, rule) if with_hash and kind is PageKind.ARTICLE else None
    return PageMeta(
        title=_cap(title, TITLE_MAX) or None,
        summary=summary or None,
        site_name=site_name or None,
        canonical_url=canonical or None,
        lang=lang,
        kind=kind,
        notice=notice,
        site=rule.name if rule is not None else None,
        text_hash=text_hash,
    )


def extract_meta(
    body: bytes | str,
    url: str | None = None,
    content_type: str | None = None,
    status: int | None = None,
    *,
    with_hash: bool = True,
) -> PageMeta:
    """Read title, summary, site and page kind from an HTML page; never raises.

    `with_hash=False` skips the main-text hash (`text_hash`), which only the history needs.
    """
    try:
        return _extract(body, url, content_type, status, with_hash)
    except Exception:
        kind = PageKind.NOT_FOUND if status in (404, 410) else PageKind.OTHER
        return PageMeta(kind=kind)
