"""What `crawler check` prints: file names, day-to-day marks and what to do, on real runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from crawler.report import markdown
from crawler.terminal import link_line, summary_line, summary_lines
from crawler.types import Link, Verdict
from tests.factories import make_check, make_run, with_history
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "5"]


def test_every_link_line_names_its_file_and_line() -> None:
    a = make_check("https://a.example/", Verdict.DEAD, line=3, reason="http-404")
    b = make_check("https://b.example/", Verdict.DEAD, line=7, reason="http-404")
    b = replace(b, link=replace(b.link, source="blog/b.md"))
    lines = summary_lines(make_run(a, b), [])
    assert any("post.md:3  https://a.example/" in line for line in lines)
    assert any("blog/b.md:7  https://b.example/" in line for line in lines)
    stdin = replace(a, link=Link(url=a.url, line=2, source="-"))
    assert "<stdin>:2" in link_line(stdin)


def test_newly_broken_and_recovered_are_marked() -> None:
    broken = with_history(make_check(verdict=Verdict.DEAD, detail="gone"), Verdict.OK)
    assert link_line(broken).endswith("(newly broken, was ok)")
    still = with_history(make_check(verdict=Verdict.DEAD, detail="gone"), Verdict.DEAD)
    assert "newly broken" not in link_line(still)
    back = with_history(make_check("https://b.example/", Verdict.OK), Verdict.ERROR)
    lines = summary_lines(make_run(broken, back), [])
    recovered = [line for line in lines if "https://b.example/" in line]
    assert len(recovered) == 1 and recovered[0].lstrip().startswith("recovered")
    assert recovered[0].endswith("(recovered, was error)")


def test_each_group_says_what_to_do() -> None:
    dead = make_check("https://d.example/", Verdict.DEAD, line=1)
    blocked = make_check("https://www.zhihu.com/q/1", Verdict.BLOCKED, line=2)
    changed = make_check("https://c.example/", Verdict.CHANGED, line=3)
    error = with_history(make_check("https://e.example/", Verdict.ERROR, line=4), Verdict.ERROR)
    lines = summary_lines(make_run(dead, blocked, changed, error), [], confirm_runs=3)
    text = "\n".join(lines)
    assert "`crawler enrich post.md --mark-dead`" in text and "`--archive`" in text
    assert '[hosts."www.zhihu.com"]' in text and "cookies or headers" in text
    assert "`crawler enrich post.md --update-titles`" in text
    error_line = next(line for line in lines if "https://e.example/" in line)
    assert error_line.endswith("(2 of 3 failing runs before it counts as dead)")
    # Each hint follows its group.
    arrows = [i for i, line in enumerate(lines) if line.startswith("  → ")]
    assert len(arrows) == 4
    report = markdown.render(make_run(dead, blocked, changed, error))
    assert "--mark-dead" in report and "--update-titles" in report
    assert '[hosts."www.zhihu.com"]' in report and "`--confirm-runs`" in report


def test_summary_line_counts_cached_results_and_has_no_dangling_colon() -> None:
    a = replace(make_check("https://a.example/"), cached=True)
    b = make_check("https://b.example/")
    assert summary_line(make_run(a, b)).endswith("2 ok (1 reused from the history)")
    empty = summary_line(make_run())
    assert empty == "0 references, 0 URLs in 0.0 s"


def test_two_files_and_day_two_in_the_terminal(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.md").write_text(
        f"{server.url('/status/404')}\n\nGone\n\n{server.url('/flaky/term?fail=1')}\n\nrecovered\n",
        encoding="utf-8",
    )
    (tmp_path / "b.md").write_text(f"# B\n\n{server.url('/status/410')}\n\nAlso gone\n")
    runner = CliRunner()
    day1 = runner.invoke(cli, ["check", "a.md", "b.md", "--format", "json", *FAST])
    assert day1.exit_code == 3, day1.output
    out = day1.output
    assert "a.md:1  " in out and "b.md:3  " in out and "a.md:5  " in out
    assert "(1 of 3 failing runs before it counts as dead)" in out
    assert "newly broken" not in out and "(recovered" not in out  # nothing to compare with
    day2 = runner.invoke(cli, ["check", "a.md", "b.md", "--format", "json", *FAST])
    recovered = [line for line in day2.output.splitlines() if "/flaky/term" in line]
    assert len(recovered) == 1 and recovered[0].startswith("  recovered a.md:5  ")
    assert recovered[0].endswith("(recovered, was error)")
    assert "--mark-dead" in day2.output


def test_error_count_follows_confirm_runs_flag() -> None:
    error = make_check("https://e.example/", Verdict.ERROR)
    error = with_history(error, Verdict.ERROR, Verdict.ERROR, every=timedelta(hours=1))
    assert link_line(error, confirm_runs=5).endswith(
        "(3 of 5 failing runs before it counts as dead)"
    )
