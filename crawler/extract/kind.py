"""The kind of page: an article, or a notice (removed, not found, anti-robot), or other."""

from __future__ import annotations

import re

from crawler.extract.page import STORY_TYPES, Page
from crawler.extract.text import js_var, normalize_space, weighted_length
from crawler.pagekind import PageKind
from crawler.sites import (
    CAPTCHA_WIDGETS,
    CHALLENGE_PAGE_MAX,
    CHALLENGE_SCRIPTS,
    CHALLENGE_TEXT_MAX,
    CHALLENGE_TEXT_WORDS,
    CHALLENGE_TITLE_WORDS,
    COOKIE_RELOAD_SCRIPT,
    GENERIC_ANTI_ROBOT_MARKERS,
    GENERIC_ANTI_ROBOT_TITLES,
    GENERIC_NOT_FOUND_TITLES,
    SITES,
    SiteRule,
)


def challenge(page: Page, cleaned_title: str | None) -> str | None:
    """What a verification page of any site says, or None for other pages.

    Little text, no article of its own, and: a title or main heading that is a verification
    word, or a challenge platform's script, or a phrase asking for a verification beside a
    form control or a captcha widget to answer it.
    """
    if len(page.data) > CHALLENGE_PAGE_MAX:
        return None
    # A story's metadata first: two lookups, where _may_ask lower-cases and searches the page
    # (make eval's pages, most of them stories: 1,117.8 -> 1,083.7 M instructions; the bench's
    # page, which is none, 694.2 k -> 693.9 k per page)
    if page.meta.get("og:type") == "article" or page.jsonld_value(("headline",), STORY_TYPES):
        return None
    source = page.data.lower()  # bytes: searched much faster than str
    if not _may_ask(page, cleaned_title, source):
        return None
    if page.tree.css_first("article p, [itemprop=articleBody] p") is not None:
        return None
    visible = page.visible_text()
    if len(visible) > CHALLENGE_TEXT_MAX or (
        # weighted_length counts a character twice at most: below half the limit, it is below
        len(visible) * 2 > CHALLENGE_TEXT_MAX and weighted_length(visible) > CHALLENGE_TEXT_MAX
    ):
        return None
    heading = page.h1[0] if page.h1 else (page.css_text("h2") or "")
    word = any(_names_a_check(t) for t in (cleaned_title, page.title_tag, heading) if t)
    scripts = [s for s, b in zip(CHALLENGE_SCRIPTS, _SCRIPTS, strict=True) if b in source]
    if b"document.cookie" in source and re.search(COOKIE_RELOAD_SCRIPT, page.text, re.S):
        scripts.append("a script that sets a cookie and reloads the page")
    widget = any(w in source for w in _WIDGETS)
    if not (word or scripts or widget) and page.tree.css_first("input, button") is None:
        return None
    folded = visible.lower()
    script = next((s for s in scripts if s not in folded), None)  # named in the text: quoted
    if not word and script is None and not any(w in folded for w in CHALLENGE_TEXT_WORDS):
        return None
    return heading or cleaned_title or page.title_tag or visible[:200] or f"challenge: {script}"


_SCRIPTS = tuple(s.encode() for s in CHALLENGE_SCRIPTS)
_WIDGETS = tuple(s.encode() for s in CAPTCHA_WIDGETS)
#: In the lower-cased source of any page with something to answer a verification with:
#: every script, widget and form control challenge() looks for (an element comes from a
#: start tag in the bytes parsed, which begin the page's bytes).
_ANSWERS = (*_SCRIPTS, *_WIDGETS, b"document.cookie", b"<input", b"<button")


def _may_ask(page: Page, cleaned_title: str | None, source: bytes) -> bool:
    """False only where challenge() surely finds no verification: no verification word in the
    title or the main heading, and no challenge script, widget or form control in the source.
    Read from the bytes and the texts read at parse time, before the rest of challenge()'s
    tests (a CSS query, the visible text): most pages are told apart here."""
    if not page.h1 and b"<h2" in source:
        return True  # the heading would be an <h2>'s text, read from the tree: not here
    heading = page.h1[0] if page.h1 else ""
    if any(_names_a_check(t) for t in (cleaned_title, page.title_tag, heading) if t):
        return True
    return any(map(source.__contains__, _ANSWERS))


def _names_a_check(text: str) -> bool:
    """Whether a title or heading is a verification word, give or take a few characters."""
    folded = text.lower()
    for w in CHALLENGE_TITLE_WORDS:
        if w in folded:
            return weighted_length(folded.replace(w, "").strip(" -_|:：·")) <= 12
    return False


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
    if not (generic_article and rule is None):
        found = _site_notice(page, rules, title)
        if found is not None:
            return found
    family = challenge(page, cleaned_title)
    if family is not None:
        return PageKind.ANTI_ROBOT, family
    if not generic_article:
        marker = _match_marker(GENERIC_ANTI_ROBOT_MARKERS, [page.text[:200_000]])
        if marker:
            return PageKind.ANTI_ROBOT, title or marker
    return None


def _site_notice(
    page: Page, rules: tuple[SiteRule, ...], title: str
) -> tuple[PageKind, str] | None:
    """The notice of one of the sites' rules that the page shows, if any."""
    notice_selectors = tuple(s for r in rules for s in r.notice_selectors)
    notices = _notice_texts(page, notice_selectors)
    raw = page.text[:200_000]
    visible = page.visible_text() if not notices else ""
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
