"""Fuzzing with hypothesis: the post parser, the URL cleaner, the charset decoder and the
extractor never raise, and keep their invariants, on random input."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler.classify import classify, normalize_title, titles_match
from crawler.extract import decode_html, extract_meta
from crawler.post import _prepare, clean_url, parse_post, scan_post, url_as_read
from crawler.types import Verdict
from tests.factories import make_fetch_result

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_pieces = st.sampled_from(
    [
        "https://mp.weixin.qq.com/s/abc",
        "http://a.com/x_(y)",
        "[t](https://b.com/",
        "](",
        "<https://c.com/>",
        "`https://code.example/`",
        "```\n",
        "# ",
        "\n",
        "\r\n",
        "\n\n",
        "（",
        "）",
        "。",
        '<a href="https://d.com">',
        "</a>",
        '[id]: https://e.com "T"\n',
        "---\n",
        "    indented\n",
        "| a | b |\n",
        "标题",
        "\\",
        "&amp;",
        "\u200b",
    ]
)
posts = st.lists(st.one_of(_pieces, st.text(max_size=20)), max_size=40).map("".join)


@FUZZ
@given(posts)
def test_parser_never_raises_and_lines_are_in_range(text: str) -> None:
    links = parse_post(text, "fuzz.md")
    n_lines = text.count("\n") + 1 + text.count("\r")
    for link in links:
        assert link.url.lower().startswith(("http://", "https://"))
        assert 1 <= link.line <= n_lines
        assert link.source == "fuzz.md"


@FUZZ
@given(posts)
def test_every_span_holds_the_url_it_names(text: str) -> None:
    """What enrich edits by: each link's span is on its line and reads back as its URL."""
    lines = _prepare(text)
    for link, span in scan_post(text, "fuzz.md", every=True):
        if span is None:
            continue  # not mappable to columns: enrich leaves such a link alone
        assert span.line == link.line
        line = lines[span.line - 1]
        assert 0 <= span.start < span.end <= len(line)
        assert span.first <= span.start and (span.last == -1 or span.end <= span.last)
        assert url_as_read(line[span.start : span.end], span.kind != "html") == link.url


@FUZZ
@given(st.text(max_size=200))
def test_clean_url_only_shortens(candidate: str) -> None:
    cleaned = clean_url(candidate)
    assert candidate.startswith(cleaned) or cleaned in candidate
    assert clean_url(cleaned) == cleaned  # idempotent


@FUZZ
@given(
    st.binary(max_size=3000),
    st.sampled_from(
        [
            None,
            "text/html",
            "text/html; charset=gbk",
            "text/html; charset=bogus",
            "text/html; charset=utf-8",
        ]
    ),
)
def test_decoder_never_raises(body: bytes, ctype: str | None) -> None:
    assert isinstance(decode_html(body, ctype), str)


@FUZZ
@given(st.binary(max_size=3000), st.sampled_from([None, 200, 404, 500]))
def test_extractor_and_classifier_never_raise_on_bytes(body: bytes, status: int | None) -> None:
    meta = extract_meta(body, url="https://mp.weixin.qq.com/s/x", status=status)
    c = classify(make_fetch_result(status=status or 200), meta, "标题")
    assert c.verdict in set(Verdict)


@FUZZ
@given(st.text(max_size=100), st.text(max_size=100))
def test_title_matching_is_reflexive_and_total(a: str, b: str) -> None:
    assert titles_match(a, a)
    titles_match(a, b)
    assert normalize_title(normalize_title(a)) == normalize_title(a)
