"""The page's summary: its own description (fill-if-empty chain), else its first paragraph."""

from __future__ import annotations

import re
from collections.abc import Callable

from selectolax.lexbor import LexborNode

from crawler.extract.page import STORY_TYPES, Page
from crawler.extract.text import js_var, normalize_space, substantial, trim
from crawler.sites import SiteRule

PARAGRAPHS_LOOKED_AT = 30


MIN_SHORT = 25  # a sentence this long may open an explicit content container


#: Meta tags a summary is read from, in this order (crawler.extract.bounded watches them too).
DESCRIPTION_KEYS = (
    "dc:description",
    "dc.description",
    "dcterm:description",
    "dcterms.description",
    "og:description",
    "twitter:description",
    "description",
)


# Boilerplate filters: an element is boilerplate by its own class, or by an ancestor at most
# MAX_ANCESTORS levels up (a CSS `:not(nav p)` looks at every ancestor of every element:
# quadratic on deeply nested pages).
MAX_ANCESTORS = 40


_PARA_SKIP_TAGS = frozenset(
    {"nav", "header", "footer", "aside", "figure", "figcaption", "blockquote", "form"}
)


_PARA_SKIP_ANCESTOR_CLASSES = (
    "byline", "caption", "author", "comment", "share", "related", "footer", "sidebar",
    "newsletter", "promo", "copyright",
)  # fmt: skip


_PARA_SKIP_OWN_CLASSES = ("byline", "caption", "author", "date", "meta")


_BLOCKS = "div, section, td, span"


_BLOCK_SKIP_TAGS = frozenset({"nav", "header", "footer", "aside", "figure", "form"})


_BLOCK_SKIP_ANCESTOR_CLASSES = ("byline", "caption", "comment", "footer", "sidebar")


_BLOCK_SKIP_OWN_CLASSES = ("byline", "caption", "author", "meta")


_FAR = 1 << 30  # the distance to a marked ancestor where there is none


def _any_of(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """A pattern found in a string where one of words is (None for no words)."""
    return re.compile("|".join(map(re.escape, words))) if words else None


class _Boilerplate:
    """Whether elements are navigation, bylines, captions, comments … or inside one.

    Each element's distance up to the nearest marked ancestor (a tag, class or id of the
    lists) is kept by its mem_id: the candidates of a page share most of their ancestors, so
    each ancestor is looked at once, not once per candidate under it.
    """

    def __init__(
        self,
        own_classes: tuple[str, ...],
        ancestor_tags: frozenset[str],
        ancestor_classes: tuple[str, ...],
        ancestor_ids: tuple[str, ...] = (),
    ) -> None:
        self.own = _any_of(own_classes)
        self.tags = ancestor_tags
        self.classes = _any_of(ancestor_classes)
        self.ids = _any_of(ancestor_ids)
        self.distance: dict[int, int] = {}

    def __call__(self, node: LexborNode) -> bool:
        cls = node.attributes.get("class")
        if cls and self.own is not None and self.own.search(cls):
            return True
        return self._distance(node.parent) < MAX_ANCESTORS

    def _marked(self, node: LexborNode) -> bool:
        if node.tag in self.tags:
            return True
        attrs = node.attributes
        c = attrs.get("class")
        if c and self.classes is not None and self.classes.search(c):
            return True
        i = attrs.get("id") if self.ids is not None else None
        return bool(i and self.ids is not None and self.ids.search(i))

    def _distance(self, node: LexborNode | None) -> int:
        """Levels from node up to the nearest marked element (0: node itself), or _FAR."""
        path: list[int] = []
        found = _FAR
        while node is not None:
            key = node.mem_id
            known = self.distance.get(key)
            if known is not None:
                found = known
                break
            if self._marked(node):
                self.distance[key] = found = 0
                break
            path.append(key)
            node = node.parent
        for key in reversed(path):
            found = min(found + 1, _FAR)
            self.distance[key] = found
        return found


def _candidates(container: LexborNode, selector: str, limit: int, para: bool) -> list[LexborNode]:
    """The first `limit` elements matching selector in container (itself included) that are
    not boilerplate, in document order. The parser finds them: a walk of the tree in Python
    took a tenth of a megabyte page's extraction."""
    if para:
        boilerplate = _Boilerplate(
            _PARA_SKIP_OWN_CLASSES, _PARA_SKIP_TAGS, _PARA_SKIP_ANCESTOR_CLASSES, ("comment",)
        )
    else:
        boilerplate = _Boilerplate(
            _BLOCK_SKIP_OWN_CLASSES, _BLOCK_SKIP_TAGS, _BLOCK_SKIP_ANCESTOR_CLASSES
        )
    out: list[LexborNode] = []
    for node in container.css(selector):
        if not boilerplate(node):
            out.append(node)
            if len(out) >= limit:
                break
    return out


CONTAINERS = ("[itemprop=articleBody]", "article", "main", "[role=main]")


#: Each of CONTAINERS as a test of one element, in the same order.
_CONTAINER_TESTS: tuple[Callable[[LexborNode], bool], ...] = (
    lambda n: n.attributes.get("itemprop") == "articleBody",
    lambda n: n.tag == "article",
    lambda n: n.tag == "main",
    lambda n: n.attributes.get("role") == "main",
)


_ANY_CONTAINER = ", ".join(CONTAINERS)


def main_container(page: Page, rule: SiteRule | None) -> LexborNode | None:
    """The element holding the main text: the first match of the site's summary selectors,
    else of the first of CONTAINERS that any element matches.

    CONTAINERS are found in one walk of the tree, not one per selector (a selector that
    matches nothing walks the whole tree: 2 ms on a megabyte page), then told apart in order.
    """
    tree = page.tree
    page.container_kind = -1
    for sel in rule.summary_selectors if rule is not None else ():
        node = tree.css_first(sel)
        if node is not None:
            return node
    found = tree.css(_ANY_CONTAINER)
    for kind, (sel, test) in enumerate(zip(CONTAINERS, _CONTAINER_TESTS, strict=True)):
        for node in found:
            # the test, then the parser's word on it (at once: the node itself comes first)
            if test(node):
                first = node.css_first(sel)
                if first is not None and first.mem_id == node.mem_id:
                    page.container_kind = kind
                    return node
    page.container_kind = None
    if not found:
        return None
    page.container_kind = -2
    for sel in CONTAINERS:  # found elements none of the tests describes: the parser decides
        node = tree.css_first(sel)
        if node is not None:
            return node
    return None


def find_summary(page: Page, rule: SiteRule | None) -> str | None:
    """The page's own description, else the first paragraph of its main text, trimmed."""
    summary = find_description(page, rule) or first_paragraph(page, rule)
    return trim(summary) if summary else None


def find_description(page: Page, rule: SiteRule | None) -> str | None:
    """The page's own description from meta tags, JS variables and JSON-LD."""
    meta = page.meta
    candidates: list[str | None] = []
    if rule is not None:
        candidates.extend(js_var(page.text, name) for name in rule.summary_vars)
    candidates.append(page.jsonld_value(("description",), STORY_TYPES))
    candidates.extend(meta.get(k) for k in DESCRIPTION_KEYS)
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


def first_paragraph(page: Page, rule: SiteRule | None) -> str | None:
    """The first substantial paragraph of the main content."""
    tree = page.tree
    containers: list[LexborNode] = []
    main = page.main = main_container(page, rule)
    if main is not None:
        containers.append(main)
    body = tree.body
    if body is not None:
        containers.append(body)
    for container in containers:
        explicit = container is not body
        paragraphs = _candidates(container, "p", PARAGRAPHS_LOOKED_AT, para=True)
        for node in paragraphs:
            text = normalize_space(node.text(separator=""))
            if not text:
                continue
            if (substantial(text) or (explicit and _prose(text))) and not _mostly_links(node, text):
                page.paragraph_from = (container, node, True)
                return trim(text)
        # no paragraph: text straight inside a block (div soup, WeChat sections)
        for node in _candidates(container, _BLOCKS, PARAGRAPHS_LOOKED_AT * 2, para=False):
            own = normalize_space(node.text(deep=False, separator=" "))
            if substantial(own):
                text = normalize_space(node.text(separator=""))
                if not _mostly_links(node, text):
                    page.paragraph_from = (container, node, False)
                    return trim(text)
        if explicit and rule is not None and container.css_first("p") is None:
            text = normalize_space(container.text(separator=" "))
            if substantial(text):
                page.paragraph_from = (container, None, False)
                return trim(text)
    return None


def content_hash(page: Page, rule: SiteRule | None) -> str | None:
    """A short hash of the main content's text, to notice an article edited under its title.

    Scripts and styles are dropped first (they carry timestamps and tokens that change on
    every fetch), so this mutates the tree: call last.
    """
    import hashlib  # here: OpenSSL's start-up is paid only where hashes are wanted

    tree = page.tree
    tree.strip_tags(["script", "style", "noscript", "template", "svg"])
    node = main_container(page, rule) or tree.body
    if node is None:
        return None
    text = normalize_space(node.text(separator=" "))
    if not text:
        return None
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
