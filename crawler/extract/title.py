"""The page's title: a fill-if-empty chain of sources, then the site's name cut off."""

from __future__ import annotations

import html
import re

from crawler.extract.page import STORY_TYPES, Page, jsonld_types
from crawler.extract.text import js_var, normalize_space, squash, squash_words
from crawler.sites import HOST_NOISE, SITE_WORDS, SiteRule

_SEPARATORS = re.compile(r"\s+[-|–—·•:»/]\s+|\s*[_｜|]\s*|\s+-{2,}\s*|-{2,}")


def strip_suffixes(title: str, rule: SiteRule | None) -> str:
    """`title` without the site's own title suffix."""
    if rule is None:
        return title
    for pattern in rule.title_suffixes:
        stripped = re.sub(pattern, "", title)
        if stripped != title and stripped.strip():
            return stripped.strip()
    return title


#: Whether a short last segment of a `<title>` is cut as the site's name without other
#: evidence (one of the settings bench/kfold.py tunes).
CUT_WEAK_SUFFIX = True


def _site_strength(segment: str, rest: str, names: list[str], host: str | None, own: str) -> int:
    """How surely a title segment names the site: 2 surely, 1 perhaps, 0 not.

    `names` are the names the page gives its site (og:site_name, application-name, the
    JSON-LD publisher), `own` the page's main heading, squashed: a segment inside it is the
    article's own, never the site's (`Box2D---一个游戏物理引擎。` under an <h1> of the same).
    """
    sq = squash(segment)
    if not sq:
        return 2
    if own and sq in own:
        return 0
    for name in names:
        squashed = squash(name)
        if squashed and (sq == squashed or (len(sq) > 3 and sq in squashed)):
            return 2
    if host:
        labels = [x for x in host.lower().split(".") if x not in HOST_NOISE]
        if any(len(x) > 2 and (sq == x or sq.startswith(x) or x.startswith(sq)) for x in labels):
            return 2
        if len(sq) > 3 and sq in squash(host):
            return 2
    # ends in a site word (or before a final newline, where a regex's "$" matched too)
    if segment.removesuffix("\n").endswith(SITE_WORDS) and len(segment) <= 20:
        return 2
    if len(segment) * 2 <= len(rest) and len(segment.split()) <= 4 and len(segment) <= 40:
        return 1
    return 0


def _site_names(page: Page, site_name: str | None) -> list[str]:
    """The names the page gives its site."""
    names = [site_name, page.meta.get("og:site_name"), page.meta.get("application-name")]
    return [n for n in dict.fromkeys(names) if n]


def cut_site_name(title: str, page: Page, site_name: str | None, host: str | None) -> str:
    """The page's own title out of a `<title>` that may carry the site's name before or after.

    The name is learned from the page: the names it gives its site, its host's brand, words
    that end site names; a short last segment perhaps (CUT_WEAK_SUFFIX).
    """
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
    names = _site_names(page, site_name)
    own = squash(h1s[0]) if h1s else ""
    tail_site = _site_strength(tail, head, names, host, own)
    if tail_site == 2:
        return head
    lead_site = _site_strength(lead, rest, names, host, own)
    if lead_site == 2:
        return rest
    if tail_site == 1 and CUT_WEAK_SUFFIX:
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


#: Meta tags a title is read from, in this order (crawler.extract.bounded watches them too).
TITLE_KEYS = (
    "dc:title",
    "dc.title",
    "dcterm:title",
    "dcterms.title",
    "og:title",
    "twitter:title",
    "parsely-title",
)


def _jsonld_title(page: Page, types: frozenset[str] | None) -> str | None:
    """Headline or name of the first JSON-LD object of `types` (any type: headline only)."""
    for obj in page.jsonld:
        if types is not None and not (jsonld_types(obj) & types):
            continue
        found = [
            normalize_space(html.unescape(v))
            for k in (("headline", "name") if types is not None else ("headline",))
            if isinstance(v := obj.get(k), str) and v.strip()
        ]
        if not found:
            continue
        if len(found) > 1 and found[0] != found[1] and page.title_tag:
            ref = set(squash_words(page.title_tag))
            found.sort(key=lambda t: -len(ref & set(squash_words(t))))
        return found[0]
    return None


def find_title(
    page: Page, rule: SiteRule | None, site_name: str | None, host: str | None
) -> str | None:
    """The page title from the site rule, then the generic chain."""
    meta = page.meta
    if rule is not None:
        for source in rule.title_order:
            value: str | None = None
            if source == "var":
                for name in rule.title_vars:
                    value = js_var(page.text, name)
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
                value = strip_suffixes(page.title_tag, rule)
                for sel in rule.title_selectors:
                    inner = page.css_text(sel)
                    if inner:
                        value = _inside(value, inner) or value
                        break
            if value:
                return strip_suffixes(value, rule) or value
    value = _jsonld_title(page, STORY_TYPES)
    if value:
        return strip_suffixes(value, rule)
    for key in TITLE_KEYS:
        value = meta.get(key)
        if value:
            return strip_suffixes(value, rule)
    value = _jsonld_title(page, None)
    if value:
        return strip_suffixes(value, rule)
    if page.title_tag:
        return strip_suffixes(cut_site_name(page.title_tag, page, site_name, host), rule)
    if len(page.h1) == 1:
        return page.h1[0]
    return None
