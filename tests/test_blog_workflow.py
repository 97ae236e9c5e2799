"""The whole blog's schedule where it is scheduled: `.github/workflows/blog-check.yml`'s own steps
and the action's, run as tests/test_workflow.py runs the daily one (a fresh copy of the
repository a day, a stand-in cache and `gh`, the local test server)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from crawler.pace import START_LIMIT
from tests.server import LocalServer
from tests.test_workflow import ROOT, VENV, Actions, issue_calls

BLOG = Path(".github/workflows/blog-check.yml")


def posts(server: LocalServer, broken: bool) -> dict[str, str]:
    """Three posts of the blog; with `broken`, two of them have a dead link."""
    ok = server.url("/page/article")
    a = f"# A\n\n- {ok}\n"
    b = f"# B\n\n## Refs\n\n- {server.url('/titled/b')}\n"
    c = f"# C\n\n- {server.url('/page/plain')}\n"
    if broken:
        a += f"- {server.url('/status/404')}\n"
        b += f"- {server.url('/status/410')}\n"
    return {"_posts/2020-01-01-a.md": a, "_posts/2021-05-05-b.md": b, "_posts/2022-02-02-c.md": c}


def test_the_blog_schedule_keeps_one_issue_grouped_by_post(
    tmp_path: Path, server: LocalServer
) -> None:
    """Day 1 opens one issue for the whole blog, its broken links grouped by post; day 2 has
    nothing due: no request, the dead links' verdicts stand (exit 3) and the issue is kept;
    once the posts are fixed the issue is closed."""
    gha = Actions(tmp_path, workflow=BLOG)
    day1 = gha.run(None, 201, files=posts(server, broken=True))
    assert day1.result == "success", day1.log()
    assert day1.step("check").outputs == {"code": "3"}, day1.log() + gha.inner[-1].log()
    [issue] = gha.gh.issues()
    assert issue["title"] == "Broken links in the blog"
    assert issue["labels"] == ["blog-link-check"] and issue["state"] == "open"
    body = issue["body"]
    assert body == (gha.repo / "reports" / "issue.md").read_text(encoding="utf-8")
    assert body.startswith("# Broken links: 2 in 2 of 3 posts")
    a = body.index("## `_posts/2020-01-01-a.md` (1 dead, 0 in doubt)")
    b = body.index("## `_posts/2021-05-05-b.md` (1 dead, 0 in doubt)")
    assert body.index("/status/404", a) < b < body.index("/status/410", b)
    assert "2022-02-02-c.md" not in body
    assert gha.cache.order == ["blog-history-201-1"]  # its own history, not link-history-
    assert "blog-link-report-201-1" in gha.artifacts

    hits = sum(server.hits.values())
    day2 = gha.run(None, 202, files=posts(server, broken=True))
    assert day2.step("check").outputs == {"code": "3"}, day2.log() + gha.inner[-1].log()
    assert sum(server.hits.values()) == hits  # nothing was due: not one request
    assert "nothing is due" in gha.inner[-1].step("check").stdout
    doc = json.loads((gha.repo / "reports" / "report.json").read_text(encoding="utf-8"))
    assert doc["run_id"] == 2 and len(doc["links"]) == 5
    assert not any(x["checked_this_run"] for x in doc["links"])
    [issue] = gha.gh.issues()
    assert issue["state"] == "open" and issue["edits"] == 1
    assert [c[:2] for c in issue_calls(gha.gh)] == [["issue", "create"], ["issue", "edit"]]

    day3 = gha.run(None, 203, files=posts(server, broken=False))
    assert day3.step("check").outputs == {"code": "0"}, day3.log() + gha.inner[-1].log()
    [closed] = gha.gh.issues()
    assert closed["state"] == "closed"
    assert gha.cache.order == ["blog-history-201-1", "blog-history-202-1", "blog-history-203-1"]


def test_the_blog_schedule_works_through_the_posts_one_budget_a_day(
    tmp_path: Path, server: LocalServer
) -> None:
    """With a budget too small for the blog, each day checks some links and reports every one;
    the next days take the rest, never-checked first, each link once.

    Each link answers only after longer than the budget (3.5 s for 3 s, within the stand-in
    runner's CRAWLER_TIMEOUT of 5 s), so an answer always comes after the budget is spent,
    however slow the machine: a day checks what it claimed
    before its first answer (its host's first requests in flight, at most the pace's start)
    and claims nothing after. How much of the blog fits in a day does not depend on the
    machine's load; a day whose start (the history read, the run planned, the client made)
    took its whole budget checks none, and the next days go on."""
    gha = Actions(tmp_path, workflow=BLOG)
    text = (ROOT / BLOG).read_text(encoding="utf-8")
    assert "budget: 20m" in text
    files = {str(BLOG): text.replace("budget: 20m", "budget: 3s")}
    slow = [f"/slow?s=3.5&n={i}" for i in range(8)]
    files["_posts/2023-03-03-slow.md"] = "".join(f"- {server.url(p)}\n" for p in slow)
    checked: list[int] = []
    for day in range(3 * len(slow)):  # at least four days; more if some claimed nothing
        run = gha.run(None, 300 + day, files=files)
        assert run.step("check").outputs == {"code": "0"}, run.log() + gha.inner[-1].log()
        doc = json.loads((gha.repo / "reports" / "report.json").read_text(encoding="utf-8"))
        assert len(doc["links"]) == len(slow)  # every link, checked or not
        checked.append(sum(x["checked_this_run"] for x in doc["links"]))
        if not any(x["reason"] == "unchecked" for x in doc["links"]):
            break
    assert max(checked) <= START_LIMIT, checked  # nothing claimed once the budget was spent
    assert sum(checked) == len(slow), checked
    assert {p: server.hits[p] for p in slow} == {p: 1 for p in slow}
    assert gha.gh.issues() == []  # nothing broken: no issue


def test_the_blog_workflow_settings() -> None:
    """The blog's check is the repository's own action with a budget, its own history key and
    issue label, an issue body grouped by post, and a job timeout above the budget."""
    doc = yaml.safe_load((ROOT / BLOG).read_text(encoding="utf-8"))
    job = doc["jobs"]["check"]
    [check] = [s for s in job["steps"] if s.get("id") == "check"]
    assert check["uses"] == "./"
    w = check["with"]
    assert w["budget"] == "20m" and w["history-key"] == "blog-history"
    assert w["issue-label"] == "blog-link-check" and "issue" in w["args"].split("--format")[1]
    assert job["timeout-minutes"] >= 30
    assert doc["permissions"] == {}
    assert job["permissions"] == {"contents": "read", "issues": "write"}


def test_zizmor_finds_nothing_in_the_blog_workflow() -> None:
    zizmor = shutil.which("zizmor", path=str(VENV / "bin")) or shutil.which("zizmor")
    if zizmor is None:
        pytest.skip("zizmor is not installed (it is in the test extra)")
    proc = subprocess.run(
        [zizmor, "--offline", "--min-severity", "medium", "--format", "json", str(ROOT / BLOG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(proc.stdout) == [], proc.stdout
    assert proc.returncode == 0, proc.stderr


def test_issue_md_groups_the_broken_links_by_post_worst_first() -> None:
    """issue.md: posts with the most dead links first; in a post dead before error, by line;
    a verdict from an earlier run says when it was checked; fetched and listed text escaped."""
    from dataclasses import replace
    from datetime import timedelta

    from crawler.report import render
    from crawler.types import Check, Verdict
    from tests.factories import T0, make_check, make_run, with_history

    def at(post: str, line: int, verdict: Verdict, listed: str = "A title") -> Check:
        c = make_check(f"https://e.example/{post}/{line}", verdict, line=line, listed=listed)
        return replace(c, link=replace(c.link, source=post))

    err = with_history(at("a.md", 3, Verdict.ERROR), Verdict.ERROR)
    old = replace(at("b.md", 9, Verdict.DEAD), cached=True, checked_at=T0 - timedelta(days=3))
    run = make_run(
        at("a.md", 1, Verdict.OK),
        err,
        at("a.md", 7, Verdict.DEAD, listed="<b>|x|</b>"),
        at("b.md", 2, Verdict.DEAD),
        old,
        at("c.md", 1, Verdict.BLOCKED),
    )
    run = replace(run, sources=("a.md", "b.md", "c.md"))
    text = render(run, "issue")
    assert text.startswith("# Broken links: 4 in 2 of 3 posts\n")
    b = text.index("## `b.md` (2 dead, 0 in doubt)")
    a = text.index("## `a.md` (1 dead, 1 in doubt)")
    assert b < a and "## `c.md`" not in text
    rows = [ln for ln in text[a:].splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert [r.split(" | ")[1] for r in rows] == ["dead", "error (2 failing runs)"]
    assert "\\<b\\>\\|x\\|\\</b\\>" in rows[0]
    assert "| 2026-11-21 |" in text  # the dead link of b.md that stands from 3 days before
    assert "1 verdict is from an earlier run" in text
