"""report.html in a real browser: Debian's headless Chromium opens the file from disk.

No browser is downloaded: the test uses /usr/bin/chromium (`.ci/run` installs it) and skips
without it or without the playwright package.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from crawler.report import write_reports
from crawler.types import Check, Run, Verdict
from tests.factories import (
    make_check,
    make_fetch_result,
    make_meta,
    make_run,
    make_totals,
    with_history,
    with_trend,
)

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin"),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None, reason="needs the playwright package"
    ),
]

SPEECH = ("语音识别", "参考")
VISION = ("细粒度分类",)
RNN = ("RNN进阶", "LSTM")
EVIL = ("<b>evil</b> \"><img src=x onerror=alert('section')>",)
LONG = "很长的标题" * 120 + "x" * 400


def _check(
    url: str,
    verdict: Verdict,
    section: tuple[str, ...],
    line: int,
    listed: str,
    title: str | None = None,
    reason: str = "title-matches",
    detail: str = "the title matches the listed one",
    summary: str | None = None,
    final_url: str | None = None,
    hops: tuple[tuple[int, str], ...] = (),
    status: int | None = 200,
) -> Check:
    c = make_check(
        url,
        verdict,
        listed=listed,
        title=listed if title is None else title,
        section=section,
        line=line,
        reason=reason,
        detail=detail,
    )
    return replace(
        c,
        fetch=make_fetch_result(url, status=status, hops=hops, final_url=final_url),
        meta=make_meta(listed if title is None else title, summary=summary),
    )


def sample_run() -> Run:
    """A run shaped like links.md's: Chinese sections and titles, every verdict, a history,
    newly broken and recovered links, and hostile or very long fetched text."""
    ok, dead, err, chg = Verdict.OK, Verdict.DEAD, Verdict.ERROR, Verdict.CHANGED
    wx = "https://mp.weixin.qq.com/s/"
    checks = [
        with_history(
            _check(
                wx + "zEqgDh6_fnDgXEI8MC9cmg",
                ok,
                SPEECH,
                21,
                "百度贾磊：汉语语音识别技术重大突破：LSTM+CTC详解",
                summary="百度语音识别技术负责人贾磊介绍了LSTM与CTC结合的建模方法。",
            ),
            ok,
            ok,
            ok,
            ok,
            ok,
        ),
        with_history(
            _check(
                "https://www.zhihu.com/question/46829056",
                Verdict.BLOCKED,
                SPEECH,
                25,
                "语音识别领域的最新进展目前是什么样的水准？",
                title=None,
                reason="http-403",
                detail="the site refused the robot (HTTP 403)",
                status=403,
            ),
            Verdict.BLOCKED,
            Verdict.BLOCKED,
            ok,
        ),
        with_history(
            _check(
                wx + "pimQBFd5uxrZk4dSgUsblg",
                dead,
                SPEECH,
                37,
                "苹果机器学习期刊“Siri三部曲”之一：通过跨带宽和跨语言初始化提升神经网络声学模型",
                title="",
                reason="removed-notice",
                detail="the site says: 该内容已被发布者删除",
            ),
            ok,
            ok,
            ok,
        ),
        with_history(
            _check(
                wx + "u1R7NUg_kgI_mpjIFrO02A",
                ok,
                SPEECH,
                41,
                "探索Siri背后的技术：将逆文本标准化（ITN）转化为标签问题",
                summary="苹果的Siri团队介绍如何把逆文本标准化当作标签问题处理。",
            ),
            err,
            err,
            ok,
            err,
        ),
        with_history(
            _check(
                "http://www.cnblogs.com/foo/p/1234.html",
                Verdict.REDIRECTED,
                SPEECH,
                45,
                "小米的语音识别系统是如何搭建的",
                reason="moved-permanently",
                detail="moved permanently to https://www.cnblogs.com/foo/p/1234.html",
                final_url="https://www.cnblogs.com/foo/p/1234.html",
                hops=((301, "http://www.cnblogs.com/foo/p/1234.html"),),
            ),
            Verdict.REDIRECTED,
        ),
        with_history(
            _check(
                wx + "cYBMy4TIhcutvrAt0y70Ow",
                chg,
                VISION,
                60,
                "腾讯AI Lab副主任俞栋：过去两年基于深度学习的声学模型进展",
                title="俞栋：深度学习声学模型的进展（更新版）",
                reason="title-changed",
                detail="the page's title is not the listed one",
            ),
            ok,
            ok,
            chg,
            previous_title="俞栋：深度学习声学模型的进展（更新版）",
        ),
        with_history(
            _check(
                "https://blog.csdn.net/x/article/details/7890",
                err,
                VISION,
                64,
                "细粒度图像分类综述",
                title=None,
                reason="timeout",
                detail="no answer within 10 s (3 attempts)",
                status=None,
            ),
            ok,
            err,
            err,
        ),
        _check(
            "javascript:alert(document.domain)",
            Verdict.SKIPPED,
            VISION,
            70,
            "<script>alert('listed')</script>",
            title=None,
            reason="not-http",
            detail="not an http(s) URL",
            status=None,
        ),
        with_history(
            _check(
                "https://evil.example/\"><img src=x onerror=alert('url')>",
                ok,
                EVIL,
                80,
                "\"><img src=x onerror=alert('listed')>",
                title="<script>alert('title')</script>" + LONG,
                summary="<iframe src=javascript:alert(1)></iframe>" + "长摘要" * 300,
                final_url="javascript:alert('final')",
            ),
            ok,
        ),
        _check(
            "https://example.com/" + "a" * 3000,
            ok,
            EVIL,
            81,
            "x" * 2000,
            title="y" * 2000,
        ),
    ]
    for i in range(12):
        checks.append(
            with_history(
                _check(
                    f"{wx}rnn{i:02d}",
                    ok,
                    RNN,
                    100 + i * 4,
                    f"RNN进阶（{i + 1}）：从LSTM到GRU，再到注意力机制",
                ),
                *([ok] * 9),
            )
        )
    trend = [
        make_totals(13 - i, ok=16 + (i % 3), changed=1, blocked=1, error=1 if i % 4 else 2)
        for i in range(12)
    ]
    trend[7] = make_totals(6, network_down=True)
    return with_trend(make_run(*checks), *trend)


@pytest.fixture(scope="module")
def browser() -> Any:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _open(browser: Any, path: Path, **context: Any) -> tuple[Any, Any, list[str], list[str]]:
    """A page on the report; returns (context, page, console errors and dialogs, requests that
    are not the report itself)."""
    url = path.as_uri()
    ctx = browser.new_context(**context)
    errors: list[str] = []
    requests: list[str] = []

    def guard(route: Any) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            requests.append(route.request.url)
            route.abort()

    ctx.route("**/*", guard)
    page = ctx.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def dialog(d: Any) -> None:  # an alert() would mean injected script ran
        errors.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    page.on("request", lambda r: None if r.url == url else requests.append(r.url))
    page.goto(url, wait_until="load")
    return ctx, page, errors, requests


def _visible_main_rows(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all(
            "tr[data-main]",
            "rows => rows.filter(r => r.offsetParent !== null).map(r => r.dataset.verdict)",
        )
    )


def test_report_in_headless_chromium(browser: Any, tmp_path: Path) -> None:
    run = sample_run()
    (path,) = write_reports(run, tmp_path, ["html"])
    ctx, page, errors, requests = _open(browser, path, viewport={"width": 1280, "height": 900})
    try:
        # No injected element or script: the only script is the report's own.
        assert page.evaluate("document.querySelectorAll('img, iframe').length") == 0
        assert page.evaluate("document.scripts.length") == 1

        page.screenshot(path=str(tmp_path / "report-desktop.png"), full_page=True)

        total = len(run.checks)
        assert page.is_visible("#controls")
        assert len(_visible_main_rows(page)) == total
        assert page.text_content("#shown") == f"all {total} links"
        # The newly broken and recovered lists come first.
        order = page.eval_on_selector_all("section[data-block]", "s => s.map(x => x.id)")
        assert order[:2] == ["newly-broken", "recovered"]

        # Filter by verdict: hide ok rows, then show problems only.
        page.click("label.chip.v-ok")
        visible = _visible_main_rows(page)
        assert visible and "ok" not in visible
        assert len(visible) == total - sum(c.verdict is Verdict.OK for c in run.checks)
        assert not page.is_visible("#s-4")  # the RNN section has only ok links: hidden
        page.click("#all")
        assert len(_visible_main_rows(page)) == total
        page.click("#problems")
        assert "ok" not in _visible_main_rows(page)
        page.click("#all")

        # Search: Chinese text, case-insensitive, several words.
        page.fill("#q", "贾磊")
        assert _visible_main_rows(page) == ["ok"]
        assert page.text_content("#shown") == f"1 of {total} links"
        page.fill("#q", "lstm GRU （3）")
        assert len(_visible_main_rows(page)) == 1
        page.fill("#q", "removed-notice")
        assert _visible_main_rows(page) == ["dead"]
        page.fill("#q", "长摘要")  # matches inside a summary: its details opens
        assert page.is_visible("#s-3 details p")
        page.fill("#q", "no such text anywhere")
        assert _visible_main_rows(page) == []
        assert page.is_visible("#nothing")
        page.fill("#q", "")
        assert len(_visible_main_rows(page)) == total

        # Sort a section by verdict (worst first), then by line descending.
        speech = "#s-1 tbody tr"

        def lines() -> list[int]:
            found = page.eval_on_selector_all(speech, "rs => rs.map(r => r.cells[0].textContent)")
            return [int(x) for x in found]

        assert lines() == sorted(lines())
        page.click("#s-1 th.c-verdict button")
        verdicts = page.eval_on_selector_all(speech, "rs => rs.map(r => r.dataset.verdict)")
        assert verdicts[0] == "dead" and verdicts[-1] == "ok"
        assert page.get_attribute("#s-1 th.c-verdict", "aria-sort") == "ascending"
        page.click("#s-1 th.c-line button")
        page.click("#s-1 th.c-line button")
        assert lines() == sorted(lines(), reverse=True)

        # Only http(s) links are clickable.
        hrefs = page.eval_on_selector_all("a[href]", "as => as.map(a => a.getAttribute('href'))")
        assert all(h.startswith(("https://", "http://", "#")) for h in hrefs)
        assert not any("javascript:" in h.lower() for h in hrefs)

        # A phone: nothing wider than the screen, even with 3000-character URLs.
        page.set_viewport_size({"width": 390, "height": 844})
        page.click("#all")
        page.evaluate("window.scrollTo(0, 0)")
        width = page.evaluate(
            "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        )
        assert width <= 390
        page.screenshot(path=str(tmp_path / "report-phone.png"), full_page=True)
        page.screenshot(path=str(tmp_path / "report-phone-top.png"))

        assert errors == []
        assert requests == []
    finally:
        ctx.close()


def test_report_without_javascript_shows_everything(browser: Any, tmp_path: Path) -> None:
    run = sample_run()
    (path,) = write_reports(run, tmp_path, ["html"])
    ctx, page, errors, requests = _open(
        browser, path, java_script_enabled=False, viewport={"width": 390, "height": 844}
    )
    try:
        assert not page.is_visible("#controls")  # the filter needs JS: not shown without it
        assert len(_visible_main_rows(page)) == len(run.checks)
        assert page.is_visible("#newly-broken") and page.is_visible("#recovered")
        page.click("#s-1 details summary")  # summaries open without JS
        assert page.is_visible("#s-1 details p")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(tmp_path / "report-nojs.png"), full_page=True)
        assert errors == [] and requests == []
    finally:
        ctx.close()
