"""A big page read from its first bytes gives what the whole page gives, or is read whole."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.extract import bounded
from crawler.extract.meta import extract_fields
from crawler.extract.page import Page

if TYPE_CHECKING:
    from crawler.extract.meta import Fields

FILLER = (
    "<div class='nav'><ul>"
    + "<li><a href='/wiki/Other'>Other page of the site</a></li>" * 40
    + "</ul></div>\n"
)
ARTICLE = (
    "<p>The first paragraph of this article is long enough to stand for the whole page, "
    "and it says what the article is about.</p>"
)


def _pad(n: int) -> str:
    """Markup of about n bytes that changes no field: navigation lists."""
    return FILLER * (n // len(FILLER) + 1)


def _whole(html: str) -> Fields:
    """What the whole page gives: the main text's hash is read from a whole parse."""
    fields = extract_fields(html.encode(), with_hash=True)
    fields["text_hash"] = None
    return fields


def _bounded(html: str) -> Fields:
    return extract_fields(html.encode(), with_hash=False)


def _read_from_prefix(html: str) -> bool:
    """Whether the page's prefix is judged to give the whole page's fields."""
    from crawler.extract.meta import _read

    data = html.encode()
    assert len(data) > bounded.PREFIX
    rest = bounded.rest_of(data)
    if rest is None:  # JSON-LD to the end, or no scanner to say where: not even tried
        return False
    return _read(Page(html, data, None, rest.cut, rest), None, None, False) is not None


@pytest.fixture(autouse=True, params=["scanner", "regexes"])
def search(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the marks of the rest found by hyperscan and by the regexes."""
    if request.param == "regexes":
        monkeypatch.setattr(bounded, "_scanner_state", [None])
    return str(request.param)


def _facts(rest: bounded.Rest | None) -> tuple[object, ...] | None:
    """Everything holds() may ask of a rest."""
    if rest is None:
        return None
    tags = tuple(tuple(rest.at(name)) for name in bounded._SCAN_TAGS)
    return tags, tuple(rest.has(mark) for mark in bounded._SCAN_MARKS)


_SCANNER: list[object] = []


def _installed_scanner() -> object:
    """hyperscan's database and scratch, compiled once (installed wherever the tests run)."""
    if not _SCANNER:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(bounded, "_scanner_state", [])
            _SCANNER.append(bounded._scanner())
    assert _SCANNER[0] is not None
    return _SCANNER[0]


#: Pieces of the rest of a page: every mark, in odd cases and spellings, cut and run together.
REST_BITS = st.sampled_from(
    ["<meta name=x>", "<META", "<Meta", "<h1>", "<H1", "<h10>", "<html", "<HTML lang=en>",
     "<title>", "<TiTlE", "<article", "<ARTICLE>", "<main>", "<MAIN", "<mai", "<", "<<h1",
     "ld+json", "LD+JSON", "Ld+Json", "ld&#43;json", "LD&#X2B;JSON", "ld&#0043json",
     "ld&plus;json", "ld&amp;json", "ld+jso", "ld", "canonical", "CANONICAL", "canonica",
     "articleBody", "ARTICLEBODY", "role=main", "ROLE = 'MAIN", "role=\tmain", "role\v=main",
     "role=\"main", "role=x", "x", " ", "\n", "é", "\xff"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(REST_BITS, max_size=60), at=st.integers(min_value=0, max_value=200))
def test_the_scanner_finds_in_the_rest_what_the_regexes_find(parts: list[str], at: int) -> None:
    rest = "".join(parts).encode("utf-8", "surrogateescape")
    data = b"<p>" * ((bounded.PREFIX - bounded.OVERLAP) // 3 + 1) + rest
    data = data[: bounded.PREFIX - bounded.OVERLAP + at] + data[bounded.PREFIX - bounded.OVERLAP :]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(bounded, "_scanner_state", [_installed_scanner()])
        scanned = _facts(bounded.rest_of(data))
        m.setattr(bounded, "_scanner_state", [None])
        assert _facts(bounded.rest_of(data)) == scanned


def test_the_prefix_is_above_the_challenge_pages_size() -> None:
    # a page read from its prefix is never a challenge page: that test reads every byte
    from crawler.sites import CHALLENGE_PAGE_MAX

    assert bounded.PREFIX > CHALLENGE_PAGE_MAX


def test_a_plain_big_article_is_read_from_its_prefix() -> None:
    html = (
        "<html lang=en><head><title>Plain article - Example</title>"
        "<meta name=description content='What the page says of itself.'></head>"
        f"<body><h1>Plain article</h1><main>{ARTICLE}{_pad(400_000)}</main></body></html>"
    )
    assert _read_from_prefix(html)
    assert _bounded(html) == _whole(html)
    assert _bounded(html)["title"] == "Plain article"


def test_a_json_ld_headline_after_the_prefix_is_read() -> None:
    html = (
        "<html><head><title>Tab title | Example</title></head>"
        f"<body><main>{ARTICLE}{_pad(300_000)}</main>"
        '<script type="application/ld+json">{"@type": "NewsArticle", '
        '"headline": "The headline from JSON-LD"}</script></body></html>'
    )
    assert not _read_from_prefix(html)
    assert _bounded(html)["title"] == "The headline from JSON-LD"
    assert _bounded(html) == _whole(html)


@pytest.mark.parametrize("ld_json", ["ld&#43;json", "LD&#x2B;JSON", "ld&#043json", "ld&plus;json"])
def test_a_json_ld_type_written_with_a_character_reference_after_the_prefix_is_read(
    ld_json: str,
) -> None:
    # the parser decodes the reference, so the chain reads this script as JSON-LD
    html = (
        "<html><head><title>Tab title | Example</title></head>"
        f"<body><main>{ARTICLE}{_pad(300_000)}</main>"
        f'<script type="application/{ld_json}">{{"@type": "NewsArticle", '
        '"headline": "The headline from JSON-LD"}</script></body></html>'
    )
    assert not _read_from_prefix(html)
    assert _bounded(html)["title"] == "The headline from JSON-LD"
    assert _bounded(html) == _whole(html)


@pytest.mark.parametrize(
    "late",
    [
        "<meta property='og:title' content='Title from a late og:title'>",
        "<meta name='description' content='A description given late in the page.'>",
        "<meta property='og:site_name' content='Late Site'>",
        "<link rel='canonical' href='https://example.org/late'>",
    ],
)
def test_a_meta_tag_or_canonical_link_after_the_prefix_is_read(late: str) -> None:
    html = (
        "<html><head><title>Tab title | Example</title></head>"
        f"<body><main>{ARTICLE}{_pad(300_000)}</main>{late}</body></html>"
    )
    assert not _read_from_prefix(html)
    assert _bounded(html) == _whole(html)


def test_a_late_meta_tag_the_chain_never_reads_keeps_the_prefix() -> None:
    html = (
        "<html><head><title>Tab title | Example</title></head>"
        f"<body><main>{ARTICLE}{_pad(300_000)}</main>"
        "<meta name='generator' content='Something'></body></html>"
    )
    assert _read_from_prefix(html)
    assert _bounded(html) == _whole(html)


def test_a_late_h1_where_the_prefix_has_none_is_read() -> None:
    # the <title>'s segments are judged against the page's heading: it decides the title
    html = (
        "<html><head><title>Box2D---一个游戏物理引擎</title></head>"
        f"<body>{ARTICLE}{_pad(300_000)}<h1>Box2D---一个游戏物理引擎</h1></body></html>"
    )
    assert not _read_from_prefix(html)
    assert _bounded(html) == _whole(html)


def test_a_second_h1_after_the_prefix_where_the_title_is_the_first() -> None:
    # one <h1> in the prefix: the title is cut at it whether or not more come (kept), but
    # with two the <title> is cut by its segments: the title differs, the whole page decides
    html = (
        "<html><head><title>Heading - Some Words Here</title></head>"
        f"<body><h1>Heading</h1><main>{ARTICLE}{_pad(300_000)}</main><h1>Other</h1>"
        "</body></html>"
    )
    assert _bounded(html) == _whole(html)


def test_the_main_container_after_the_prefix_is_taken_before_the_body() -> None:
    html = (
        "<html><head><title>Page - Example</title></head><body>"
        f"<div>{ARTICLE}</div>{_pad(300_000)}"
        "<article><p>The article's own first paragraph, which the main container holds and "
        "which the chain takes before any paragraph of the body.</p></article></body></html>"
    )
    assert not _read_from_prefix(html)
    assert _bounded(html)["summary"] is not None
    assert _bounded(html)["summary"].startswith("The article's own first paragraph")  # type: ignore[union-attr]
    assert _bounded(html) == _whole(html)


def test_an_earlier_kind_of_container_after_the_prefix_is_taken() -> None:
    html = (
        "<html><head><title>Page - Example</title></head><body>"
        f"<main>{ARTICLE}</main>{_pad(300_000)}"
        "<div itemprop=articleBody><p>The article body's first paragraph, which the chain "
        "takes before the main element's.</p></div></body></html>"
    )
    assert not _read_from_prefix(html)
    assert _bounded(html) == _whole(html)


def test_a_paragraph_open_at_the_cut_is_read_whole() -> None:
    head = "<html><head><title>Page - Example</title></head><body><main>"
    words = "A very long first paragraph that goes on and on past the cut of the prefix. "
    html = head + _pad(bounded.PREFIX - 2000) + "<p>" + words * 100 + "</p></main></body></html>"
    assert not _read_from_prefix(html)
    assert _bounded(html) == _whole(html)


def test_a_main_container_with_no_paragraph_in_the_prefix_is_read_whole() -> None:
    html = (
        "<html><head><title>Page - Example</title></head><body><p>A paragraph of the body, "
        "outside the main text, long enough to stand for the page.</p><main>"
        f"{_pad(300_000)}<p>The main text's first paragraph comes after the cut and is the "
        "summary of the whole page.</p></main></body></html>"
    )
    assert not _read_from_prefix(html)
    assert _bounded(html) == _whole(html)


def test_a_table_open_at_the_cut_is_read_whole() -> None:
    # a paragraph misplaced in a table is moved before it: after the cut in the bytes, before
    # the cell's paragraph in the tree
    html = (
        "<html><head><title>Page - Example</title></head><body><main><table><tr><td>"
        f"<p>The paragraph inside the table's cell, long enough to be the summary.</p>"
        f"{_pad(300_000)}</td></tr><p>The paragraph the parser puts before the table, which "
        "the whole page's summary is.</p></table></main></body></html>"
    )
    assert not _read_from_prefix(html)
    assert _bounded(html)["summary"].startswith("The paragraph the parser puts")  # type: ignore[union-attr]
    assert _bounded(html) == _whole(html)


def test_a_late_html_tag_gives_the_language() -> None:
    html = (
        "<html><head><title>Page - Example</title></head>"
        f"<body><main>{ARTICLE}{_pad(300_000)}</main><html lang=de></body></html>"
    )
    assert not _read_from_prefix(html)
    assert _bounded(html)["lang"] == _whole(html)["lang"] == "de"


def test_a_known_sites_big_page_is_read_whole() -> None:
    html = (
        '<html><head><title>Post - CSDN博客</title><link rel="canonical" '
        'href="https://blog.csdn.net/u/article/details/1"></head><body>'
        f"{_pad(300_000)}<h1 class='title-article' id='articleContentId'>The post</h1>"
        f"<div id='content_views'>{ARTICLE}</div></body></html>"
    )
    assert not _read_from_prefix(html)
    assert _bounded(html) == _whole(html)


def test_deep_nesting_after_the_prefix_is_still_cut() -> None:
    html = (
        "<html><head><title>Deep</title></head><body><p>A paragraph before the nesting, long "
        "enough to be the summary of the page.</p>"
        + _pad(200_000)
        + "<div>" * 10_000
        + "deep"
        + "</div>" * 10_000
    )
    fields = _bounded(html)
    assert fields["title"] == "Deep"
    assert fields == _whole(html)


def test_deep_nesting_inside_the_prefix_is_cut() -> None:
    html = (
        "<html><head><title>Deep</title></head><body><p>A paragraph before the nesting, long "
        "enough to be the summary of the page.</p>"
        + "<div>" * 10_000
        + "deep"
        + _pad(200_000)
        + "</div>" * 10_000
    )
    fields = _bounded(html)
    assert fields["summary"] and fields["summary"].startswith("A paragraph before the nesting")
    assert fields == _whole(html)


def test_every_meta_key_the_extractor_reads_is_watched_after_the_cut() -> None:
    # a new meta.get("…") in the extractor must be added to bounded.READ_META
    import re

    from crawler.extract import summary, title

    package = Path(bounded.__file__).parent
    read = set()
    for path in package.glob("*.py"):
        read |= set(re.findall(r'meta\.get\("([^"]+)"\)', path.read_text()))
    read |= set(title.TITLE_KEYS) | set(summary.DESCRIPTION_KEYS)
    assert read and read <= bounded.READ_META


# ------------------------------------------- JSON-LD past the first bytes: the cut after it

LD = '<script type="application/ld+json">{"@type": "NewsArticle", "headline": "From JSON-LD"}'


@pytest.mark.parametrize(
    ("middle", "title"),
    [
        (LD + "</script>", "From JSON-LD"),
        (
            LD + "</script>" + _pad(20_000) + LD.replace("From", "Second") + "</script>",
            "From JSON-LD",
        ),
        # where a scanner cannot tell: in a comment, a textarea, a string of another script
        ("<!-- " + LD + "</script> -->", "Plain article"),
        ("<textarea>" + LD + "</script></textarea>", "Plain article"),
        ("<script>var s = '" + LD + "</scr' + 'ipt>';</script>", "Plain article"),
        # closed in capitals: the first "</script" is later, in the next script
        (LD + "</SCRIPT><script>var x = 1;</script>", "From JSON-LD"),
    ],
)
def test_json_ld_past_the_prefix_is_read_with_the_page_up_to_it(
    search: str, middle: str, title: str
) -> None:
    html = (
        "<html lang=en><head><title>Plain article - Example</title>"
        "<meta name=description content='What the page says of itself.'></head>"
        f"<body><h1>Plain article</h1><main>{ARTICLE}{_pad(150_000)}</main>"
        f"{middle}{_pad(300_000)}</body></html>"
    )
    assert _bounded(html) == _whole(html)
    assert _bounded(html)["title"] == title
    # with the scanner, where the marks end is known: the page is parsed up to a little after
    # them, not whole
    assert _read_from_prefix(html) == (search == "scanner")


@pytest.mark.parametrize(
    "script",
    [
        # the first "</script" does not end a script that opened "<!--<script>" (the HTML
        # tokenizer's double-escaped state): open at the cut, so the page is read whole
        LD + "<!--<script>x</script> " + "-->",
        LD,  # never closed
    ],
)
def test_a_json_ld_script_open_at_the_cut_is_read_whole(script: str) -> None:
    html = (
        "<html lang=en><head><title>Plain article - Example</title>"
        "<meta name=description content='What the page says of itself.'></head>"
        f"<body><h1>Plain article</h1><main>{ARTICLE}{_pad(150_000)}</main>"
        f"{script}{_pad(300_000)}</script></body></html>"
    )
    assert not _read_from_prefix(html)
    assert _bounded(html) == _whole(html)


# ---------------------------------------------------- the sites' fingerprints, in one pass


def _needle_bits() -> st.SearchStrategy[str]:
    """Every site's gates and fingerprints, whole and cut short, and bits of other text."""
    from crawler.sites import fingerprint_needles

    needles = [n.decode("utf-8") for n in fingerprint_needles()]
    cut = [n[: len(n) // 2] for n in needles] + [n[1:] for n in needles]
    return st.sampled_from([*needles, *cut, "x", " ", "<p>", "é", "\xff", "\x00"])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_needle_bits(), max_size=40), end=st.integers(min_value=0, max_value=700))
def test_the_scanner_finds_the_fingerprints_that_a_search_for_each_finds(
    parts: list[str], end: int
) -> None:
    from crawler.sites import fingerprint_needles, site_for_content

    data = "".join(parts).encode("utf-8", "surrogateescape")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(bounded, "_scanner_state", [_installed_scanner()])
        found = bounded.fingerprints_in(data, end)
    assert found is not None
    assert found - {b""} == {n for n in fingerprint_needles() if data.find(n, 0, end) >= 0}
    assert site_for_content(data, end, found) is site_for_content(data, end)


def test_the_fingerprints_are_searched_for_each_until_a_big_page_loaded_the_scanner() -> None:
    # loading hyperscan costs as much as ~100 pages' searches: a run of small pages never pays it
    data = b"<html>var msg_title = 'x'; rich_media js_content wx.qq.com"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(bounded, "_scanner_state", [])
        assert bounded.fingerprints_in(data, len(data)) is None
        m.setattr(bounded, "_scanner_state", [None])  # hyperscan not installed
        assert bounded.fingerprints_in(data, len(data)) is None
        m.setattr(bounded, "_scanner_state", [_installed_scanner()])
        assert b"rich_media" in (bounded.fingerprints_in(data, len(data)) or ())
