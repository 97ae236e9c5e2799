"""The post stage: Markdown post → Links (one fixture file per case in fixtures/posts/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler import post as post_module
from crawler.errors import InputError
from crawler.post import (
    Span,
    clean_url,
    detect_encoding,
    parse_post,
    read_post,
    scan_post,
    url_as_read,
)
from crawler.types import Link

POSTS = Path(__file__).resolve().parent / "fixtures" / "posts"
SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
SEED = SHARED / "seed" / "links.md"
BLOG = SHARED / "blog" / "_posts"


def links_of(name: str) -> list[Link]:
    """Parse one fixture post."""
    return read_post(POSTS / name)[1]


def rows(links: list[Link]) -> list[tuple[int, str, str | None]]:
    """(line, url, listed title) of each link, in order."""
    return [(link.line, link.url, link.listed_title) for link in links]


# --- the seed layout: a URL alone on its line, the title on the next non-blank line ---------

WEIXIN_1 = (
    "https://mp.weixin.qq.com/s?__biz=MzI3MTA0MTk1MA==&mid=400189223&idx=1"
    "&sn=1cb32bee42de626443ebadbf065ec79c"
)


def test_seed_layout_titles_lines_and_sections() -> None:
    links = links_of("seed_layout.md")
    assert rows(links) == [
        (11, WEIXIN_1, "百度贾磊：汉语语音识别技术重大突破：LSTM+CTC详解"),
        (
            15,
            "https://www.zhihu.com/question/46829056",
            "语音识别领域的最新进展目前是什么样的水准？",
        ),
        # title on the very next line, same paragraph
        (19, "https://zhuanlan.zhihu.com/p/24979135", "从声学模型算法总结2016年语音识别的重大进步"),
        # followed by another URL: no title
        (24, "https://mp.weixin.qq.com/s/sdQ0rWbDDMN_P0B_RiYZmw", None),
        (
            26,
            "https://mp.weixin.qq.com/s/zeN7rjmAnvh_7BbTmScrZw",
            "细粒度分类你懂吗？——fine-gained image classification",
        ),
        # followed by a heading, a table, a fence, a list: no title
        (30, "https://zhuanlan.zhihu.com/p/24738319", None),
        (34, "https://mp.weixin.qq.com/s/cAqpclkkeVrTiifz07HC1g", None),
        (40, "https://mp.weixin.qq.com/s/7-K-nZTijoYCaprRNYXxFg", None),
        (46, "https://mp.weixin.qq.com/s/SeR_zNZTu4t7kqB6ltNrmQ", None),
        # trailing full stop stripped, still "alone on its line"
        (
            50,
            "https://mp.weixin.qq.com/s/_q69BV1r46S9X5wnLuFPSw",
            "关于序列建模，是时候抛弃RNN和LSTM了",
        ),
    ]
    assert [link.section for link in links] == [
        ("语音识别", "参考"),
        ("语音识别", "参考"),
        ("语音识别", "参考"),
        ("细粒度分类",),
        ("细粒度分类",),
        ("细粒度分类",),
        ("细粒度分类", "RNN进阶"),
        ("细粒度分类", "RNN进阶"),
        ("细粒度分类", "RNN进阶"),
        ("细粒度分类", "RNN进阶"),
    ]
    assert {link.source for link in links} == {str(POSTS / "seed_layout.md")}


@pytest.mark.skipif(not SEED.is_file(), reason="shared seed post not present")
def test_the_real_seed_post() -> None:
    _, links = read_post(SEED)
    assert len(links) == 64
    first = links[0]
    assert first.url == WEIXIN_1
    assert first.listed_title == "百度贾磊：汉语语音识别技术重大突破：LSTM+CTC详解"
    assert first.line == 21
    assert first.section == ("语音识别", "参考")
    assert all(link.listed_title for link in links)
    assert [link.line for link in links] == sorted(link.line for link in links)


def test_section_pops_back_to_the_right_level() -> None:
    text = (
        "# A\n## B\n### C\nhttps://c.example/\n## D\nhttps://d.example/\n# E\nhttps://e.example/\n"
    )
    assert [link.section for link in parse_post(text)] == [("A", "B", "C"), ("A", "D"), ("E",)]


def test_title_only_from_a_plain_text_line() -> None:
    text = (
        "https://a.example/\n\n![](/images/x.png)\n\n"
        "https://b.example/\n\n`pip install thing`\n\n"
        "https://c.example/\n\n<br>\n\n"
        "https://d.example/\n\n\u200bZero-width prefixed title\n"
    )
    assert [link.listed_title for link in parse_post(text)] == [
        None,
        None,
        None,
        "Zero-width prefixed title",
    ]


def test_no_title_across_a_reference_definition_or_a_new_list_item() -> None:
    text = (
        "https://a.example/\n\n[x]: https://x.example/\nNot a title\n\n"
        "- https://b.example/\n- Not a title either\n"
    )
    assert rows(parse_post(text)) == [
        (1, "https://a.example/", None),
        (3, "https://x.example/", "x"),
        (6, "https://b.example/", None),
    ]


def test_a_url_with_text_on_its_line_takes_no_title() -> None:
    text = "See https://a.example/ for more\nNext line\n"
    assert rows(parse_post(text)) == [(1, "https://a.example/", None)]


# --- code is skipped --------------------------------------------------------------------------


def test_code_fences_indented_code_and_code_spans_are_skipped() -> None:
    assert rows(links_of("code.md")) == [
        (3, "https://before.example/", None),
        (15, "https://after-span.example/", None),
        (17, "https://unmatched.example/", None),
        (23, "https://end.example/", None),
    ]


# --- the other Markdown link forms ----------------------------------------------------------


def test_reference_definitions() -> None:
    assert rows(links_of("references.md")) == [
        (5, "https://docs.example.com/guide", "Official Guide"),  # the definition's title
        (7, "https://second.example.com/a", "Second Site"),  # URL on the line after the label
        (8, "https://paper.example.org/123", None),  # `[1]` is not a title
        (9, "https://unused.example.net/", "Unused Title"),
    ]


def test_reference_definition_without_title_takes_the_text_it_is_used_with() -> None:
    text = "Read [the guide][g].\n\n[g]: https://g.example/\n"
    assert rows(parse_post(text)) == [(3, "https://g.example/", "the guide")]


def test_autolinks() -> None:
    assert rows(links_of("autolinks.md")) == [
        (3, "https://auto.example.com/path?q=1", None),
        (3, "HTTP://UPPER.EXAMPLE/", None),
        (5, "https://alone.example.org/page", "Alone autolink title"),
    ]


def test_html_anchors_images_and_comments() -> None:
    assert rows(links_of("html.md")) == [
        (3, "https://inline-a.example/?a=1&b=2", "Inline anchor"),
        (6, "https://block-a.example/", "Block anchor"),
        (8, "https://img.example/logo.png", "The logo"),
        (13, "https://image-link.example/", "Badge alt"),  # the image's alt
        (15, "https://html-bare.example/x", None),
    ]


def test_inline_links_and_images() -> None:
    text = (
        'A [**bold** `text`](https://a.example/x "Title") and ![alt](https://img.example/i.png)\n'
        "and [](https://b.example/ 'Only a title') and [](https://c.example/)\n"
        "and [![badge](https://badge.example/b.svg)](https://badge.example/)\n"
    )
    assert rows(parse_post(text)) == [
        (1, "https://a.example/x", "bold text"),
        (1, "https://img.example/i.png", "alt"),
        (2, "https://b.example/", "Only a title"),
        (2, "https://c.example/", None),
        (3, "https://badge.example/b.svg", "badge"),
        (3, "https://badge.example/", "badge"),
    ]


def test_duplicates_are_reported_every_time() -> None:
    links = links_of("duplicates.md")
    assert rows(links) == [
        (3, "https://dup.example.com/a", "First mention"),
        (9, "https://dup.example.com/a", "Second mention"),
        (13, "https://dup.example.com/a", "inline"),
    ]
    assert links[1].section == ("Twice", "Again")


def test_relative_and_non_http_links_are_ignored() -> None:
    assert rows(links_of("relative.md")) == [(6, "https://kept.example/", "this one")]


def test_line_numbers_inside_multi_line_blocks() -> None:
    links = links_of("multiline.md")
    assert rows(links) == [
        (4, "https://second-line.example/", "a link"),
        (5, "https://third-line.example/", None),
        (7, "https://split-label.example/", "a label split over lines"),
        (10, "https://quoted.example/", "link"),
        (13, "https://list.example/", None),
        (14, "https://continuation.example/", "link"),
        (18, "https://table.example/", None),
        (19, "https://cell.example/", "cell"),
        (21, "https://heading.example/", "a link"),
        (24, "https://dest-next-line.example/", "link over lines"),
    ]
    assert links[8].section == ("Lines", "Heading with a link")


def test_front_matter_is_skipped() -> None:
    links = links_of("front_matter.md")
    assert rows(links) == [(8, "https://body.example/", "Body title")]
    assert links[0].section == ("Body",)


def test_unclosed_front_matter_is_not_skipped() -> None:
    text = "---\nhttps://a.example/\n"
    assert rows(parse_post(text)) == [(2, "https://a.example/", None)]


def test_empty_post_has_no_links() -> None:
    assert read_post(POSTS / "empty.md") == ("", [])
    assert parse_post("") == []


# --- URL boundaries ---------------------------------------------------------------------------


def test_urls_with_parentheses() -> None:
    assert rows(links_of("parens.md")) == [
        (3, "https://en.wikipedia.org/wiki/Foo_(bar)", "Foo (bar)"),
        (7, "https://a.com/x", None),
        (7, "https://en.wikipedia.org/wiki/Bar_(baz)", "Bar"),
        (7, "https://en.wikipedia.org/wiki/Qux_(quux)", None),
        (8, "https://a.com/dot", None),
        (8, "https://a.com/comma", None),
        (8, "https://a.com/quoted", None),
        (8, "https://a.com/single", None),
        (9, "https://a.com/in-brackets", None),
        (9, "https://a.com/in-braces", None),
    ]


def test_full_width_punctuation_and_glued_chinese() -> None:
    assert rows(links_of("fullwidth.md")) == [
        (3, "https://example.com/a", None),
        (3, "https://example.com/b", None),
        (4, "https://a.com/x", None),
        (4, "https://a.com/y", None),
        (4, "https://a.com/z", None),
        (5, "https://a.com/quoted", None),
        (5, "https://a.com/semi", None),
        (5, "https://a.com/colon", None),
        (5, "https://a.com/bang", None),
        (5, "https://a.com/q", None),
        # alone on its line, Chinese path segments belong to the URL
        (7, "https://baike.baidu.com/item/翠堤春晓/19780363", "翠堤春晓"),
    ]


def test_chinese_after_a_slash_in_prose_still_ends_the_url() -> None:
    text = "在菜单中添加https://dl-ssl.google.com/android/eclipse/下载ADT时\n"
    assert [link.url for link in parse_post(text)] == ["https://dl-ssl.google.com/android/eclipse/"]


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("https://a.com/x", "https://a.com/x"),
        ("https://a.com/x.", "https://a.com/x"),
        ("https://a.com/x).", "https://a.com/x"),
        ("https://a.com/x)", "https://a.com/x"),
        ("https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Foo_(bar)"),
        ("https://en.wikipedia.org/wiki/Foo_(bar)),", "https://en.wikipedia.org/wiki/Foo_(bar)"),
        ("https://a.com/x]", "https://a.com/x"),
        ("https://a.com/[x]", "https://a.com/[x]"),
        ("https://a.com/x'\"!?;:", "https://a.com/x"),
        ("https://a.com/x}>", "https://a.com/x"),
        ("https://a.com/x）", "https://a.com/x"),
        ("https://a.com/x。", "https://a.com/x"),
        ("https://a.com/x”", "https://a.com/x"),
        ("https://a.com/x，以及更多", "https://a.com/x"),
        ("https://a.com/x以及", "https://a.com/x"),
        ("https://a.com/x next", "https://a.com/x"),
        ("https://a.com/x<br>", "https://a.com/x"),
        ("https://a.com/?q=a.b", "https://a.com/?q=a.b"),
        ("https://a.com/x_", "https://a.com/x_"),
    ],
)
def test_clean_url(candidate: str, expected: str) -> None:
    assert clean_url(candidate) == expected


# --- encodings and line endings ---------------------------------------------------------------


def test_crlf_line_endings() -> None:
    raw = (POSTS / "crlf.md").read_bytes()
    assert b"\r\n" in raw, "fixture lost its CRLF line endings (see fixtures/posts/.gitattributes)"
    text, links = read_post(POSTS / "crlf.md")
    assert "\r\n" in text  # returned as decoded, not normalised
    assert rows(links) == [
        (5, "https://crlf.example/one", "First title"),
        (9, "https://crlf.example/two", "a link"),
        (10, "https://crlf.example/three", None),
    ]
    assert links[0].section == ("CRLF", "参考")


def test_parse_post_drops_a_leading_bom() -> None:
    links = parse_post("\ufeff# T\n\nhttps://a.example/\n\nTitle\n")
    assert rows(links) == [(3, "https://a.example/", "Title")]
    assert links[0].section == ("T",)


def test_old_mac_line_endings_count_as_lines() -> None:
    assert rows(parse_post("# T\r\rhttps://a.example/\r\rTitle\r")) == [
        (3, "https://a.example/", "Title")
    ]


def test_bom_is_dropped() -> None:
    raw = (POSTS / "bom.md").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert detect_encoding(raw) == "utf-8-sig"
    text, links = read_post(POSTS / "bom.md")
    assert text.startswith("# BOM")
    assert rows(links) == [(3, "https://bom.example/", "带BOM的标题")]
    assert links[0].section == ("BOM",)


def test_gbk_post() -> None:
    raw = (POSTS / "gbk.md").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert detect_encoding(raw) == "gb18030"
    text, links = read_post(POSTS / "gbk.md")
    assert text.startswith("# 语音识别\n")
    assert rows(links) == [
        (
            5,
            "https://www.zhihu.com/question/29168274",
            "语音识别中，如何理解HMM是一个生成模型，而DNN是一个判别模型呢？",
        ),
        (9, "https://gbk.example.com/a", None),
    ]
    assert links[0].section == ("语音识别", "参考")


def test_detect_encoding() -> None:
    assert detect_encoding(b"") == "utf-8"
    assert detect_encoding(b"plain ascii") == "utf-8"
    assert detect_encoding("中文".encode()) == "utf-8"
    assert detect_encoding(b"\xef\xbb\xbf" + "中文".encode()) == "utf-8-sig"
    assert detect_encoding("参考资料：语音识别".encode("gbk")) == "gb18030"
    with pytest.raises(InputError, match="not UTF-8 or GBK"):
        detect_encoding("naïve café résumé".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8 or GBK"):
        detect_encoding(bytes(range(0x80, 0x100)))


# --- unreadable input -------------------------------------------------------------------------


def reason(exc: pytest.ExceptionInfo[InputError], path: Path) -> str:
    """The error must be one readable line naming the file; return it without the path."""
    message = str(exc.value)
    assert str(path) in message
    assert "\n" not in message
    return message.replace(str(path), "<path>")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.md"
    with pytest.raises(InputError) as exc:
        read_post(path)
    assert reason(exc, path) == "<path>: no such file"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        read_post(tmp_path)
    assert "is a directory" in reason(exc, tmp_path)


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"valid UTF-8 \x00 but with a NUL byte\n"],
    ids=["png", "utf8-with-nul"],
)
def test_binary_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "image.md"
    path.write_bytes(data)
    with pytest.raises(InputError) as exc:
        read_post(path)
    assert "is a binary file" in reason(exc, path)


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.md"
    path.write_bytes("# Café\n\nhttps://a.example/ naïve\n".encode("latin-1"))
    with pytest.raises(InputError) as exc:
        read_post(path)
    assert reason(exc, path) == "<path>: is not UTF-8 or GBK text"


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.md"
    path.write_text("https://a.example/\n", encoding="utf-8")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(InputError) as exc:
        read_post(path)
    assert reason(exc, path) == "<path>: permission denied"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_permission_denied_for_real(tmp_path: Path) -> None:
    path = tmp_path / "locked.md"
    path.write_text("https://a.example/\n", encoding="utf-8")
    path.chmod(0)
    try:
        with pytest.raises(InputError) as exc:
            read_post(path)
        assert reason(exc, path) == "<path>: permission denied"
    finally:
        path.chmod(0o600)


# --- the whole blog ---------------------------------------------------------------------------


@pytest.mark.skipif(not BLOG.is_dir(), reason="shared blog not present")
def test_whole_blog_parses() -> None:
    posts = sorted(p for p in BLOG.iterdir() if p.is_file())
    total = 0
    for post in posts:
        _, links = read_post(post)
        assert all(link.url.lower().startswith(("http://", "https://")) for link in links)
        assert [link.line for link in links] == sorted(link.line for link in links), post
        total += len(links)
    assert len(posts) > 800
    assert total > 20_000


# --- the plain-post fast path ---------------------------------------------------------------

_LINES = st.sampled_from(
    [
        "",
        "  ",
        "\t",
        "https://a.example/1",
        "http://b.example/x_(y)。",
        "https://c.example/p  ",
        "标题：一篇文章",
        "A title   ",
        "A title ##",
        "[t](https://d.example/) and <https://e.example/>",
        "`https://code.example/`",
        '<a href="https://f.example">f</a>',
        "text https://g.example/q?x=1 more",
        "\\# not a heading",
        "!  [alt](https://h.example/i.png)",
        "# Head",
        "## Head https://i.example/ ##",
        "### ##",
        "#",
        "# #",
        "####### seven",
        "#tag",
        "- item https://j.example/",
        "* item",
        "1. one https://k.example/",
        "2) two",
        "2019 年 https://l.example/",
        "> quote https://m.example/",
        "    indented https://n.example/",
        " one space https://o.example/",
        "```",
        "~~~",
        "---",
        "===",
        "| a | b |",
        ":--- | ---",
        "<div>",
        "[id]: https://p.example/",
        "[id]",
        "\u3000全角空格 https://q.example/",
        "\x0cform feed",
        "_emph_",
        "+ plus",
    ]
)


_PLAIN_LINES = _LINES.filter(lambda line: post_module._is_plain(line))


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINES, max_size=14) | st.lists(_PLAIN_LINES, max_size=14))
def test_the_plain_fast_path_finds_what_markdown_it_finds(lines: list[str]) -> None:
    """Posts of headings and paragraphs skip markdown-it's tokens; the links are the same."""
    text = "\n".join(lines)
    prepared = post_module._prepare(text)
    joined = "\n".join(prepared)
    spans: list[Span | None] = []
    expected = post_module._parse_tokens(prepared, joined, "p.md", spans)
    if post_module._is_plain(joined):
        plain_spans: list[Span | None] = []
        assert post_module._parse_plain(prepared, "p.md", plain_spans) == expected
        assert plain_spans == spans
    assert parse_post(text, "p.md") == expected
    assert scan_post(text, "p.md", every=True) == list(zip(expected, spans, strict=True))


_ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(_LINES, max_size=12) | st.lists(_PLAIN_LINES, max_size=12),
    endings=st.lists(_ENDINGS, min_size=12, max_size=12),
    head=st.sampled_from(["", "\ufeff", "\ufeff\ufeff", "---\n", "x 已失效\n"]),
    last=st.booleans(),
    chunk=st.sampled_from([1, 2, 3, 7, 1 << 18]),
)
def test_a_post_read_as_its_lines_come_gives_parse_post_s_links(
    lines: list[str], endings: list[str], head: str, last: bool, chunk: int
) -> None:
    """survey_post reads the bytes in pieces (cut anywhere: inside a character, between CR and
    LF); a post it lets stream gives read_post's links, line for line, and the same digest; it
    lets a plain UTF-8 post stream, and no other (front matter, dead marks, other blocks)."""
    import hashlib
    import tempfile

    text = head + "".join(line + end for line, end in zip(lines, endings, strict=False))
    if not last and text:
        text = text.rstrip("\r\n")
    data = text.encode("utf-8")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "post.md"
        path.write_bytes(data)
        old = post_module._SURVEY_CHUNK
        post_module._SURVEY_CHUNK = chunk
        try:
            survey = post_module.survey_post(path)
        finally:
            post_module._SURVEY_CHUNK = old
        assert survey.digest == hashlib.sha256(data).hexdigest()
        _, expected = read_post(path, every=True)
        body = text.removeprefix("\ufeff")
        prepared = post_module._prepare(body)
        plain = post_module._is_plain("\n".join(prepared))
        first = post_module._NEWLINE.sub("\n", body.removeprefix("\ufeff")).split("\n", 1)[0]
        whole = first.rstrip() == "---" or post_module.DEAD_MARK in text  # front matter or not
        assert (survey.encoding is not None) == (plain and not whole), survey
        if survey.encoding is not None:
            assert survey.encoding == ("utf-8-sig" if head.startswith("\ufeff") else "utf-8")
            assert list(post_module.stream_post(path, survey.encoding, every=True)) == expected
            http = [link for link in expected if link.url.startswith("http")]
            assert list(post_module.stream_post(path, survey.encoding)) == http


def test_a_post_that_is_not_utf_8_or_has_nul_bytes_is_read_whole(tmp_path: Path) -> None:
    """GBK text and NUL bytes are read_post's to judge (it decodes GBK, it refuses NULs)."""
    gbk = tmp_path / "gbk.md"
    gbk.write_bytes("# 参考\n\nhttps://a.example/\n\n标题\n".encode("gb18030"))
    assert post_module.survey_post(gbk).encoding is None
    nul = tmp_path / "nul.md"
    nul.write_bytes(b"https://a.example/\n\x00\n")
    assert post_module.survey_post(nul).encoding is None
    assert post_module.survey_post(tmp_path / "missing.md").encoding is None


def test_the_seed_layout_takes_the_fast_path() -> None:
    text = "# 参考\n\nhttps://a.example/1\n\n标题一\n\n## 二\nhttps://a.example/2\n标题二\n"
    assert post_module._is_plain("\n".join(post_module._prepare(text)))
    assert parse_post(text) == [
        Link("https://a.example/1", 3, "标题一", ("参考",), ""),
        Link("https://a.example/2", 8, "标题二", ("参考", "二"), ""),
    ]


def test_trim_set_is_markdown_its_own() -> None:
    """post.py trims with a copy of markdown-it's whitespace set (so plain posts never import
    markdown-it); the copy must not drift from the library's."""
    from markdown_it.common import utils

    from crawler.post import MD_TRIM_CHARS

    assert getattr(utils, "MD_TRIM_CHARS", MD_TRIM_CHARS) == MD_TRIM_CHARS


def test_no_title_from_a_link_or_prose_after_a_bare_url() -> None:
    """Issue 13 #14: `[anchor](#local)` and prose are no listed title (false `changed`)."""
    text = (
        "https://a.example/\n\n[anchor](#local)\n\n"
        "https://b.example/\n\n例如：\n\n"
        "https://c.example/\n\n这是mozilla的官方教程。\n\n"
        # the blog's 2014-12-24-linux_study.markdown, line 50: a URL cited in prose
        "关于这个问题的讨论见\n\nhttps://d.example/\n\n解决方法统一使用一种函数\n\n"
        "关于这个问题的讨论见\nhttps://e.example/\n解决方法统一使用一种函数\n\n"
        "https://f.example/\n\nA real title: with a colon inside\n"
    )
    expected = [None, None, None, None, None, "A real title: with a colon inside"]
    assert [link.listed_title for link in parse_post(text)] == expected
    # the markdown-it path reads the same
    assert [link.listed_title for link in parse_post(text + "\n- item\n")] == expected


def test_a_chinese_path_url_alone_on_its_line_keeps_its_path_before_a_note() -> None:
    url = "https://baike.baidu.com/item/图灵机/5459283"
    text = f"{url} （已失效，2026-11-24）\n\n{url} （图灵机）\n\n{url} 图灵机\n"
    assert [link.url for link in parse_post(text)] == [url, url, "https://baike.baidu.com/item/"]


# --- spans: where each link is written (what enrich edits by) --------------------------------


def test_spans_of_every_kind() -> None:
    text = (
        "---\ntitle: x\n---\n"
        "https://own.example/\n\nTitle\n\n"
        "> see [text](<https://inline.example/a b>) and ![alt](https://img.example/i.png)\n\n"
        "- <https://auto.example/> and https://bare.example/x, ok\n\n"
        '<p><a href=" https://html.example/ ">h</a></p>\n\n'
        "| k | v |\n|---|---|\n"
        "| https://cell.example/ | [https://cell.example/](https://cell.example/) |\n\n"
        "[label]: <https://ref.example/r>\n"
        "[x](https://a.example/\n\t)\n"
    )
    found = scan_post(text)
    lines = text.split("\n")
    got = []
    for link, span in found:
        assert span is not None and span.line == link.line, (link, span)
        written = lines[span.line - 1][span.start : span.end]
        assert url_as_read(written, span.kind != "html") == link.url, (written, link.url)
        got.append((span.kind, span.angle, span.first >= 0, span.last >= 0))
    assert got == [
        ("own-line", False, True, True),
        ("inline", True, True, True),
        ("image", False, True, True),
        ("autolink", True, True, True),
        ("bare", False, True, True),
        ("html", False, True, True),
        ("bare", False, True, True),
        ("inline", False, True, True),
        ("reference", True, True, True),
        ("inline", False, True, False),  # its `)` is on the next line
    ]
    cells = [span.start for link, span in found if link.url == "https://cell.example/" and span]
    assert cells == [2, 50]  # each cell where it is, not where its text recurs in the row


@pytest.mark.skipif(not BLOG.is_dir(), reason="../shared/blog not present (the blog property test)")
def test_one_parser_over_the_blog() -> None:
    """The fast path and markdown-it read the same links and spans from every post's plain
    blocks, and every span holds the URL it names."""
    import glob

    for name in sorted(glob.glob(str(BLOG / "*"))):
        raw = Path(name).read_bytes()
        text = raw.decode(detect_encoding(raw))
        lines = post_module._prepare(text)
        for link, span in scan_post(text, name):
            assert span is not None and span.line == link.line, (name, link)
            written = lines[span.line - 1][span.start : span.end]
            assert url_as_read(written, span.kind != "html") == link.url, (name, written)
        # the paragraphs and ATX headings of the post, as a post of their own: the fast path
        tokens = post_module._block_parser().parse("\n".join(lines))
        blocks = [
            "\n".join(lines[t.map[0] : t.map[1]])
            for t in tokens
            if t.level == 0
            and t.map
            and (t.type == "paragraph_open" or (t.type == "heading_open" and t.markup[0] == "#"))
        ]
        plain = post_module._prepare("\n\n".join(b for b in blocks if post_module._is_plain(b)))
        joined = "\n".join(plain)
        if not post_module._is_plain(joined):
            continue
        fast: list[Span | None] = []
        slow: list[Span | None] = []
        assert post_module._parse_plain(plain, name, fast) == post_module._parse_tokens(
            plain, joined, name, slow
        ), name
        assert fast == slow, name


def test_a_url_in_an_html_block_is_read_as_written() -> None:
    """No Markdown escapes in raw HTML: the backslash is the URL's own, and its span says html
    (found by the span property test: the span read back unescaped was another URL)."""
    text = "<div>\nhttps://x.example/a\\[t](https://b.example/\n</div>\n"
    [(link, span)] = scan_post(text, "p.md")
    assert link.url == "https://x.example/a\\[t](https://b.example/"
    assert span is not None and span.kind == "html"
    assert text.splitlines()[1][span.start : span.end] == link.url


def test_a_post_given_as_a_pipe_is_read_once(tmp_path: Path) -> None:
    """`crawler check <(cat post.md)`: a pipe is no file to read twice, so its links are read
    whole, by read_post (the survey read it first and left the stream nothing: no links)."""
    from crawler.inputs import stream_links

    text = "# 参考\n\nhttps://a.example/x\n\n标题\n"
    r, w = os.pipe()
    try:
        os.write(w, text.encode())
        os.close(w)
        found = stream_links([f"/dev/fd/{r}"])
        assert list(found.links) == [
            Link("https://a.example/x", 3, "标题", ("参考",), f"/dev/fd/{r}", False)
        ]
    finally:
        os.close(r)


@pytest.mark.parametrize("text", ["# T\n\nhttps://a.example/x\n\n标题\n", "# T\n\n---\n"])
def test_a_post_read_from_a_pipe_records_the_digest_of_what_was_read(text: str) -> None:
    """A post given as a pipe (`<(…)`, /dev/stdin) is read once: its links and the digest the
    history records both come from those bytes (the digest used to be a second read's, of
    nothing: sha256 of b"")."""
    import hashlib

    from crawler.inputs import stream_links

    data = text.encode("utf-8")
    expected = read_post_text(text)
    r, w = os.pipe()
    try:
        os.write(w, data)  # (a few bytes: the pipe holds them all)
        os.close(w)
        found = stream_links([f"/dev/fd/{r}"])
        links = [(link.url, link.listed_title) for link in found.links]
    finally:
        os.close(r)
    assert list(found.digests.values()) == [hashlib.sha256(data).hexdigest()]
    assert links == expected


def read_post_text(text: str) -> list[tuple[str, str | None]]:
    """The web links of a post as parse_post reads them, with their listed titles."""
    return [(k.url, k.listed_title) for k in parse_post(text, "p.md") if k.url.startswith("http")]
