"""The learned pace in the engine: a real local server that answers a verification page when
more than N requests are in flight (counted on the server), two real runs on one history."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

import crawler.engine as engine
from crawler.cli import cli

LIMIT = 3  # the server's: more in flight than this and it shows its verification page
HOLD = 0.2  # seconds each request takes (long next to the client's own time per request)
URLS = 80
CHALLENGE = (
    b"<!doctype html><html><head><title>Just a moment...</title></head>"
    b"<body>Checking your browser</body></html>"
)


class Guarded(ThreadingHTTPServer):
    """Counts requests in flight; above LIMIT a request gets the verification page."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.inflight = 0
        self.peak = 0
        self.requests = 0
        self.over = 0  # requests answered by the verification page

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: Guarded
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        srv = self.server
        with srv.lock:
            srv.inflight += 1
            srv.requests += 1
            srv.peak = max(srv.peak, srv.inflight)
            over = srv.inflight > LIMIT
            if over:
                srv.over += 1
        time.sleep(HOLD)
        # Out of the count before the answer leaves: the server never counts more than the
        # client has in flight (else the client's next request could race this thread).
        with srv.lock:
            srv.inflight -= 1
        name = self.path.rsplit("/", 1)[-1]
        body = CHALLENGE if over else f"<title>Page {name}</title><p>{name}</p>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def guarded() -> Iterator[Guarded]:
    srv = Guarded()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _run(post: Path, out: Path, db: Path) -> tuple[int, dict[str, int]]:
    res = CliRunner().invoke(
        cli,
        [
            "check",
            str(post),
            "--report-dir",
            str(out),
            "--db",
            str(db),
            "--host-concurrency",
            "8",
            "--retries",
            "0",
            "--timeout",
            "10",
        ],
    )
    assert res.exit_code == 0, res.output
    verdicts: dict[str, int] = {}
    for link in json.loads((out / "report.json").read_text())["links"]:
        verdicts[link["verdict"]] = verdicts.get(link["verdict"], 0) + 1
    return res.exit_code, verdicts


def test_the_pace_is_found_kept_under_the_limit_and_reused(
    guarded: Guarded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "COOL_DOWN", 0.2)
    post = tmp_path / "post.md"
    urls = [f"http://127.0.0.1:{guarded.port}/p/{i}" for i in range(URLS)]
    post.write_text("\n\n".join(f"- [Page {i}]({u})" for i, u in enumerate(urls)) + "\n")
    db = tmp_path / "history.sqlite"

    _, verdicts = _run(post, tmp_path / "r1", db)
    first_over, first_requests = guarded.over, guarded.requests
    # every URL that met the verification page was asked again after a cool-down, and passed
    assert verdicts == {"ok": URLS}
    assert first_requests == URLS + first_over
    assert first_over >= 1  # it probed above the limit (it started at 2)
    assert first_over <= 3 * LIMIT  # ... a small bounded number of times
    with sqlite3.connect(db) as conn:
        limit, known = conn.execute(
            "SELECT pace_concurrency, pace_known_max FROM hosts WHERE host = ?",
            (f"127.0.0.1:{guarded.port}",),
        ).fetchone()
    # found N: the client counts a request from its start to its answer, a little longer than
    # the server does, so what it learns may be one above
    assert LIMIT <= known <= LIMIT + 1
    assert limit <= known

    guarded.over = guarded.requests = guarded.peak = 0
    _, verdicts = _run(post, tmp_path / "r2", db)
    assert verdicts == {"ok": URLS}
    assert guarded.over <= first_over  # no more verification pages than the first run
    assert guarded.peak <= known  # it started at the learned pace and stayed under it


def test_crawler_hosts_says_what_the_history_knows_of_each_host(
    guarded: Guarded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "COOL_DOWN", 0.2)
    post = tmp_path / "post.md"
    urls = [f"http://127.0.0.1:{guarded.port}/p/{i}" for i in range(URLS)]
    post.write_text("\n\n".join(f"- [Page {i}]({u})" for i, u in enumerate(urls)) + "\n")
    db = tmp_path / "history.sqlite"
    _run(post, tmp_path / "r1", db)
    res = CliRunner().invoke(cli, ["hosts", "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    (row,) = [json.loads(line) for line in res.output.splitlines()]
    assert row["host"] == f"127.0.0.1:{guarded.port}"
    assert row["urls_checked"] == URLS
    assert row["answers"]["2xx"] == URLS  # the checks written: every URL passed in the end
    assert row["verification_pages"] == guarded.over  # met on the way, requeued
    assert row["pace"]["known_max"] is not None
    assert row["median_latency_ms"] >= HOLD * 1000
    assert row["last_lease"] is not None
    table = CliRunner().invoke(cli, ["hosts", "--db", str(db)])
    assert table.exit_code == 0 and f"127.0.0.1:{guarded.port}" in table.output
    missing = CliRunner().invoke(cli, ["hosts", "--db", str(tmp_path / "none.sqlite")])
    assert missing.exit_code != 0 and "no history" in missing.output
