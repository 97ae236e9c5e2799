"""The archive lookups of `crawler enrich --archive`, against a local fake of the Wayback API."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from crawler.archive import archive_cutoff, find_snapshots
from crawler.config import FetchSettings

STYLES = Path(__file__).resolve().parent / "fixtures" / "enrich" / "styles.md"
TODAY = date(2026, 11, 25)
FAST = FetchSettings(host_interval=0, retries=0, backoff_initial=0, timeout=5)


def test_archive_cutoff(tmp_path: Path) -> None:
    raw = STYLES.read_bytes()
    assert archive_cutoff(raw, None, None, TODAY) == date(2017, 9, 20)  # front matter
    assert archive_cutoff(raw, None, date(2020, 1, 2), TODAY) == date(2020, 1, 2)
    post = tmp_path / "2016-05-04-post.md"
    post.write_bytes(b"no front matter\n")
    assert archive_cutoff(post.read_bytes(), post, None, TODAY) == date(2016, 5, 4)  # file name
    plain = tmp_path / "links.md"
    plain.write_bytes(b"x\n")
    os.utime(plain, (1_500_000_000, 1_500_000_000))
    assert (
        archive_cutoff(b"x\n", plain, None, TODAY) == datetime.fromtimestamp(1_500_000_000).date()
    )
    assert archive_cutoff(b"x\n", None, None, TODAY) == TODAY


class _Wayback(BaseHTTPRequestHandler):
    """Answers like https://archive.org/wayback/available, keyed by the `url` parameter."""

    seen: list[dict[str, list[str]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        _Wayback.seen.append(query)
        target = query.get("url", [""])[0]
        key = target.rsplit("/", 1)[-1]

        def snapshot(ts: str, url: str | None = None, **extra: object) -> dict[str, object]:
            closest: dict[str, object] = {
                "status": "200",
                "available": True,
                "url": url or f"http://web.archive.org/web/{ts}/{target}",
                "timestamp": ts,
            }
            closest.update(extra)
            return {"url": target, "archived_snapshots": {"closest": closest}}

        answers: dict[str, object] = {
            "before": snapshot("20160304050607"),
            "same-day": snapshot(query.get("timestamp", [""])[0] + "235959"),
            "after": snapshot("20300101000000"),
            "none": {"url": target, "archived_snapshots": {}},
            "unavailable": snapshot("20160304050607", available=False),
            "not-200": snapshot("20160304050607", status="404"),
            "javascript": snapshot("20160304050607", url="javascript:alert(1)"),
            "list": [1, 2, 3],
        }
        if parts.path != "/wayback/available" or key == "error":
            self._send(500, b"oops")
        elif key == "garbage":
            self._send(200, b"<html>not json")
        elif key == "huge":
            self._send(200, b'{"x": "' + b"a" * 200_000 + b'"}')
        else:
            self._send(200, json.dumps(answers.get(key, {})).encode())

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def wayback() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Wayback)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/wayback/available"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("before", "https://web.archive.org/web/20160304050607/https://site.example/before"),
        ("same-day", "https://web.archive.org/web/20170920235959/https://site.example/same-day"),
        ("after", None),  # the closest snapshot is after the date
        ("none", None),
        ("unavailable", None),
        ("not-200", None),
        ("javascript", None),
        ("list", None),
        ("garbage", None),  # not JSON
        ("huge", None),  # over the size cap
    ],
)
async def test_find_snapshots(wayback: str, key: str, expected: str | None) -> None:
    url = f"https://site.example/{key}"
    snaps = await find_snapshots([url], date(2017, 9, 20), FAST, wayback)
    assert snaps.found.get(url) == expected
    assert snaps.failed == {} and snaps.asked == 1  # an answer, even without a snapshot
    assert _Wayback.seen[-1]["url"] == [url]
    assert _Wayback.seen[-1]["timestamp"] == ["20170920"]


@pytest.mark.anyio
async def test_an_archive_that_does_not_answer_is_a_failure_not_a_missing_snapshot(
    wayback: str,
) -> None:
    """Issue 13 #10: an HTTP error or no answer is told apart from "no snapshot"."""
    urls = ["https://site.example/before", "https://site.example/error"]
    snaps = await find_snapshots(urls, date(2017, 9, 20), FAST, wayback)
    assert set(snaps.found) == {"https://site.example/before"}
    assert snaps.failed == {"https://site.example/error": "HTTP 500"}
    down = await find_snapshots(urls, TODAY, FAST, "http://127.0.0.1:9/x")
    assert set(down.failed) == set(urls) and not down.found and down.asked == 2
    bad = await find_snapshots(urls[:1], TODAY, FAST, "not a url")
    assert set(bad.failed) == set(urls[:1])


@pytest.mark.anyio
async def test_lookups_go_through_the_fetcher_and_its_no_private_rule(wayback: str) -> None:
    """The archive is asked like any link: --no-private refuses a loopback endpoint."""
    settings = FetchSettings(host_interval=0, retries=0, timeout=5, no_private=True)
    snaps = await find_snapshots(["https://site.example/before"], TODAY, settings, wayback)
    assert not snaps.found
    assert "https://site.example/before" in snaps.failed
