"""A bad value is one line naming where it was written — the flag, the environment variable, or
the configuration file and its key — and exit 1, whatever the value's type; exit 2 is a command
line that does not parse (README, Exit codes). Issue 13: a bad value of a flag with a type of
click's own (or one written for click) was click's three-line usage error, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from crawler.cli import cli

NEVER = "http://127.0.0.1:9/never-fetched\n"


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> Result:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.md").write_text(NEVER, encoding="utf-8")
    (tmp_path / "saved.html").write_text("<title>t</title>", encoding="utf-8")
    return CliRunner().invoke(cli, args)


def _one_line(r: Result, code: int, start: str, words: str) -> None:
    lines = r.output.strip().splitlines()
    assert r.exit_code == code, r.output
    assert len(lines) == 1 and lines[0].startswith(f"Error: {start}: "), r.output
    assert words in lines[0], r.output
    assert "Usage" not in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(
    ("args", "start", "words"),
    [
        # types written for click (they were exit 2 with click's usage lines)
        (["check", "p.md", "--fail-on", "dead,gone"], "--fail-on", "'gone' is not a verdict"),
        (["check", "p.md", "--header", "no colon"], "--header", "'Name: value'"),
        (["check", "p.md", "--remap", "lonely"], "--remap", "REGEX REPLACEMENT"),
        (["check", "p.md", "--db", "mysql://me@db/x"], "--db", "unknown database scheme"),
        (["db", "copy", "--from", "ftp://x", "--to", "y.sqlite"], "--from", "'ftp'"),
        # click's own types and checks
        (["check", "p.md", "--include", "("], "--include", "bad regular expression '('"),
        (["check", "p.md", "--root-dir", "none"], "--root-dir", "does not exist"),
        (["check", "p.md", "--config", "."], "--config", "is a directory"),
        (["--config", ".", "check", "p.md"], "--config", "is a directory"),
        (["report", "--run", "0"], "--run", "not in the range"),
        (["runs", "--limit", "0"], "--limit", "not in the range"),
        (["extract", "-j", "99", "saved.html"], "--jobs", "not in the range"),
        (["worker", "--run", "x"], "--run", "'x' is not a valid integer"),
        (["worker", "--run", "0"], "--run", "not in the range"),  # report's --run, shared
        (["enrich", "p.md", "--archive-before", "May"], "--archive-before", "'May'"),
        (["enrich", "."], "POST", "is a directory"),
        # the settings' own types (one line, exit 1 already)
        (["check", "p.md", "--timeout", "abc"], "--timeout", "expected a number of seconds"),
        (["check", "p.md", "--format", "xml"], "--format", "expected some of json"),
        (["report", "--format", "pdf"], "--format", "expected some of json"),
    ],
)
def test_a_bad_flag_value_is_one_line_naming_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], start: str, words: str
) -> None:
    r = _run(tmp_path, monkeypatch, args)
    _one_line(r, 1, start, words)
    assert not (tmp_path / "reports").exists() and not (tmp_path / ".crawler").exists()


def test_the_short_extract_command_line_refuses_a_value_the_same_way(tmp_path: Path) -> None:
    """`crawler extract` without -v or --config skips crawler.cli (crawler.start): its values
    are refused as the whole command line refuses them, and a missing argument is still usage."""
    (tmp_path / "saved.html").write_text("<title>t</title>", encoding="utf-8")
    crawler = [sys.executable, "-m", "crawler", "extract"]
    r = subprocess.run(
        [*crawler, "-j", "99", "saved.html"], cwd=tmp_path, capture_output=True, text=True
    )
    assert r.returncode == 1 and r.stdout == "", r.stderr
    assert r.stderr.splitlines() == ["Error: --jobs: 99 is not in the range 0<=x<=64."]
    r = subprocess.run(crawler, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "Missing argument 'PAGES...'" in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("env", "args", "words"),
    [
        ({"CRAWLER_FAIL_ON": "gone"}, ["check", "p.md"], "'gone' is not a verdict"),
        ({"CRAWLER_DB": "mysql://me@db/x"}, ["runs"], "unknown database scheme"),
        ({"CRAWLER_TIMEOUT": "abc"}, ["check", "p.md"], "expected a number of seconds"),
        ({"CRAWLER_FORMAT": "pdf"}, ["report"], "expected some of json"),
        ({"CRAWLER_CONFIG": "."}, ["check", "p.md"], "is a directory"),
    ],
)
def test_a_bad_environment_value_is_one_line_naming_the_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    args: list[str],
    words: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    r = _run(tmp_path, monkeypatch, args)
    _one_line(r, 1, f"{next(iter(env))} (environment)", words)


@pytest.mark.parametrize(
    ("line", "args", "words"),
    [
        ('fail_on = "dead,gone"', ["check", "p.md"], "'gone' is not a verdict"),
        ('header = ["no colon"]', ["check", "p.md"], "'Name: value'"),
        ('root_dir = "none"', ["check", "p.md"], "does not exist"),
        ("retries = 2.5", ["check", "p.md"], "expected an integer"),
        ('format = "pdf"', ["report"], "expected some of json"),
    ],
)
def test_a_bad_file_value_is_one_line_naming_the_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, args: list[str], words: str
) -> None:
    (tmp_path / "crawler.toml").write_text(line + "\n", encoding="utf-8")
    r = _run(tmp_path, monkeypatch, args)
    _one_line(r, 1, f"{tmp_path / 'crawler.toml'}: {line.split(' = ')[0]}", words)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["check", "p.md", "--no-such-option"], "No such option '--no-such-option'"),
        (["no-such-command"], "No such command 'no-such-command'"),
        (["check"], "Missing argument 'INPUTS...'"),
        (["check", "p.md", "--timeout"], "Option '--timeout' requires an argument"),
        (["db", "copy", "--from", "a.sqlite"], "Missing option '--to'"),
    ],
)
def test_a_command_line_that_does_not_parse_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], words: str
) -> None:
    r = _run(tmp_path, monkeypatch, args)
    assert r.exit_code == 2, r.output
    assert f"Error: {words}" in r.output and "Traceback" not in r.output, r.output
