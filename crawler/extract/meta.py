"""HTML bytes → PageMeta: decode, parse once, then title, summary, site and kind of page."""

from __future__ import annotations

import codecs

from crawler.extract.bounded import PREFIX, fingerprints_in, holds, rest_of
from crawler.extract.decode import decode
from crawler.extract.kind import page_kind
from crawler.extract.page import PARSE_ERRORS, Page, host_of, path_of
from crawler.extract.summary import content_hash, find_summary
from crawler.extract.text import cap, shared
from crawler.extract.title import find_title
from crawler.pagekind import PageKind
from crawler.sites import site_for_content, site_for_host

TYPE_CHECKING = False  # crawler.types (dataclasses) and typing are not imported at run time
if TYPE_CHECKING:
    from typing import TypedDict

    from crawler.types import PageMeta

    class Fields(TypedDict):
        """PageMeta's fields, as `crawler extract` prints them without building a PageMeta."""

        title: str | None
        summary: str | None
        site_name: str | None
        canonical_url: str | None
        lang: str | None
        kind: PageKind
        notice: str | None
        site: str | None
        text_hash: str | None


TITLE_MAX = 1000  # characters of a title kept: a 5 MB <title> must not reach the reports
MAX_INPUT = 8 * 1024 * 1024  # bytes of a page looked at; the rest is dropped
# Bytes searched for site fingerprints. Every known site page of the corpus and the fixtures
# is recognised within the first 14 KB (a WeChat article's second fingerprint at 13.9 KB);
# 32 KB keeps twice that, and the search is 7-10 % of extract_meta at 64 KB.
FINGERPRINT_WINDOW = 32 * 1024


def _extract(
    body: bytes | str,
    url: str | None,
    content_type: str | None,
    status: int | None,
    with_hash: bool = True,
) -> Fields:
    """extract_fields without the safety net."""
    if isinstance(body, str):
        text = body[:MAX_INPUT]
        data = text.encode("utf-8", errors="replace")
    else:
        raw = bytes(body[:MAX_INPUT])
        text, codec = decode(raw, content_type)
        data = raw if codec == "utf-8" and not raw.startswith(codecs.BOM_UTF8) else b""
        if not data:
            data = text.encode("utf-8", errors="replace")
    rest = rest_of(data) if not with_hash and len(data) > PREFIX else None
    if rest is not None:
        # A big page is read from its first bytes (PREFIX, or up to its JSON-LD) when they
        # surely give what the whole page does (crawler/extract/bounded.py); the main text's
        # hash needs it all.
        try:
            fields = _read(Page(text, data, url, rest.cut, rest), url, status, with_hash)
        except PARSE_ERRORS:
            fields = None  # the whole page decides
        if fields is not None:
            return fields
    fields = _read(Page(text, data, url), url, status, with_hash)
    assert fields is not None  # a whole page always stands
    return fields


def _read(page: Page, url: str | None, status: int | None, with_hash: bool) -> Fields | None:
    """The fields read from page; None when it is a prefix that does not surely give them."""
    canonical = page.canonical_url()
    host = host_of(url)
    rule = site_for_host(host)
    if rule is None:
        # A page that states its own address is judged by it; fingerprints are for the rest
        # (saved pages, mirrors, and hosts we have no rule for that serve a known site's pages).
        canonical_host = host_of(canonical)
        rule = site_for_host(canonical_host)
        if rule is not None:
            host = host or canonical_host
        else:
            found = fingerprints_in(page.data, FINGERPRINT_WINDOW)
            rule = site_for_content(page.data, FINGERPRINT_WINDOW, found)
    # Few distinct values across a run of many pages: one string each, not one per page.
    site_name = shared(page.site_name() or (rule.site_name if rule is not None else None))
    lang = shared(page.lang())

    # A saved page without its address: its canonical URL names the host whose brand it wears.
    title_host = host or host_of(canonical)
    title = find_title(page, rule, site_name, title_host)
    summary = find_summary(page, rule)
    if page.prefix and not holds(
        page, rule, title, summary, lambda: find_title(page, rule, site_name, title_host)
    ):
        return None
    kind, notice = page_kind(page, rule, title, summary, path_of(url), status)
    if kind not in (PageKind.ARTICLE, PageKind.OTHER):
        summary = None
    text_hash = content_hash(page, rule) if with_hash and kind is PageKind.ARTICLE else None
    return {
        "title": cap(title, TITLE_MAX) or None,
        "summary": summary or None,
        "site_name": site_name or None,
        "canonical_url": canonical or None,
        "lang": lang,
        "kind": kind,
        "notice": notice,
        "site": rule.name if rule is not None else None,
        "text_hash": text_hash,
    }


def extract_fields(
    body: bytes | str,
    url: str | None = None,
    content_type: str | None = None,
    status: int | None = None,
    *,
    with_hash: bool = True,
) -> Fields:
    """extract_meta's fields as a dict (what `crawler extract` prints: no PageMeta built)."""
    try:
        return _extract(body, url, content_type, status, with_hash)
    except PARSE_ERRORS:
        kind = PageKind.NOT_FOUND if status in (404, 410) else PageKind.OTHER
        return {
            "title": None,
            "summary": None,
            "site_name": None,
            "canonical_url": None,
            "lang": None,
            "kind": kind,
            "notice": None,
            "site": None,
            "text_hash": None,
        }


def extract_meta(
    body: bytes | str,
    url: str | None = None,
    content_type: str | None = None,
    status: int | None = None,
    *,
    with_hash: bool = True,
) -> PageMeta:
    """Read title, summary, site and page kind from an HTML page.

    A page the parser cannot parse reads as a page with nothing on it; any other exception
    is a bug of the extractor and propagates. `with_hash=False` skips the main-text hash
    (`text_hash`), which only the history needs.
    """
    from crawler.types import PageMeta

    return PageMeta(**extract_fields(body, url, content_type, status, with_hash=with_hash))
