"""report.html rendered from Run values: hostile text stays text, history shows, order is right."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup, escape

from crawler import sanitize
from crawler.report import DEFAULT_FORMATS, FORMATS, render, write_reports
from crawler.report import html as html_module
from crawler.report.html import clip, midclip, safe_href
from crawler.sanitize import html_text
from crawler.types import Verdict
from tests.factories import (
    make_check,
    make_fetch_result,
    make_meta,
    make_run,
    make_totals,
    with_history,
    with_trend,
)

XSS_TAG = "<script>alert(1)</script>"
XSS_ATTR = '"><img src=x onerror=alert(1)>'
XSS_SQ = "'><svg onload=alert(1)>"
URL_ATTR = 'https://a.example/"><img/src=x/onerror=alert(1)>'
JS_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "\tjavascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "javascript&colon;alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "//evil.example/x",
    "/relative/path",
    "https:/evil",
    "http://user:pw@evil.example/",
    "https://ok.example/\u202e/gpj.exe",
]


class Doc(HTMLParser):
    """Every element with its attributes, and the text of the page, as a browser would see it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        if self._in and self._in[-1] == "script":
            self.scripts.append(data)
        elif not (self._in and self._in[-1] == "style"):
            self.text.append(data)

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == name]


def parse(html: str) -> Doc:
    doc = Doc()
    doc.feed(html)
    doc.close()
    return doc


def hostile_run() -> str:
    long_title = "标题" * 3000
    checks = [
        make_check(
            "javascript:alert(document.cookie)",
            Verdict.SKIPPED,
            listed=XSS_TAG,
            title=XSS_ATTR,
            section=(XSS_TAG, XSS_ATTR),
            reason=XSS_TAG,
            detail=XSS_ATTR,
        ),
        *(
            make_check(u, Verdict.ERROR, listed=f"js {i}", line=10 + i)
            for i, u in enumerate(JS_URLS)
        ),
        replace(
            make_check(URL_ATTR, Verdict.CHANGED, listed=XSS_SQ),
            meta=make_meta(XSS_TAG, summary=f"{XSS_TAG}<iframe src=javascript:alert(1)>{XSS_SQ}"),
            fetch=make_fetch_result(URL_ATTR, final_url="javascript:alert('final')"),
        ),
        make_check("https://long.example/" + "a" * 20000, Verdict.OK, listed=long_title),
        make_check("https://bidi.example/x", listed="abc\u202eevil\u2066\x00\x1b[31m", line=99),
    ]
    return render(make_run(*checks), "html")


def test_registered_as_a_default_format(tmp_path: Path) -> None:
    assert FORMATS["html"][0] == "report.html"
    assert DEFAULT_FORMATS == ("json", "md", "html")
    paths = write_reports(make_run(make_check()), tmp_path, DEFAULT_FORMATS)
    assert [p.name for p in paths] == ["report.json", "report.md", "report.html"]
    assert (tmp_path / "report.html").read_text(encoding="utf-8").startswith("<!doctype html>")


def test_hostile_text_stays_text() -> None:
    html = hostile_run()
    doc = parse(html)
    names = {t for t, _ in doc.elements}
    assert not names & {"img", "iframe", "object", "embed", "base", "form", "frame", "svg:image"}
    assert doc.tags("link") == [{"rel": "icon", "href": "data:,"}]
    assert len(doc.tags("script")) == 1 and all(not a for a in doc.tags("script"))
    assert "alert" not in "".join(doc.scripts)
    for tag, attrs in doc.elements:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name not in ("src", "srcdoc", "formaction", "xlink:href"), (tag, name)
            if name == "style":
                assert "url(" not in (value or "") and "expression" not in (value or "")
    # The hostile strings are shown to the reader, as text.
    text = "".join(doc.text)
    for s in (XSS_TAG, XSS_ATTR, XSS_SQ):
        assert s in text
    # Nothing from the web closes an attribute or a tag in the source either.
    assert "<script>alert" not in html and "<img" not in html and "<iframe" not in html


def test_only_http_urls_are_links() -> None:
    doc = parse(hostile_run())
    hrefs = [a["href"] or "" for a in doc.tags("a") if "href" in a]
    assert hrefs
    for href in hrefs:
        assert href.startswith(("https://", "http://", "#")), href
        assert "javascript" not in href.lower() and "<" not in href and '"' not in href
        assert len(href) <= 4096
    assert "https://a.example/%22%3E%3Cimg/src=x/onerror=alert(1)%3E" in hrefs
    for a in doc.tags("a"):
        if (a.get("href") or "").startswith("http"):
            assert a.get("rel") == "noopener noreferrer nofollow"
    # The refused URLs are still there for the reader.
    assert "javascript:alert(document.cookie)" in "".join(doc.text)


@pytest.mark.parametrize("url", JS_URLS)
def test_safe_href_refuses(url: str) -> None:
    assert safe_href(url) is None


@pytest.mark.parametrize(
    ("url", "href"),
    [
        ("https://mp.weixin.qq.com/s/zEqgDh6_fnDgXEI8MC9cmg", None),
        ("HTTP://Example.com/a?b=1&c=2#frag", None),
        ("https://zh.wikipedia.org/wiki/深度学习", "https://zh.wikipedia.org/wiki/%E6%B7%B1"),
        ("https://x.example/a b", "refused"),
        ('https://x.example/"q"<>', "https://x.example/%22q%22%3C%3E"),
    ],
)
def test_safe_href_keeps_http_urls(url: str, href: str | None) -> None:
    got = safe_href(url)
    if href == "refused":
        assert got is None
    elif href is None:
        assert got == url
    else:
        assert got is not None and got.startswith(href)


def test_long_strings_are_capped_and_wrap() -> None:
    html = hostile_run()
    doc = parse(html)
    assert len(html) < 120_000  # 20 000-character URL, 6 000-character title: capped
    longest = max(len(t) for t in doc.text)
    assert longest <= 2000
    assert all(len(v or "") <= 4096 for _, a in doc.elements for v in a.values())
    assert "overflow-wrap: anywhere" in html
    assert clip("x" * 500, 100) == "x" * 99 + "…"
    m = midclip("https://long.example/" + "a" * 500 + "/end", 60)
    assert len(m) == 60 and m.startswith("https://long.example/") and m.endswith("/end")


def test_control_and_bidi_characters_are_removed() -> None:
    # the escape sequence goes whole (it once left "[31m" behind), as on a terminal
    assert html_text("abc\u202eevil\u2066\x00\x1b[31m\ud800") == "abcevil \ufffd"
    html = hostile_run()
    assert "\u202e" not in html and "\x00" not in html and "\x1b" not in html


def test_no_network_and_a_strict_csp() -> None:
    html = render(make_run(make_check()), "html")
    doc = parse(html)
    (csp,) = [m for m in doc.tags("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert (csp.get("content") or "").startswith("default-src 'none';")
    assert not re.search(r"\b(src|href)=\"(?!#|https?://|data:,)", html)
    assert not re.search(r"url\(|@import|<link rel=\"stylesheet", html)
    # The script attaches with addEventListener: no inline handlers, no dynamic code.
    script = "".join(doc.scripts)
    assert "addEventListener" in script
    assert not re.search(r"\beval\(|new Function|innerHTML|document\.write", script)
    assert 'lang="en"' in html and "PingFang SC" in html and "Noto Sans CJK SC" in html


def test_first_run_without_history() -> None:
    run = make_run(
        make_check("https://a.example/1", Verdict.OK, section=("语音识别", "参考"), line=21),
        make_check("https://a.example/2", Verdict.DEAD, reason="http-404", line=22),
    )
    html = render(run, "html")
    doc = parse(html)
    assert "First run" in html
    assert len([g for g in doc.tags("g") if "data-run" in g]) == 1
    assert not [s for s in doc.tags("svg") if "strip" in (s.get("class") or "")]
    ids = [a.get("id") for _, a in doc.elements]
    assert "newly-broken" not in ids and "recovered" not in ids
    assert "语音识别 / 参考" in "".join(doc.text)
    assert len([t for t in doc.tags("tr") if "data-main" in t]) == 2


def test_history_is_shown() -> None:
    ok, dead = Verdict.OK, Verdict.DEAD
    steady = with_history(make_check("https://a.example/1", ok, line=1), ok, ok, ok, ok)
    broke = with_history(
        make_check("https://a.example/2", dead, line=2, reason="http-404"), ok, ok, dead, dead
    )
    run = with_trend(
        make_run(steady, broke),
        make_totals(3, ok=2),
        make_totals(2, ok=2),
        make_totals(1, network_down=True),
    )
    html = render(run, "html")
    doc = parse(html)
    assert len([g for g in doc.tags("g") if "data-run" in g]) == 4  # three earlier + this run
    strips = [s for s in doc.tags("svg") if "strip" in (s.get("class") or "")]
    assert [s.get("aria-label") for s in strips] == [
        "last runs: ok, ok, ok, ok, ok",
        "last runs: ok, ok, dead, dead, dead",
    ]
    text = "".join(doc.text)
    assert "2026-11-20" in text  # steady ok since four days before T0
    assert "2026-11-22" in text and "3 failing runs" in text
    assert "network down" in html
    assert "Broken (dead + error): 1 now, 0 at the previous run (2026-11-22)." in text


@pytest.mark.parametrize(
    ("broken", "note"),
    [
        ((6, 6, 6), "Broken (dead + error): 6 now, unchanged since 2026-11-21."),
        (
            (6, 4, 4),
            "Broken (dead + error): 4 now, 4 at the previous run (2026-11-23), 6 on 2026-11-21.",
        ),
        ((6, 6, 4), "Broken (dead + error): 4 now, 6 at the previous run (2026-11-23)."),
    ],
)
def test_trend_note_says_only_what_differs(broken: tuple[int, int, int], note: str) -> None:
    earlier = [make_totals(3 - i, dead=n) for i, n in enumerate(broken[:2])]
    earlier[1] = make_totals(1, dead=broken[1])
    run = make_run(*[make_check(f"https://x.example/{i}", Verdict.DEAD) for i in range(broken[2])])
    text = "".join(parse(render(with_trend(run, *earlier), "html")).text)
    assert note in text


def test_newly_broken_and_recovered_come_first() -> None:
    ok, err, dead = Verdict.OK, Verdict.ERROR, Verdict.DEAD
    run = make_run(
        with_history(make_check("https://a.example/ok", ok, section=("A",), line=1), ok),
        with_history(
            make_check("https://a.example/back", ok, section=("A",), line=2, listed="Back"), err
        ),
        with_history(
            make_check("https://a.example/gone", dead, section=("B",), line=3, listed="Gone"), ok
        ),
        with_history(make_check("https://a.example/still", dead, section=("B",), line=4), dead),
    )
    html = render(run, "html")
    nb, rec = html.index('id="newly-broken"'), html.index('id="recovered"')
    first_section = html.index('id="s-1"')
    assert nb < rec < first_section
    top = html[nb:first_section]
    assert "https://a.example/gone" in top[: rec - nb]
    assert "https://a.example/back" in top[rec - nb :]
    assert "https://a.example/still" not in top and "https://a.example/ok" not in top
    # In the top lists each row says where it is in the post; they are not counted twice.
    assert "B · line 3" in "".join(parse(top).text)
    assert len(re.findall(r"<tr data-verdict=\"\w+\" data-main", html)) == 4


def test_counts_chart_and_labels() -> None:
    run = make_run(
        make_check("https://a.example/1", Verdict.OK),
        make_check("https://a.example/2", Verdict.DEAD),
        make_check("https://a.example/3", Verdict.DEAD),
    )
    doc = parse(render(run, "html"))
    text = "".join(doc.text)
    assert "2 broken (dead + error) of 3" in " ".join(text.split())
    # Each verdict badge has its name as text, not only a colour.
    badges = [a for a in doc.tags("span") if (a.get("class") or "").startswith("badge ")]
    assert {a.get("class") for a in badges} >= {"badge v-ok", "badge v-dead"}
    chips = [a.get("value") for a in doc.tags("input") if a.get("name") == "verdict"]
    assert chips == ["dead", "ok"]  # verdicts with links only


def test_network_down_and_multiple_sources() -> None:
    a = make_check("https://a.example/1", Verdict.ERROR)
    b = make_check("https://a.example/2")
    b = replace(b, link=replace(b.link, source="other.md"))
    html = render(
        replace(make_run(a, b, network_down=True), sources=("post.md", "other.md")), "html"
    )
    assert "The network was down during this run" in html
    down = with_trend(make_run(a, network_down=True), make_totals(1, dead=2, error=1))
    text = " ".join("".join(parse(render(down, "html")).text).split())
    assert "Broken (dead + error) at the last judged run, 2026-11-23: 3." in text
    assert "post.md: S" in html and "other.md: S" in html


def test_render_is_pure() -> None:
    run = make_run(make_check(), make_check("https://a.example/2", Verdict.DEAD))
    assert render(run, "html") == render(run, "html")


_TEXT = st.text(st.sampled_from("ab &<>'\"\u202e\u200b\x00\t\n \u3000标题.:/?#%") | st.characters())


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_fast_paths_agree_with_the_general_ones(text: str) -> None:
    """visible()/safe_href's shortcuts change nothing."""
    slow = sanitize._SPACES.sub(
        " ",
        sanitize._INVISIBLE.sub(
            "",
            sanitize._CONTROLS.sub(
                " ", sanitize._SURROGATE.sub("\ufffd", sanitize._ESCAPES.sub("", text))
            ),
        ),
    ).strip()
    assert sanitize.visible(text) == slow
    url = "https://a.example/" + text
    href = safe_href(url)
    if href is not None:
        assert href == quote(url, safe=html_module._HREF_SAFE)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_rows_escape_as_markupsafe_does(text: str) -> None:
    """A row's values, escaped without markupsafe where nothing needs it, read as its escape
    makes them; markup stays markup, numbers their digits."""
    assert html_module._escape(text) == escape(text)
    assert html_module._escape(Markup(text)) == Markup(text)
    assert html_module._escape(len(text)) == str(len(text))


def test_rows_are_written_as_they_are_made() -> None:
    """A long run's page is written in pieces: no piece holds more than a few hundred rows."""
    checks = [make_check(f"https://a.example/{i}", line=i + 1) for i in range(1200)]
    out = _Pieces()
    html_module.write(make_run(*checks), out)  # type: ignore[arg-type]
    assert out.text() == render(make_run(*checks), "html")
    assert out.text().count("<tr data-verdict") == 1200
    assert max(len(p) for p in out.pieces) < len(out.text()) / 2


class _Pieces:
    def __init__(self) -> None:
        self.pieces: list[str] = []

    def write(self, s: str) -> int:
        self.pieces.append(s)
        return len(s)

    def text(self) -> str:
        return "".join(self.pieces)
