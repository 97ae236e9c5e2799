"""A password in a URL (`http://user:pass@host/…`) is sent as Basic auth, and recorded and
reported with *** in its place, where a host rule's secrets never appear either; the user's
own post keeps it as written (crawler enrich)."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from crawler.redact import redact_text, redact_url, unredact

SECRET = "s3cret-pw"
AUTH = "Basic " + base64.b64encode(f"reader:{SECRET}".encode()).decode()


class _Auth(BaseHTTPRequestHandler):
    """/old: 301 to /private (relative: the client keeps the credentials); /private: a page
    for the right Basic auth, else 401; /gone: 404. Counts the requests that carried it."""

    authorized = 0

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        ok = self.headers.get("Authorization") == AUTH
        if ok:
            type(self).authorized += 1
        if self.path == "/gone":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/old":
            self.send_response(301)
            self.send_header("Location", "/private")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'<html><head><title>Members only</title></head><body><p id="part">hi</p></body>'
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def auth_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Auth)
    _Auth.authorized = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_redact_url_masks_the_password_alone() -> None:
    assert redact_url("https://u:pw@h.example/a?b=c@d#e") == "https://u:***@h.example/a?b=c@d#e"
    assert redact_url("http://u:p%40q@h:8080/x") == "http://u:***@h:8080/x"
    for same in ("https://h.example/@me", "https://u@h.example/", "mailto:a@b.example", "x"):
        assert redact_url(same) == same
    assert redact_text("moved to https://u:pw@h.example/b, was http://x/@y") == (
        "moved to https://u:***@h.example/b, was http://x/@y"
    )
    assert unredact("https://u:***@h.example/b", "https://u:pw@h.example/a") == (
        "https://u:pw@h.example/b"
    )
    assert unredact("https://u:***@elsewhere.example/b", "https://u:pw@h.example/a") is None
    assert unredact("https://h.example/b", "https://u:pw@h.example/a") == "https://h.example/b"


def test_a_password_in_a_url_is_sent_but_never_recorded_or_reported(
    tmp_path: Path, auth_server: ThreadingHTTPServer
) -> None:
    port = auth_server.server_address[1]
    written = f"http://reader:{SECRET}@127.0.0.1:{port}/old"
    shown = f"http://reader:***@127.0.0.1:{port}/old"
    post = tmp_path / "post.md"
    gone = written.replace("/old", "/gone")
    text = f"# Links\n\n{written}\n\nMembers only\n\nsee <{written}#part> and {gone} too\n"
    post.write_text(text, encoding="utf-8")
    db, reports = tmp_path / "h.sqlite", tmp_path / "r"
    fast = ["--host-interval", "0", "--retries", "0", "--timeout", "5", "--include-fragments"]
    args = [str(post), "--db", str(db), "--report-dir", str(reports), *fast]
    formats = ["--format", "json,md,html,junit,sarif,issue"]
    r = CliRunner().invoke(cli, ["check", *args, *formats], catch_exceptions=False)
    assert r.exit_code == 3, r.output  # the dead one, listed on the terminal
    assert _Auth.authorized >= 3  # /old, /private and /gone, each with the password
    assert SECRET not in r.output and shown.replace("/old", "/gone") in r.output
    report = json.loads((reports / "report.json").read_text(encoding="utf-8"))
    assert [k["verdict"] for k in report["links"]] == ["redirected", "redirected", "dead"]
    assert [k["url"] for k in report["links"]] == [
        shown, shown + "#part", shown.replace("/old", "/gone")
    ]  # fmt: skip
    assert report["links"][0]["final_url"] == f"http://reader:***@127.0.0.1:{port}/private"
    for f in reports.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f.name
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    assert SECRET not in dump and shown in dump

    again = CliRunner().invoke(cli, ["check", *args], catch_exceptions=False)
    assert again.exit_code == 3 and SECRET not in again.output, again.output
    r = CliRunner().invoke(cli, ["history", written, "--db", str(db)], catch_exceptions=False)
    assert r.exit_code == 0 and r.output.count("redirected") == 2, r.output
    assert SECRET not in r.output

    # enrich writes the new home of the link with the user's own password, as written
    r = CliRunner().invoke(
        cli, ["enrich", str(post), "--update-redirects", "--db", str(db)], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    new = post.read_text(encoding="utf-8")
    assert new == text.replace("/old\n", "/private\n"), new  # (the one without a fragment)
