"""Tests for the extract stage: decoding, site shapes, the saved-page corpus, robustness."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.classify import classify
from crawler.extract import bounded, decode_html, extract_meta, normalize_space
from crawler.extract import page as extract_mod
from crawler.extract.meta import FINGERPRINT_WINDOW
from crawler.sites import site_for_content
from crawler.types import PageKind, PageMeta, Verdict
from tests.factories import make_fetch_result

FIXTURES = Path(__file__).parent / "fixtures" / "pages"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pages"
MANIFEST = CORPUS / "manifest.json"


# ------------------------------------------------------------------ hand-written site shapes


def _fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("name", _fixture_names())
def test_fixture_page(name: str) -> None:
    spec = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    body = (FIXTURES / f"{name}.html").read_bytes()
    meta = extract_meta(
        body, url=spec["url"], content_type=spec["content_type"], status=spec["status"]
    )
    got = {
        "title": meta.title,
        "summary": meta.summary,
        "site_name": meta.site_name,
        "canonical_url": meta.canonical_url,
        "lang": meta.lang,
        "kind": meta.kind.value,
        "notice": meta.notice,
        "site": meta.site,
    }
    expected: dict[str, Any] = spec["expected"]
    assert {k: got[k] for k in expected} == expected


def test_fixtures_cover_every_shape() -> None:
    assert len(_fixture_names()) >= 16


def test_wechat_captcha_path_is_anti_robot() -> None:
    meta = extract_meta(
        b"<html><head><title></title></head><body><div id='app'></div></body></html>",
        url="https://mp.weixin.qq.com/mp/wappoc_appmsgcaptcha?poc_token=x&target_url=y",
    )
    assert meta.kind is PageKind.ANTI_ROBOT
    assert meta.site == "wechat"


def test_status_404_is_not_found() -> None:
    page = b"<html><head><title>Welcome</title></head><body><p>" + b"word " * 40 + b"</p></body>"
    assert extract_meta(page, status=404).kind is PageKind.NOT_FOUND
    assert extract_meta(page, status=410).kind is PageKind.NOT_FOUND
    assert extract_meta(page, status=200).kind is PageKind.ARTICLE


@pytest.mark.parametrize(
    "title",
    [
        "Page not found - Example",
        "Example | 404 Not Found",
        "页面不存在 - 示例网",
        "Just a moment... | Example",
    ],
)
def test_notice_titles_are_matched_after_the_site_suffix_is_cut(title: str) -> None:
    """Issue 13 bug 4: `Page not found - Example` served with 200 was `changed`, not dead."""
    page = (
        f"<html><head><title>{title}</title></head><body><h1>Sorry</h1><p>We looked everywhere "
        "for the page you asked for, but it is not here. Try the search box.</p></body></html>"
    )
    meta = extract_meta(page, url="https://www.example.com/old-page", status=200)
    verdict = classify(make_fetch_result(status=200), meta, "An article that used to be here")
    if "moment" in title:
        assert meta.kind is PageKind.ANTI_ROBOT
        assert (verdict.verdict, verdict.reason) == (Verdict.BLOCKED, "anti-robot")
    else:
        assert meta.kind is PageKind.NOT_FOUND
        assert (verdict.verdict, verdict.reason) == (Verdict.DEAD, "soft-404")


def test_article_quoting_cloudflare_is_article() -> None:
    page = (
        "<html><head><title>How Cloudflare challenges work | Blog</title></head><body><article>"
        "<h1>How Cloudflare challenges work</h1><p>The page sets window._cf_chl_opt and shows "
        "'Just a moment...' while the browser solves the challenge script.</p></article></body>"
    )
    meta = extract_meta(page, url="https://blog.example.com/cf")
    assert meta.kind is PageKind.ARTICLE
    assert meta.title == "How Cloudflare challenges work"


def test_str_input_and_summary_trimmed() -> None:
    para = "This sentence is long enough to count as a paragraph of prose. " * 12
    meta = extract_meta(f"<title>T</title><article><p>{para}</p></article>")
    assert meta.summary is not None
    assert len(meta.summary) <= 301
    assert meta.summary.endswith(".")


def test_normalize_space() -> None:
    assert normalize_space("  a\n\t b\u3000c\xa0 ") == "a b c"


# ---------------------------------------------------------------------- saved-page corpus

#: Manifest kinds (see the corpus README) → the PageKinds that satisfy them. "other" is a
#: notice or non-article page: a live one may read as ARTICLE or OTHER, a dead one is a notice.
KIND_MAP: dict[str, set[PageKind]] = {
    "article": {PageKind.ARTICLE},
    "deleted": {PageKind.REMOVED},
    "violation": {PageKind.REMOVED},
    "account-gone": {PageKind.REMOVED},
    "blocked": {PageKind.ANTI_ROBOT},
    "not-found": {PageKind.NOT_FOUND},
}
#: What may follow our title in the manifest's (verbatim) title: a separator, then the
#: site's own suffix (author, column, "的回答", SEO keywords) ending in a site name.
SUFFIX = re.compile(
    r"^\s*(?:[-_|–—]|--)\s*.*(?:知乎|CSDN博客|CSDN文库|CSDN\.NET|的专栏|博客园|人民网|网)\s*$"
)


def _manifest() -> list[dict[str, Any]]:
    if not MANIFEST.is_file():
        return []
    entries: list[dict[str, Any]] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return entries


def _expected_kinds(entry: dict[str, Any]) -> set[PageKind]:
    kind = entry["kind"]
    if kind == "other":
        if entry.get("expected_status") == "dead":
            return {PageKind.REMOVED, PageKind.NOT_FOUND}
        return {PageKind.ARTICLE, PageKind.OTHER}
    return KIND_MAP[kind]


@pytest.mark.skipif(not MANIFEST.is_file(), reason="saved-page corpus not present")
@pytest.mark.parametrize("entry", _manifest(), ids=lambda e: str(e["file"]))
def test_corpus_page(entry: dict[str, Any]) -> None:
    body = (CORPUS / entry["file"]).read_bytes()
    for url in dict.fromkeys((entry.get("url"), None)):  # with and without the address
        meta = extract_meta(body, url=url)
        assert meta.kind in _expected_kinds(entry), (url, meta)
        if meta.kind in (PageKind.REMOVED, PageKind.ANTI_ROBOT) and entry.get("notice_text"):
            assert meta.notice
            assert any(t in meta.notice or meta.notice in t for t in entry["notice_text"])
        expected = entry.get("expected_title")
        if entry["kind"] == "article" and expected:
            _check_title(meta, normalize_space(expected))


def _check_title(meta: PageMeta, expected: str) -> None:
    assert meta.title, "no title"
    title = normalize_space(meta.title)
    if title == expected:
        return
    assert expected.startswith(title), (title, expected)
    assert SUFFIX.match(expected[len(title) :]), (title, expected)


@pytest.mark.skipif(not MANIFEST.is_file(), reason="saved-page corpus not present")
def test_corpus_encodings() -> None:
    for entry in _manifest():
        body = (CORPUS / entry["file"]).read_bytes()
        text = decode_html(body)
        assert text == body.decode(entry["encoding"]).removeprefix("\ufeff"), entry["file"]


def test_the_fingerprint_window_sees_what_the_whole_page_shows() -> None:
    """A saved page of a known site is recognised from its first FINGERPRINT_WINDOW bytes as
    from all of it (a WeChat article of the corpus shows its second fingerprint at 13.9 KB)."""
    pages = sorted(FIXTURES.glob("*.html")) + sorted(CORPUS.glob("*/*.html"))
    known = 0
    assert bounded._scanner() is not None  # loaded, as by a big page
    for path in pages:
        data = path.read_bytes()
        rule = site_for_content(data)
        known += rule is not None
        assert site_for_content(data, FINGERPRINT_WINDOW) is rule, path.name
        found = bounded.fingerprints_in(data, FINGERPRINT_WINDOW)  # hyperscan's one pass
        assert found is not None
        assert site_for_content(data, FINGERPRINT_WINDOW, found) is rule, path.name
    assert known >= 20 if MANIFEST.is_file() else known > 0


# -------------------------------------------------------------------------- never raises

HTML_BITS = st.sampled_from(
    [
        "<html>",
        "<head>",
        "<title>",
        "</title>",
        "<meta property='og:title' content='",
        "<meta charset=gbk>",
        "<meta http-equiv=content-type content='text/html;charset=x-unknown'>",
        '<script type=\'application/ld+json\'>{"@type":"Article","headline":',
        "</script>",
        "<p>",
        "</p>",
        "<h1>",
        "<article>",
        "var msg_title = '",
        "'.html(false);",
        "该内容已被发布者删除",
        "环境异常",
        "<div class='weui-msg__title'>",
        "&#39;&quot;&amp;",
        "\\x0a\\u00e9\\",
        " - 知乎",
        "\x00",
        "\ufeff",
        "\ud800",
    ]
)


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=4096))
def test_random_bytes_never_raise(body: bytes) -> None:
    meta = extract_meta(body)
    assert isinstance(meta, PageMeta)
    assert isinstance(decode_html(body), str)


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(st.one_of(HTML_BITS, st.text(max_size=40)), max_size=40),
    url=st.one_of(st.none(), st.sampled_from(["https://mp.weixin.qq.com/s/x", "http://[::1", ""])),
    status=st.one_of(st.none(), st.integers(min_value=0, max_value=999)),
)
def test_random_html_never_raises(parts: list[str], url: str | None, status: int | None) -> None:
    text = "".join(parts)
    assert isinstance(extract_meta(text, url=url, status=status), PageMeta)
    raw = text.encode("utf-8", errors="surrogatepass")
    assert isinstance(extract_meta(raw, url=url, content_type="text/html; charset=gbk"), PageMeta)


def test_huge_and_empty_pages() -> None:
    assert extract_meta(b"").kind is PageKind.OTHER
    assert extract_meta("").kind is PageKind.OTHER
    big = b"<html><head><title>Big</title></head><body>" + b"<p>x</p>" * 2_000_000
    assert extract_meta(big).title == "Big"


# ------------------------------------------------------------------------------ decode_html

FRENCH = "<p>" + "Le café est très bon, à côté de la gare, où l'été dure longtemps. " * 8 + "</p>"


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        pytest.param("\ufeff<p>héllo</p>".encode(), None, "<p>héllo</p>", id="utf8-bom"),
        pytest.param("\ufeff<p>日本</p>".encode("utf-16-le"), None, "<p>日本</p>", id="utf16-bom"),
        pytest.param(
            "<p>中文内容</p>".encode("gbk"),
            "text/html; charset=GBK",
            "<p>中文内容</p>",
            id="http-gbk",
        ),
        pytest.param(
            '<meta charset="gb2312"><p>中文内容</p>'.encode("gbk"),
            None,
            '<meta charset="gb2312"><p>中文内容</p>',
            id="meta-gb2312",
        ),
        pytest.param(
            '<meta http-equiv="Content-Type" content="text/html; charset=gbk"><p>中文</p>'.encode(
                "gbk"
            ),
            "text/html",
            '<meta http-equiv="Content-Type" content="text/html; charset=gbk"><p>中文</p>',
            id="meta-http-equiv",
        ),
        pytest.param(
            '<meta charset="gb2312"><p>镕</p>'.encode("gb18030"),
            None,
            '<meta charset="gb2312"><p>镕</p>',
            id="gb2312-label-gb18030-bytes",
        ),
        pytest.param(
            '<meta charset="gb2312"><p>中文内容</p>'.encode(),
            None,
            '<meta charset="gb2312"><p>中文内容</p>',
            id="gb2312-declared-utf8-bytes",
        ),
        pytest.param(
            "<p>café</p>".encode(),
            "text/html; charset=iso-8859-1",
            "<p>café</p>",
            id="latin1-declared-utf8-bytes",
        ),
        pytest.param(
            FRENCH.encode("cp1252"),
            "text/html; charset=utf-8",
            FRENCH,
            id="declared-utf8-is-cp1252",
        ),
        pytest.param(
            "<meta charset=x-nonsense><p>naïve</p>".encode(),
            None,
            "<meta charset=x-nonsense><p>naïve</p>",
            id="unknown-label",
        ),
        pytest.param(b"", None, "", id="empty"),
    ],
)
def test_decode_html(body: bytes, content_type: str | None, expected: str) -> None:
    assert decode_html(body, content_type) == expected


def test_decode_detects_undeclared_gbk() -> None:
    text = (
        "<html><body><p>" + "这是一段没有声明编码的中文网页内容，用来测试自动检测。" * 20 + "</p>"
    )
    assert decode_html(text.encode("gb18030")) == text


def test_decode_late_declaration() -> None:
    text = "<html><head>" + "<!-- padding -->" * 400 + '<meta charset="gbk"></head><p>汉字</p>'
    assert decode_html(text.encode("gbk")) == text


def test_decode_never_raises_on_garbage() -> None:
    assert isinstance(decode_html(bytes(range(256)) * 10, "text/html; charset=utf-16"), str)


# ------------------------------------------------------------------------------ nesting guard


def test_ten_thousand_nested_divs_are_cut_and_read() -> None:
    page = (
        "<html><head><title>Deep</title></head><body><p>A paragraph before the nesting, long "
        "enough to be the summary of the page.</p>" + "<div>" * 10_000 + "deep" + "</div>" * 10_000
    )
    assert not extract_mod._shallow(page.encode(), extract_mod.MAX_DEPTH)
    cut = extract_mod.cut_deep_nesting(page.encode())
    assert len(cut) < len(page) and cut.endswith(b"<div>" * 100)
    meta = extract_meta(page)
    assert meta.title == "Deep"
    assert meta.summary and meta.summary.startswith("A paragraph before the nesting")


def test_a_megabyte_of_ordinary_markup_is_judged_shallow_without_a_scan() -> None:
    row = '<li><a href="/wiki/X" title="X">x</a><img src="i.png" alt=""><br></li>'
    nav = '<svg><path d="M0"/><path d="M1"/></svg><!-- c --><script>if (a < b) {}</script>'
    page = ("<div><ul>" + row * 40 + "</ul>" + nav + "</div>") * 400
    data = page.encode()
    assert len(data) > 1_000_000 and data.count(b"<") > 60_000
    assert extract_mod._shallow(data, extract_mod.SCAN_ABOVE)
    assert extract_mod._deep_at(data, extract_mod.MAX_DEPTH) is None


def test_self_closed_divs_nest_and_are_cut() -> None:
    # The parser ignores "/>" on an HTML element: 10,000 <div/>s nest 10,000 deep (1.3 s).
    page = (
        b"<html><head><title>Deep</title></head><body><p>A paragraph before the nesting, long "
        b"enough to be the summary of the page.</p>" + b"<div/>" * 10_000 + b"deep"
    )
    cut = extract_mod.cut_deep_nesting(page)
    assert len(cut) < len(page) and cut.endswith(b"<div/>" * 100)
    meta = extract_meta(page)
    assert meta.title == "Deep"
    assert meta.summary and meta.summary.startswith("A paragraph before the nesting")


def test_self_closed_elements_inside_svg_open_nothing() -> None:
    icon = b'<svg viewBox="0 0 9 9">' + b'<path d="M0 0"/>' * 3000 + b"<use/></svg>"
    assert extract_mod._deep_at(b"<div>" + icon * 3 + b"</div>", extract_mod.MAX_DEPTH) is None
    assert extract_mod._deep_at(b"<svg/>" * 3000, extract_mod.MAX_DEPTH) is None
    # ... but a <div> ends the SVG content, and what follows is HTML again.
    breakout = b"<svg>" + b"<div/>" * 1500 + b"<path/>" * 1500
    assert extract_mod._deep_at(breakout, extract_mod.MAX_DEPTH) is not None


def test_a_page_under_the_scan_threshold_is_parsed_whole() -> None:
    # Cut only where a scan is worth its price; a 2,000-deep page parses in a few ms.
    page = b"<title>t</title>" + b"<div>" * 2000 + b"x" + b"</div>" * 2000
    assert extract_mod.cut_deep_nesting(page) == page


TAG_BITS = st.sampled_from(
    ["<div>", "</div>", "<p class=x>", "</p>", "<br>", "<IMG src=a>", "<path/>", "<b", "</", "<",
     "<!-- ", " -->", "x", "</x>", "<Div>", "</ a>", ">", "/>", "<svg>", "</svg>", "<div/>"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(TAG_BITS, max_size=120), limit=st.integers(min_value=0, max_value=6))
def test_the_cheap_depth_bound_never_misses_a_deep_page(parts: list[str], limit: int) -> None:
    data = "".join(parts).encode()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(extract_mod, "_DEPTH_CHUNK", 7)  # many chunk boundaries, cut tags
        if extract_mod._shallow(data, limit):
            assert extract_mod._deep_at(data, limit) is None


# ------------------------------------------------------------- verification pages, by family

#: One faithfully built page per family (tests/fixtures/pages), with the status it comes with.
FAMILIES = [
    "sogou-antispider",  # 搜狗 antispider: a 验证码 form, little text
    "baidu-security-verify",  # 百度安全验证: its title, the mkd.js challenge
    "tencent-tcaptcha",  # TCaptcha.js, 安全验证 / 访问验证
    "aliyun-slider",  # 滑动验证页面, g.alicdn.com noCaptcha slider
    "jiasule-521",  # 521 with a script that sets a cookie and reloads: no title, no text
    "cloudflare-turnstile",  # "Just a moment...", _cf_chl_opt, cf-turnstile
    "turnstile-site-check",  # a site's own Turnstile page: "Security check | Site"
    "zhihu-unhuman",  # 知乎 /account/unhuman, 安全验证 - 知乎
    "bilibili-412",  # 412, 由于触发哔哩哔哩安全风控策略
    "verify-human-en",  # PerimeterX "Press & Hold to confirm you are a human"
    "verify-human-zh",  # 人机验证 with GeeTest
]


@pytest.mark.parametrize("name", FAMILIES)
def test_anti_robot_families_are_recognised_on_any_host(name: str) -> None:
    spec = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    body = (FIXTURES / f"{name}.html").read_bytes()
    assert spec["expected"]["kind"] == "anti-robot"
    # Under the site's address, under a host no rule knows, and saved without one.
    for url in (spec["url"], "https://unknown.example/post/1", None):
        meta = extract_meta(body, url=url, status=spec["status"])
        assert meta.kind is PageKind.ANTI_ROBOT, (url, meta)
        assert meta.summary is None
    meta = extract_meta(body, url=spec["url"], status=spec["status"])
    verdict = classify(make_fetch_result(url=spec["url"], status=spec["status"]), meta, "Listed")
    assert verdict.verdict is Verdict.BLOCKED, verdict


ARTICLE_ON_CAPTCHAS = (
    "<html><head><title>验证码识别入门：从 OCR 到卷积网络 - 星河技术社区</title>"
    '<script src="https://www.google.com/recaptcha/api.js" async defer></script></head><body>'
    "<article><h1>验证码识别入门：从 OCR 到卷积网络</h1>"
    + "<p>验证码（CAPTCHA）是一种区分人和机器的安全验证手段。本文从传统的图像预处理讲起，"
    "介绍二值化、去噪和字符切分，再用卷积神经网络端到端地识别整张验证码图片，"
    "最后讨论滑动验证和人机验证为什么越来越难以被自动程序绕过。</p>"
    * 4
    + "</article><form action='/comment' method='post'><textarea name='c'></textarea>"
    "<div class='g-recaptcha' data-sitekey='6Lc'></div><button>发表评论</button></form>"
    "</body></html>"
)


def test_an_article_about_captchas_stays_an_article() -> None:
    meta = extract_meta(ARTICLE_ON_CAPTCHAS, url="https://bbs.xinghe.example.cn/t/42")
    assert meta.kind is PageKind.ARTICLE
    assert meta.title == "验证码识别入门：从 OCR 到卷积网络"
    # One paragraph of it, in an <article> and without one: still an article.
    para = ARTICLE_ON_CAPTCHAS.split("<p>")[1].split("</p>")[0]
    short = ARTICLE_ON_CAPTCHAS.replace(f"<p>{para}</p>", "", 3)
    assert extract_meta(short, url="https://bbs.xinghe.example.cn/t/42").kind is PageKind.ARTICLE
    bare = short.replace("<article>", "<div>").replace("</article>", "</div>")
    assert extract_meta(bare, url="https://bbs.xinghe.example.cn/t/42").kind is PageKind.ARTICLE


EXTRACTION = CORPUS.parent / "extraction"


@pytest.mark.skipif(not (EXTRACTION / "manifest.json").is_file(), reason="corpus not present")
def test_no_page_of_the_extraction_corpus_is_a_notice() -> None:
    """Real articles, many with reCAPTCHA in their comment forms: none is a verification page."""
    entries = json.loads((EXTRACTION / "manifest.json").read_text(encoding="utf-8"))
    mention = 0
    for entry in entries:
        body = (EXTRACTION / entry["file"]).read_bytes()
        mention += b"captcha" in body.lower()
        meta = extract_meta(body, url=entry.get("url"))
        assert meta.kind in (PageKind.ARTICLE, PageKind.OTHER), (entry["name"], meta)
    assert mention >= 10


# ----------------------------------------------------------------------------------- titles

SITE_PAGE = "<html><head>{head}</head><body>{body}<p>{para}</p></body></html>"
PARA = "A paragraph long enough to stand for the page, so that the page reads as an article."


@pytest.mark.parametrize(
    ("url", "head", "body", "title"),
    [
        pytest.param(  # the blog's simulated web: <title> and <h1> carry the same title
            "http://www.box2d.org",
            "<title>Box2D---一个游戏物理引擎。</title>",
            "<h1>Box2D---一个游戏物理引擎。</h1>",
            "Box2D---一个游戏物理引擎。",
            id="head-named-like-the-host-is-the-articles-own",
        ),
        pytest.param(
            "http://blog.csdn.net/v_july_v/article/details/6105630",
            "<title>十三个经典算法研究与总结 - CSDN.NET</title>",
            "",
            "十三个经典算法研究与总结",
            id="old-csdn-dot-net",
        ),
        pytest.param(
            "http://blog.csdn.net/v_july_v/article/details/6105630",
            "<title>十三个经典算法研究与总结 - 结构之法 算法之道 - 博客频道 - CSDN.NET</title>",
            "",
            "十三个经典算法研究与总结",
            id="old-csdn-blog-channel",
        ),
        pytest.param(
            "https://notes.example.net/rust",
            "<title>Notes from the move | Northwind Notes</title>"
            "<meta property='og:site_name' content='Northwind Notes'>",
            "<h1>Northwind</h1><h1>Notes from the move</h1>",
            "Notes from the move",
            id="og-site-name",
        ),
        pytest.param(
            "https://example.net/a/1",
            "<title>Frob Weekly · Release notes for version 2 of the tool</title>"
            "<meta name='application-name' content='Frob Weekly'>",
            "",
            "Release notes for version 2 of the tool",
            id="application-name-leading",
        ),
        pytest.param(
            None,
            "<title>Release notes for version 2 — Frobnicate</title>"
            "<link rel='canonical' href='https://www.frobnicate.io/blog/2'>",
            "",
            "Release notes for version 2",
            id="host-brand-from-the-canonical-url",
        ),
    ],
)
def test_titles_lose_the_site_name_learned_from_the_page(
    url: str | None, head: str, body: str, title: str
) -> None:
    page = SITE_PAGE.format(head=head, body=body, para=PARA)
    assert extract_meta(page, url=url).title == title


# ------------------------------------------------------------ what extract_meta lets through


def test_a_bug_in_the_extractor_is_not_read_as_an_empty_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import crawler.extract.meta as meta_mod

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(meta_mod, "find_summary", broken)
    with pytest.raises(KeyError):
        extract_meta(b"<title>t</title><p>text</p>")


def test_a_page_the_parser_cannot_parse_reads_as_an_empty_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from selectolax.lexbor import SelectolaxError

    def refuse(*args: object, **kwargs: object) -> None:
        raise SelectolaxError("Can't parse HTML.")  # what selectolax raises when lexbor fails

    monkeypatch.setattr(extract_mod, "LexborHTMLParser", refuse)
    assert extract_meta(b"<title>t</title>") == PageMeta(kind=PageKind.OTHER)
    assert extract_meta(b"<title>t</title>", status=404).kind is PageKind.NOT_FOUND


def test_json_ld_nested_deeper_than_the_json_parser_goes_is_skipped() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    page = (
        f'<title>Deep data</title><script type="application/ld+json">{deep}</script>'
        "<p>A paragraph long enough to stand for the whole page, as summaries do.</p>"
    )
    meta = extract_meta(page)
    assert meta.title == "Deep data"
    assert meta.summary and meta.summary.startswith("A paragraph long enough")


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ('<main id="m">m</main><article id="a">a</article>', "a"),  # by selector, not by place
        ('<main><article id="a"><div itemprop="articleBody" id="b">x</div></article></main>', "b"),
        ('<div role="main" id="r">r</div><main id="m">m</main>', "m"),
        ('<div role="main" id="r">r</div><div role="main" id="s">s</div>', "r"),
        ('<div itemprop="articlebody" id="x">no</div><div role="MAIN" id="y">no</div>', None),
        ("<p>nothing of the kind</p>", None),
    ],
)
def test_the_main_container_is_the_first_match_of_the_first_selector_that_matches(
    page: str, expected: str | None
) -> None:
    """main_container finds CONTAINERS in one walk of the tree; it picks what one css_first
    per selector, in order, picks."""
    from crawler.extract.page import Page
    from crawler.extract.summary import CONTAINERS, main_container

    parsed = Page(page, page.encode(), None)
    node = main_container(parsed, None)
    assert (node.attributes.get("id") if node is not None else None) == expected
    one_by_one = next(
        (n for n in (parsed.tree.css_first(sel) for sel in CONTAINERS) if n is not None), None
    )
    assert (one_by_one.attributes.get("id") if one_by_one is not None else None) == expected


#: The CJK ranges of crawler.extract.text, written out again: the test does not trust its table.
_CJK = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF))
_CJK_EDGES = [chr(c) for lo, hi in _CJK for c in (lo - 1, lo, hi, hi + 1)]


@settings(max_examples=300)
@given(st.text(alphabet=st.one_of(st.characters(), st.sampled_from(_CJK_EDGES))))
def test_weighted_length_counts_each_cjk_character_twice(text: str) -> None:
    from crawler.extract.text import weighted_length

    cjk = sum(1 for ch in text if any(lo <= ord(ch) <= hi for lo, hi in _CJK))
    assert weighted_length(text) == len(text) + cjk


@pytest.mark.parametrize(
    ("cjk", "latin"),
    [(0, 589), (0, 590), (147, 147), (290, 9), (290, 10), (294, 1), (294, 2), (296, 0), (200, 190)],
)
def test_a_verification_page_is_one_up_to_600_weighted_characters_of_text(
    cjk: int, latin: int
) -> None:
    """The challenge's text limit counts a CJK character twice (weighted_length), also where
    the text has fewer than 600 characters (a shortcut skips the count below 300 of them)."""
    from crawler.extract.text import weighted_length
    from crawler.sites import CHALLENGE_TEXT_MAX

    text = "请完成验证 " + "验" * cjk + "x" * latin  # a phrase asking for it, then words
    page = (
        "<html><head><title>Example</title></head>"
        f"<body><p>{text}</p><div class='g-recaptcha'></div></body></html>"
    )
    meta = extract_meta(page, url="https://www.example.com/a", status=200)
    within = weighted_length(text) <= CHALLENGE_TEXT_MAX
    assert within == (11 + 2 * cjk + latin <= CHALLENGE_TEXT_MAX)
    assert (meta.kind is PageKind.ANTI_ROBOT) == within, (cjk, latin, meta)


_ASKS = "<p>请完成验证</p>"  # a phrase asking for a verification
_COOKIE_RELOAD = "<script>document.cookie='k=v'; location.href = location.pathname</script>"


@pytest.mark.parametrize(
    ("title", "body", "notice"),
    [
        ("Example", "<h2>Security check</h2>" + _ASKS, "Security check"),  # the heading: an <h2>
        ("Example", "<noscript><h2>Bot check</h2></noscript><h2>Hi</h2><input>" + _ASKS, "Hi"),
        ("Example", "<h1>人机验证</h1><p>拖动滑块</p>", "人机验证"),
        ("&#x63;aptcha", "<p>Wait</p>", "captcha"),  # the word only once the entity is read
        ("Example", "<FORM><INPUT name=code></FORM>" + _ASKS, "Example"),  # a control, any case
        ("Example", "<BuTtOn>OK</BuTtOn>" + _ASKS, "Example"),
        ("Example", "<div class='g-recaptcha'></div>" + _ASKS, "Example"),
        ("Example", "<script src='//captcha.qq.com/TCaptcha.js'></script>" + _ASKS, "Example"),
        ("Example", _COOKIE_RELOAD + _ASKS, "Example"),
    ],
)
def test_a_verification_page_is_told_whichever_of_its_marks_it_has(
    title: str, body: str, notice: str
) -> None:
    """challenge() sets ordinary pages aside from their bytes and parse-time texts first: a
    page with any one mark of a verification page is still read as one."""
    page = f"<html><head><title>{title}</title></head><body>{body}</body></html>"
    meta = extract_meta(page, url="https://www.example.com/a", status=200)
    assert (meta.kind, meta.notice) == (PageKind.ANTI_ROBOT, notice)


def test_an_ordinary_page_is_told_from_a_verification_page_before_its_text_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A short article without a form, a challenge script or a verification word is no
    verification page, told without walking the tree for its visible text (the bench's pages:
    the walk was a quarter of challenge()'s time)."""
    walks: list[int] = []
    walk = extract_mod.Page.visible_text

    def counted(self: extract_mod.Page) -> str:
        walks.append(1)
        return walk(self)

    monkeypatch.setattr(extract_mod.Page, "visible_text", counted)
    page = (
        "<html><head><title>卷积网络</title><meta name='description' content='一篇文章'>"
        "</head><body><h1>卷积网络</h1><p>正文第一段，足够长的一句话。</p></body></html>"
    )
    meta = extract_meta(page, url="http://127.0.0.2:8080/p/1", status=200)
    assert (meta.kind, meta.title, meta.summary) == (PageKind.ARTICLE, "卷积网络", "一篇文章")
    assert walks == []


@pytest.mark.parametrize(
    "url",
    [
        "http://a.com",
        "https://Mp.WeiXin.qq.com/s/x?y#z",
        "http://a.com:8080/p",
        "http://a.com:/",
        "http://user@a.com/",  # the userinfo is not the host
        "http://a.com@b.com/",
        "http://exa\tmple.com/",  # urlsplit drops tabs and newlines anywhere
        "http://a.com\t/x",
        "http://a.com:8\t0/",
        " http://a.com/ ",
        "\x01http://a.com/",
        "HTTP://A.COM/",
        "http://[::1]:80/",
        "http://[::1/",  # urlsplit refuses it
        "http://例子.中国/",
        "http://a_b.com/",
        "http://a.com\\x",
        "http://a.com/p\tq?x",  # a tab in the path: urlsplit's path drops it
        "http://a.com/p?x\ty",
        "http://a.com/p;q/r?x#y",
        "http:///x",
        "http:a.com",
        "mailto:x@y",
        "",
    ],
)
def test_a_page_s_host_and_path_are_urlsplit_s(url: str) -> None:
    """host_of and path_of read a plain http(s) URL without urlsplit's whole parse: the same
    host and path."""
    assert _host_and_path(url) == _split(url)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["http://", "https://", "HTTP://", "http:/", "ftp://", ""]),
    st.text(alphabet="aA0.-:/@?#[]%\t\r\n \\_;中", max_size=14),
    st.sampled_from(["", "/", "/p?x", "#f", "\t", "/a\tb", "?q\tr"]),
)
def test_any_url_s_host_and_path_are_urlsplit_s(scheme: str, rest: str, end: str) -> None:
    url = scheme + rest + end
    assert _host_and_path(url) == _split(url)


def _host_and_path(url: str) -> tuple[str | None, str]:
    return extract_mod.host_of(url), extract_mod.path_of(url)


def _split(url: str) -> tuple[str | None, str]:
    """What host_of and path_of said before they had a shortcut."""
    from urllib.parse import urlsplit

    if not url:
        return None, ""
    try:
        parts = urlsplit(url.strip())
        return parts.hostname, parts.path
    except ValueError:
        return None, ""


def test_a_plain_url_s_host_and_path_are_read_without_urlsplit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every page's URL is asked its host and path: a plain one is read by one regex, not by
    urlsplit's whole parse (38 k instructions a URL)."""
    parsed: list[str] = []

    def counted(url: str) -> Any:
        parsed.append(url)
        return urlsplit(url)

    from urllib.parse import urlsplit

    monkeypatch.setattr(extract_mod, "urlsplit", counted)
    assert extract_mod.host_of("https://Mp.WeiXin.qq.com:443/s/x?y#z") == "mp.weixin.qq.com"
    assert extract_mod.host_of("http://127.0.0.2:18480/p/1") == "127.0.0.2"
    assert extract_mod.path_of("http://127.0.0.2:18480/p/1?x") == "/p/1"
    assert parsed == []
    assert extract_mod.host_of("http://user@a.com/") == "a.com"
    assert parsed == ["http://user@a.com/"]
