"""Reading a big page from its first bytes: when what they give is what the whole page gives.

A page over PREFIX bytes is parsed up to PREFIX first (the parser's time is most of a
megabyte page's extraction), or, when JSON-LD comes later, up to a little after it (rest_of).
What was read from that tree stands only when nothing past the
cut could change it, decided from the tree and from cheap byte searches of the rest of the
page; otherwise the whole page is parsed after all. The HTML parser builds its tree as the
bytes come: an element that closed before the cut is the same element, with the same text
and ancestors, in the tree of the whole page. What is open at the cut (the last node's
ancestors) may still grow, and the rest of the page may add meta tags, <h1>s, JSON-LD,
a canonical link, attributes of <html> or a main container the chain would take first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from selectolax.lexbor import LexborHTMLParser, LexborNode

from crawler.extract.page import Page
from crawler.extract.summary import CONTAINERS, DESCRIPTION_KEYS
from crawler.extract.text import normalize_space
from crawler.extract.title import TITLE_KEYS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from crawler.sites import SiteRule

#: Bytes of a big page parsed first. Above CHALLENGE_PAGE_MAX (crawler.sites): no page read
#: from its prefix can be a challenge page, whose test looks at every byte. As small as that
#: allows now that the rest costs little to search (hyperscan): make eval's 131 pages in
#: process, alternating, 158 ms of CPU at 128 KB, 140 ms at 100 KB (80, 64 and 48 KB, with
#: the pages under 100,000 bytes left whole, gave no more).
PREFIX = 100 * 1024


#: Bytes before the cut searched again with the rest: a tag that straddles the cut (its "<"
#: before it) is dropped by the parser of the prefix.
OVERLAP = 4096


#: Every meta tag name read anywhere in the extractor (Page.meta's keys). A meta tag past the
#: cut matters only when it gives one of these that the prefix did not.
READ_META = frozenset(
    {
        "og:url",
        "og:site_name",
        "application-name",
        "http-equiv:content-language",
        "og:locale",
        "og:type",
        *TITLE_KEYS,
        *DESCRIPTION_KEYS,
    }
)


#: Elements that must not be open at the cut: their text is read whole (<title>, <h1>,
#: JSON-LD is a script), or content after the cut is moved before them (a table's misplaced
#: content is put before the table: "foster parenting").
_OPEN_BLOCKERS = frozenset(
    {"title", "h1", "table", "tbody", "thead", "tfoot", "tr", "td", "th", "caption", "select"}
)
_OPEN_BLOCKERS |= {"colgroup", "template", "plaintext"}


#: In the rest of the page: the main containers, in CONTAINERS' order (role=main is the
#: fourth), the first an attribute's value, the next two start tags (_TAGS' names).
_CONTAINER_MARKS = (b"articlebody", b"article", b"main")
_ROLE_MAIN = re.compile(rb"role\s*=\s*[\"']?\s*main")


#: The start tags looked for in the rest, all in one pass: one bytes.find per name costs as
#: much as this whole pass (a regex whose every branch starts with "<", which it skips to
#: quickly).
_TAGS = re.compile(rb"<(html|title|h1|meta|article|main)")


#: A meta tag as the tokenizer reads it: quoted values may hold ">" (re.I: the rest is
#: lower-cased only where no scanner is installed).
_META_TAG = re.compile(rb"<meta(?:[^>\"']|\"[^\"]*\"|'[^']*')*>?", re.I)


def _open_path(page: Page) -> list[LexborNode]:
    """The elements open where the prefix ends: the last node and its ancestors."""
    path: list[LexborNode] = []
    node = page.tree.root
    while node is not None:
        path.append(node)
        node = node.last_child
    return path


def _meta_keys(tags: list[bytes]) -> set[str]:
    """Keys Page._add_meta would record for these <meta> tags (their keys are lower-cased)."""
    scratch = Page.__new__(Page)
    scratch.meta = {}
    tree = LexborHTMLParser(b"<head>" + b"".join(tags))
    for node in tree.css("meta"):
        Page._add_meta(scratch, node.attributes)
    return set(scratch.meta)


#: "ld+json" with its "+" written as a character reference, which the parser decodes.
_LD_JSON_REFERENCE = re.compile(rb"ld&(?:#0*43|#x0*2b|plus);?json")


#: Where "ld+json" or a spelling of _LD_JSON_REFERENCE may start: one pass for both.
_LD_JSON_MAYBE = re.compile(rb"ld[+&]")


#: Every mark looked for in the rest, for the scanner (hyperscan, case-insensitive, over the
#: raw bytes): JSON-LD's two spellings, _TAGS' start tags, then the other marks.
_SCAN_TAGS = (b"html", b"title", b"h1", b"meta", b"article", b"main")
_SCAN_MARKS = (b"canonical", b"articlebody", b"role-main")
_SCAN_PATTERNS = (
    rb"ld\+json",
    _LD_JSON_REFERENCE.pattern,
    *(b"<" + name for name in _SCAN_TAGS),
    b"canonical",
    b"articlebody",
    _ROLE_MAIN.pattern,
)
_LD_IDS = 2  # the first two patterns: JSON-LD


if TYPE_CHECKING:
    from hyperscan import Database, Scratch


_scanner_state: list[tuple[Database, Scratch] | None] = []  # [] until first asked


def _scanner() -> tuple[Database, Scratch] | None:
    """hyperscan's database of _SCAN_PATTERNS and its scratch space, compiled on first use;
    None where hyperscan is not installed (the rest is then lower-cased and searched by
    regexes: 6 times the instructions)."""
    if not _scanner_state:
        try:
            import hyperscan
        except ImportError:
            _scanner_state.append(None)
        else:
            n = len(_SCAN_PATTERNS)
            db = hyperscan.Database()
            db.compile(
                expressions=list(_SCAN_PATTERNS),
                ids=list(range(n)),
                elements=n,
                flags=[hyperscan.HS_FLAG_CASELESS] * n,
            )
            _scanner_state.append((db, hyperscan.Scratch(db)))
    return _scanner_state[0]


_fingerprint_state: list[tuple[tuple[bytes, ...], Database, Scratch]] = []  # compiled once


def fingerprints_in(data: bytes, end: int) -> set[bytes] | None:
    """Which of the sites' fingerprints and gates (crawler.sites.fingerprint_needles) occur in
    data[:end], found in one pass; None until the rest's scanner has been loaded (a big page
    came), and where hyperscan is not installed: site_for_content then searches for each.

    On make eval's 131 pages (best of 9, in process): 9.9 ms of CPU searching for each of the
    35 needles, 3.0 ms in one pass (and 0.75 ms to compile them once). Loading hyperscan
    (~6 ms) costs as much as ~100 pages' searches: only a run that pays for it anyway uses it.
    """
    if not _scanner_state or _scanner_state[0] is None or end < 0:
        return None
    if not _fingerprint_state:
        import hyperscan

        from crawler.sites import fingerprint_needles

        needles = tuple(n for n in fingerprint_needles() if n)
        n = len(needles)
        db = hyperscan.Database()
        db.compile(
            # every byte written as \xNN: a needle is a literal, whatever characters it holds
            expressions=[b"".join(b"\\x%02x" % c for c in needle) for needle in needles],
            ids=list(range(n)),
            elements=n,
            flags=[hyperscan.HS_FLAG_SINGLEMATCH] * n,
        )
        _fingerprint_state.append((needles, db, hyperscan.Scratch(db)))
    needles, db, scratch = _fingerprint_state[0]
    found = {b""}  # data.find(b"", 0, end) >= 0 for any end >= 0

    def on_match(id_: int, start: int, to: int, flags: int, context: object) -> None:
        found.add(needles[id_])

    db.scan(data[:end], match_event_handler=on_match, scratch=scratch)
    return found


class Rest:
    """The rest of a big page (from OVERLAP bytes before the cut) and where its marks are:
    found by the scanner in one pass when it is installed, else by regexes over the rest
    lower-cased, each when first asked."""

    def __init__(self, data: bytes, cut: int = PREFIX) -> None:
        """`data` the whole page, parsed up to `cut` (ld_json tells whether the rest holds
        JSON-LD; ld_end, with the scanner, where its last mark ends in data)."""
        self._at: dict[bytes, list[int]] | None = None
        self._marks: set[bytes] | None = None
        self.cut = cut
        self.ld_end: int | None = None
        scanner = _scanner()
        if scanner is None:
            self.bytes = data[cut - OVERLAP :].lower()
            rest = self.bytes
            maybe = _LD_JSON_MAYBE.search(rest)
            self.ld_json = maybe is not None and (
                rest.find(b"ld+json", maybe.start()) >= 0
                or _LD_JSON_REFERENCE.search(rest, maybe.start()) is not None
            )
            return
        self.bytes = data[cut - OVERLAP :]
        db, scratch = scanner
        hits: list[tuple[int, int]] = []

        def on_match(id_: int, start: int, end: int, flags: int, context: object) -> None:
            hits.append((id_, end))

        db.scan(self.bytes, match_event_handler=on_match, scratch=scratch)
        ld_ends = [end for id_, end in hits if id_ < _LD_IDS]
        self.ld_json = bool(ld_ends)
        if ld_ends:
            self.ld_end = cut - OVERLAP + max(ld_ends)
        at: dict[bytes, list[int]] = {}
        marks: set[bytes] = set()
        first_mark = _LD_IDS + len(_SCAN_TAGS)
        for id_, end in sorted(hits, key=lambda hit: hit[1]):
            if _LD_IDS <= id_ < first_mark:
                name = _SCAN_TAGS[id_ - _LD_IDS]
                at.setdefault(name, []).append(end - len(name) - 1)
            elif id_ >= first_mark:
                marks.add(_SCAN_MARKS[id_ - first_mark])
        self._at, self._marks = at, marks

    def at(self, name: bytes) -> list[int]:
        """Offsets of the "<" of every b"<" + name in the rest (b"<h1" in b"<h10" too), in
        any case."""
        if self._at is None:
            self._at = {}
            for m in _TAGS.finditer(self.bytes):
                self._at.setdefault(m.group(1), []).append(m.start())
        return self._at.get(name, [])

    def has(self, mark: bytes) -> bool:
        """Whether the rest holds `mark` (one of _SCAN_MARKS) in any case."""
        if self._marks is not None:
            return mark in self._marks
        if mark == b"role-main":
            return _ROLE_MAIN.search(self.bytes) is not None
        return mark in self.bytes


def rest_of(data: bytes) -> Rest | None:
    """What is past the prefix of data, and its marks; None when the whole page is to be
    parsed at once.

    The prefix is the first PREFIX bytes or, where the rest holds JSON-LD (which the chain
    reads first), the page up to OVERLAP bytes past the first "</script" after the last
    JSON-LD mark the scanner found: every JSON-LD script is then in the prefix, and one still
    open at the cut makes holds() say no. Any cut past PREFIX is sound; this one only makes it
    likely to hold. On make eval's pages, 9 of the 11 with JSON-LD past PREFIX are read so, and
    the bytes parsed fall from 14.7 to 13.3 MB.
    """
    rest = Rest(data)
    if not rest.ld_json:
        return rest
    if rest.ld_end is None:  # no scanner: where the marks are is not known
        return None
    close = data.find(b"</script", rest.ld_end)
    if close < 0 or close + OVERLAP >= len(data):
        return None
    rest = Rest(data, close + OVERLAP)
    return None if rest.ld_json else rest


def _tag_in(rest: Rest, name: bytes) -> bool:
    """Whether the rest holds a start tag `name` (b"h1": not b"<h10" or b"<h1-x")."""
    data, end = rest.bytes, len(name) + 1
    for at in rest.at(name):
        after = data[at + end : at + end + 1]
        if not (after.isalnum() or after == b"-"):
            return True
    return False


def _meta_tags(rest: Rest) -> Iterator[re.Match[bytes]]:
    """The <meta> tags in the rest."""
    for at in rest.at(b"meta"):
        m = _META_TAG.match(rest.bytes, at)
        if m is not None:
            yield m


def _has_lang(page: Page) -> bool:
    """Whether the page's <html> has its language (a later <html> tag cannot change it)."""
    root = page.tree.root
    if root is None:
        return False
    attrs = root.attributes
    return bool(normalize_space(attrs.get("lang") or attrs.get("xml:lang") or ""))


def _container_in(rest: Rest, kinds: int) -> bool:
    """Whether the rest may hold a main container of one of the first `kinds` kinds of
    CONTAINERS."""
    if kinds > 0 and rest.has(_CONTAINER_MARKS[0]):
        return True
    if any(rest.at(name) for name in _CONTAINER_MARKS[1:kinds]):
        return True
    return kinds > 3 and rest.has(b"role-main")


def _h1_moot(page: Page, title: str | None, retitle: Callable[[], str | None]) -> bool:
    """Whether more <h1>s after the cut leave the title as it is.

    Only the title reads them here (an article of no known site is no challenge page): when the
    prefix has one, the chain reads only the first and whether there is more than one, so
    the title is found again as if there were a second; with none, it cannot be known.
    """
    if len(page.h1) != 1:
        return False
    first = page.h1
    page.set_h1([first[0], "\x00"])
    try:
        return retitle() == title
    finally:
        page.set_h1(first)


def holds(
    page: Page,
    rule: SiteRule | None,
    title: str | None,
    summary: str | None,
    retitle: Callable[[], str | None],
) -> bool:
    """Whether the title, summary and kind read from page's prefix are the whole page's.

    Only an article of no known site is decided on its prefix (a site's rules read elements
    by their own selectors, and notices look at the page's visible text): its kind follows
    from its title and summary.
    """
    rest = page.rest
    if rest is None or page.cut_short or rule is not None or not (title and summary):
        return False
    path = _open_path(page)
    for element in path:
        if element.tag in _OPEN_BLOCKERS:
            return False
        if element.tag == "script" and "ld+json" in (element.attributes.get("type") or "").lower():
            return False
    open_ids = {element.mem_id for element in path}
    # In the rest, the marks (Rest) that could change what the prefix gave; the regexes, where
    # no scanner is installed, are each about a tenth of a parse of the same bytes, so only
    # those are looked for.
    if not _has_lang(page) and _tag_in(rest, b"html"):
        return False
    if not page.title_tag and _tag_in(rest, b"title"):
        return False
    if page.canonical_link is None and rest.has(b"canonical"):
        return False
    if (
        page.h1_read
        and len(page.h1) < 2
        and _tag_in(rest, b"h1")
        and not _h1_moot(page, title, retitle)
    ):
        return False
    metas = [m.group() for m in _meta_tags(rest)]
    if metas and not (_meta_keys(metas) & READ_META) <= set(page.meta):
        return False
    if page.paragraph_from is None:  # the summary is the page's description
        return True
    container, node, paragraph = page.paragraph_from
    kind, main = page.container_kind, page.main
    if kind is not None and kind < 0:
        return False
    # no main container of a kind the chain takes first (any kind, when the prefix has none)
    if _container_in(rest, len(CONTAINERS) if kind is None else kind):
        return False
    if main is None or container is None or container.mem_id != main.mem_id:
        # the body's paragraph: the main container, if any, gave none and is read whole
        if main is not None and main.mem_id in open_ids:
            return False
        return paragraph and node is not None and node.mem_id not in open_ids
    if paragraph:  # a <p> of the main container: its text and everything before it are read
        return node is not None and node.mem_id not in open_ids
    return main.mem_id not in open_ids  # a block or the container's text: all of it is read
