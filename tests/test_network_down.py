"""A network-down run, end to end: told after the first failures, exit 4, nothing judged dead.

Closed ports on 127.0.0.1 stand for hosts the network cannot reach; the attempts are counted
from report.json (the sum of `attempts`), not timed.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from crawler.cli import cli
from tests.test_fetch import free_ports

POLITE = ["--host-interval", "0.2", "--retries", "2", "--backoff", "0.5", "--timeout", "2"]


def test_a_network_down_run_stops_early_and_exits_4(tmp_path: Path) -> None:
    ports = free_ports(4)
    urls = [f"http://127.0.0.1:{p}/a{i}" for i in range(10) for p in ports]
    urls.append("http://example.com:99999/")  # invalid: never requested, says nothing
    post = tmp_path / "p.md"
    post.write_text("".join(f"{u}\n\nT\n\n" for u in urls), encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        ["check", str(post), "--report-dir", str(tmp_path / "r"), "--format", "json", *POLITE],
        catch_exceptions=False,
    )
    assert result.exit_code == 4, result.output
    assert "network looks down" in result.output
    doc = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert doc["network_down"] is True
    records = doc["links"]
    assert {r["verdict"] for r in records} == {"error"}
    # Each host's first requests and a few more; before, 3 attempts for each of 40 URLs.
    attempts = sum(r["attempts"] for r in records)
    assert attempts <= 4 * 2 + 2 * 2, attempts
    left = [r for r in records if r["attempts"] == 0 and r["error"] != "invalid-url"]
    assert len(left) >= 40 - attempts
    assert all(r["reason"] == "network-down" for r in left), left[:2]
    assert {r["reason"] for r in records if r["attempts"]} == {"connect"}
