"""Classification as a table: (fetch, page, listed title) → verdict and reason."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.classify import classify, normalize_title, strip_site_suffix, titles_match
from crawler.types import ErrorKind, PageKind, Verdict
from tests.factories import make_fetch_result, make_meta

U = "https://mp.weixin.qq.com/s/abc"

CASES = [
    # (id, fetch kwargs, meta kwargs or None, listed title, verdict, reason)
    ("ok", {}, {"title": "语音识别"}, "语音识别", Verdict.OK, "title-matches"),
    ("ok-no-listed", {}, {"title": "语音识别"}, None, Verdict.OK, "alive"),
    ("ok-no-title", {}, {"title": None}, "语音识别", Verdict.OK, "alive-no-title"),
    ("404", {"status": 404}, {"kind": PageKind.NOT_FOUND}, "x", Verdict.DEAD, "http-404"),
    ("410", {"status": 410}, None, "x", Verdict.DEAD, "http-410"),
    (
        "wechat-removed-200",
        {},
        {"title": None, "kind": PageKind.REMOVED, "notice": "该内容已被发布者删除"},
        "x",
        Verdict.DEAD,
        "removed-notice",
    ),
    ("soft-404", {}, {"title": "404", "kind": PageKind.NOT_FOUND}, "x", Verdict.DEAD, "soft-404"),
    (
        "wechat-verify-200",
        {},
        {"title": "微信公众平台", "kind": PageKind.ANTI_ROBOT, "notice": "环境异常"},
        "x",
        Verdict.BLOCKED,
        "anti-robot",
    ),
    (
        "captcha-redirect",
        {
            "hops": ((302, U),),
            "final_url": "https://mp.weixin.qq.com/mp/wappoc_appmsgcaptcha?x=1",
        },
        {"title": None, "kind": PageKind.OTHER},
        "x",
        Verdict.BLOCKED,
        "anti-robot",
    ),
    ("zhihu-403", {"status": 403}, None, "x", Verdict.BLOCKED, "http-403"),
    (
        "zhihu-unhuman-path",
        {"final_url": "https://www.zhihu.com/account/unhuman?type=unhuman&need_login=false"},
        {"title": "安全验证 - 知乎", "kind": PageKind.OTHER},
        "x",
        Verdict.BLOCKED,
        "anti-robot",
    ),
    (
        "unhuman-path-elsewhere",
        {"url": "https://example.com/account/unhuman"},
        {"title": "Unhuman", "kind": PageKind.ARTICLE},
        None,
        Verdict.OK,
        "alive",
    ),
    (
        "bilibili-412",
        {"url": "https://www.bilibili.com/video/BV1xx411c7mD", "status": 412},
        None,
        "x",
        Verdict.BLOCKED,
        "http-412",
    ),
    ("412-elsewhere", {"status": 412}, None, "x", Verdict.ERROR, "http-412"),
    ("csdn-521", {"status": 521}, None, "x", Verdict.BLOCKED, "http-521"),
    ("429-outlasting", {"status": 429}, None, "x", Verdict.BLOCKED, "http-429"),
    ("500", {"status": 500, "attempts": 3}, None, "x", Verdict.ERROR, "http-500"),
    ("timeout", {"status": None, "error": ErrorKind.TIMEOUT}, None, "x", Verdict.ERROR, "timeout"),
    ("dns", {"status": None, "error": ErrorKind.DNS}, None, "x", Verdict.ERROR, "dns"),
    ("reset", {"status": None, "error": ErrorKind.PROTOCOL}, None, "x", Verdict.ERROR, "protocol"),
    (
        "loop",
        {"status": 302, "error": ErrorKind.REDIRECT_LOOP},
        None,
        "x",
        Verdict.ERROR,
        "redirect-loop",
    ),
    (
        "invalid",
        {"status": None, "error": ErrorKind.INVALID_URL},
        None,
        "x",
        Verdict.ERROR,
        "invalid-url",
    ),
    (
        "http-to-https-is-ok",
        {"url": "http://mp.weixin.qq.com/s/abc", "hops": ((301, "http://mp.weixin.qq.com/s/abc"),)},
        {"title": "t"},
        "t",
        Verdict.OK,
        "title-matches",
    ),
    (
        "moved",
        {"hops": ((301, U),), "final_url": "https://new.example.com/post"},
        {"title": "t"},
        "t",
        Verdict.REDIRECTED,
        "moved-permanently",
    ),
    (
        "temporary-redirect-is-ok",
        {"hops": ((302, U),), "final_url": "https://login.example.com/"},
        {"title": "t"},
        "t",
        Verdict.OK,
        "title-matches",
    ),
    (
        "retitled",
        {},
        {"title": "语音识别还有哪些难题没有解决？"},
        "一文概览语音识别中尚未解决的问题",
        Verdict.CHANGED,
        "title-changed",
    ),
    (
        "notice-beats-title",
        {},
        {"title": "x", "kind": PageKind.REMOVED, "notice": "此内容因违规无法查看"},
        "y",
        Verdict.DEAD,
        "removed-notice",
    ),
]


@pytest.mark.parametrize(
    ("fetch_kw", "meta_kw", "listed", "verdict", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_classify_table(
    fetch_kw: dict[str, object],
    meta_kw: dict[str, object] | None,
    listed: str | None,
    verdict: Verdict,
    reason: str,
) -> None:
    fetch_kw = {"url": U, **fetch_kw}
    fetch = make_fetch_result(**fetch_kw)  # type: ignore[arg-type]
    meta = make_meta(**meta_kw) if meta_kw is not None else None  # type: ignore[arg-type]
    c = classify(fetch, meta, listed)
    assert (c.verdict, c.reason) == (verdict, reason)
    assert c.detail


def test_removed_detail_quotes_the_notice() -> None:
    meta = make_meta(None, PageKind.REMOVED, notice="此帐号已自主注销")
    c = classify(make_fetch_result(), meta, "t")
    assert "此帐号已自主注销" in c.detail


@pytest.mark.parametrize(
    ("listed", "fetched"),
    [
        (
            "谷歌发布全新端到端语音识别系统：词错率降至5.6%",
            "谷歌发布全新端到端语音识别系统：词错率降至5.6％",
        ),
        ("苹果机器学习期刊“Siri三部曲”之一", '苹果机器学习期刊"Siri三部曲"之一'),
        (
            "语音识别领域的最新进展目前是什么样的水准？",
            "语音识别领域的最新进展目前是什么样的水准？ - 知乎",
        ),
        (
            "语音识别系统及科大讯飞最新实践",
            "语音识别系统及科大讯飞最新实践_ffmpeg4976的博客-CSDN博客",
        ),
        (
            "详解卷积神经网络（CNN）在语音识别中的应用",
            "详解卷积神经网络(CNN)在语音识别中的应用 - 博客园",
        ),
        ("基于深度学习的语音识别", "基于深度学习的语音识别_百度文库"),
        ("Towards End-to-End Speech Recognition", "towards end-to-end speech  recognition"),
        (
            "全卷积注意网络的细粒度识别，很长的标题…",
            "全卷积注意网络的细粒度识别，很长的标题还在继续",
        ),
    ],
)
def test_titles_match_despite_width_punctuation_and_suffixes(listed: str, fetched: str) -> None:
    assert titles_match(listed, fetched)


@pytest.mark.parametrize(
    ("listed", "fetched"),
    [
        ("时间卷积网络（TCN）将取代RNN成为NLP预测领域王者", "时间卷积网络TCN入门"),
        ("LSTM+CTC详解", "LSTM CTC详解 续"),
        ("abc", "abcd"),
    ],
)
def test_titles_differ(listed: str, fetched: str) -> None:
    assert not titles_match(listed, fetched)


def test_normalize_and_strip() -> None:
    assert normalize_title("Ａ，Ｂ　c") == "abc"
    assert strip_site_suffix("标题 - 作者 - 博客园") != ""
    assert strip_site_suffix("问题 - 知乎") == "问题"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normalize_title_drops_exactly_the_ignorable_characters(title: str) -> None:
    """normalize_title deletes with a lazily filled translate table; this is the definition."""
    import unicodedata

    from crawler.classify import _QUOTES, _ignorable

    s = unicodedata.normalize("NFKC", title).translate(_QUOTES).casefold()
    s = unicodedata.normalize("NFKC", s)
    expected = unicodedata.normalize("NFKC", "".join(ch for ch in s if not _ignorable(ch)))
    assert normalize_title(title) == expected


@pytest.mark.parametrize(
    ("attempts", "detail"), [(1, "server error 500"), (3, "server error 500 after 3 attempts")]
)
def test_server_error_detail_counts_attempts_only_when_retried(attempts: int, detail: str) -> None:
    c = classify(make_fetch_result(status=500, attempts=attempts), None, "x")
    assert c.detail == detail
