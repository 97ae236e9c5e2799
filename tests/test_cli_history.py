"""History through the CLI: report and history commands, overlap, and interrupted runs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from crawler.store import Store
from tests.procs import running_cli, wait_for_stopping, wait_while_running
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "5"]


def post_with(tmp_path: Path, urls: list[str]) -> Path:
    p = tmp_path / "post.md"
    p.write_text("\n\n".join(f"{u}\n\nPlain page" for u in urls) + "\n", encoding="utf-8")
    return p


def test_report_and_history_commands(tmp_path: Path, server: LocalServer, history_db: Path) -> None:
    post = post_with(tmp_path, [server.url("/page/plain"), server.url("/status/404")])
    runner = CliRunner()
    for _ in range(2):
        r = runner.invoke(cli, ["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
        assert r.exit_code == 3, r.output
    r = runner.invoke(cli, ["report", "--run", "1", "--report-dir", str(tmp_path / "old")])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "old" / "report.json").read_text(encoding="utf-8"))
    assert [x["verdict"] for x in doc["links"]] == ["ok", "dead"]
    latest = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert latest["links"][1]["previous_verdict"] == "dead"
    r = runner.invoke(cli, ["history", server.url("/status/404")])
    assert r.exit_code == 0
    lines = r.output.strip().splitlines()
    assert len(lines) == 2 and all("dead" in line and "http-404" in line for line in lines)
    r = runner.invoke(cli, ["history", "https://never.example/"])
    assert r.exit_code == 1 and "never been checked" in r.output


def test_report_without_history_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["report", "--db", str(tmp_path / "none.sqlite")])
    assert r.exit_code == 1
    assert "no history" in r.output


def test_overlapping_run_is_refused(tmp_path: Path, server: LocalServer, history_db: Path) -> None:
    post = post_with(tmp_path, [server.url("/page/plain")])
    holder = Store.open(history_db)
    holder.lock()
    try:
        r = CliRunner().invoke(
            cli, ["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST]
        )
    finally:
        holder.close()
    assert r.exit_code == 1
    assert "another check is running" in r.output


def _args(tmp_path: Path, server: LocalServer, n: int) -> list[str]:
    urls = [server.url("/page/plain?i=0")] + [server.url(f"/slow?s=30&i={i}") for i in range(n)]
    post = post_with(tmp_path, urls)
    return [sys.executable, "-m", "crawler", "-v", "check", str(post), "--report-dir",
            str(tmp_path / "r"), *FAST, "--timeout", "60"]  # fmt: skip


def _wait_for_first_check(db: Path, proc: subprocess.Popen[bytes]) -> None:
    def stored() -> bool:
        if not db.exists():
            return False
        # Read-only and always closed: a plain connect would create the file the run is about
        # to create, and a connection left open can make its first writes fail.
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                return bool(conn.execute("SELECT count(*) FROM checks").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error:
            return False

    wait_while_running(proc, stored, "it stored a check")


def test_kill_9_mid_run_leaves_a_consistent_database(
    tmp_path: Path, server: LocalServer, history_db: Path
) -> None:
    with running_cli(_args(tmp_path, server, 3)) as proc:
        _wait_for_first_check(history_db, proc)
        os.kill(proc.pid, signal.SIGKILL)
    conn = sqlite3.connect(history_db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT status FROM runs").fetchall() == [("running",)]
    conn.close()
    # The next run works, and marks the killed one as interrupted.
    post = post_with(tmp_path, [server.url("/page/plain")])
    r = CliRunner().invoke(cli, ["check", str(post), "--report-dir", str(tmp_path / "r2"), *FAST])
    assert r.exit_code == 0, r.output
    conn = sqlite3.connect(history_db)
    assert conn.execute("SELECT status FROM runs ORDER BY id").fetchall() == [
        ("interrupted",),
        ("complete",),
    ]
    assert conn.execute("SELECT count(*) FROM checks WHERE run_id = 1").fetchone()[0] >= 1
    conn.close()


def test_sigterm_and_ctrl_c_close_the_run_as_interrupted(
    tmp_path: Path, server: LocalServer, history_db: Path
) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        history_db.unlink(missing_ok=True)
        with running_cli(_args(tmp_path, server, 2)) as proc:
            _wait_for_first_check(history_db, proc)
            proc.send_signal(sig)  # the slow requests would be waited for (up to --timeout) ...
            wait_for_stopping(proc)
            proc.send_signal(sig)  # ... but a second signal stops at once
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        assert b"Traceback" not in err
        conn = sqlite3.connect(history_db)
        assert conn.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
        assert conn.execute("SELECT count(*) FROM checks").fetchone()[0] >= 1
        conn.close()


def test_report_reads_the_run_s_checks_back_once(
    tmp_path: Path, server: LocalServer, history_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`crawler report` makes each check from its row once, for the reports; its summary line
    is the run's tally (it made every check a second time for that line alone: 10,000 checks,
    1.59 -> 1.35 s of CPU)."""
    import crawler.store

    urls = [server.url(f"/page/plain?once={i}") for i in range(3)]
    post = post_with(tmp_path, urls)
    runner = CliRunner()
    r = runner.invoke(cli, ["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
    assert r.exit_code == 0, r.output
    made = 0
    row_check = crawler.store._row_check

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal made
        made += 1
        return row_check(*args, **kwargs)

    monkeypatch.setattr(crawler.store, "_row_check", counted)
    r = runner.invoke(cli, ["report", "--report-dir", str(tmp_path / "again")])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("3 references, 3 URLs in ") and ": 3 ok (run 1)\n" in r.output
    assert made == 3
