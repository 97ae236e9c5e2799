"""`crawler enrich` end to end: check against the local server, then improve the post."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "5"]


def make_post(tmp_path: Path, server: LocalServer) -> tuple[Path, bytes]:
    u = server.url
    text = (
        f"# 参考\r\n\r\n{u('/page/article')}\r\n\r\n"  # no listed title: enrich adds it
        f"{u('/page/removed')}\r\n\r\n端对端的深度卷积神经网络\r\n\r\n"  # dead: marked
        f"see [docs]({u('/page/plain')}) here\r\n"
    )
    raw = text.encode("utf-8")
    path = tmp_path / "post.md"
    path.write_bytes(raw)
    return path, raw


def invoke(args: list[str]):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_enrich_after_a_check(tmp_path: Path, server: LocalServer) -> None:
    post, raw = make_post(tmp_path, server)
    r = invoke(["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
    assert r.exit_code == 3, r.output

    r = invoke(["enrich", str(post), "--mark-dead", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert post.read_bytes() == raw  # a dry run writes nothing
    changed = [
        line
        for line in r.output.splitlines()
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert any("已失效" in line for line in changed)
    assert any("语音识别的最新进展" in line for line in changed)

    r = invoke(["enrich", str(post), "--mark-dead"])
    assert r.exit_code == 0, r.output
    new = post.read_bytes()
    assert (tmp_path / "post.md.bak.1").read_bytes() == raw
    assert b"\r\n\r\n\xe8\xaf\xad" in new  # the title line, CRLF kept
    assert "（已失效，".encode() in new
    assert new.count(b"\r\n") == raw.count(b"\r\n") + 2 and b"\n" not in new.replace(b"\r\n", b"")

    r = invoke(["enrich", str(post), "--mark-dead"])
    assert r.exit_code == 0 and "nothing to change" in r.output
    assert post.read_bytes() == new  # twice equals once

    # A check of the marked post still reads the same links and listed titles.
    r = invoke(["links", str(post)])
    assert r.output.count('"url"') == 3 and "端对端的深度卷积神经网络" in r.output

    r = invoke(["enrich", str(post), "--unmark", "--no-titles"])
    assert r.exit_code == 0, r.output
    assert "已失效".encode() not in post.read_bytes()
    assert (tmp_path / "post.md.bak.1").read_bytes() == raw  # backups are numbered, never lost
    assert (tmp_path / "post.md.bak.2").read_bytes() == new


def test_enrich_refuses_when_an_entry_it_would_touch_changed(
    tmp_path: Path, server: LocalServer
) -> None:
    post, raw = make_post(tmp_path, server)
    invoke(["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
    post.write_bytes(raw.replace("端对端的深度卷积神经网络".encode(), b"Another title"))
    r = CliRunner().invoke(cli, ["enrich", str(post), "--mark-dead"])
    assert r.exit_code == 1
    assert "line 5 (" in r.output and "/page/removed) changed since the last check" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_enrich_after_edits_elsewhere_in_the_post(tmp_path: Path, server: LocalServer) -> None:
    """Issue 13 friction: a blank line and a new entry do not stale the check of the others."""
    post, raw = make_post(tmp_path, server)
    invoke(["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
    edited = b"\r\n" + raw + b"\r\nhttps://new.example/\r\n"
    post.write_bytes(edited)
    r = invoke(["enrich", str(post), "--mark-dead"])
    assert r.exit_code == 0, r.output
    new = post.read_bytes()
    assert "（已失效，".encode() in new and "语音识别的最新进展".encode() in new
    assert new.endswith(b"\r\nhttps://new.example/\r\n")  # not checked: left alone


def test_enrich_without_a_check_says_so(tmp_path: Path, server: LocalServer) -> None:
    post, _ = make_post(tmp_path, server)
    r = CliRunner().invoke(cli, ["enrich", str(post)])
    assert r.exit_code == 1 and "no complete check" in r.output


def test_enrich_fresh_and_archive(tmp_path: Path, server: LocalServer) -> None:
    post, _ = make_post(tmp_path, server)
    r = invoke(
        [
            "enrich",
            str(post),
            "--fresh",
            "--archive",
            "--archive-endpoint",
            server.url("/wayback/available"),
            "--archive-before",
            "2024-01-01",
            *FAST,
        ]
    )
    assert r.exit_code == 0, r.output
    text = post.read_text(encoding="utf-8")
    assert "（已失效，" in text
    assert "[存档](https://web.archive.org/web/20200101000000/" in text
    assert server.hits  # the archive lookup went to the local fake, not the internet


def test_the_dead_mark_has_one_definition() -> None:
    """`crawler check` and enrich read the mark from crawler.post, not from copies."""
    from crawler import cli as cli_module
    from crawler import enrich, post

    assert enrich.DEAD_MARK is post.DEAD_MARK
    assert not hasattr(cli_module, "_DEAD_MARK")


def test_update_redirects_stops_at_the_last_permanent_target(
    tmp_path: Path, server: LocalServer
) -> None:
    """Issue 13 #2: 301 → 302 → page: the post gets the 302's URL, not where it points today."""
    u = server.url
    temporary = u("/redirect/302?to=/page/plain")
    moved = u("/redirect/301?to=" + quote(temporary, safe=""))
    post = tmp_path / "post.md"
    post.write_text(f"{moved}\n\nTitle\n", encoding="utf-8")
    invoke(["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
    r = invoke(["enrich", str(post), "--update-redirects"])
    assert r.exit_code == 0, r.output
    assert post.read_text(encoding="utf-8") == f"{temporary}\n\nTitle\n"


def test_enrich_finds_the_check_by_real_path(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 #9: checked as `post.md` in its folder, enriched as /abs/path from elsewhere."""
    post, _ = make_post(tmp_path, server)
    db = tmp_path / "history.sqlite"
    monkeypatch.chdir(tmp_path)
    r = invoke(["check", "post.md", "--db", str(db), "--report-dir", "r", *FAST])
    assert r.exit_code == 3, r.output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = invoke(["enrich", str(post), "--db", str(db), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "语音识别的最新进展" in r.output


def test_enrich_counts_the_lines_it_added_or_changed(tmp_path: Path, server: LocalServer) -> None:
    """Issue 13 #17: two lines added and one changed are 3, not the diff's +/- count."""
    post, _ = make_post(tmp_path, server)
    invoke(["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
    r = invoke(["enrich", str(post), "--mark-dead"])
    assert r.exit_code == 0, r.output
    assert "(3 lines added or changed)" in r.output


def test_enrich_archive_unreachable_says_so_and_writes_nothing(
    tmp_path: Path, server: LocalServer
) -> None:
    """Issue 13 #10: no silent marks without snapshots: one line, exit 4, the post as it was."""
    post, raw = make_post(tmp_path, server)
    invoke(["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
    unreachable = "http://127.0.0.1:9/wayback/available"  # the discard port: refused
    r = CliRunner().invoke(
        cli, ["enrich", str(post), "--archive", "--archive-endpoint", unreachable, *FAST]
    )
    assert r.exit_code == 4, r.output
    assert "the archive at http://127.0.0.1:9/wayback/available did not answer" in r.output
    assert "nothing written" in r.output and len(r.output.strip().splitlines()) == 1
    assert post.read_bytes() == raw


def test_update_titles_accepts_a_changed_title(tmp_path: Path, server: LocalServer) -> None:
    post = tmp_path / "post.md"
    post.write_text(f"{server.url('/page/article')}\n\nAn old title\n", encoding="utf-8")
    r = invoke(["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
    assert "changed" in r.output, r.output
    r = invoke(["enrich", str(post), "--update-titles"])
    assert r.exit_code == 0 and "(1 line added or changed)" in r.output, r.output
    assert post.read_text(encoding="utf-8").endswith("\n\n语音识别的最新进展\n")
    r = invoke(["check", str(post), "--report-dir", str(tmp_path / "r"), *FAST])
    assert r.exit_code == 0 and "1 ok" in r.output, r.output
