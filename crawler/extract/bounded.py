"""Reading a big page from its first bytes: when what they give is what the whole page gives.

A page over PREFIX bytes is parsed up to PREFIX first (the parser's time is most of a
megabyte page's extraction). What was read from that tree stands only when nothing past the
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
#: from its prefix can be a challenge page, whose test looks at every byte.
PREFIX = 128 * 1024


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


#: In the rest of the page (lower-cased): the main containers, in CONTAINERS' order (role=main
#: is the fourth), the first an attribute's value, the next two start tags (_TAGS' names).
_CONTAINER_MARKS = (b"articlebody", b"article", b"main")
_ROLE_MAIN = re.compile(rb"role\s*=\s*[\"']?\s*main")


#: The start tags looked for in the rest, all in one pass: one bytes.find per name costs as
#: much as this whole pass (a regex whose every branch starts with "<", which it skips to
#: quickly).
_TAGS = re.compile(rb"<(html|title|h1|meta|article|main)")


#: A meta tag as the tokenizer reads it: quoted values may hold ">".
_META_TAG = re.compile(rb"<meta(?:[^>\"']|\"[^\"]*\"|'[^']*')*>?")


def _open_path(page: Page) -> list[LexborNode]:
    """The elements open where the prefix ends: the last node and its ancestors."""
    path: list[LexborNode] = []
    node = page.tree.root
    while node is not None:
        path.append(node)
        node = node.last_child
    return path


def _meta_keys(tags: list[bytes]) -> set[str]:
    """Keys Page._add_meta would record for these <meta> tags."""
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


def rest_of(data: bytes) -> bytes | None:
    """What is past the prefix of data, lower-cased (from OVERLAP bytes before the cut); None
    when it holds JSON-LD, which the chain reads first (the whole page is parsed at once)."""
    rest = data[PREFIX - OVERLAP :].lower()
    at = _LD_JSON_MAYBE.search(rest)
    if at is not None and (
        rest.find(b"ld+json", at.start()) >= 0 or _LD_JSON_REFERENCE.search(rest, at.start())
    ):
        return None
    return rest


class _Tags:
    """Where each of _TAGS' start tags begins in the rest, found in one pass when first asked."""

    def __init__(self, rest: bytes) -> None:
        self.rest = rest
        self._at: dict[bytes, list[int]] | None = None

    def at(self, name: bytes) -> list[int]:
        """Offsets of the "<" of every b"<" + name in the rest (b"<h1" in b"<h10" too)."""
        if self._at is None:
            self._at = {}
            for m in _TAGS.finditer(self.rest):
                self._at.setdefault(m.group(1), []).append(m.start())
        return self._at.get(name, [])


def _tag_in(tags: _Tags, name: bytes) -> bool:
    """Whether the rest holds a start tag `name` (b"h1": not b"<h10" or b"<h1-x")."""
    rest, end = tags.rest, len(name) + 1
    for at in tags.at(name):
        after = rest[at + end : at + end + 1]
        if not (after.isalnum() or after == b"-"):
            return True
    return False


def _meta_tags(tags: _Tags) -> Iterator[re.Match[bytes]]:
    """The <meta> tags in the rest."""
    for at in tags.at(b"meta"):
        m = _META_TAG.match(tags.rest, at)
        if m is not None:
            yield m


def _has_lang(page: Page) -> bool:
    """Whether the page's <html> has its language (a later <html> tag cannot change it)."""
    root = page.tree.root
    if root is None:
        return False
    attrs = root.attributes
    return bool(normalize_space(attrs.get("lang") or attrs.get("xml:lang") or ""))


def _container_in(tags: _Tags, kinds: int) -> bool:
    """Whether the rest may hold a main container of one of the first `kinds` kinds of
    CONTAINERS."""
    rest = tags.rest
    if kinds > 0 and _CONTAINER_MARKS[0] in rest:
        return True
    if any(tags.at(name) for name in _CONTAINER_MARKS[1:kinds]):
        return True
    return kinds > 3 and bool(_ROLE_MAIN.search(rest))


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
    if not page.rest or page.cut_short or rule is not None or not (title and summary):
        return False
    path = _open_path(page)
    for element in path:
        if element.tag in _OPEN_BLOCKERS:
            return False
        if element.tag == "script" and "ld+json" in (element.attributes.get("type") or "").lower():
            return False
    open_ids = {element.mem_id for element in path}
    # In the rest, the start tags in one pass (_Tags) and one bytes.find per other mark (a
    # regex with re.I is 60 times slower than one find); each is about a tenth of the parse
    # of the same bytes, so only the marks that could change what the prefix gave are looked
    # for.
    rest = page.rest
    tags = _Tags(rest)
    if not _has_lang(page) and _tag_in(tags, b"html"):
        return False
    if not page.title_tag and _tag_in(tags, b"title"):
        return False
    if page.canonical_link is None and b"canonical" in rest:
        return False
    if (
        page.h1_read
        and len(page.h1) < 2
        and _tag_in(tags, b"h1")
        and not _h1_moot(page, title, retitle)
    ):
        return False
    metas = [m.group() for m in _meta_tags(tags)]
    if metas and not (_meta_keys(metas) & READ_META) <= set(page.meta):
        return False
    if page.paragraph_from is None:  # the summary is the page's description
        return True
    container, node, paragraph = page.paragraph_from
    kind, main = page.container_kind, page.main
    if kind is not None and kind < 0:
        return False
    # no main container of a kind the chain takes first (any kind, when the prefix has none)
    if _container_in(tags, len(CONTAINERS) if kind is None else kind):
        return False
    if main is None or container is None or container.mem_id != main.mem_id:
        # the body's paragraph: the main container, if any, gave none and is read whole
        if main is not None and main.mem_id in open_ids:
            return False
        return paragraph and node is not None and node.mem_id not in open_ids
    if paragraph:  # a <p> of the main container: its text and everything before it are read
        return node is not None and node.mem_id not in open_ids
    return main.mem_id not in open_ids  # a block or the container's text: all of it is read
