"""When `crawler check` fails a run: --fail-on (config `fail_on`) and a run that checks nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "1", "--backoff", "0", "--timeout", "5"]


def check(
    tmp_path: Path, post: str, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    p = tmp_path / "post.md"
    p.write_text(post, encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        ["check", str(p), "--report-dir", str(tmp_path / "r"), *FAST, *args],
        env=env,
        catch_exceptions=False,
    )
    return result.exit_code, result.output


def entry(server: LocalServer, path: str, title: str = "x") -> str:
    return f"{server.url(path)}\n\n{title}\n\n"


def test_an_error_alone_does_not_fail_the_run_by_default(
    tmp_path: Path, server: LocalServer
) -> None:
    """`error` means "could not tell this time"; by default only `dead` fails a run (an error
    that persists becomes dead under the confirm rule)."""
    code, out = check(tmp_path, entry(server, "/status/500"))
    assert code == 0, out
    assert "1 error" in out


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--fail-on", "dead,error"], None),
        (["--fail-on", "error"], None),
        ([], {"CRAWLER_FAIL_ON": "error, dead"}),
    ],
)
def test_fail_on_error(
    tmp_path: Path, server: LocalServer, args: list[str], env: dict[str, str] | None
) -> None:
    code, out = check(tmp_path, entry(server, "/status/500"), *args, env=env)
    assert code == 3, out


def test_fail_on_from_the_configuration_file(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crawler.toml").write_text('fail_on = ["dead", "changed"]\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, out = check(tmp_path, entry(server, "/page/article", "Another title"))
    assert code == 3, out
    assert "1 changed" in out


def test_dead_fails_the_run_by_default(tmp_path: Path, server: LocalServer) -> None:
    code, out = check(tmp_path, entry(server, "/status/404"))
    assert code == 3, out


def test_fail_on_dead_only_ignores_changed(tmp_path: Path, server: LocalServer) -> None:
    code, out = check(tmp_path, entry(server, "/page/article", "Another title"))
    assert code == 0, out


def test_an_unknown_verdict_is_one_line(tmp_path: Path, server: LocalServer) -> None:
    code, out = check(tmp_path, entry(server, "/status/404"), "--fail-on", "dead,gone")
    assert code == 1
    assert "'gone' is not a verdict that can fail a run" in out


def test_an_unknown_verdict_in_the_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crawler.toml").write_text('fail_on = ["ok"]\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, out = check(tmp_path, "nothing\n")
    assert code == 1
    assert "fail_on" in out and "'ok' is not a verdict that can fail a run" in out


def test_an_include_that_matches_nothing_is_not_success(
    tmp_path: Path, server: LocalServer, history_db: Path
) -> None:
    """`--include '^zzz'` used to write "All links are alive" and exit 0 (issue 13 #7)."""
    code, out = check(tmp_path, entry(server, "/status/404"), "--include", "^zzz")
    assert code == 1
    assert "nothing to check: all 1 links of" in out and "are excluded" in out
    assert not (tmp_path / "r").exists()  # no report that looks like an all-well run
    assert not history_db.exists()  # and no run in the history
    assert server.hits["/status/404"] == 0
