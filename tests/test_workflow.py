"""The scheduled check where it is scheduled: `.github/workflows/link-check.yml`'s own steps, run
in a fresh copy of the repository against the local test server, with a stand-in `gh`
(tests/fake_gh.py) and stand-ins for the cache and artifact actions; and `make run` /
`scripts/run` with the checker's exit codes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.actions_runner import JobRun, Runner
from tests.server import LocalServer

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = Path(".github/workflows/link-check.yml")
#: The virtualenv the suite runs in, made by `make test`: the workflow's commands reuse it
#: (VENV=...) instead of installing the package again in every copy.
VENV = Path(sys.prefix)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
OK_ENTRY = "{u}\n\n语音识别的最新进展\n"
FAST = {
    "CRAWLER_HOST_INTERVAL": "0",
    "CRAWLER_BACKOFF": "0",
    "CRAWLER_RETRIES": "1",
    "CRAWLER_TIMEOUT": "5",
}


def checkout(dest: Path) -> Path:
    """The repository's files as a checkout of this tree has them: the tracked ones and the new
    ones git does not ignore, with their contents, modes and times (no .venv, reports or
    history)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in names:
        if not raw:
            continue
        name = os.fsdecode(raw)
        src = ROOT / name
        if not src.is_file():
            continue  # deleted in the working tree
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)
    return dest


def makefile_stamp() -> str:
    """The install stamp's file name, as the Makefile names it."""
    found = re.search(r"^STAMP := \$\(VENV\)/(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert found, "the Makefile names no STAMP"
    return found.group(1)


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: no CRAWLER_* from the suite, the suite's virtualenv as VENV."""
    if not (VENV / makefile_stamp()).exists():
        message = f"{VENV} is not a virtualenv made by the Makefile (run 'make test')"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI runs `make test`: a skip here would hide the workflow tests
        pytest.skip(message)
    return {
        "PATH": SYSTEM_PATH,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "VENV": str(VENV),
        **FAST,
    }


def assert_venv_current(repo: Path, env: Mapping[str, str]) -> None:
    """The copy's `make install` must be a no-op on the suite's virtualenv: otherwise it would
    reinstall the package from the copy into it."""
    q = subprocess.run(["make", "-q", "install"], cwd=repo, env=dict(env), check=False)
    assert q.returncode == 0, f"{VENV} is older than pyproject.toml: run 'make test' first"


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


# ---------------------------------------------------------------------------------------------
# Stand-ins for the actions and for gh


class FakeCache:
    """actions/cache/restore and actions/cache/save: entries are immutable, as on GitHub (a save
    under an existing key is refused with a warning, and the step still succeeds)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.order: list[str] = []  # keys, oldest first
        self.refused: list[str] = []

    def restore(self, with_: dict[str, str], runner: Runner) -> dict[str, str]:
        key = with_["key"]
        prefixes = [p.strip() for p in with_.get("restore-keys", "").splitlines() if p.strip()]
        hit = key if key in self.order else None
        if hit is None:
            for prefix in prefixes:
                hit = next((k for k in reversed(self.order) if k.startswith(prefix)), None)
                if hit:
                    break
        if hit is not None:
            shutil.copytree(self.root / hit, runner.workdir / with_["path"], dirs_exist_ok=True)
        return {"cache-hit": str(hit == key).lower(), "cache-matched-key": hit or ""}

    def save(self, with_: dict[str, str], runner: Runner) -> None:
        key = with_["key"]
        if key in self.order:
            self.refused.append(key)  # "Unable to reserve cache with key …": a warning
            return
        src = runner.workdir / with_["path"]
        if not src.exists():
            raise RuntimeError(f"path {with_['path']!r} does not exist")
        shutil.copytree(src, self.root / key)
        self.order.append(key)


class FakeGh:
    """tests/fake_gh.py as `gh` on PATH; its state file and the log of its calls."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.state_file = root / "gh-state.json"
        self.log_file = root / "gh-log.jsonl"
        self.log_file.write_text("")
        gh = self.bin / "gh"
        gh.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "fake_gh.py"}" "$@"\n'
        )
        gh.chmod(0o755)

    def env(self) -> dict[str, str]:
        return {"FAKE_GH_STATE": str(self.state_file), "FAKE_GH_LOG": str(self.log_file)}

    def calls(self) -> list[list[str]]:
        lines = self.log_file.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    def issues(self) -> list[dict[str, Any]]:
        if not self.state_file.exists():
            return []
        return json.loads(self.state_file.read_text(encoding="utf-8"))["issues"]  # type: ignore[no-any-return]


class _GitHub:
    """What GitHub keeps between the runs of a job (the cache, the issues) and how a run is
    started: a new runner on a fresh copy of the repository."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cache = FakeCache(tmp / "cache")
        self.cache.root.mkdir()
        self.gh = FakeGh(tmp / "gh")
        self.repo = tmp / "none"
        self.inner: list[JobRun] = []  # the steps of the action used, each run

    def composite(self, path: Path, with_: dict[str, str], runner: Runner) -> dict[str, str]:
        """A composite action's steps (tests/actions_runner.py runs them); a failure raises."""
        job, outputs = runner.run_action(path, with_)
        self.inner.append(job)
        if job.result == "failure":
            raise RuntimeError(job.log())
        return outputs

    def run_job(
        self,
        day: Path,
        venv_of: Path,
        github: dict[str, str],
        uses: dict[str, Any],
        workflow: Path,
        job: str,
    ) -> JobRun:
        """`job` of `workflow` in self.repo with the fake gh on PATH; checkout and setup-python
        do nothing (the copy is the checkout; python3 is there), the cache is the shared one."""
        env = {**base_env(day / "home"), **self.gh.env()}
        env["PATH"] = f"{self.gh.bin}:{env['PATH']}"
        assert_venv_current(venv_of, env)
        noop = lambda with_, runner: None  # noqa: E731
        builtin = {
            "actions/checkout": noop,
            "actions/setup-python": noop,
            "actions/cache/restore": self.cache.restore,
            "actions/cache/save": self.cache.save,
        }
        runner = Runner(self.repo, day / "runner-temp", env, github, {**builtin, **uses})
        return runner.run_job(workflow, job)

    def report(self) -> dict[str, Any]:
        doc = json.loads((self.repo / "reports" / "report.json").read_text(encoding="utf-8"))
        return doc  # type: ignore[no-any-return]


class Actions(_GitHub):
    """A scheduled workflow's days: each in a fresh copy of the repository (a new runner),
    sharing only the cache and GitHub's issues, as on GitHub."""

    def __init__(self, tmp: Path, workflow: Path = WORKFLOW, job: str = "check") -> None:
        super().__init__(tmp)
        self.workflow = workflow
        self.job = job
        self.artifacts: dict[str, Path] = {}
        self.days = 0

    def own_action(self, with_: dict[str, str], runner: Runner) -> dict[str, str]:
        """`uses: ./`: action.yml's own steps."""
        return self.composite(runner.workdir / "action.yml", with_, runner)

    def upload(self, with_: dict[str, str], runner: Runner) -> None:
        name = with_["name"]
        if name in self.artifacts:
            raise RuntimeError(f"an artifact named {name!r} already exists")
        dest = self.tmp / "artifacts" / name
        src = runner.workdir / with_["path"]
        if src.exists():
            shutil.copytree(src, dest)
        self.artifacts[name] = dest

    def run(
        self,
        links: str | None,
        run_id: int,
        attempt: int = 1,
        files: Mapping[str, str] | None = None,
    ) -> JobRun:
        """One run of the job on a fresh copy whose links.md is `links` (None: no links.md),
        with `files` (path in the repository → text) written over the copy's."""
        self.days += 1
        day = self.tmp / f"run-{run_id}-{attempt}"
        self.repo = checkout(day / "repo")
        if links is None:
            (self.repo / "links.md").unlink()
        else:
            (self.repo / "links.md").write_text(links, encoding="utf-8")
        for name, text in (files or {}).items():
            (self.repo / name).parent.mkdir(parents=True, exist_ok=True)
            (self.repo / name).write_text(text, encoding="utf-8")
        github = {
            "run_id": str(run_id),
            "run_attempt": str(attempt),
            "repository": "owner/blog",
            "server_url": "https://github.com",
            "token": "fake-token",
            "event_name": "schedule",
        }
        uses = {"actions/upload-artifact": self.upload, "./": self.own_action}
        return self.run_job(day, self.repo, github, uses, self.repo / self.workflow, self.job)

    def report_md(self) -> str:
        return (self.repo / "reports" / "report.md").read_text(encoding="utf-8")


def issue_calls(gh: FakeGh) -> list[list[str]]:
    return [c for c in gh.calls() if c[:1] == ["issue"] and c[1] != "list"]


# ---------------------------------------------------------------------------------------------
# The workflow


def test_a_week_of_scheduled_checks(tmp_path: Path, server: LocalServer) -> None:
    """Broken links open the issue, a second broken day edits it, a day with links in doubt
    keeps it open, a network-down day and a tool error fail the job and leave it alone, an
    all-well day closes it."""
    gha = Actions(tmp_path)
    ok = OK_ENTRY.format(u=server.url("/page/article"))
    broken = ok + f"\n{server.url('/status/404')}\n\n一篇消失的文章\n"

    day1 = gha.run(broken, 101)
    assert day1.step("check").outputs == {"code": "3"}, day1.log()
    assert day1.result == "success", day1.log()
    [issue] = gha.gh.issues()
    assert issue["state"] == "open" and issue["labels"] == ["link-check"]
    assert issue["body"] == gha.report_md()
    assert "一篇消失的文章" in issue["body"]
    assert [c[:2] for c in issue_calls(gha.gh)] == [["issue", "create"]]
    assert gha.report()["run_id"] == 1
    assert "link-report-101-1" in gha.artifacts

    day2 = gha.run(broken, 102)
    assert day2.step("check").outputs == {"code": "3"}, day2.log()
    assert gha.report()["run_id"] == 2  # the history came back from the cache
    [issue] = gha.gh.issues()
    assert issue["edits"] == 1 and issue["state"] == "open"
    assert issue["body"] == gha.report_md()
    assert [c[:3] for c in issue_calls(gha.gh)][-1] == ["issue", "edit", "1"]

    # The dead link is gone from the post, another one fails with a 500 (error: in doubt, not
    # dead, so exit 0): the issue stays open with the new report until all are well.
    doubt = ok + f"\n{server.url('/status/500')}\n\n服务器错误\n"
    day_doubt = gha.run(doubt, 103)
    assert day_doubt.step("check").outputs == {"code": "0"}, day_doubt.log()
    assert day_doubt.result == "success", day_doubt.log()
    [issue] = gha.gh.issues()
    assert issue["state"] == "open" and issue["edits"] == 2
    assert issue["body"] == gha.report_md() and "服务器错误" in issue["body"]

    calls = len(gha.gh.calls())
    down = "".join(OK_ENTRY.format(u=f"http://127.0.0.1:{closed_port()}/a") for _ in range(2))
    day3 = gha.run(down, 104)
    assert day3.step("check").outputs == {"code": "4"}, day3.log()
    assert day3.result == "failure"
    assert gha.inner[-1].step("Open, update or close the broken-link issue").outcome == "skipped"
    assert day3.step("Fail when the tool failed or the network was down").outcome == "failure"
    assert len(gha.gh.calls()) == calls  # gh not even asked
    assert gha.gh.issues() == [issue]

    day4 = gha.run(None, 105)  # links.md gone: the tool fails
    assert day4.step("check").outputs == {"code": "1"}, day4.log()
    assert day4.result == "failure"
    assert len(gha.gh.calls()) == calls
    assert gha.gh.issues() == [issue]

    day5 = gha.run(ok, 106)
    assert day5.step("check").outputs == {"code": "0"}, day5.log()
    assert day5.result == "success", day5.log()
    [closed] = gha.gh.issues()
    assert closed["state"] == "closed"
    assert "https://github.com/owner/blog/actions/runs/106" in closed["comments"][0]
    # every day's history was kept, the network-down day's too (the tool error started no run)
    assert gha.report()["run_id"] == 5
    assert gha.cache.refused == []


def test_a_rerun_keeps_its_history(tmp_path: Path, server: LocalServer) -> None:
    """Re-running a run (same run_id, next attempt) saves its history under a key of its own:
    cache entries cannot be overwritten, so the next day builds on the re-run."""
    gha = Actions(tmp_path)
    ok = OK_ENTRY.format(u=server.url("/page/article"))
    gha.run(ok, 300)
    rerun = gha.run(ok, 300, attempt=2)
    assert rerun.result == "success", rerun.log()
    assert gha.report()["run_id"] == 2
    assert gha.cache.refused == []
    gha.run(ok, 301)
    assert gha.report()["run_id"] == 3


def test_a_long_report_is_cut_at_a_character_boundary(tmp_path: Path, server: LocalServer) -> None:
    """An issue body holds 65,536 characters: a longer report.md is cut at a line, stays valid
    UTF-8, and says where the whole report is."""
    gha = Actions(tmp_path)
    title = "一篇消失的文章，" * 25  # 200 characters of three UTF-8 bytes each
    links = "".join(f"\n{server.url(f'/status/404?n={i}')}\n\n{title}{i}\n" for i in range(260))
    job = gha.run(links, 400)
    assert job.step("check").outputs == {"code": "3"}, job.log()
    assert job.result == "success", job.log()
    report = gha.report_md()
    assert len(report) > 65536
    [issue] = gha.gh.issues()
    body = issue["body"]
    assert len(body) <= 65536
    head, note = body.split("\n\n---\n**Cut here**")
    assert report.startswith(head + "\n")
    assert f"{len(report):,} characters" in note
    assert "https://github.com/owner/blog/actions/runs/400" in note


def test_the_daily_run_installs_no_test_extra(tmp_path: Path) -> None:
    """The workflow runs the repository's own action, which installs with `make install`: that
    leaves out the test extra."""
    doc = yaml.safe_load((ROOT / WORKFLOW).read_text(encoding="utf-8"))
    assert [s["uses"] for s in doc["jobs"]["check"]["steps"] if s.get("id") == "check"] == ["./"]
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    runs = [s.get("run", "") for s in action["runs"]["steps"]]
    runs += [s.get("run", "") for s in doc["jobs"]["check"]["steps"]]
    assert any(" install VENV=" in r and r.lstrip().startswith("venv=") for r in runs)
    assert not any("make test" in r or "[test]" in r for r in runs)
    env = {"PATH": SYSTEM_PATH, "VENV": str(tmp_path / "venv")}
    plan = subprocess.run(
        ["make", "-n", "install"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "pip install -q -e ." in plan and "[test]" not in plan
    plan = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "-e '.[test]'" in plan


def test_workflow_settings(tmp_path: Path) -> None:
    """Credentials are not left in the checkout, pip downloads are cached, and the history's
    cache key and the artifact's name change with every attempt."""
    doc = yaml.safe_load((ROOT / WORKFLOW).read_text(encoding="utf-8"))
    steps = doc["jobs"]["check"]["steps"]
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    steps += action["runs"]["steps"]  # the workflow's check is the repository's own action
    by_action = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    assert by_action["actions/checkout"]["with"]["persist-credentials"] is False
    setup = by_action["actions/setup-python"]["with"]
    assert setup["cache"] == "pip"
    assert setup["cache-dependency-path"] == "${{ github.action_path }}/pyproject.toml"
    for action in ("actions/cache/restore", "actions/cache/save"):
        assert "github.run_attempt" in by_action[action]["with"]["key"]
    assert "github.run_attempt" in by_action["actions/upload-artifact"]["with"]["name"]


def test_zizmor_finds_nothing_above_low() -> None:
    zizmor = shutil.which("zizmor", path=str(VENV / "bin")) or shutil.which("zizmor")
    if zizmor is None:
        pytest.skip("zizmor is not installed (it is in the test extra)")
    proc = subprocess.run(
        [zizmor, "--offline", "--min-severity", "medium", "--format", "json", str(ROOT / WORKFLOW)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(proc.stdout)
    assert findings == [], proc.stdout
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------------
# make run and scripts/run


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    r = checkout(tmp_path / "repo")
    env = base_env(tmp_path / "home")
    assert_venv_current(r, env)
    return r, env


@pytest.mark.parametrize("case", ["ok", "broken", "down", "missing"])
def test_scripts_run_exits_with_the_checkers_code(
    repo: tuple[Path, dict[str, str]], server: LocalServer, case: str
) -> None:
    """scripts/run (what the workflow calls) passes 0, 3, 4 and 1 through; make run, which
    cannot exit with anything but 0 or 2, names the code in its error line."""
    path, env = repo
    ok = OK_ENTRY.format(u=server.url("/page/article"))
    links = {
        "ok": ok,
        "broken": ok + f"\n{server.url('/status/404')}\n\nGone\n",
        "down": OK_ENTRY.format(u=f"http://127.0.0.1:{closed_port()}/a"),
        "missing": None,
    }[case]
    code = {"ok": 0, "broken": 3, "down": 4, "missing": 1}[case]
    if links is None:
        (path / "links.md").unlink()
    else:
        (path / "links.md").write_text(links, encoding="utf-8")
    script = subprocess.run(
        ["scripts/run", "--quiet"], cwd=path, env=env, capture_output=True, text=True
    )
    assert script.returncode == code, script.stderr
    if code != 1:
        assert (path / "reports" / "report.md").exists()
    made = subprocess.run(
        ["make", "run", "ARGS=--quiet"], cwd=path, env=env, capture_output=True, text=True
    )
    if code == 0:
        assert made.returncode == 0, made.stderr
    else:
        assert made.returncode == 2
        assert f"] Error {code}" in made.stderr


def test_sigterm_to_make_run_reaches_the_checker(
    repo: tuple[Path, dict[str, str]], server: LocalServer
) -> None:
    """`timeout 30m make run` sends SIGTERM to make; make passes it to its recipe, which is the
    checker itself (scripts/run execs it): the run is closed as interrupted, not orphaned."""
    path, env = repo
    links = "".join(OK_ENTRY.format(u=server.url(f"/held?s=30&n={i}")) for i in range(4))
    (path / "links.md").write_text(links, encoding="utf-8")
    proc = subprocess.Popen(
        ["make", "run", "ARGS=--quiet"],
        cwd=path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120  # a bound on waiting for the server, not on speed
        while not any(k.startswith("/held") for k in list(server.hits)) and proc.poll() is None:
            assert time.monotonic() < deadline, "the check never reached the server"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert b"Error 130" in err, err
    db = sqlite3.connect(path / ".crawler" / "history.sqlite")
    try:
        [(status,)] = db.execute("SELECT status FROM runs").fetchall()
    finally:
        db.close()
    assert status == "interrupted"


# ---------------------------------------------------------------------------------------------
# action.yml: the composite action other repositories use as `uses: OWNER/REPO@v1`

ACTION_USER_WORKFLOW = """
on: push
jobs:
  links:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: links
        uses: owner/link-crawler@v1
        with:
          args: "docs --root-dir . --include-fragments --retries 0"
          issue: "true"
          fail: "FAIL"
      - name: After
        if: always()
        env:
          CODE: ${{ steps.links.outputs.code }}
        run: echo "code was $CODE"
"""


class ActionUser(_GitHub):
    """Another repository's job that uses the action, one run a day, sharing the cache and the
    issues between runs as GitHub does."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.action = checkout(tmp / "action")  # the action's own checkout (github.action_path)

    def use(self, with_: dict[str, str], runner: Runner) -> dict[str, str]:
        return self.composite(self.action / "action.yml", with_, runner)

    def run(self, docs: dict[str, str], run_id: int, fail: bool) -> JobRun:
        day = self.tmp / f"run-{run_id}"
        self.repo = day / "repo"
        for name, text in docs.items():
            (self.repo / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
            (self.repo / "docs" / name).write_text(text, encoding="utf-8")
        workflow = self.repo / ".github" / "workflows" / "links.yml"
        workflow.parent.mkdir(parents=True)
        workflow.write_text(ACTION_USER_WORKFLOW.replace("FAIL", str(fail).lower()))
        github = {"run_id": str(run_id), "run_attempt": "1", "repository": "someone/docs",
                  "server_url": "https://github.com", "token": "fake-token"}  # fmt: skip
        uses = {"owner/link-crawler": self.use}
        return self.run_job(day, self.action, github, uses, workflow, "links")


def test_the_action_in_another_repository(tmp_path: Path, server: LocalServer) -> None:
    """The action checks another repository's docs (web, local files, fragments), annotates the
    broken links, keeps the history in the cache, fails the job unless `fail: false`, and opens,
    updates and closes one issue."""
    user = ActionUser(tmp_path)
    good = {
        "guide.md": "# Guide\n\n## Set up\n",
        "index.md": f"[g](guide.md#set-up)\n\n{server.url('/page/article')}\n",
    }
    broken = {
        **good,
        "index.md": good["index.md"] + f"\n[x](missing.md) [f](guide.md#nope)\n\n"
        f"{server.url('/status/404')}\n",
    }

    day1 = user.run(broken, 1, fail=False)
    assert day1.result == "success", day1.log() + user.inner[-1].log()
    assert day1.step("links").outputs == {"code": "3"}
    assert day1.step("After").stdout == "code was 3\n"
    inner = user.inner[-1]
    assert [s.outcome for s in inner.steps] == [
        "success", "success", "success", "success", "success", "success", "skipped"
    ]  # fmt: skip
    annotations = [a for a in inner.step("check").stdout.splitlines() if a.startswith("::")]
    url_404 = server.url("/status/404")
    assert (
        annotations
        == [
            "::error file=docs/index.md,line=5,title=dead link (missing-file)::"
            "missing.md: no such file: docs/missing.md",
            "::warning file=docs/index.md,line=5,title=changed link (fragment-missing)::"
            "guide.md#nope: no anchor #nope in docs/guide.md",
        ]
        + annotations[2:]
    )
    assert annotations[2].startswith(
        f"::error file=docs/index.md,line=7,title=dead link (http-404)::{url_404}: "
    )
    [issue] = user.gh.issues()
    assert issue["title"] == "Broken links" and issue["state"] == "open"
    assert "missing.md" in issue["body"]
    assert user.report()["run_id"] == 1

    day2 = user.run(broken, 2, fail=True)
    assert day2.result == "failure"  # broken links fail the job by default
    assert "crawler exited with 3" in user.inner[-1].step("Fail when the check did not pass").stdout
    assert user.report()["run_id"] == 2  # the history came back from the cache
    [issue] = user.gh.issues()
    assert issue["edits"] == 1

    day3 = user.run(good, 3, fail=True)
    assert day3.result == "success", day3.log() + user.inner[-1].log()
    assert day3.step("links").outputs == {"code": "0"}
    [closed] = user.gh.issues()
    assert closed["state"] == "closed"
    assert "https://github.com/someone/docs/actions/runs/3" in closed["comments"][0]
    assert user.cache.order == ["link-history-1-1", "link-history-2-1", "link-history-3-1"]


def test_the_action_refuses_unknown_inputs(tmp_path: Path) -> None:
    user = ActionUser(tmp_path)
    runner = Runner(tmp_path, tmp_path / "t", {}, {"token": "t"}, {})
    with pytest.raises(RuntimeError, match="unexpected inputs"):
        runner.run_action(user.action / "action.yml", {"budgett": "2m"})


def test_zizmor_on_the_action() -> None:
    zizmor = shutil.which("zizmor", path=str(VENV / "bin")) or shutil.which("zizmor")
    if zizmor is None:
        pytest.skip("zizmor is not installed (it is in the test extra)")
    proc = subprocess.run(
        [
            zizmor,
            "--offline",
            "--min-severity",
            "medium",
            "--format",
            "json",
            str(ROOT / "action.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(proc.stdout) == [], proc.stdout


def test_the_action_passes_fail_on(tmp_path: Path) -> None:
    """`fail-on: changed` makes a missing anchor fail the run; by default it does not."""
    user = ActionUser(tmp_path)
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "a.md").write_text("# A\n\n[self](#nowhere)\n", encoding="utf-8")
    env = base_env(tmp_path / "home")
    assert_venv_current(user.action, env)
    noop = lambda with_, runner: None  # noqa: E731
    github = {"run_id": "1", "run_attempt": "1", "repository": "o/r", "token": "t"}
    codes = []
    for n, extra in enumerate(({}, {"fail-on": "dead,changed"})):
        runner = Runner(
            repo,
            tmp_path / f"temp-{n}",
            env,
            github,
            {
                "actions/setup-python": noop,
                "actions/cache/restore": noop,
                "actions/cache/save": noop,
            },
        )
        with_ = {"args": "docs --offline --include-fragments", "fail": "false", **extra}
        job, outputs = runner.run_action(user.action / "action.yml", with_)
        assert job.result == "success", job.log()
        codes.append(outputs["code"])
    assert codes == ["0", "3"]
