"""The kind of page: an article, or a notice (removed, not found, anti-robot), or other."""

from __future__ import annotations

from crawler.extract.page import Page
from crawler.extract.text import js_var, normalize_space
from crawler.sites import (
    GENERIC_ANTI_ROBOT_MARKERS,
    GENERIC_ANTI_ROBOT_TITLES,
    GENERIC_NOT_FOUND_TITLES,
    SITES,
    SiteRule,
)
from crawler.types import PageKind


def _visible_text(page: Page) -> str:
    """The page's text without scripts and styles (mutates the tree: call last)."""
    tree = page.tree
    tree.strip_tags(["script", "style", "noscript", "template", "svg"])
    root = tree.body or tree.root
    body = normalize_space(root.text(separator=" ")) if root is not None else ""
    return body[:20000]


def _notice_texts(page: Page, selectors: tuple[str, ...]) -> list[str]:
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


def site_evidence(page: Page, rule: SiteRule) -> bool:
    """Whether the page carries the marks of a real content page of its site."""
    for sel in rule.article_selectors:
        if page.css_text(sel):
            return True
    if rule.strict_article:
        if page.meta.get("og:title"):
            return True
        return any(js_var(page.text, name) for name in rule.title_vars)
    return False


def _match_marker(markers: tuple[str, ...], haystacks: list[str]) -> str | None:
    """The first marker found in any of the haystacks."""
    for marker in markers:
        for h in haystacks:
            if marker in h:
                return marker
    return None


def notice_kind(
    page: Page, rule: SiteRule | None, generic_article: bool, cleaned_title: str | None
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


def page_kind(
    page: Page,
    rule: SiteRule | None,
    title: str | None,
    summary: str | None,
    path: str,
    status: int | None,
) -> tuple[PageKind, str | None]:
    """The kind of page and the notice it shows, first rule that decides wins.

    The site's verification paths; the site's proof of a real content page; notice markers
    and notice titles; an article is what has a title and a summary. A 404 or 410 status
    makes any page but a removal notice "not found".
    """
    if rule is not None:
        evidence = site_evidence(page, rule)
        generic_article = evidence or (not rule.strict_article and bool(title and summary))
    else:
        evidence = False
        generic_article = bool(title and summary)
    kind = PageKind.ARTICLE if generic_article else PageKind.OTHER
    notice: str | None = None
    if rule is not None and any(path.startswith(p) for p in rule.anti_robot_paths):
        kind, notice = PageKind.ANTI_ROBOT, None
    elif not evidence:
        found = notice_kind(page, rule, generic_article, title)
        if found is not None:
            kind, notice = found
    if status in (404, 410) and kind is not PageKind.REMOVED:
        kind = PageKind.NOT_FOUND
    return kind, notice
