"""Hostile fetched text through each destination (crawler.sanitize): the terminal, report.md's
table cells, the user's post (enrich) and report.html."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from crawler import sanitize
from crawler.enrich import EnrichOptions, Finding, enrich_text
from crawler.report import render
from crawler.types import Verdict
from tests.factories import make_check, make_run

HOSTILE = [
    "\x1b[31mred\x1b[0m \x1b]0;pwned\x07title \x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\",
    "evil\u202egnp.exe\u2066x\u2069\u200b\ufeff",
    "a | b || c |",
    "line one\nline two\r\nthree\u2028four\u2029five\x0bsix",
    "<script>alert(1)</script><img src=x onerror=alert(2)>",
    "`code` and ``` fence ``",
    "\x00nul\x07bel\x08bs\x7fdel\x9b31m csi",
    "# not a heading | [not](a link) *not em* _x_ <b>x</b> &amp; https://x.example",
    "\ud800lone surrogate",
]
#: What must never reach any destination.
FORBIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)


@pytest.mark.parametrize("text", HOSTILE)
def test_every_destination_gets_one_visible_line(text: str) -> None:
    shown = sanitize.visible(text)
    for out in (
        sanitize.terminal(text),
        sanitize.table_cell(text),
        sanitize.markdown_text(text),
        sanitize.html_text(text),
    ):
        assert FORBIDDEN.search(out) is None, out
        assert "\n" not in out and "\r" not in out and "\t" not in out
    assert "]0;" not in shown and "31m" not in shown  # escape sequences go whole
    assert sanitize.terminal(text) == shown


def test_visible_keeps_what_a_reader_should_see() -> None:
    assert sanitize.visible(HOSTILE[0]) == "red title link"
    assert sanitize.visible(HOSTILE[1]) == "evilgnp.exex"
    assert sanitize.visible(HOSTILE[3]) == "line one line two three four five six"
    assert sanitize.visible("  标题\u3000\u3000ok  ") == "标题 ok"
    assert sanitize.visible(HOSTILE[8]) == "\ufffdlone surrogate"


class _Text(HTMLParser):
    """The text and the elements of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _rendered(markdown: str) -> _Text:
    parsed = _Text()
    parsed.feed(MarkdownIt("commonmark").render(markdown))
    return parsed


@pytest.mark.parametrize("text", HOSTILE)
def test_a_table_cell_stays_one_cell_of_plain_text(text: str) -> None:
    """report.md's rows keep their columns, and each cell renders as the text itself."""
    cells = ["1", sanitize.table_cell(text), sanitize.table_cell(text)]
    table = "| a | b | c |\n|---|---|---|\n| " + " | ".join(cells) + " |\n"
    doc = MarkdownIt("commonmark").enable("table").render(table)
    parser = _Text()
    parser.feed(doc)
    assert parser.tags.count("td") == 3  # no pipe made a column, no newline ended the row
    assert set(parser.tags) <= {"table", "thead", "tbody", "tr", "th", "td"}
    shown = sanitize.visible(text)
    assert "".join(parser.text).count(shown) == 2


@pytest.mark.parametrize("context", ["line", "inline", "link"])
@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_text_renders_as_the_text_itself(text: str, context: str) -> None:
    """Written into a post, fetched text is plain text: no markup, code, link or HTML."""
    out = sanitize.markdown_text(text, 500, context=context)  # type: ignore[arg-type]
    if context == "link":
        doc = _rendered(f"[{out}](https://example.com/)\n")
        assert doc.tags == ["p", "a"]
    else:  # a line of its own below the URL, or in the parentheses after it
        doc = _rendered(f"https://example.com/\n\n{out}\n" if context == "line" else f"x ({out})\n")
        assert set(doc.tags) <= {"p"}
    shown = sanitize.visible(text)
    if context == "inline":
        shown = shown.replace("（", "(").replace("）", ")")
    got = "".join(doc.text).replace("https://example.com/", "").strip()
    if context == "inline":
        got = got.removeprefix("x (").removesuffix(")")
    assert got == shown.replace("\ufffd", "")


@pytest.mark.parametrize("text", HOSTILE)
def test_enrich_writes_a_hostile_title_as_plain_text(text: str) -> None:
    url = "https://example.com/a"
    finding = Finding(
        url=url,
        verdict=Verdict.OK,
        title=text,
        summary=None,
        final_url=url,
        permanent_redirect=False,
        checked_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    post = f"# Links\n\n{url}\n".encode()
    out = enrich_text(post, {url: finding}, EnrichOptions()).decode()
    assert FORBIDDEN.search(out) is None
    added = out.split(url, 1)[1].strip()
    doc = _rendered(added + "\n")
    assert set(doc.tags) <= {"p"}
    if sanitize.visible(text).replace("\ufffd", ""):
        assert "".join(doc.text).strip() == sanitize.visible(text).replace("\ufffd", "")


@pytest.mark.parametrize("text", HOSTILE)
def test_reports_carry_hostile_titles_as_text(text: str) -> None:
    check = make_check(listed=text, title=text + " (now)", verdict=Verdict.CHANGED, detail=text)
    run = make_run(check)
    md = render(run, "md")
    assert FORBIDDEN.search(md) is None and "\x1b" not in md
    for line in md.splitlines():
        if line.startswith("| 1 |"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 8  # seven cells, none split
    page = render(run, "html")
    assert FORBIDDEN.search(page) is None
    assert "<script>alert" not in page and "onerror=alert" not in page.replace(
        "onerror=alert(2)&gt;", ""
    )
    assert html.escape(sanitize.visible(text)[:100], quote=False) in page
