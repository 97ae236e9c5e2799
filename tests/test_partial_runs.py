"""Runs that did not finish: stopped by Ctrl-C, SIGTERM or a time limit, or still going.
Their reports say so in every format and hold what was checked (issue 13 #5, #6)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from crawler.config import FetchSettings
from crawler.pipeline import RunStopped, check_links
from crawler.types import Check, Link
from tests.procs import running_cli, wait_for_stopping
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "60"]
#: How long the tests wait for a process to get somewhere before calling it hung: a guard
#: against hanging forever, never a measure of speed.
PATIENCE = 120.0


def post(tmp_path: Path, server: LocalServer, held: int = 2) -> Path:
    """One quick link, then links the server holds for a minute."""
    text = f"{server.url('/page/article')}\n\n语音识别的最新进展\n\n" + "".join(
        f"{server.url(f'/held?s=60&n={i}')}\n\nHeld {i}\n\n" for i in range(held)
    )
    p = tmp_path / "post.md"
    p.write_text(text, encoding="utf-8")
    return p


def stored_checks(db: Path) -> int:
    """Checks the history holds so far (0 while it is being created)."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT count(*) FROM checks").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def wait_for(what: str, cond: Any, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not cond():
        assert proc.poll() is None, f"the check ended before {what}: {proc.stderr}"
        assert time.monotonic() < deadline, f"no {what} after {PATIENCE} s"
        time.sleep(0.05)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def assert_partial(report_dir: Path, status: str, url: str) -> None:
    doc = json.loads(read(report_dir / "report.json"))
    assert doc["status"] == status
    assert [r["url"] for r in doc["links"]] == [url]
    md, html = read(report_dir / "report.md"), read(report_dir / "report.html")
    words = "Partial run" if status == "interrupted" else "has not finished"
    assert words in md and words in html
    assert "All links are alive" not in md


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_check_writes_what_it_checked(
    tmp_path: Path, server: LocalServer, history_db: Path, sig: signal.Signals
) -> None:
    """SIGTERM (a time limit: timeout(1), the Actions job's) or Ctrl-C used to leave no report."""
    p = post(tmp_path, server)
    out = tmp_path / "r"
    args = [sys.executable, "-m", "crawler", "-v", "check", str(p), "--report-dir", str(out), *FAST]
    with running_cli(args) as proc:
        wait_for("stored check", lambda: stored_checks(history_db) >= 1, proc)
        proc.send_signal(sig)  # the held requests would be waited for (up to --timeout) ...
        wait_for_stopping(proc)
        proc.send_signal(sig)  # ... but a second signal stops at once
        _, err = proc.communicate(timeout=PATIENCE)
        assert proc.returncode == 130, err
    assert_partial(out, "interrupted", server.url("/page/article"))
    assert b"partial" in err.lower()
    # ... and so does `crawler report` of that run afterwards (it said "complete").
    r = subprocess.run(
        [sys.executable, "-m", "crawler", "report", "--report-dir", str(tmp_path / "again")],
        capture_output=True,
        timeout=PATIENCE,
    )
    assert r.returncode == 0, r.stderr
    assert_partial(tmp_path / "again", "interrupted", server.url("/page/article"))
    assert b"interrupted" in r.stdout


def test_a_report_during_a_check_says_the_run_is_not_finished(
    tmp_path: Path, server: LocalServer, history_db: Path
) -> None:
    """`crawler report` while a check runs wrote a report that looked complete."""
    p = post(tmp_path, server)
    args = [sys.executable, "-m", "crawler", "check", str(p), "--report-dir", str(tmp_path / "r")]
    with running_cli([*args, *FAST]) as proc:
        wait_for("stored check", lambda: stored_checks(history_db) >= 1, proc)
        r = subprocess.run(
            [sys.executable, "-m", "crawler", "report", "--report-dir", str(tmp_path / "now")],
            capture_output=True,
            timeout=PATIENCE,
        )
        assert r.returncode == 0, r.stderr
        assert proc.poll() is None  # still going
    assert_partial(tmp_path / "now", "running", server.url("/page/article"))


@pytest.mark.anyio
async def test_a_cancelled_run_without_history_keeps_its_checks(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a history the checks exist only in memory: cancelling the run hands them over."""
    caplog.set_level(logging.INFO, logger="crawler.engine")
    links = [
        Link(server.url("/page/article"), 1, "语音识别的最新进展", source="p.md"),
        Link(server.url("/held?s=60&n=mem"), 3, "Held", source="p.md"),
    ]
    seen: list[Check] = []
    settings = FetchSettings(host_interval=0, retries=0, timeout=60)
    task = asyncio.ensure_future(
        check_links(links, settings, sources=["p.md"], progress=seen.append)
    )
    deadline = time.monotonic() + PATIENCE
    while not seen:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    task.cancel()  # the held request would be waited for (up to the timeout) ...
    while not any("stopping: finishing" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    task.cancel()  # ... but a second cancellation stops at once
    with pytest.raises(RunStopped) as stopped:
        await task
    run = stopped.value.run
    assert run.status == "interrupted"
    assert [c.url for c in run.checks] == [links[0].url]
