"""One page parsed once: the DOM, its meta tags, `<title>`, `<h1>`s and JSON-LD, read lazily."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import (
    LexborDocumentOptions,
    LexborHTMLParser,
    LexborNode,
    SelectolaxError,
)

from crawler.extract.text import normalize_space

TYPE_CHECKING = False  # typing is not imported at run time: start-up time counts
if TYPE_CHECKING:
    from typing import Any

    from crawler.extract.bounded import Rest


#: Pages nested deeper than this are cut where they get there: the HTML parser's time grows
#: with the square of the depth (10,000 nested <div>s, 50 KB, take 0.5 s; 100,000 take 97 s),
#: and no real page comes near it (browsers flatten the tree at 512 levels).
MAX_DEPTH = 1000


#: A page whose cheap depth bound (_shallow) stays at or under this is parsed as it is: even
#: that deep, it parses in about 0.1 s. Only above it is the tag-by-tag scan worth its price
#: (it costs more than the parse of a dense megabyte page). Real pages bound at most ~2,100.
SCAN_ABOVE = 4 * MAX_DEPTH


#: A tag as depth is counted: "</" closes one level, "<name" opens one unless the element is
#: void or self-closed where the parser honours "/>", anything else is no tag.
_TAG_RE = rb"<(/)|<([A-Za-z][A-Za-z0-9-]*)(?:[^<>]*?(/?)>)?"  # compiled on first use (rare)


_VOID = frozenset(b"area base br col embed hr img input link meta param source track wbr".split())


_VOID_NAMES = rb"(?:area|base|br|col|embed|hr|img|input|link|meta|param|source|track|wbr)"


#: Where "/>" closes the element it opens: <svg/> and <math/> anywhere, any element inside them
#: but these, which end SVG or MathML content and are HTML again (the HTML Standard's list for
#: foreign content). Elsewhere "/>" is ignored: <div/> opens a <div>.
_FOREIGN = frozenset({b"svg", b"math"})
_BREAKOUT = frozenset(
    b"b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i "
    b"img li listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt "
    b"u ul var font".split()
)


#: In lower-cased HTML, the "<" of what opens no element: a void tag, and a "<" that starts
#: no tag (comments, "a < b"). Every alternative starts with "<", which the regex engine skips
#: to quickly.
_NOT_OPENING = rb"<(?:" + _VOID_NAMES + rb"(?![a-z0-9-])|(?![a-z/]))"  # compiled on first use


_DEPTH_CHUNK = 8192  # bytes counted at a time by _shallow


def _shallow(data: bytes, limit: int) -> bool:
    """True when _deep_at(data, limit) is surely None: an upper bound at C speed.

    Chunk by chunk, with o openings and c closings in the chunk, the depth inside it is at
    most start + o, and at its end at most max(start + o - c, o). Counting more openings
    only loosens the bound, so the first pass counts every "<" but "</" as an opening (every
    page of the corpus passes it under SCAN_ABOVE); the second first drops void tags and
    what is no tag, for pages thick with <img>, <br> and <input>.
    """
    if data.count(b"<") <= limit:  # one opening per "<" at most: most small pages stop here
        return True
    for cleaner in (None, _NOT_OPENING):
        text = data if cleaner is None else re.sub(cleaner, b"", data.lower())
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
    foreign = 0  # the depth of the <svg> or <math> element we are in, 0 when in none
    for m in re.finditer(_TAG_RE, data):
        if m.group(1):
            depth = max(0, depth - 1)
            if depth < foreign:
                foreign = 0
            continue
        name = m.group(2).lower()
        if name in _VOID:
            continue
        if m.group(3) and (name in _FOREIGN or (foreign and name not in _BREAKOUT)):
            continue
        if foreign and name in _BREAKOUT:
            foreign = 0
        depth += 1
        if depth > limit:
            return m.start()
        if name in _FOREIGN and not foreign:
            foreign = depth
    return None


def cut_deep_nesting(data: bytes) -> bytes:
    """data, cut where elements nest deeper than MAX_DEPTH (the scan is rarely needed)."""
    if _shallow(data, SCAN_ABOVE):
        return data
    at = _deep_at(data, MAX_DEPTH)
    return data if at is None else data[:at]


#: What every page is read for: meta tags, <title>, the canonical link, <h1>s and JSON-LD.
_READ_ONCE = 'meta, title, link[rel~=canonical i], h1, script[type="application/ld+json" i]'


PUBLISHER_TYPES = frozenset({"WebSite", "Organization", "NewsMediaOrganization"})
_LANG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")


#: What the parser raises for a page it cannot parse (the only failure extract_meta expects).
PARSE_ERRORS = (SelectolaxError,)


class Page:
    """One parsed page and what has been read from it so far."""

    def __init__(
        self, text: str, data: bytes, url: str | None, prefix: int = 0, rest: Rest | None = None
    ) -> None:
        """`prefix` > 0 parses only that many bytes of data (text and data stay whole: what
        is read of them unparsed is read in full), `rest` being the rest (from a little
        before the cut) and its marks; crawler.extract.bounded says whether what was read
        from them is what the whole page gives."""
        self.text = text
        self.data = data
        self.url = url
        self.prefix = prefix
        self.rest = rest
        parsed = data[:prefix] if prefix else data
        cut = cut_deep_nesting(parsed)
        self.cut_short = len(cut) < len(parsed)
        self.tree = LexborHTMLParser(cut, options=LexborDocumentOptions.WO_EVENTS)
        #: Where the first paragraph came from (summary.first_paragraph): the container, the
        #: element, and whether it was a <p> found among the container's paragraphs.
        self.paragraph_from: tuple[LexborNode | None, LexborNode | None, bool] | None = None
        #: Which main container was taken (summary.main_container): the index in CONTAINERS,
        #: -1 for a site's selector, -2 for the parser's pick, None for no container.
        self.container_kind: int | None = None
        self.main: LexborNode | None = None
        self.meta: dict[str, str] = {}
        self.title_tag = ""
        self._canonical: str | None = None
        self._h1: list[str] = []
        self.h1_read = False  # whether anything read the <h1>s (bounded.py)
        self._jsonld_texts: list[str] = []
        # One walk of the tree for everything read from every page (a selector list, matched
        # in document order); texts are taken now, since visible_text() drops nodes later.
        for node in self.tree.css(_READ_ONCE):
            tag = node.tag
            if tag == "meta":
                self._add_meta(node.attributes)
            elif tag == "title":
                if not self.title_tag:
                    self.title_tag = normalize_space(node.text())
            elif tag == "link":
                if self._canonical is None:
                    self._canonical = (node.attributes.get("href") or "").strip() or None
            elif tag == "h1":
                if t := normalize_space(node.text(separator=" ")):
                    self._h1.append(t)
            elif raw := _strip_cdata(node.text() or ""):
                self._jsonld_texts.append(raw)
        self._jsonld: list[dict[str, Any]] | None = None
        self._visible: str | None = None

    def _add_meta(self, attrs: dict[str, str | None]) -> None:
        """Record one <meta> tag's value under each of its names (the first value wins)."""
        key = attrs.get("property") or attrs.get("name") or attrs.get("itemprop")
        content = attrs.get("content")
        if not key or content is None:
            http_equiv = attrs.get("http-equiv")
            if http_equiv and content:
                self.meta.setdefault("http-equiv:" + http_equiv.lower(), content)
            return
        value = normalize_space(content)
        if value:
            for k in key.lower().split():
                self.meta.setdefault(k, value)

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

    def visible_text(self) -> str:
        """The page's text without scripts and styles (drops them from the tree: call late)."""
        if self._visible is None:
            tree = self.tree
            tree.strip_tags(["script", "style", "noscript", "template", "svg"])
            root = tree.body or tree.root
            body = normalize_space(root.text(separator=" ")) if root is not None else ""
            self._visible = body[:20000]
        return self._visible

    @property
    def canonical_link(self) -> str | None:
        """The href of the page's first canonical link."""
        return self._canonical

    @property
    def h1(self) -> list[str]:
        """Texts of the page's non-empty <h1> elements."""
        self.h1_read = True
        return self._h1

    def set_h1(self, texts: list[str]) -> None:
        """Make the page's <h1>s these (crawler.extract.bounded asks what more would do)."""
        self._h1 = texts

    @property
    def jsonld(self) -> list[dict[str, Any]]:
        """Every JSON-LD object on the page, flattened out of lists and @graph."""
        if self._jsonld is None:
            out: list[dict[str, Any]] = []
            for raw in self._jsonld_texts:
                try:
                    data = json.loads(raw, strict=False)
                except RecursionError:  # nested deeper than the JSON parser goes: no data
                    continue
                except ValueError:
                    try:
                        data = json.loads(re.sub(r",\s*([}\]])", r"\1", raw), strict=False)
                    except (ValueError, RecursionError):
                        continue
                out.extend(_flatten_jsonld(data))
            self._jsonld = out
        return self._jsonld

    def canonical_url(self) -> str | None:
        """The address the page gives itself (link rel=canonical, og:url), made absolute."""
        canonical = self._canonical or self.meta.get("og:url")
        if canonical and self.url:
            try:
                canonical = urljoin(self.url, canonical)
            except ValueError:
                canonical = None
        return canonical or None

    def site_name(self) -> str | None:
        """The name the page gives its site: og:site_name, the JSON-LD publisher, app name."""
        return (
            self.meta.get("og:site_name")
            or self.jsonld_value(("name",), PUBLISHER_TYPES)
            or self.meta.get("application-name")
        )

    def lang(self) -> str | None:
        """The page's language tag (html lang, Content-Language, og:locale), if well-formed."""
        lang = None
        root = self.tree.root
        if root is not None:
            attrs = root.attributes
            lang = normalize_space(attrs.get("lang") or attrs.get("xml:lang") or "")
        lang = lang or self.meta.get("http-equiv:content-language") or self.meta.get("og:locale")
        if lang:
            lang = lang.replace("_", "-").split(",")[0].strip()
            lang = lang if _LANG.match(lang) and not lang.lower().startswith("utf") else None
        return lang

    def jsonld_value(self, keys: tuple[str, ...], types: frozenset[str] | None) -> str | None:
        """The first string under one of `keys` in a JSON-LD object of one of `types`."""
        for obj in self.jsonld:
            if types is not None and not (jsonld_types(obj) & types):
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


def jsonld_types(obj: dict[str, Any]) -> frozenset[str]:
    """The @type names of a JSON-LD object."""
    t = obj.get("@type")
    if isinstance(t, str):
        return frozenset({t})
    if isinstance(t, list):
        return frozenset(x for x in t if isinstance(x, str))
    return frozenset()


#: JSON-LD types of a story: its headline and description are the page's own.
STORY_TYPES = frozenset(
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


#: An http(s) URL with a plain host (ASCII letters, digits, dots and hyphens), no userinfo, at
#: most a port, and no tab or newline before its query: urlsplit's hostname is the host
#: lower-cased, its path the path.
_PLAIN_URL = re.compile(r"https?://([A-Za-z0-9.-]+)(?::[0-9]*)?(/[^?#\t\r\n]*)?(?=[?#]|\Z)")


def host_of(url: str | None) -> str | None:
    """Lower-case host of `url`."""
    if not url:
        return None
    plain = _PLAIN_URL.match(url := url.strip())
    if plain is not None:  # most URLs: read without urlsplit's whole parse
        return plain[1].lower()
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def path_of(url: str | None) -> str:
    """Path of `url`."""
    if not url:
        return ""
    plain = _PLAIN_URL.match(url := url.strip())
    if plain is not None:
        return plain[2] or ""
    try:
        return urlsplit(url).path
    except ValueError:
        return ""
