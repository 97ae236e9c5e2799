"""Colour: verdict words coloured on a terminal, plain when piped; NO_COLOR and FORCE_COLOR."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "2"]
RED_BOLD_DEAD = "\x1b[31m\x1b[1mdead\x1b[0m"


def _post(tmp_path: Path, server: LocalServer) -> Path:
    p = tmp_path / "post.md"
    p.write_text(
        f"{server.url('/page/article')}\n\n语音识别的最新进展\n\n{server.url('/status/404')}\n",
        encoding="utf-8",
    )
    return p


def _args(tmp_path: Path, server: LocalServer) -> list[str]:
    post = _post(tmp_path, server)
    return ["check", str(post), "--no-history", "--format", "json", "--report-dir",
            str(tmp_path / "r"), *FAST]  # fmt: skip


def _run_in_terminal(args: list[str], env: dict[str, str]) -> str:
    """The CLI's output when its stdout is a real pseudo-terminal."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait() == 3
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize(
    ("extra", "coloured"),
    [({}, True), ({"NO_COLOR": "1"}, False), ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, False)],
)
def test_terminal_colours_verdict_words(
    tmp_path: Path, server: LocalServer, extra: dict[str, str], coloured: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    out = _run_in_terminal(_args(tmp_path, server), {**env, **extra})
    assert "post.md:5" in out
    assert (RED_BOLD_DEAD in out) is coloured
    assert ("\x1b[" in out) is coloured


def test_piped_output_is_plain_unless_forced(tmp_path: Path, server: LocalServer) -> None:
    args = _args(tmp_path, server)
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    piped = subprocess.run(
        [sys.executable, "-m", "crawler", *args], capture_output=True, text=True, env=env
    )
    assert piped.returncode == 3
    assert "dead" in piped.stdout and "\x1b[" not in piped.stdout
    forced = subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        capture_output=True,
        text=True,
        env={**env, "FORCE_COLOR": "1"},
    )
    assert RED_BOLD_DEAD in forced.stdout
    assert "1 \x1b[32mok\x1b[0m" in forced.stdout.splitlines()[0]


def test_colour_never_enters_reports_or_annotations(tmp_path: Path, server: LocalServer) -> None:
    result = CliRunner().invoke(
        cli, [*_args(tmp_path, server), "--annotations"], env={"FORCE_COLOR": "1"}
    )
    assert result.exit_code == 3
    assert RED_BOLD_DEAD in result.stdout
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert annotations and all("\x1b" not in a for a in annotations)
    assert "\x1b" not in (tmp_path / "r" / "report.json").read_text(encoding="utf-8")
