"""The report files and `crawler report`: modes that follow the umask, a report dir checked
before the first request, report.json's `source`, `report --run` and `report --format`."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from crawler.cli import cli
from tests.posts import recovering_post as write_post
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "1", "--backoff", "0", "--timeout", "5"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_link_post(tmp_path: Path, server: LocalServer, name: str = "post.md") -> Path:
    p = tmp_path / name
    p.write_text(f"{server.url('/page/article')}\n\n语音识别的最新进展\n", encoding="utf-8")
    return p


def doc(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.parametrize(
    ("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["022", "077", "002"]
)
def test_report_files_follow_the_umask(
    tmp_path: Path, server: LocalServer, umask: None, mask: int, mode: int
) -> None:
    """Report files were 0600 whatever the umask (issue 13 #8): they are files like any other."""
    post = one_link_post(tmp_path, server)
    os.umask(mask)
    r = invoke("check", str(post), "--report-dir", str(tmp_path / "r"), *FAST)
    assert r.exit_code == 0, r.output
    r2 = invoke("report", "--report-dir", str(tmp_path / "again"))
    assert r2.exit_code == 0, r2.output
    for d in ("r", "again"):
        for name in ("report.json", "report.md", "report.html"):
            got = stat.S_IMODE((tmp_path / d / name).stat().st_mode)
            assert got == mode, (d, name, oct(got))


def test_source_is_a_list_for_one_input_and_for_several(
    tmp_path: Path, server: LocalServer
) -> None:
    """report.json's `source` was a string for one input and a list for several (issue 13 #13)."""
    a = one_link_post(tmp_path, server, "a.md")
    b = one_link_post(tmp_path, server, "b.md")
    assert invoke("check", str(a), "--report-dir", str(tmp_path / "one"), *FAST).exit_code == 0
    assert doc(tmp_path / "one" / "report.json")["source"] == [str(a)]
    r = invoke("check", str(a), str(b), "--report-dir", str(tmp_path / "two"), *FAST)
    assert r.exit_code == 0, r.output
    assert doc(tmp_path / "two" / "report.json")["source"] == [str(a), str(b)]


@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_an_unusable_report_dir_fails_before_the_first_request(
    tmp_path: Path, server: LocalServer, history_db: Path, kind: str
) -> None:
    """An unwritable --report-dir was found after the whole crawl, and one that is a file was a
    usage error (exit 2) (issue 13 #16): one line, exit 1, nothing fetched, no run recorded."""
    post = one_link_post(tmp_path, server)
    blocker = tmp_path / "taken"
    blocker.write_text("a file\n")
    report_dir = blocker if kind == "a file" else blocker / "reports"
    r = invoke("check", str(post), "--report-dir", str(report_dir), *FAST)
    assert r.exit_code == 1, r.output
    assert str(report_dir) in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert server.hits["/page/article"] == 0
    assert not history_db.exists()


def test_report_command_checks_its_report_dir(tmp_path: Path, server: LocalServer) -> None:
    post = one_link_post(tmp_path, server)
    assert invoke("check", str(post), "--report-dir", str(tmp_path / "r"), *FAST).exit_code == 0
    blocker = tmp_path / "taken"
    blocker.write_text("a file\n")
    r = invoke("report", "--report-dir", str(blocker))
    assert r.exit_code == 1, r.output
    assert "not a directory" in r.output


def test_report_run_0_and_a_missing_run(tmp_path: Path, server: LocalServer) -> None:
    """`report --run 0` said there were no runs (issue 13 #15)."""
    post = one_link_post(tmp_path, server)
    assert invoke("check", str(post), "--report-dir", str(tmp_path / "r"), *FAST).exit_code == 0
    r = invoke("report", "--run", "0", "--report-dir", str(tmp_path / "r0"))
    assert r.exit_code == 1
    assert "no runs" not in r.output and "--run" in r.output
    r = invoke("report", "--run", "7", "--report-dir", str(tmp_path / "r7"))
    assert r.exit_code == 1
    assert "no run 7" in r.output
    assert not (tmp_path / "r0").exists() and not (tmp_path / "r7").exists()


def test_report_run_renders_what_check_wrote(tmp_path: Path, server: LocalServer) -> None:
    """`report --run N` gave links without a page (no answer) page_kind "other" where the
    report of the check had null (issue 13 #15): the re-rendered report.json is the same."""
    post = write_post(tmp_path, server)
    r = invoke("check", str(post), "--report-dir", str(tmp_path / "r"), *FAST)
    assert r.exit_code == 3, r.output
    r = invoke("report", "--run", "1", "--report-dir", str(tmp_path / "again"))
    assert r.exit_code == 0, r.output
    first, again = doc(tmp_path / "r" / "report.json"), doc(tmp_path / "again" / "report.json")
    assert any(rec["page_kind"] is None for rec in first["links"])  # /drop: no answer
    assert again == first


def test_report_format(tmp_path: Path, server: LocalServer) -> None:
    """`crawler report` had no --format (issue 13, friction)."""
    post = one_link_post(tmp_path, server)
    assert invoke("check", str(post), "--report-dir", str(tmp_path / "r"), *FAST).exit_code == 0
    r = invoke("report", "--format", "md,json", "--report-dir", str(tmp_path / "some"))
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "some").iterdir()) == ["report.json", "report.md"]
    r = invoke("report", "--format", "pdf", "--report-dir", str(tmp_path / "bad"))
    assert r.exit_code == 1 and "pdf" in r.output
