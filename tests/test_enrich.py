"""Enrich: titles, summaries, dead marks, archive links and redirects written into the post."""

from __future__ import annotations

import os
import stat
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from crawler.enrich import (
    EnrichOptions,
    Finding,
    PostChangedError,
    add_archive_urls,
    check_unchanged,
    enrich_text,
    post_digest,
    strip_marks,
    unified_diff,
    write_atomic_with_backup,
)
from crawler.errors import ConfigError, CrawlerError, InputError
from crawler.post import clean_url, detect_encoding, parse_post
from crawler.sanitize import markdown_text
from crawler.types import Link, Verdict

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "enrich"
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
TODAY = date(2026, 11, 25)
MARK = " （已失效，2026-11-24）"


def opts(**kw: object) -> EnrichOptions:
    return EnrichOptions(**kw)  # type: ignore[arg-type]


def finding(
    url: str,
    verdict: Verdict = Verdict.OK,
    title: str | None = None,
    summary: str | None = None,
    final_url: str | None = None,
    permanent: bool = False,
    archive: str | None = None,
) -> Finding:
    return Finding(url, verdict, title, summary, final_url, permanent, T0, archive)


def findings(*items: Finding) -> dict[str, Finding]:
    return {f.url: f for f in items}


def links(raw: bytes, marked: bool = False) -> list[Link]:
    """The links of a post's bytes, read as `crawler check` reads them (marks removed if asked)."""
    text = raw.decode(detect_encoding(raw))
    return parse_post(strip_marks(text) if marked else text)


def urls(raw: bytes, marked: bool = False) -> list[str]:
    return [link.url for link in links(raw, marked)]


# --- the fixture post: every option on the post's own layout and the other styles --------------

STYLES = FIXTURES / "styles.md"
STYLE_FINDINGS = findings(
    finding(
        "https://mp.weixin.qq.com/s/listed",
        title="百度贾磊：汉语语音识别技术重大突破：LSTM+CTC详解",
        summary="百度语音识别的新进展。",
    ),
    finding(
        "https://www.zhihu.com/question/untitled",
        title="语音识别领域的最新进展目前是什么样的水准？ - 知乎",
        summary="一个知乎问题。",
    ),
    finding(
        "https://zhuanlan.zhihu.com/p/dead",
        Verdict.DEAD,
        archive="https://web.archive.org/web/20170101000000/https://zhuanlan.zhihu.com/p/dead",
    ),
    finding(
        "https://mp.weixin.qq.com/s/moved",
        Verdict.REDIRECTED,
        title="端对端的深度卷积神经网络在语音识别中的应用",
        final_url="https://mp.weixin.qq.com/s/moved-here",
        permanent=True,
    ),
    finding("https://arxiv.org/abs/empty", title="Attention Is All You Need"),
    finding("https://github.com/example/prose", title="example/prose: the code"),
    finding("https://blog.csdn.net/list-item", title="CSDN 列表项"),
    finding("https://www.cnblogs.com/titled", Verdict.DEAD),
    finding("https://code.example/never-touched", Verdict.DEAD, title="x"),
    finding("https://last.example/no-newline", title="最后一个"),
)
ALL = opts(summaries=True, mark_dead=True, archive=True, update_redirects=True)


def test_fixture_titles_only() -> None:
    raw = STYLES.read_bytes()
    out = enrich_text(raw, STYLE_FINDINGS, opts())
    assert out == (FIXTURES / "styles.titles.md").read_bytes()
    new = out.decode()
    # the post's own layout: URL line, blank line, title line
    assert (
        "https://www.zhihu.com/question/untitled\n\n"
        "语音识别领域的最新进展目前是什么样的水准？ - 知乎\n\n" in new
    )
    assert "[Attention Is All You Need](https://arxiv.org/abs/empty)" in new  # `[](url)`
    assert "https://github.com/example/prose （example/prose: the code） 。" in new  # prose
    assert "- https://blog.csdn.net/list-item （CSDN 列表项）\n" in new  # a list item
    assert new.endswith("https://last.example/no-newline\n\n最后一个")  # still no final newline
    assert "```\nhttps://code.example/never-touched\n```" in new  # code is never touched
    assert "已失效" not in new and "moved-here" not in new and "> " not in new
    # the parser now reads the inserted titles as the listed titles
    by_url = {link.url: link.listed_title for link in links(out)}
    assert by_url["https://www.zhihu.com/question/untitled"] == (
        "语音识别领域的最新进展目前是什么样的水准？ - 知乎"
    )
    assert by_url["https://arxiv.org/abs/empty"] == "Attention Is All You Need"
    assert by_url["https://last.example/no-newline"] == "最后一个"


def test_fixture_every_option() -> None:
    raw = STYLES.read_bytes()
    out = enrich_text(raw, STYLE_FINDINGS, ALL)
    assert out == (FIXTURES / "styles.all.md").read_bytes()
    new = out.decode()
    # summaries: a blockquote under the title, after a blank line
    assert "百度贾磊：汉语语音识别技术重大突破：LSTM+CTC详解\n\n> 百度语音识别的新进展。\n\n" in new
    assert "水准？ - 知乎\n\n> 一个知乎问题。\n\nhttps://zhuanlan" in new
    # a dead entry keeps its URL, gets the mark and the snapshot
    assert (
        "https://zhuanlan.zhihu.com/p/dead （已失效，2026-11-24） [存档]"
        "(https://web.archive.org/web/20170101000000/https://zhuanlan.zhihu.com/p/dead)\n"
    ) in new
    assert "- [有标题](https://www.cnblogs.com/titled) （已失效，2026-11-24）\n" in new
    # a permanent redirect: the URL text replaced, its title line untouched
    assert (
        "https://mp.weixin.qq.com/s/moved-here\n\n端对端的深度卷积神经网络在语音识别中的应用\n"
        in new
    )
    assert "s/moved\n" not in new
    assert enrich_text(out, STYLE_FINDINGS, ALL) == out


def test_every_url_survives_and_no_new_url_appears() -> None:
    raw = STYLES.read_bytes()
    out = enrich_text(raw, STYLE_FINDINGS, ALL)
    before = links(raw)
    after = links(out, marked=True)
    expected = [
        "https://mp.weixin.qq.com/s/moved-here" if u == "https://mp.weixin.qq.com/s/moved" else u
        for u in (link.url for link in before)
    ]
    assert [link.url for link in after] == expected
    assert [link.section for link in after] == [link.section for link in before]
    # read without removing the marks, the only new URL is the archive snapshot
    assert [u for u in urls(out) if "web.archive.org" not in u] == expected
    assert [u for u in urls(out) if "web.archive.org" in u] == [
        "https://web.archive.org/web/20170101000000/https://zhuanlan.zhihu.com/p/dead"
    ]


def test_listed_titles_of_marked_entries_read_back_through_strip_marks() -> None:
    raw = STYLES.read_bytes()
    out = enrich_text(raw, STYLE_FINDINGS, opts(titles=False, mark_dead=True))
    dead = next(link for link in links(out, marked=True) if link.url.endswith("/p/dead"))
    assert dead.listed_title == "从声学模型算法总结2016年语音识别的重大进步"
    assert dead.line == next(link.line for link in links(raw) if link.url.endswith("/p/dead"))


# --- each option on its own -------------------------------------------------------------------


def test_titles_only_for_alive_entries_without_a_listed_title() -> None:
    raw = b"https://a.example/x\n\nListed\n\nhttps://b.example/y\n\nhttps://c.example/z\n"
    f = findings(
        finding("https://a.example/x", title="Fetched A"),
        finding("https://b.example/y", Verdict.DEAD, title="Soft 404 page"),
        finding("https://c.example/z", Verdict.BLOCKED, title="环境异常"),
    )
    assert enrich_text(raw, f, opts()) == raw


def test_title_layout_needs_a_blank_line_after_the_url() -> None:
    raw = b"https://a.example/x\nhttps://b.example/y\n\nnext paragraph\n"
    f = findings(finding("https://a.example/x", title="A"), finding("https://b.example/y"))
    out = enrich_text(raw, f, opts())
    # inserting a line here would split the paragraph: the title goes inline instead
    assert (
        out
        == b"https://a.example/x \xef\xbc\x88A\xef\xbc\x89\nhttps://b.example/y\n\nnext paragraph\n"
    )
    assert enrich_text(out, f, opts()) == out


def test_title_inside_a_blockquote_goes_inline() -> None:
    raw = b"> quoted\n> https://a.example/x\n\nafter\n"
    f = findings(finding("https://a.example/x", title="A"))
    out = enrich_text(raw, f, opts())
    assert out.decode() == "> quoted\n> https://a.example/x （A）\n\nafter\n"


def test_title_in_a_heading_is_not_added() -> None:
    # a title added to a heading would rename the section of every link under it
    raw = b"# See https://a.example/x\n\nhttps://b.example/y\n\nB\n"
    f = findings(finding("https://a.example/x", title="A"))
    assert enrich_text(raw, f, opts()) == raw


def test_existing_inline_note_counts_as_a_title() -> None:
    raw = "见 https://a.example/x （作者的注释） 和 https://b.example/y（另一个）\n".encode()
    f = findings(
        finding("https://a.example/x", title="A"), finding("https://b.example/y", title="B")
    )
    assert enrich_text(raw, f, opts()) == raw


def test_summary_added_once_under_an_existing_title() -> None:
    raw = b"https://a.example/x\nTitle on the next line\n\nhttps://b.example/y\n\nB\n\n> quote\n"
    f = findings(
        finding("https://a.example/x", title="T", summary="Summary A"),
        finding("https://b.example/y", title="B", summary="Summary B"),
    )
    out = enrich_text(raw, f, opts(summaries=True))
    assert out == (
        b"https://a.example/x\nTitle on the next line\n\n> Summary A\n\n"
        b"https://b.example/y\n\nB\n\n> quote\n"  # B already has a blockquote under its title
    )
    assert enrich_text(out, f, opts(summaries=True)) == out


def test_summary_equal_to_the_title_is_skipped() -> None:
    raw = b"https://a.example/x\n\nSame\n"
    f = findings(finding("https://a.example/x", title="Same", summary="Same"))
    assert enrich_text(raw, f, opts(summaries=True)) == raw


def test_a_summary_that_would_cut_a_list_in_two_is_not_added() -> None:
    """An entry written as a lazy continuation of a list item: a blockquote under it would end the
    list, and the next item would start another one. The post's blocks are kept instead."""
    raw = b"1. first\nhttps://a.example/x\nTitle\n\n1. second\n"
    f = findings(finding("https://a.example/x", title="T", summary="Summary A"))
    assert enrich_text(raw, f, opts(titles=False, summaries=True)) == raw
    # at the top level the same entry gets its summary
    top = b"https://a.example/x\nTitle\n\n1. second\n"
    out = enrich_text(top, f, opts(titles=False, summaries=True))
    assert out == b"https://a.example/x\nTitle\n\n> Summary A\n\n1. second\n"


def test_mark_dead_styles() -> None:
    raw = (
        "https://a.example/dead\n\n标题\n\n"
        '文中 https://b.example/dead。以及 [链接](https://c.example/dead "t") 和 <https://d.example/dead>\n'
        "[ref]: https://e.example/dead\n"
    ).encode()
    f = findings(
        *(finding(f"https://{h}.example/dead", Verdict.DEAD) for h in "abcde"),
    )
    out = enrich_text(raw, f, opts(titles=False, mark_dead=True))
    assert out.decode() == (
        f"https://a.example/dead{MARK}\n\n标题\n\n"
        f'文中 https://b.example/dead{MARK}。以及 [链接](https://c.example/dead "t"){MARK} 和 '
        f"<https://d.example/dead>{MARK}\n"
        "[ref]: https://e.example/dead\n"  # a reference definition cannot take a mark
    )
    assert urls(out) == urls(raw)


def test_the_parser_reads_the_same_url_from_a_marked_line() -> None:
    assert clean_url("https://a.example/x（已失效，2026-11-24）") == "https://a.example/x"
    for line in (
        f"https://a.example/x{MARK}",
        f"https://a.example/x_(y){MARK}",
        f"https://a.example/x.{MARK}",
        f"[t](https://a.example/x){MARK}",
        f"https://a.example/x{MARK} [存档](https://web.archive.org/web/2016/https://a.example/x)",
    ):
        assert parse_post(line)[0].url.startswith("https://a.example/x"), line
        assert "已失效" not in parse_post(line)[0].url


def test_mark_is_idempotent_and_keeps_its_first_date() -> None:
    raw = b"https://a.example/x\n"
    first = findings(finding("https://a.example/x", Verdict.DEAD))
    out = enrich_text(raw, first, opts(mark_dead=True))
    assert out.decode() == f"https://a.example/x{MARK}\n"
    later = findings(
        Finding("https://a.example/x", Verdict.DEAD, None, None, None, False, datetime(2027, 1, 1))
    )
    assert enrich_text(out, later, opts(mark_dead=True)) == out


def test_mark_removed_when_the_link_is_alive_again() -> None:
    raw = f"https://a.example/x{MARK}\n\n标题\n".encode()
    alive = findings(finding("https://a.example/x", title="标题"))
    assert (
        enrich_text(raw, alive, opts(mark_dead=True))
        == b"https://a.example/x\n\n" + "标题\n".encode()
    )
    # without --mark-dead the mark is left alone, and blocked/error verdicts never unmark
    assert enrich_text(raw, alive, opts()) == raw
    blocked = findings(finding("https://a.example/x", Verdict.BLOCKED))
    assert enrich_text(raw, blocked, opts(mark_dead=True)) == raw


def test_unmark_reverses_mark_dead_byte_for_byte() -> None:
    raw = STYLES.read_bytes()
    marked = enrich_text(raw, STYLE_FINDINGS, opts(titles=False, mark_dead=True, archive=True))
    assert marked != raw and marked.count("已失效".encode()) == 2
    # unmark needs no findings and removes exactly the marks
    assert enrich_text(marked, {}, opts(titles=False, unmark=True)) == raw


def test_unmark_leaves_lookalike_text_alone() -> None:
    raw = f"正文（已失效，2026-11-24）\n\n```\nhttps://a.example/x{MARK}\n```\n".encode()
    assert enrich_text(raw, {}, opts(unmark=True)) == raw


def test_archive_link_follows_the_mark_and_is_added_to_an_old_mark() -> None:
    raw = f"https://a.example/x{MARK}\n".encode()
    snap = "http://web.archive.org/web/20160101000000/https://a.example/x"
    f = findings(finding("https://a.example/x", Verdict.DEAD, archive=snap))
    out = enrich_text(raw, f, opts(archive=True))
    assert out.decode() == (
        f"https://a.example/x{MARK} "
        "[存档](https://web.archive.org/web/20160101000000/https://a.example/x)\n"
    )
    assert enrich_text(out, f, opts(archive=True, mark_dead=True)) == out


def test_archive_url_is_made_safe() -> None:
    raw = b"https://a.example/x\n"
    f = findings(
        finding("https://a.example/x", Verdict.DEAD, archive="https://web.archive.org/w/a (b)<c>")
    )
    out = enrich_text(raw, f, opts(archive=True)).decode()
    assert (
        out == f"https://a.example/x{MARK} [存档](https://web.archive.org/w/a%20%28b%29%3Cc%3E)\n"
    )
    bad = findings(finding("https://a.example/x", Verdict.DEAD, archive="javascript:alert(1)"))
    assert enrich_text(raw, bad, opts(archive=True)).decode() == f"https://a.example/x{MARK}\n"


def test_update_redirects_only_for_permanent_moves() -> None:
    raw = b"See [a](https://a.example/old) and https://b.example/old and <https://c.example/old>.\n"
    f = findings(
        finding(
            "https://a.example/old", Verdict.REDIRECTED, None, None, "https://a.example/new", True
        ),
        finding(
            "https://b.example/old", Verdict.REDIRECTED, None, None, "https://b.example/new", True
        ),
        finding("https://c.example/old", Verdict.OK, None, None, "https://c.example/new", False),
    )
    out = enrich_text(raw, f, opts(update_redirects=True))
    assert out == (
        b"See [a](https://a.example/new) and https://b.example/new and <https://c.example/old>.\n"
    )
    assert enrich_text(raw, f, opts()) == raw  # off by default
    assert enrich_text(out, f, opts(update_redirects=True)) == out


def test_redirect_chains_are_followed_and_loops_left_alone() -> None:
    raw = b"https://a.example/1\n\nhttps://x.example/1\n"
    f = findings(
        finding("https://a.example/1", Verdict.REDIRECTED, None, None, "https://a.example/2", True),
        finding("https://a.example/2", Verdict.REDIRECTED, None, None, "https://a.example/3", True),
        finding("https://x.example/1", Verdict.REDIRECTED, None, None, "https://x.example/2", True),
        finding("https://x.example/2", Verdict.REDIRECTED, None, None, "https://x.example/1", True),
    )
    out = enrich_text(raw, f, opts(titles=False, update_redirects=True))
    assert out == b"https://a.example/3\n\nhttps://x.example/1\n"
    assert enrich_text(out, f, opts(titles=False, update_redirects=True)) == out


def test_redirect_target_that_cannot_be_written_is_skipped() -> None:
    raw = b"[a](https://a.example/old)\n\nhttps://b.example/old\n"
    f = findings(
        finding(
            "https://a.example/old", Verdict.REDIRECTED, None, None, "https://a.example/(x", True
        ),
        finding(
            "https://b.example/old", Verdict.REDIRECTED, None, None, "https://b.example/new.", True
        ),
    )
    # an unbalanced parenthesis in a destination; a trailing full stop the parser would strip
    assert enrich_text(raw, f, opts(update_redirects=True)) == raw


def test_escaped_and_entity_urls_are_found() -> None:
    raw = b"https://a.example/x\\_y\n\n[t](https://b.example/?a=1&amp;b=2)\n"
    f = findings(
        finding("https://a.example/x_y", Verdict.DEAD),
        finding("https://b.example/?a=1&b=2", Verdict.DEAD),
    )
    assert urls(raw) == ["https://a.example/x_y", "https://b.example/?a=1&b=2"]
    out = enrich_text(raw, f, opts(mark_dead=True)).decode()
    assert out == f"https://a.example/x\\_y{MARK}\n\n[t](https://b.example/?a=1&amp;b=2){MARK}\n"


def test_options_that_contradict_are_refused() -> None:
    with pytest.raises(ConfigError):
        opts(unmark=True, mark_dead=True)
    with pytest.raises(ConfigError):
        opts(max_len=3)


# --- bytes, line endings, encodings ------------------------------------------------------------


def test_crlf_post_keeps_crlf() -> None:
    raw = b"# T\r\n\r\nhttps://a.example/x\r\n\r\nhttps://b.example/y\r\n\r\nB\r\n"
    f = findings(
        finding("https://a.example/x", title="A", summary="S"),
        finding("https://b.example/y", Verdict.DEAD),
    )
    out = enrich_text(raw, f, opts(summaries=True, mark_dead=True))
    assert out == (
        b"# T\r\n\r\nhttps://a.example/x\r\n\r\nA\r\n\r\n> S\r\n\r\n"
        + f"https://b.example/y{MARK}\r\n\r\nB\r\n".encode()
    )
    assert b"\n" not in out.replace(b"\r\n", b"")


def test_mixed_line_endings_each_line_keeps_its_own() -> None:
    raw = b"intro\r\n\r\nhttps://a.example/x\n\nhttps://b.example/y\r\n\r\n# end\n"
    f = findings(
        finding("https://a.example/x", title="A"), finding("https://b.example/y", title="B")
    )
    out = enrich_text(raw, f, opts())
    assert out == (
        b"intro\r\n\r\nhttps://a.example/x\n\nA\n\nhttps://b.example/y\r\n\r\nB\r\n\r\n# end\n"
    )


def test_bom_is_kept() -> None:
    raw = b"\xef\xbb\xbfhttps://a.example/x\n\nhttps://b.example/y\n\nB\n"
    f = findings(finding("https://a.example/x", title="标题"))
    out = enrich_text(raw, f, opts())
    assert (
        out
        == b"\xef\xbb\xbfhttps://a.example/x\n\n"
        + "标题".encode()
        + b"\n\nhttps://b.example/y\n\nB\n"
    )


def test_no_trailing_newline_stays_absent() -> None:
    raw = b"https://a.example/x"
    f = findings(finding("https://a.example/x", title="A", summary="S"))
    assert enrich_text(raw, f, opts(summaries=True)) == b"https://a.example/x\n\nA\n\n> S"
    raw_crlf = b"x\r\n\r\nhttps://a.example/x"
    assert enrich_text(raw_crlf, f, opts()) == b"x\r\n\r\nhttps://a.example/x\r\n\r\nA"
    assert enrich_text(
        raw, findings(finding("https://a.example/x", Verdict.DEAD)), opts(mark_dead=True)
    ) == (f"https://a.example/x{MARK}".encode())


def test_gbk_post_stays_gbk_byte_for_byte() -> None:
    text = "# 参考资料\r\n\r\nhttps://a.example/x\r\n\r\n语音识别\r\n\r\nhttps://b.example/y\r\n\r\n结束\r\n"
    raw = text.encode("gbk")
    assert detect_encoding(raw) == "gb18030"
    f = findings(
        finding("https://a.example/x", summary="深度学习 🎉 摘要"),  # an emoji GBK cannot hold
        finding("https://b.example/y", Verdict.DEAD),
    )
    out = enrich_text(raw, f, opts(summaries=True, mark_dead=True))
    assert out == (
        "# 参考资料\r\n\r\nhttps://a.example/x\r\n\r\n语音识别\r\n\r\n> 深度学习 摘要\r\n\r\n"
        f"https://b.example/y{MARK}\r\n\r\n结束\r\n"
    ).encode("gbk")
    assert detect_encoding(out) == "gb18030"
    # every original byte is still there, in order: only lines and the mark were added
    assert raw.split(b"\r\n")[:5] == out.split(b"\r\n")[:5]


def test_gbk_title_with_only_unencodable_characters_is_not_added() -> None:
    raw = "中文\n\nhttps://a.example/x\n".encode("gbk")
    f = findings(finding("https://a.example/x", title="🎉🎉"))
    assert enrich_text(raw, f, opts()) == raw


def test_binary_input_is_refused() -> None:
    with pytest.raises(InputError):
        enrich_text(b"\x00\x01https://a.example/x", {}, opts())


def test_post_without_links_is_returned_as_is() -> None:
    raw = b"# nothing here\r\n\r\ntext"
    assert enrich_text(raw, {}, opts()) is raw


# --- hostile fetched text ----------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    "x](javascript:alert(1))",
    "[click](https://evil.example/a)",
    "line one\nline two\r\nline three",
    "\x1b[31mred\x1b[0m and \x07bell",
    "# heading",
    "> quote",
    "- item",
    "1. item",
    "```",
    "| a | b |",
    "<https://evil.example/b>",
    "see https://evil.example/c now",
    "![img](https://evil.example/d.png)",
    "[ref]: https://evil.example/e",
    "{{ site.title }} {% raw %}",
    "&lt;b&gt; &#x41;",
    "\u202eevil\u202c \u200bzero\u2066width\u2069",
    "*emph* __strong__ `code`",
    "$$x^2$$",
    "---",
    "（已失效，2026-11-24）",
    "A" * 5000,
    "trailing backslash \\",
]


@pytest.mark.parametrize("title", HOSTILE)
def test_hostile_titles_are_neutralised(title: str) -> None:
    raw = (
        b"# S\n\nhttps://a.example/layout\n\n"
        b"prose https://b.example/prose here\n\n"
        b"- [](https://c.example/empty)\n\n"
        b"| k | v |\n|---|---|\n| x | https://d.example/cell |\n\n"
        b"## T\n\nhttps://e.example/last\n\nLast\n"
    )
    f = findings(
        *(
            finding(u, title=title, summary=title)
            for u in (
                "https://a.example/layout",
                "https://b.example/prose",
                "https://c.example/empty",
                "https://d.example/cell",
                "https://e.example/last",
            )
        )
    )
    out = enrich_text(raw, f, opts(summaries=True))
    before, after = links(raw), links(out)
    assert [(link.url, link.section, link.line) for link in after] == [
        (link.url, link.section, link.line + (2 if link.line > 3 else 0)) for link in before
    ]
    text = out.decode()
    assert all(len(line) < 2 * 200 + 100 for line in text.split("\n"))
    assert not any(ch in text for ch in "\x1b\x07\u202e\u202c\u200b\u2066\u2069")
    assert "{{" not in text and "{%" not in text
    # the rendered structure is the same: only paragraphs, blockquotes and text were added
    old, new = _structure(raw.decode()), _structure(text)
    grown = {"paragraph_open", "paragraph_close", "inline", "text", "text_special"}
    grown |= {"blockquote_open", "blockquote_close"}
    assert {k: v for k, v in new[0].items() if k not in grown} == {
        k: v for k, v in old[0].items() if k not in grown
    }
    assert new[1] == old[1]  # the same link targets, in order
    assert enrich_text(out, f, opts(summaries=True)) == out


def _structure(text: str) -> tuple[Counter[str], list[str]]:
    """Token types of the rendered document, and every link target, in order."""
    counts: Counter[str] = Counter()
    hrefs: list[str] = []
    stack = list(reversed(MarkdownIt("commonmark").enable("table").parse(text)))
    while stack:
        tok = stack.pop()
        counts[tok.type] += 1
        if tok.type in ("link_open", "image"):
            hrefs.append(str(tok.attrs.get("href") or tok.attrs.get("src")))
        stack.extend(reversed(tok.children or []))
    return counts, hrefs


def test_sanitize() -> None:
    assert markdown_text("a\n b\t\tc\r\n") == "a b c"
    assert markdown_text("\x1b[31mred\x1b[0m") == "red"
    assert markdown_text("\u202eabc\u200b") == "abc"
    assert markdown_text("<b>x</b>") == "\\<b\\>x\\</b\\>"
    assert markdown_text("[x](y)") == "\\[x\\](y)"
    assert markdown_text("# h") == "\\# h"
    assert markdown_text("1. x") == "1\\. x"
    assert markdown_text("- x") == "\\- x"
    assert markdown_text("- x", context="inline") == "- x"
    assert markdown_text("a（b）", context="inline") == "a(b)"
    assert markdown_text("see https://x.example") == "see https\\://x.example"
    assert markdown_text("fine_grained __init__") == "fine_grained \\_\\_init\\_\\_"
    assert markdown_text("&amp; & R&D") == "\\&amp; & R&D"
    assert markdown_text("{{ x }}") == "\\{\\{ x \\}\\}"
    capped = markdown_text("长" * 500, 200)
    assert len(capped) == 200 and capped.endswith("…")
    assert markdown_text("emoji 🎉 ok", encoding="gbk") == "emoji ok"
    assert markdown_text(" \x00\x07 ") == ""


# --- dry run, digest, atomic write -------------------------------------------------------------


def test_unified_diff() -> None:
    raw = "# 参考\n\nhttps://a.example/x\n".encode("gbk")
    out = enrich_text(raw, findings(finding("https://a.example/x", title="标题")), opts())
    diff = unified_diff(raw, out, "links.md")
    assert diff.startswith("--- a/links.md\n+++ b/links.md\n")
    assert "+标题\n" in diff and "+\n" in diff
    assert unified_diff(raw, raw, "links.md") == ""
    no_newline = unified_diff(b"https://a.example/x", b"https://a.example/x\n\nA", "p.md")
    assert "\\ No newline at end of file" in no_newline


def test_post_digest_and_changed_post() -> None:
    raw = b"https://a.example/x\n"
    digest = post_digest(raw)
    assert len(digest) == 64 and digest == post_digest(bytes(raw))
    check_unchanged(raw, digest, "links.md")
    with pytest.raises(PostChangedError) as exc:
        check_unchanged(raw + b"edit\n", digest, "links.md")
    assert isinstance(exc.value, CrawlerError)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("links.md: changed")


def test_write_atomic_with_backup(tmp_path: Path) -> None:
    path = tmp_path / "links.md"
    path.write_bytes(b"old\r\n")
    os.chmod(path, 0o640)
    backup = write_atomic_with_backup(path, b"new\r\n")
    assert backup == tmp_path / "links.md.bak.1"
    assert path.read_bytes() == b"new\r\n" and backup.read_bytes() == b"old\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["links.md", "links.md.bak.1"]
    # issue 13: each write keeps the previous version as a new numbered backup
    assert write_atomic_with_backup(path, b"newer\n") == tmp_path / "links.md.bak.2"
    assert backup.read_bytes() == b"old\r\n"
    assert (tmp_path / "links.md.bak.2").read_bytes() == b"new\r\n"
    (tmp_path / "links.md.bak.1").unlink()  # numbering goes on after the highest one left
    assert write_atomic_with_backup(path, b"newest\n") == tmp_path / "links.md.bak.3"


def test_write_atomic_failure_leaves_the_post_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "links.md"
    path.write_bytes(b"old\n")
    real_replace = os.replace

    def failing_replace(src: str, dst: os.PathLike[str] | str) -> None:
        if Path(dst) == path:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(InputError, match="No space left"):
        write_atomic_with_backup(path, b"new\n")
    assert path.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["links.md", "links.md.bak.1"]


def test_write_atomic_follows_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real.md"
    target.write_bytes(b"old\n")
    link = tmp_path / "links.md"
    link.symlink_to(target)
    write_atomic_with_backup(link, b"new\n")
    assert link.is_symlink() and target.read_bytes() == b"new\n"
    assert (tmp_path / "links.md.bak.1").read_bytes() == b"old\n"


def test_write_atomic_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        write_atomic_with_backup(tmp_path / "missing.md", b"x")


def test_add_archive_urls_then_enrich() -> None:
    f = findings(
        finding("https://site.example/before", Verdict.DEAD),
        finding("https://site.example/after", Verdict.DEAD),
        finding("https://site.example/alive"),
    )
    snap = "https://web.archive.org/web/20160304050607/https://site.example/before"
    filled = add_archive_urls(
        f, {"https://site.example/before": snap, "https://site.example/alive": snap}
    )
    assert filled["https://site.example/before"].archive_url == snap
    assert filled["https://site.example/after"].archive_url is None
    assert filled["https://site.example/alive"] is f["https://site.example/alive"]
    raw = b"https://site.example/before\n\nhttps://site.example/after\n"
    out = enrich_text(raw, filled, opts(archive=True)).decode()
    assert out == (
        f"https://site.example/before{MARK} "
        "[存档](https://web.archive.org/web/20160304050607/https://site.example/before)\n\n"
        f"https://site.example/after{MARK}\n"
    )


# --- properties --------------------------------------------------------------------------------

_URLS = [
    "https://mp.weixin.qq.com/s/zEqgDh6_fnDgXEI8MC9cmg",
    "https://mp.weixin.qq.com/s?__biz=MzI3MTA0MTk1MA==&mid=400189223&idx=1",
    "https://www.zhihu.com/question/46829056",
    "https://en.wikipedia.org/wiki/Foo_(bar)",
    "https://a.example/x",
    "https://b.example/y.html",
    "http://c.example/",
    "https://baike.baidu.com/item/图灵机/5459283",
]
_TEXT = st.lists(
    st.sampled_from([*"abcXYZ 语音识别深度学习，。（）：-*_#>[]`<|!&;\\\t", "http://"]),
    min_size=1,
    max_size=20,
).map(lambda parts: "".join(parts).strip() or "x")
_FETCHED = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.sampled_from(HOSTILE[:-2] + ["标题", "Title", "🎉 emoji", "深度学习（四十九）"]),
)
_URL = st.sampled_from(_URLS)


@st.composite
def _block(draw: st.DrawFn) -> list[str]:
    """One block of a post, as lines without line endings."""
    kind = draw(
        st.sampled_from(
            [
                "layout",
                "layout-bare",
                "layout-next",
                "link",
                "empty",
                "prose",
                "heading",
                "fence",
                "list",
                "quote",
                "text",
                "table",
                "setext",
                "html",
                "definition",
                "lazy",
                "nested",
            ]
        )
    )
    url = draw(_URL)
    if kind == "layout":
        return [url, "", draw(_TEXT).lstrip("#>-*|`<![ ") or "title"]
    if kind == "layout-bare":
        return [url]
    if kind == "layout-next":
        return [url, draw(_TEXT).lstrip("#>-*|`<![=") or "title"]
    if kind == "link":
        return [f"{draw(_TEXT)} [{draw(_TEXT)}]({url}) {draw(_TEXT)}"]
    if kind == "empty":
        return [f"{draw(_TEXT)} [](<{url}>)" if "(" in url else f"{draw(_TEXT)}[]({url})"]
    if kind == "prose":
        return [f"{draw(_TEXT)} {url} {draw(_TEXT)}"]
    if kind == "heading":
        return ["#" * draw(st.integers(1, 3)) + " " + draw(_TEXT)]
    if kind == "fence":
        return ["```", url, "```"]
    if kind == "list":
        return [f"- {url}", f"- [{draw(_TEXT)}]({url})"]
    if kind == "quote":
        return [f"> {url}"]
    if kind == "table":
        return ["| a | b |", "|---|---|", f"| {url} | [{draw(_TEXT)}]({url}) |"]
    if kind == "setext":
        return [url, draw(st.sampled_from(["---", "==="]))]
    if kind == "html":
        return [f'<a href="{url}">{draw(_TEXT)}</a> <img src="{url}">']
    if kind == "definition":
        return [f"[{draw(_TEXT)}][r]", "", f"[r]: {url}"]
    if kind == "lazy":
        return [f"> {draw(_TEXT)}", url]
    if kind == "nested":
        return [f"1. {draw(_TEXT)}", f"   - {url}", f"     {url}"]
    return [draw(_TEXT)]


@st.composite
def _post(draw: st.DrawFn) -> bytes:
    """A random post mixing the styles, LF/CRLF per line, maybe a BOM, maybe GBK."""
    blocks = draw(st.lists(_block(), min_size=1, max_size=8))
    lines: list[str] = []
    for b in blocks:
        lines += b + [""] * draw(st.integers(0, 2))
    eols = draw(st.lists(st.sampled_from(["\n", "\r\n"]), min_size=len(lines), max_size=len(lines)))
    text = "".join(line + eol for line, eol in zip(lines, eols, strict=True))
    if not draw(st.booleans()):
        text = text.rstrip("\r\n")
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "gbk"]))
    try:
        raw = text.encode(encoding)
        detect_encoding(raw)
    except (UnicodeEncodeError, InputError):
        raw = text.encode("utf-8")
    return raw


@st.composite
def _findings(draw: st.DrawFn, raw: bytes) -> dict[str, Finding]:
    """Random facts for the post's URLs (and a few others), redirects to a small pool."""
    out: dict[str, Finding] = {}
    for url in sorted(set(urls(raw)) | set(draw(st.lists(_URL, max_size=2)))):
        if draw(st.integers(0, 5)) == 0:
            continue
        verdict = draw(st.sampled_from(list(Verdict)))
        final = draw(st.one_of(st.none(), _URL, st.sampled_from(["https://new.example/a"])))
        archive = draw(st.one_of(st.none(), st.just("https://web.archive.org/web/2016/" + url)))
        out[url] = finding(
            url,
            verdict,
            draw(_FETCHED),
            draw(_FETCHED),
            final,
            draw(st.booleans()),
            archive,
        )
    return out


_OPTIONS = st.builds(
    lambda t, s, m, r, a: opts(titles=t, summaries=s, mark_dead=m, update_redirects=r, archive=a),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _lines(raw: bytes) -> list[str]:
    """Decoded lines with their endings."""
    return raw.decode(detect_encoding(raw)).splitlines(keepends=True)


def _survives(old: str, new: str) -> bool:
    """True when the new line is the old one, or the old link line with text inserted."""
    body, new_body = old.rstrip("\r\n"), new.rstrip("\r\n")
    if body != old and old[len(body) :] != new[len(new_body) :]:
        return False
    return new_body == body or ("http" in body and _inserts_only(body, new_body))


def _inserts_only(old: str, new: str) -> bool:
    """True when `new` is `old` with characters inserted (old is a subsequence of new)."""
    it = iter(new)
    return all(ch in it for ch in old)


@PROPERTY
@given(st.data())
def test_property_titles_and_summaries_keep_every_line_in_order(data: st.DataObject) -> None:
    raw = data.draw(_post())
    f = data.draw(_findings(raw))
    options = opts(titles=True, summaries=data.draw(st.booleans()))
    out = enrich_text(raw, f, options)
    assert detect_encoding(out) == detect_encoding(raw)
    old, new = _lines(raw), _lines(out)
    # every original line survives, in order: identical, or (a link line) with a title inserted;
    # its line ending too (the last line gains one when lines are added after it)
    j = 0
    for line in old:
        while j < len(new) and not _survives(line, new[j]):
            j += 1
        assert j < len(new), f"line lost: {line!r}"
        j += 1
    # every URL survives, in order, in the same section; no new URL appears
    assert [(x.url, x.section) for x in links(out)] == [(x.url, x.section) for x in links(raw)]
    assert enrich_text(out, f, options) == out


def test_a_moved_url_keeps_the_gbk_bytes_around_it_even_when_they_read_as_utf8_too() -> None:
    # Found by the property below: after the move only b"\xd1\xa7" (学 in GBK) is left, which
    # is valid UTF-8 as well (ѧ), so the encoding can no longer be told from the bytes alone
    url = "https://baike.baidu.com/item/图灵机/5459283"
    raw = "学[](".encode("gb18030") + url.encode("gb18030") + b")"
    moved = "https://mp.weixin.qq.com/s/zEqgDh6_fnDgXEI8MC9cmg"
    f = findings(finding(url, Verdict.REDIRECTED, final_url=moved, permanent=True))
    once = enrich_text(raw, f, opts(titles=False, update_redirects=True))
    assert once == b"\xd1\xa7[](" + moved.encode() + b")"
    assert enrich_text(once, f, opts(titles=False, update_redirects=True)) == once


@PROPERTY
@given(st.data())
def test_property_enrich_is_idempotent_and_keeps_urls(data: st.DataObject) -> None:
    raw = data.draw(_post())
    f = data.draw(_findings(raw))
    options = data.draw(_OPTIONS)
    once = enrich_text(raw, f, options)
    assert enrich_text(once, f, options) == once
    # the post keeps its encoding; pure ASCII (a moved URL replaced its only GBK text) is both
    enc = detect_encoding(raw)
    if not once.isascii() and detect_encoding(once) != enc:
        # A few non-ASCII bytes left may read as UTF-8 too (b"\xd1\xa7": 学 in GBK, ѧ in UTF-8):
        # then, read in the post's encoding, every character is the post's own or a finding's
        known = raw.decode(enc) + "".join(f"{x.title}{x.summary}{x.final_url}" for x in f.values())
        assert set(once.decode(enc)) <= set(known)
    before = [x.url for x in links(raw)]
    after = [x.url for x in links(once, marked=True)]
    assert len(after) == len(before)
    if not options.update_redirects:
        assert after == before
    # the marks never change what `crawler check` reads, archive links aside
    assert [u for u in urls(once) if not u.startswith("https://web.archive.org/")] == after


@PROPERTY
@given(st.data())
def test_property_mark_then_unmark_is_byte_identical(data: st.DataObject) -> None:
    raw = data.draw(_post())
    f = data.draw(_findings(raw))
    archive = data.draw(st.booleans())
    marked = enrich_text(raw, f, opts(titles=False, mark_dead=True, archive=archive))
    assert enrich_text(marked, f, opts(titles=False, unmark=True)) == raw
    assert enrich_text(marked, {}, opts(titles=False, unmark=True)) == raw


@PROPERTY
@given(st.data())
def test_property_nothing_to_add_is_byte_identical(data: st.DataObject) -> None:
    raw = data.draw(_post())
    options = data.draw(_OPTIONS)
    assert enrich_text(raw, {}, options) is raw
    # alive, nothing fetched, not moved: nothing to write either
    quiet = {u: finding(u) for u in urls(raw)}
    assert enrich_text(raw, quiet, options) == raw


_EMPHASIS = {"em_open", "em_close", "strong_open", "strong_close"}


@PROPERTY
@given(st.data())
def test_property_rendered_structure_is_unchanged(data: st.DataObject) -> None:
    raw = data.draw(_post())
    f = data.draw(_findings(raw))
    options = data.draw(_OPTIONS)
    out = enrich_text(raw, f, options)
    encoding = detect_encoding(raw)
    old, old_hrefs = _structure(raw.decode(encoding))
    new, new_hrefs = _structure(out.decode(encoding))
    # added: paragraphs and blockquotes of text, and one link per archive snapshot
    skip = {"paragraph_open", "paragraph_close", "inline", "text", "text_special", "softbreak"}
    skip |= {"blockquote_open", "blockquote_close"}
    if options.update_redirects:
        skip |= _EMPHASIS  # a new URL's underscores pair differently in CommonMark without linkify
    archived = [h for h in new_hrefs if h.startswith("https://web.archive.org/")]
    assert not any(h.startswith("https://web.archive.org/") for h in old_hrefs)
    new["link_open"] -= len(archived)
    new["link_close"] -= len(archived)
    assert +Counter({k: v for k, v in new.items() if k not in skip}) == +Counter(
        {k: v for k, v in old.items() if k not in skip}
    )
    if not options.update_redirects:
        assert [h for h in new_hrefs if h not in archived] == old_hrefs


def test_a_url_whose_chinese_path_fills_its_line_is_marked() -> None:
    """Issue 13 #18: the mark after `…/item/图灵机/5459283` must not cut the URL."""
    url = "https://baike.baidu.com/item/图灵机/5459283"
    raw = f"{url}\n\n图灵机\n".encode()
    out = enrich_text(raw, findings(finding(url, Verdict.DEAD)), opts(mark_dead=True))
    assert out.decode() == f"{url} （已失效，2026-11-24）\n\n图灵机\n"
    assert [(link.url, link.listed_title) for link in links(out, marked=True)] == [(url, "图灵机")]
    assert urls(out) == [url]  # read with the mark, too


def test_update_titles_takes_the_page_title_for_changed_entries_only() -> None:
    """Issue 13 friction: `changed` → --update-titles writes the page's title (and accepts it)."""
    raw = (
        b"https://a.example/\n\nOld title\n\n"  # changed: its title line is rewritten
        b"https://b.example/\n  Same paragraph\n\n"  # changed, title on the next line
        b"https://c.example/\n\nKept\n\n"  # ok: left alone
        b"see [x](https://d.example/) here\n"  # anchor text is no listed title
    )
    f = findings(
        finding("https://a.example/", Verdict.CHANGED, title="New *title*"),
        finding("https://b.example/", Verdict.CHANGED, title="Another"),
        finding("https://c.example/", Verdict.OK, title="Different"),
        finding("https://d.example/", Verdict.CHANGED, title="Page"),
    )
    out = enrich_text(raw, f, opts(update_titles=True))
    assert out == (
        b"https://a.example/\n\nNew \\*title\\*\n\n"
        b"https://b.example/\n  Another\n\n"
        b"https://c.example/\n\nKept\n\n"
        b"see [x](https://d.example/) here\n"
    )
    assert [link.listed_title for link in links(out)][:2] == ["New \\*title\\*", "Another"]
    assert enrich_text(out, f, opts(update_titles=True)) == out
    assert enrich_text(raw, f, opts()) == raw  # only when asked
