"""Bad input: one readable line and the documented exit code, or a per-link verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.post import parse_post
from crawler.sanitize import terminal as safe

POST_TEXT = "# 标题\n\nhttps://127.0.0.1:9/a\n\n标题一\n"


def crawl(
    tmp_path: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        capture_output=True,
        text=True,
        input=stdin.decode("latin-1") if stdin is not None else None,
        # a bound for a hung run, not a speed test: reading the 50 MB post took over 120 s
        # on a machine at load 20
        timeout=900,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("missing", lambda p: None, "no such file"),
        ("directory", lambda p: p.mkdir(), "no posts"),
        ("binary", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" * 50), "binary"),
        ("latin1", lambda p: p.write_bytes("café ½ ü".encode("latin-1") * 40), "not UTF-8 or GBK"),
    ],
)
def test_unreadable_post_is_one_line_exit_1(
    tmp_path: Path, name: str, make: object, message: str
) -> None:
    path = tmp_path / "post.md"
    make(path)  # type: ignore[operator]
    r = crawl(tmp_path, "check", str(path), "--no-history")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "reports").exists()


def test_empty_post_checks_nothing_and_fails(tmp_path: Path) -> None:
    """Nothing checked is not success (issue 13 #7): one line, exit 1, no report."""
    path = tmp_path / "post.md"
    path.write_bytes(b"")
    r = crawl(tmp_path, "check", str(path), "--no-history")
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == f"Error: nothing to check: no links found in {path}"
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    ("encoding", "prefix", "newline"),
    [("gbk", b"", "\n"), ("utf-8", b"\xef\xbb\xbf", "\n"), ("utf-8", b"", "\r\n")],
    ids=["gbk", "bom", "crlf"],
)
def test_gbk_bom_crlf_posts_are_read(
    tmp_path: Path, encoding: str, prefix: bytes, newline: str
) -> None:
    path = tmp_path / "post.md"
    path.write_bytes(prefix + POST_TEXT.replace("\n", newline).encode(encoding))
    r = crawl(tmp_path, "links", str(path))
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout.splitlines()[0])
    assert rec["listed_title"] == "标题一" and rec["line"] == 3 and rec["section"] == "标题"


def test_huge_post_is_read(tmp_path: Path) -> None:
    entry = (
        "https://example.com/{i}\n\n一个很长的标题，用来把文件撑到很大的尺寸" + "x" * 200 + "\n\n"
    )
    path = tmp_path / "big.md"
    with path.open("w", encoding="utf-8") as f:
        i = 0
        while f.tell() < 50 * 1024 * 1024:
            f.write(entry.format(i=i) * 100)
            i += 1
    r = crawl(tmp_path, "links", str(path))
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) > 150_000


@pytest.mark.parametrize(
    "url",
    [
        "http:///x",
        "https://exa mple.com/",
        "https://例子.测试/路径",  # an IDN host is valid
        "https://[::1/",
        "https://a.com/" + "x" * 5000,
        "https://%zz.com/",
    ],
)
def test_malformed_urls_get_a_verdict_not_a_traceback(tmp_path: Path, url: str) -> None:
    path = tmp_path / "post.md"
    path.write_text(f"[link]({url})\n\n<{url}>\n", encoding="utf-8")
    r = crawl(
        tmp_path,
        "check",
        str(path),
        "--no-history",
        "--format",
        "json",
        "--timeout",
        "1",
        "--retries",
        "0",
    )
    assert "Traceback" not in r.stderr
    if r.returncode == 1:  # the post reader found no link in it: nothing checked
        assert "nothing to check: no links found" in r.stderr
        return
    assert r.returncode in (0, 3, 4), r.stderr
    if (tmp_path / "reports" / "report.json").exists():
        doc = json.loads((tmp_path / "reports" / "report.json").read_text(encoding="utf-8"))
        for rec in doc["links"]:
            assert rec["verdict"] in {"error", "ok", "dead", "blocked", "changed", "redirected"}
            if rec["reason"] == "invalid-url":
                assert rec["verdict"] == "error"


def test_fullwidth_and_unbalanced_brackets_in_prose() -> None:
    links = parse_post("见（https://a.com/x），以及 (https://b.com/y_(z)) 和 [https://c.com/q]。\n")
    assert [link.url for link in links] == [
        "https://a.com/x",
        "https://b.com/y_(z)",
        "https://c.com/q",
    ]


def test_terminal_output_is_stripped_of_escape_sequences() -> None:
    assert safe("ok\x1b[31mRED\x1b[0m\x07\x1b]0;title\x07 end\r\nx") == "okRED end x"
    assert "\x1b" not in safe("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\")


def test_terminal_output_drops_bidi_and_zero_width_controls() -> None:
    assert safe("evil\u202egnp.exe\u200b\u2066x\u2069") == "evilgnp.exex"
