"""Fragments (`page#part`): which anchors a page or a Markdown file has, and whether a cited
fragment is one of them (lychee's --include-fragments).

An HTML page's anchors are its elements' `id`s and its `<a name>`s; GitHub prefixes the ids of a
rendered README with `user-content-`, so either form matches. A Markdown file's anchors are its
headings' slugs, as GitHub makes them (`## Install & run` → `install--run`, repeats `-1`, `-2`),
kramdown's `{#id}`, and the ids and names of its inline HTML.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from urllib.parse import unquote

from crawler.types import ALIVE, Check, FetchResult, LazyChecks, Link, Verdict

_GITHUB_PREFIX = "user-content-"
_HTML_ANCHOR = re.compile(
    r"""<[a-zA-Z][^>]*?\s(?:id|name)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))"""
)
_ATTR_ID = re.compile(r"\{:?\s*#([^\s}]+)[^}]*\}\s*$")


def fragment(url: str) -> str | None:
    """The fragment of url when it names an anchor to check: None for no fragment, an empty one,
    a text fragment (`#:~:text=`) or a script route (`#!`, `#/`)."""
    _, sep, frag = url.partition("#")
    if not sep or not frag or frag.startswith(("!", "/")) or ":~:" in frag:
        return None
    return frag


def without_fragment(url: str) -> str:
    """url without its `#fragment`."""
    return url.partition("#")[0]


def strip_fragments(links: list[Link]) -> dict[int, Link]:
    """Cut the #fragment off web links in place, so each page is fetched once however many of
    its anchors are cited; return the position of each link cut → the link as cited."""
    cited: dict[int, Link] = {}
    for i, link in enumerate(links):
        if "#" in link.url:
            links[i] = replace(link, url=without_fragment(link.url))
            cited[i] = link
    return cited


def html_anchors(body: bytes | str) -> frozenset[str]:
    """The ids and `<a name>`s of an HTML page."""
    from selectolax.lexbor import LexborHTMLParser

    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    tree = LexborHTMLParser(text)
    out = set()
    for node in tree.css("[id]"):
        value = node.attributes.get("id")
        if value:
            out.add(value)
    for node in tree.css("a[name]"):
        value = node.attributes.get("name")
        if value:
            out.add(value)
    return frozenset(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: lower case, punctuation dropped, spaces to '-'."""
    out = []
    for ch in heading.strip().lower():
        if ch == " ":
            out.append("-")
        elif ch in "-_" or ch.isalnum() or unicodedata.category(ch).startswith("M"):
            out.append(ch)
    return "".join(out)


def markdown_anchors(text: str) -> frozenset[str]:
    """The anchors of a Markdown file: heading slugs (GitHub's), `{#id}`, inline HTML ids."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(text)
    out: set[str] = set()
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open" or i + 1 >= len(tokens):
            continue
        inline = tokens[i + 1]
        attr = _ATTR_ID.search(inline.content)
        if attr:
            out.add(attr.group(1))
        plain = "".join(
            t.content for t in inline.children or () if t.type in ("text", "code_inline")
        )
        base = slug(_ATTR_ID.sub("", plain) if attr else plain)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    for m in _HTML_ANCHOR.finditer(text):
        out.add(next(g for g in m.groups() if g is not None))
    return frozenset(out)


def has_anchor(anchors: frozenset[str], frag: str, html: bool = True) -> bool:
    """Whether frag (as cited, maybe percent-encoded) names one of anchors."""
    for f in {frag, unquote(frag)}:
        if f in anchors or _GITHUB_PREFIX + f in anchors:
            return True
        if f.startswith(_GITHUB_PREFIX) and f[len(_GITHUB_PREFIX) :] in anchors:
            return True
        if html and f == "top":  # the HTML standard's implicit anchor: the top of the page
            return True
    return False


def page_anchors(result: FetchResult) -> frozenset[str] | None:
    """The anchors of a fetched page: HTML, or Markdown served as such (a raw README); None when
    they cannot be known (no body, a body cut at --max-body, another type)."""
    if result.body is None or result.truncated or result.status is None or result.status >= 400:
        return None
    ctype = result.headers.get("content-type", "").lower()
    path = result.final_url.split("#", 1)[0].split("?", 1)[0].lower()
    if "markdown" in ctype or (path.endswith((".md", ".markdown")) and "html" not in ctype):
        return markdown_anchors(result.body.decode("utf-8", "replace"))
    if "html" in ctype or not ctype:
        return html_anchors(result.body)
    return None


def apply(checks: Sequence[Check], cited: Mapping[int, Link]) -> Sequence[Check]:
    """The checks (one a link, in the links' order) with each link given back its fragment
    (`cited`: position of a link that was fetched without it → the link as cited) and judged
    `changed`, `fragment-missing` when the page is alive but has no such anchor (as lazily as
    they come: LazyChecks stay lazy)."""

    def one(i: int, check: Check) -> Check:
        link = cited.get(i)
        if link is None:
            return check
        frag = fragment(link.url)
        anchors = check.meta.anchors if check.meta is not None and frag else None
        html = anchors is not None and not link.url.split("#")[0].lower().endswith(".md")
        if (
            check.verdict in ALIVE
            and frag
            and anchors is not None
            and not has_anchor(anchors, frag, html)
        ):
            return replace(
                check,
                link=link,
                verdict=Verdict.CHANGED,
                reason="fragment-missing",
                detail=f"the page has no anchor #{frag}",
            )
        return replace(check, link=link)

    def placed(checks: Iterable[Check]) -> Iterator[Check]:
        return (one(i, c) for i, c in enumerate(checks))

    if isinstance(checks, LazyChecks):
        lazy = checks
        return LazyChecks(
            lambda: placed(lazy),
            len(lazy),
            lambda: placed(lazy.lean()),
            lambda indices: map(one, indices, lazy.pick(indices)),
            keep=lazy,
        )
    return tuple(placed(checks))
