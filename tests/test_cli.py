"""The real CLI, end to end, on a small post against the local server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from tests.posts import FAST, recovering_post
from tests.server import LocalServer


def test_check_end_to_end(tmp_path: Path, server: LocalServer) -> None:
    post = recovering_post(tmp_path, server)
    out = tmp_path / "reports"
    result = CliRunner().invoke(
        cli, ["check", str(post), "--report-dir", str(out), *FAST], catch_exceptions=False
    )
    assert result.exit_code == 3, result.output
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    got = {(r["url"].split(str(server.port))[1], r["line"]): r for r in doc["links"]}
    verdicts = {k[0]: r["verdict"] for k, r in got.items() if k[0] != "/page/article"}
    assert verdicts == {
        "/page/removed": "dead",
        "/page/verify": "blocked",
        "/status/404": "dead",
        "/page/zhihu-403": "blocked",
        "/page/gbk": "ok",
        "/page/article-quoting-notice": "ok",
        "/flaky/cli?fail=1": "ok",
        "/drop": "error",
    }
    article = [r for k, r in got.items() if k[0] == "/page/article"]
    assert [r["verdict"] for r in article] == ["ok", "changed"]  # same URL, two listings
    assert server.hits["/page/article"] == 1  # fetched once
    assert article[0]["title"] == "语音识别的最新进展"
    assert article[0]["summary"] == "本文介绍语音识别的最新进展。"
    assert article[0]["section"] == "语音 / 参考"
    assert got[("/page/gbk", 27)]["title"] == "基于深度学习的语音识别"
    assert doc["summary"]["dead"] == 2
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "该内容已被发布者删除" in md
    assert "report.json" in result.output


def test_all_ok_exits_zero(tmp_path: Path, server: LocalServer) -> None:
    post = tmp_path / "ok.md"
    post.write_text(f"{server.url('/page/article')}\n\n语音识别的最新进展\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        ["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "1 ok" in result.output


def test_network_down_judges_nothing_dead(tmp_path: Path) -> None:
    import socket

    socks = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s.getsockname()[1])
        s.close()
    post = tmp_path / "p.md"
    post.write_text("\n\n".join(f"http://127.0.0.1:{p}/a\n\nT" for p in socks), encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        ["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST],
        catch_exceptions=False,
    )
    assert result.exit_code == 4
    assert "network looks down" in result.output
    doc = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert doc["network_down"] is True
    assert {r["verdict"] for r in doc["links"]} == {"error"}


@pytest.mark.parametrize("kind", ["missing", "directory", "binary"])
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "post.md"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\x00\x01\x02PNG\xff\xfe" * 100)
    result = subprocess.run(
        [sys.executable, "-m", "crawler", "check", str(path), "--report-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0]
    assert not (tmp_path / "r").exists()


def test_usage_error_exits_2() -> None:
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2


def test_every_command_has_help_with_an_example() -> None:
    for name, cmd in cli.commands.items():
        assert cmd.help and "Example:" in cmd.help, name


def test_extract_prints_json_lines(tmp_path: Path) -> None:
    from tests.server import PAGES

    page = tmp_path / "a.html"
    page.write_bytes(PAGES["removed"][2])
    result = CliRunner().invoke(cli, ["extract", str(page)], catch_exceptions=False)
    assert result.exit_code == 0
    rec = json.loads(result.output.splitlines()[0])
    assert rec["page_kind"] == "removed"
    assert "该内容已被发布者删除" in rec["notice"]
    assert {"title", "summary"} <= set(rec)
