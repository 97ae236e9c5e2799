"""crawler runs, crawler history, help texts and extract's input check, through the CLI."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from crawler.frontier import Finished, UrlTask
from crawler.store import Store
from crawler.types import Verdict
from tests.factories import make_check
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "5"]
#: report.json's time form: seconds, with the UTC offset.
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")


def _post(tmp_path: Path, *urls: str) -> Path:
    p = tmp_path / "post.md"
    p.write_text("\n\n".join(f"{u}\n\nPlain page" for u in urls) + "\n", encoding="utf-8")
    return p


def test_runs_lists_every_run_with_status_counts_and_posts(
    tmp_path: Path, server: LocalServer, history_db: Path
) -> None:
    post = _post(tmp_path, server.url("/page/plain"), server.url("/status/404"))
    runner = CliRunner()
    for _ in range(2):
        r = runner.invoke(cli, ["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
        assert r.exit_code == 3, r.output
    # A run that was killed: its checks are stored, its counts are not.
    store = Store.open(history_db)
    try:
        store.lock()
        check = make_check(verdict=Verdict.DEAD)
        task = UrlTask(check.url, "example.com", ((0, check.link),))
        killed = store.plan_run(datetime.now().astimezone(), [str(post)], {}, {}, [task])
        store.write_finished(killed, [Finished(check.url, ((0, check, Verdict.DEAD),), None)])
        store.unlock()
    finally:
        store.close()
    r = runner.invoke(cli, ["runs", "--json"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.output.splitlines()]
    assert [x["run_id"] for x in recs] == [1, 2, killed]
    assert [x["status"] for x in recs[:2]] == ["complete", "complete"]
    assert recs[0]["summary"]["ok"] == 1 and recs[0]["summary"]["dead"] == 1
    assert recs[0]["checked"] == 2 and recs[0]["sources"] == [str(post)]
    assert recs[0]["network_down"] is False
    assert ISO.match(recs[0]["started_at"]) and ISO.match(recs[0]["finished_at"])
    assert recs[2]["status"] == "running" and recs[2]["finished_at"] is None
    assert recs[2]["summary"] == {"dead": 1}  # counted from its stored checks
    text = runner.invoke(cli, ["runs", "--limit", "2"])
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert len(lines) == 2 and lines[0].lstrip().startswith("2 ")
    assert "complete" in lines[0] and "1 ok, 1 dead" in lines[0] and "post.md" in lines[0]
    assert "running" in lines[1] and "1 checked: 1 dead" in lines[1]


def test_runs_without_history_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["runs", "--db", str(tmp_path / "none.sqlite")])
    assert r.exit_code == 1 and "no history" in r.output


def test_history_json_uses_report_json_forms(
    tmp_path: Path, server: LocalServer, history_db: Path
) -> None:
    url = server.url("/page/plain")
    post = _post(tmp_path, url)
    r = CliRunner().invoke(cli, ["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    r = CliRunner().invoke(cli, ["history", url, "--json"])
    assert r.exit_code == 0, r.output
    (rec,) = [json.loads(line) for line in r.output.splitlines()]
    assert rec["network_down"] is False and rec["cached"] is False
    assert rec["checked_at"] == report["links"][0]["checked_at"]
    assert ISO.match(rec["checked_at"])


def test_history_finds_a_url_by_where_its_check_ended(
    tmp_path: Path, server: LocalServer, history_db: Path
) -> None:
    listed = server.url("/redirect/301?to=/page/plain")
    post = _post(tmp_path, listed)
    r = CliRunner().invoke(cli, ["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
    assert r.exit_code == 0, r.output
    final = server.url("/page/plain")
    r = CliRunner().invoke(cli, ["history", final])
    assert r.exit_code == 0, r.output
    assert f"showing {listed}" in r.output and "redirected" in r.output
    # The same URL written with the other scheme is found too.
    other = listed.replace("http://", "https://")
    r = CliRunner().invoke(cli, ["history", other, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.splitlines()[-1])["final_url"] == final


def test_extract_refuses_a_binary_file_as_check_does(tmp_path: Path) -> None:
    elf = tmp_path / "a.out"
    elf.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    r = CliRunner().invoke(cli, ["extract", str(elf)])
    assert r.exit_code == 1
    assert json.loads(r.output)["error"].startswith("is a binary file")
    r = CliRunner().invoke(cli, ["check", str(elf)])
    assert r.exit_code == 1 and "is a binary file" in r.output
    utf16 = tmp_path / "page.html"
    utf16.write_bytes("<title>标题</title><p>正文</p>".encode("utf-16"))
    r = CliRunner().invoke(cli, ["extract", str(utf16)])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("cmd", ["check", "links"])
def test_help_texts_agree(cmd: str) -> None:
    r = CliRunner().invoke(cli, [cmd, "--help"], terminal_width=200)
    assert r.exit_code == 0
    assert "Check only URLs" not in r.output  # --include also filters `crawler links`
    if cmd == "check":
        assert "*.htm," in r.output  # directories are searched for .htm files too
    assert "--config" in r.output and "--verbose" in r.output
