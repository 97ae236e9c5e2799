"""Titles over time (issue 13): only the post's listed title is compared with the page's, a dead
page's title is no title, and a title change stays `changed` until the post or the user says so."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from crawler.cli import cli
from crawler.config import FetchSettings
from crawler.history import UrlState, apply_history, next_state
from crawler.pipeline import check_links
from crawler.post import parse_post
from crawler.types import Classification, Verdict
from tests.factories import T0
from tests.server import LocalServer
from tests.test_security import FAST

OK = Classification(Verdict.OK, "alive", "alive (HTTP 200)")
DEAD = Classification(Verdict.DEAD, "http-404", "the server answered 404")
FAST_SETTINGS = FetchSettings(host_interval=0, retries=0)


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def report(tmp_path: Path) -> list[dict[str, Any]]:
    doc = json.loads((tmp_path / "reports" / "report.json").read_text(encoding="utf-8"))
    links: list[dict[str, Any]] = doc["links"]
    return links


# ------------------------------------------------------------------- anchor text is no title


@pytest.mark.anyio
async def test_anchor_text_is_never_compared_with_the_page_title(server: LocalServer) -> None:
    """`[here](url)` and `[论文](url)` are not titles; the post's layout title is."""
    here, paper, ref, listed, defined = (server.url(f"/page/plain?a={i}") for i in range(5))
    post = (
        f"# s\n\nSee [here]({here}) and the [论文]({paper}), also [this one][r].\n\n"
        f"{listed}\n\nA listed title that is not the page's\n\n"
        f'[r]: {ref}\n[d]: {defined} "A defined title that is not the page\'s"\n'
    )
    links = parse_post(post, "p.md")
    run = await check_links(links, FAST_SETTINGS)
    got = {c.url: (c.verdict.value, c.reason) for c in run.checks}
    assert got[here] == got[paper] == got[ref] == ("ok", "alive"), got
    assert got[listed] == ("changed", "title-changed"), got
    assert got[defined] == ("changed", "title-changed"), got
    # the anchor text is still the link's listed title for the reports and enrich
    assert {c.url: c.link.listed_title for c in run.checks}[paper] == "论文"


def test_prose_under_a_bare_url_is_never_compared_but_a_title_seen_before_is(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blog's 44 "retitled" links the websim scorer wants `changed` on a first run have a line
    of prose under them, not a title (issue 13 #14): a first run has nothing to compare their
    page's title with. A later run does: the title last seen as fine."""
    monkeypatch.chdir(tmp_path)
    intro, described, listed = (server.url(f"/titled/{k}") for k in ("intro", "described", "l"))
    post = tmp_path / "p.md"
    post.write_text(
        # the blog's 2017-11-11-ML_java.markdown:311 and 2015-5-22-zigbee_audio.markdown:126
        f"# s\n\n官网：\n\n{intro}\n\n代码：\n\nhttps://github.com/xianyi/OpenBLAS\n\n"
        f"{described}\n\n这是Contiki的官网。\n\n{listed}\n\nThe listed title\n",
        encoding="utf-8",
    )
    server.titles.update(intro="OpenBLAS", described="Contiki-NG", l="The listed title")

    def verdicts() -> dict[str, tuple[str, str]]:
        r = invoke(["check", str(post), "--format", "json", "--include", "127.0.0.1", *FAST])
        assert r.exit_code == 0, r.output  # `changed` fails no run by default
        return {rec["url"]: (rec["verdict"], rec["reason"]) for rec in report(tmp_path)}

    assert verdicts() == {
        intro: ("ok", "alive"),
        described: ("ok", "alive"),
        listed: ("ok", "title-matches"),
    }
    server.titles.update(intro="高清火星影像来了", described="10万用人缺口背后")
    again = verdicts()
    assert again[intro] == again[described] == ("changed", "title-changed-since-last-check")
    assert again[listed] == ("ok", "title-matches")


# ----------------------------------------------------------------- a dead page's title is none


def test_a_dead_page_title_is_in_no_report(tmp_path: Path, server: LocalServer) -> None:
    gone, alive = server.url("/page/zhihu-404"), server.url("/page/plain")
    post = tmp_path / "p.md"
    post.write_text(f"# s\n\n{gone}\n\nA question\n\n{alive}\n\nPlain page\n", encoding="utf-8")
    args = ["check", str(post), "--report-dir", str(tmp_path / "reports")]
    for _ in range(2):  # the second run's previous_title comes from the first
        r = invoke([*args, "--format", "json,md,html,junit,sarif", *FAST])
        assert r.exit_code == 3, r.output
    files = sorted((tmp_path / "reports").iterdir())
    assert len(files) == 5
    for f in files:
        assert "页面不存在" not in f.read_text(encoding="utf-8"), f.name
    records = {rec["url"]: rec for rec in report(tmp_path)}
    assert records[gone]["verdict"] == "dead"
    assert records[gone]["title"] is None and records[gone]["previous_title"] is None
    assert records[alive]["title"] == "Plain page" == records[alive]["previous_title"]
    assert "Plain page" in (tmp_path / "reports" / "report.html").read_text(encoding="utf-8")
    for how in ([], ["--json"]):
        r = invoke(["history", gone, *how])
        assert r.exit_code == 0 and "页面不存在" not in r.output, r.output


def test_a_dead_page_title_is_not_remembered() -> None:
    final, hist = apply_history(None, DEAD, "页面不存在", None, T0)
    state = next_state(None, "u", final, DEAD, "页面不存在", T0, hist)
    assert state.last_title is None and state.last_alive_title is None
    _, hist = apply_history(state, OK, "The page", None, T0 + timedelta(days=1))
    assert hist.previous_title is None


# ------------------------------------------------------------ a change stays until it is seen


def run_days(titles: list[tuple[str, str | None]], state: UrlState | None = None) -> list[Any]:
    """(page title, the link's listed title or anchor text) on consecutive days → finals."""
    out = []
    for day, (title, listed) in enumerate(titles):
        now = T0 + timedelta(days=day)
        final, hist = apply_history(state, OK, title, listed, now)
        state = next_state(state, "u", final, OK, title, now, hist)
        out.append((final, state))
    return out


def test_a_title_change_stays_changed_until_accepted() -> None:
    out = run_days([("Old", "论文"), ("New", "论文"), ("New", "论文"), ("New", "论文")])
    assert [f.verdict for f, _ in out] == [Verdict.OK] + [Verdict.CHANGED] * 3
    assert all("“Old”" in f.detail and "“New”" in f.detail for f, _ in out[1:])
    state = out[-1][1]
    accepted = replace(state, last_alive_title=state.last_title)  # what Store.accept_title does
    (final, _), (again, _) = run_days([("New", "论文"), ("New", "论文")], accepted)
    assert final.verdict is again.verdict is Verdict.OK


def test_a_title_change_ends_when_the_post_gives_the_new_title() -> None:
    out = run_days([("Old", "Old"), ("New", "论文"), ("New", "New"), ("New", "论文")])
    assert [f.verdict for f, _ in out] == [Verdict.OK, Verdict.CHANGED, Verdict.OK, Verdict.OK]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_title_change_is_kept_across_runs_until_accepted(
    tmp_path: Path,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    backend: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    if backend == "postgresql":
        monkeypatch.setenv("CRAWLER_DB", request.getfixturevalue("pg_url"))
    url = server.url("/titled/k")
    post = tmp_path / "p.md"
    post.write_text(f"# s\n\nThe [论文]({url}) says so.\n", encoding="utf-8")

    def verdict() -> tuple[str, str]:
        r = invoke(["check", str(post), "--format", "json", *FAST])
        assert r.exit_code == 0, r.output
        (rec,) = report(tmp_path)
        return rec["verdict"], rec["reason"]

    server.titles["k"] = "Old title"
    assert verdict() == ("ok", "alive")
    server.titles["k"] = "A new title"
    assert verdict() == ("changed", "title-changed-since-last-check")
    assert verdict() == ("changed", "title-changed-since-last-check")  # a week later, still
    r = invoke(["accept", url])
    assert r.exit_code == 0 and "A new title" in r.output, r.output
    assert verdict() == ("ok", "alive")
    r = invoke(["accept", server.url("/titled/never-checked")])
    assert r.exit_code == 1 and "no alive check" in r.output, r.output
