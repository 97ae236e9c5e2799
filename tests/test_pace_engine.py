"""The learned pace in the engine: a real local server that answers a verification page when
more than N requests are in flight (counted on the server), and to a few URLs always; two real
runs on one history."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from click.testing import CliRunner

import crawler.engine as engine
from crawler.cli import cli
from crawler.pace import Outcome, Pace
from crawler.store import Store
from tests.server import LocalServer

LIMIT = 3  # the server's: more in flight than this and it shows its verification page
HOLD = 0.2  # seconds each request takes (long next to the client's own time per request)
URLS = 80
RETRY_AFTER = 5  # seconds a /wait/ URL asks for at its first request (503)
CHALLENGE = (
    b"<!doctype html><html><head><title>Just a moment...</title></head>"
    b"<body>Checking your browser</body></html>"
)


class Guarded(ThreadingHTTPServer):
    """Counts requests in flight; above LIMIT a request gets the verification page, and a
    path in `always` gets it at any load."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.inflight = 0
        self.peak = 0
        self.requests = 0
        self.over = 0  # requests answered by the verification page for being over LIMIT
        self.at_limit = 0  # requests that came while LIMIT were in flight, themselves included
        self.always: frozenset[str] = frozenset()
        self.asked: Counter[str] = Counter()  # requests per path
        self.waiting = 0  # /wait/ URLs answered 503 and not asked again yet
        self.most_waiting = 0  # the most of those while another URL was asked
        self.arrivals: list[tuple[float, str]] = []  # (server's clock, path) of every request
        self.refused: dict[str, float] = {}  # /hold/ path -> when its 429 was sent

    def asked_between(self, path: str) -> int:
        """Requests for other paths that arrived after `path`'s 429 was sent and before
        `path` was asked again."""
        sent = self.refused[path]
        again = [t for t, p in self.arrivals if p == path and t > sent]
        end = again[0] if again else float("inf")
        return sum(1 for t, p in self.arrivals if p != path and sent < t < end)

    def asked_within(self, path: str, seconds: float) -> int:
        """Requests for other paths that arrived within `seconds` after `path`'s 429."""
        sent = self.refused[path]
        return sum(1 for t, p in self.arrivals if p != path and sent < t < sent + seconds)

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
            srv.asked[self.path] += 1
            srv.arrivals.append((time.monotonic(), self.path))
            srv.peak = max(srv.peak, srv.inflight)
            over = srv.inflight > LIMIT
            if over:
                srv.over += 1
            srv.at_limit += srv.inflight == LIMIT
            waits = self.path.startswith("/wait/")
            if waits:
                srv.waiting += 1 if srv.asked[self.path] == 1 else -1
            else:
                srv.most_waiting = max(srv.most_waiting, srv.waiting)
        time.sleep(HOLD)
        # Out of the count before the answer leaves: the server never counts more than the
        # client has in flight (else the client's next request could race this thread).
        with srv.lock:
            srv.inflight -= 1
        held = self.path.startswith("/hold/") and srv.asked[self.path] == 1
        if held or (waits and srv.asked[self.path] == 1):
            # a 429 the pace puts down to the pace holds the whole host (the Fetcher waits it
            # in the host's turn); a 503, and a lone 429, only its URL
            self.send_response(429 if held else 503)
            self.send_header("Retry-After", str(RETRY_AFTER))
            self.send_header("Content-Length", "0")
            self.end_headers()
            if held:
                with srv.lock:
                    srv.refused[self.path] = time.monotonic()
            return
        name = self.path.rsplit("/", 1)[-1]
        blocked = over or self.path in srv.always
        body = CHALLENGE if blocked else f"<title>Page {name}</title><p>{name}</p>".encode()
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
    verdicts = _verdicts(post, out, db)
    return 0, {v: sum(1 for x in verdicts.values() if x == v) for v in set(verdicts.values())}


def _verdicts(post: Path, out: Path, db: Path, *more: str) -> dict[str, str]:
    """Check the post; each URL's verdict."""
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
            *more,
        ],
    )
    assert res.exit_code in (0, 1), res.output  # 1: a blocked link
    links = json.loads((out / "report.json").read_text())["links"]
    return {link["url"]: link["verdict"] for link in links}


def _learned(db: Path, port: int) -> tuple[int, int | None]:
    """The pace kept for the server: requests in flight, and the most known to pass."""
    with sqlite3.connect(db) as conn:
        limit, known = conn.execute(
            "SELECT pace_concurrency, pace_known_max FROM hosts WHERE host = ?",
            (f"127.0.0.1:{port}",),
        ).fetchone()
    return limit, known


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
    limit, known = _learned(db, guarded.port)
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


def test_urls_blocked_at_any_pace_neither_hold_the_pace_back_nor_pass(
    guarded: Guarded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "COOL_DOWN", 0.2)
    always = {f"/p/{i}" for i in (5, 17, 30, 41, 55, 68)}  # one URL in 13 (WeChat: one in 50)
    guarded.always = frozenset(always)
    post = tmp_path / "post.md"
    urls = [f"http://127.0.0.1:{guarded.port}/p/{i}" for i in range(URLS)]
    post.write_text("\n\n".join(f"- [Page {i}]({u})" for i, u in enumerate(urls)) + "\n")
    db = tmp_path / "history.sqlite"

    # no interval at first (the default 0.2 s, as long as a request here, would keep the pace
    # under two in flight for the first fifty answers): what is measured is the requests in flight
    verdicts = _verdicts(post, tmp_path / "r1", db, "--host-interval", "0")
    blocked = {u for u, v in verdicts.items() if v == "blocked"}
    assert blocked == {f"http://127.0.0.1:{guarded.port}{p}" for p in always}
    assert all(v == "ok" for u, v in verdicts.items() if u not in blocked)
    for p in always:  # asked again after a cool-down: blocked only if it stays so (a page
        # above the proven level is put down to the pace, and the URL asked once more)
        assert 2 <= guarded.asked[p] <= 1 + engine.COOL_DOWN_TRIES
    limit, known = _learned(db, guarded.port)
    # the pace reached the server's limit and stayed there: the always-blocked URLs were not
    # taken for load. A third, not a half: at a load average of 17 the client's own turn
    # between an answer and the next request left 36 of 80 arriving at the limit (the
    # learned pace below is what proves the point; this only says it was used)
    assert guarded.at_limit >= URLS // 3
    assert LIMIT <= known <= LIMIT + 1
    assert limit >= LIMIT - 1
    assert guarded.over <= 3 * LIMIT


def test_a_url_waiting_to_retry_gives_its_place_in_flight_back(
    guarded: Guarded, tmp_path: Path
) -> None:
    post = tmp_path / "post.md"
    waits = [f"http://127.0.0.1:{guarded.port}/wait/{i}" for i in range(8)]
    rest = [f"http://127.0.0.1:{guarded.port}/p/{i}" for i in range(20)]
    post.write_text("\n\n".join(f"- [Page {i}]({u})" for i, u in enumerate(waits + rest)) + "\n")
    db = tmp_path / "h.sqlite"
    verdicts = _verdicts(post, tmp_path / "r", db, "--retries", "1", "--host-interval", "0")
    assert set(verdicts.values()) == {"ok"}
    # The pace starts at two in flight and 28 clean answers grow it to 4 at most: had the
    # /wait/ URLs (503, Retry-After) held their places while asleep for their Retry-After,
    # no other URL could have been asked while more than 3 of them waited.
    limit, _ = _learned(db, guarded.port)
    assert limit <= 4
    assert guarded.most_waiting > 4


def test_a_host_held_by_a_retry_after_goes_on_after_it(guarded: Guarded, tmp_path: Path) -> None:
    # 429s from several URLs within a few answers (a host that limits the rate) hold the host:
    # the Fetcher waits the Retry-After in the host's turn for every URL of the host; those
    # waits keep
    # their places (given back, the requests let in meanwhile took every place and waited for
    # the turn, held by requests waiting for a place: the run hung).
    post = tmp_path / "post.md"
    holds = [f"/hold/{i}" for i in range(3)]
    urls = [f"http://127.0.0.1:{guarded.port}{p}" for p in holds]
    urls += [f"http://127.0.0.1:{guarded.port}/p/{i}" for i in range(40)]
    post.write_text("\n\n".join(f"- [Page {i}]({u})" for i, u in enumerate(urls)) + "\n")
    db = tmp_path / "h.sqlite"
    verdicts = _verdicts(post, tmp_path / "r", db, "--retries", "1", "--host-interval", "0")
    assert set(verdicts.values()) == {"ok"}
    assert all(guarded.asked[p] == 2 for p in holds)
    # held: after the last 429, nothing but requests already on their way (at most the pace's
    # two places) arrived within its Retry-After
    last = max(holds, key=guarded.refused.__getitem__)
    assert guarded.asked_within(last, RETRY_AFTER * 0.9) <= 2


def test_a_lone_429_holds_its_url_not_its_host(guarded: Guarded, tmp_path: Path) -> None:
    # One URL's 429 among clean answers says no more about the host than one verification
    # page does (crawler/pace.py): it waits its Retry-After in its retry, and the host's other
    # URLs go on meanwhile (a whole-blog run spent a second of WeChat's time on each of its
    # 132 such URLs).
    post = tmp_path / "post.md"
    urls = [f"http://127.0.0.1:{guarded.port}/p/{i}" for i in range(4)]
    urls += [f"http://127.0.0.1:{guarded.port}/hold/0"]
    urls += [f"http://127.0.0.1:{guarded.port}/p/{i}" for i in range(4, 40)]
    post.write_text("\n\n".join(f"- [Page {i}]({u})" for i, u in enumerate(urls)) + "\n")
    db = tmp_path / "h.sqlite"
    verdicts = _verdicts(post, tmp_path / "r", db, "--retries", "1", "--host-interval", "0")
    assert set(verdicts.values()) == {"ok"}
    assert guarded.asked["/hold/0"] == 2  # it waited its Retry-After and passed
    # held, only requests already on their way (at most the pace's places) would have come
    assert guarded.asked_between("/hold/0") >= 8


def _mixed_post(guarded: Guarded, tmp_path: Path) -> tuple[Path, set[str]]:
    """A post for the server with every way a URL is asked more than once: a 429 retried after
    its Retry-After (/hold/), 503s retried after theirs (/wait/), URLs blocked at any pace
    (asked again after their cool-down); the URLs expected blocked."""
    base = f"http://127.0.0.1:{guarded.port}"
    always = {"/p/3", "/p/19", "/p/33"}
    guarded.always = frozenset(always)
    urls = [f"{base}/hold/0"] + [f"{base}/wait/{i}" for i in range(2)]
    urls += [f"{base}/p/{i}" for i in range(45)]
    post = tmp_path / "post.md"
    post.write_text("\n\n".join(f"- [Page {i}]({u})" for i, u in enumerate(urls)) + "\n")
    return post, {base + p for p in always}


def _keep_pace(db: Path, port: int, pace: Pace) -> None:
    """What a run before left on `hosts` for the server."""
    store = Store.open(db)
    try:
        store.save_pace(f"127.0.0.1:{port}", pace, datetime.now(UTC))
    finally:
        store.close()


def _check_mixed(post: Path, out: Path, db: Path, blocked: set[str], ceiling: int) -> None:
    verdicts = _verdicts(
        post, out, db, "--retries", "1", "--host-interval", "0",
        "--host-concurrency", str(ceiling),
    )  # fmt: skip
    assert {u for u, v in verdicts.items() if v == "blocked"} == blocked
    assert all(v == "ok" for u, v in verdicts.items() if u not in blocked)


@pytest.mark.parametrize("ceiling", [8, 2])
def test_the_server_never_has_more_in_flight_than_the_kept_pace_or_the_ceiling(
    guarded: Guarded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ceiling: int
) -> None:
    # `crawler hosts` says "3x <=3": retries, a 429 waited, URLs asked again after
    # their cool-down and the Fetcher's own per-host gate (at the ceiling) never let a fourth
    # request reach the server; a ceiling under the kept pace is never crossed either.
    monkeypatch.setattr(engine, "COOL_DOWN", 0.2)
    monkeypatch.setitem(globals(), "RETRY_AFTER", 1)
    post, blocked = _mixed_post(guarded, tmp_path)
    db = tmp_path / "h.sqlite"
    _keep_pace(db, guarded.port, Pace(LIMIT, 0.0, known_max=LIMIT))
    _check_mixed(post, tmp_path / "r", db, blocked, ceiling)
    assert guarded.asked["/hold/0"] == 2 and guarded.asked["/wait/0"] == 2  # retried
    assert all(guarded.asked[p] >= 2 for p in guarded.always)  # asked again
    assert guarded.peak <= min(LIMIT, ceiling)
    assert guarded.over == 0


def test_a_probe_above_a_kept_pace_learns_no_more_than_the_server_allows(
    guarded: Guarded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The post's day 2: the day before ended at the server's limit without meeting it (no
    # known maximum), so the run probes above it; what it keeps is not above the limit, and
    # the next run stays under it.
    monkeypatch.setattr(engine, "COOL_DOWN", 0.2)
    monkeypatch.setitem(globals(), "RETRY_AFTER", 1)
    post, blocked = _mixed_post(guarded, tmp_path)
    db = tmp_path / "h.sqlite"
    _keep_pace(db, guarded.port, Pace(LIMIT, 0.0))
    _check_mixed(post, tmp_path / "r1", db, blocked, 8)
    limit, known = _learned(db, guarded.port)
    assert known is not None and known <= LIMIT
    assert limit <= known
    guarded.over = guarded.peak = 0
    _check_mixed(post, tmp_path / "r2", db, blocked, 8)
    assert guarded.peak <= LIMIT
    assert guarded.over == 0


def test_a_page_is_read_after_its_request_gave_its_host_place_back(
    guarded: Guarded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reading a page is the worker's CPU, not the host's time: done while the request held its
    # place, a busy worker kept the host under its pace (the Fetcher's retry predicate read
    # every page, to keep what it read, though the engine never retries a page for what it says).
    held: list[bool] = []
    read_page = engine.read_page

    def watched(*args: Any, **kw: Any) -> Any:
        slot = engine._SLOT.get()  # noqa: SLF001 - the engine's own record of the place
        held.append(slot is not None and slot.held)
        return read_page(*args, **kw)

    monkeypatch.setattr(engine, "read_page", watched)
    post = tmp_path / "post.md"
    urls = [f"http://127.0.0.1:{guarded.port}/p/{i}" for i in range(6)]
    post.write_text("\n\n".join(f"- [Page {i}]({u})" for i, u in enumerate(urls)) + "\n")
    verdicts = _verdicts(
        post, tmp_path / "r", tmp_path / "h.sqlite", "--host-interval", "0", "--retries", "2"
    )
    assert set(verdicts.values()) == {"ok"}
    assert len(held) == len(urls)  # each page read once
    assert not any(held)


def test_a_url_blocked_in_the_last_run_is_no_news_about_the_pace(
    guarded: Guarded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A whole-blog run's second day meets again the pages of the 366 WeChat URLs the first judged
    # blocked; three of them within eight answers at the proven level made a burst and halved
    # the pace. A URL blocked in the last run that shows its page again says nothing of the
    # pace: it is asked again after its cool-down, as any, and blocked if it stays so.
    monkeypatch.setattr(engine, "COOL_DOWN", 0.2)
    base = f"http://127.0.0.1:{guarded.port}"
    always = {f"/p/{i}" for i in (3, 4, 5)}  # together: at the proven level, a burst
    guarded.always = frozenset(always)
    post = tmp_path / "post.md"
    urls = [f"{base}/p/{i}" for i in range(30)]
    post.write_text("\n\n".join(f"- [Page {i}]({u})" for i, u in enumerate(urls)) + "\n")
    db = tmp_path / "h.sqlite"
    _keep_pace(db, guarded.port, Pace(LIMIT, 0.0, known_max=LIMIT))
    first = _verdicts(post, tmp_path / "r1", db, "--host-interval", "0")
    assert {u for u, v in first.items() if v == "blocked"} == {base + p for p in always}

    heard: list[tuple[str, Outcome]] = []
    record = engine.PaceController.record

    def listened(self: Any, outcome: Outcome, started: float, inflight: int | None = None,
                 url: str | None = None) -> Any:  # fmt: skip
        heard.append((urlsplit(url or "").path, outcome))
        return record(self, outcome, started, inflight, url)

    monkeypatch.setattr(engine.PaceController, "record", listened)
    asked = Counter(guarded.asked)
    second = _verdicts(post, tmp_path / "r2", db, "--host-interval", "0")
    assert second == first
    for p in always:  # asked again after a cool-down, as in the first run
        assert guarded.asked[p] - asked[p] == 2
    assert {o for p, o in heard if p in always} == {Outcome.NEUTRAL}
    assert Outcome.SLOW_DOWN not in {o for p, o in heard if p not in always}


def test_a_redirect_to_the_verification_page_is_heard_as_the_page_and_never_asked_for(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # WeChat's 302 to /mp/wappoc_appmsgcaptcha is its verification page: the pace hears it as
    # one, the URL is asked again after a cool-down and is blocked when it stays so, and the
    # Location is not asked for (on the whole blog: 732 requests, 4.5 % of WeChat's).
    monkeypatch.setattr(engine, "COOL_DOWN", 0.2)
    # the local server answers absolute-form requests: WeChat's name reaches it as a proxy
    monkeypatch.setenv("HTTP_PROXY", server.url(""))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    captcha = "http://mp.weixin.qq.com/mp/wappoc_appmsgcaptcha?poc_token=x"
    url = f"http://mp.weixin.qq.com/redirect/302?to={quote(captcha, safe='')}"
    ok = "http://mp.weixin.qq.com/page/article"
    post = tmp_path / "post.md"
    post.write_text(f"- [a]({url})\n\n- [b]({ok})\n")
    heard: list[tuple[str, Outcome]] = []
    record = engine.PaceController.record

    def listened(self: Any, outcome: Outcome, started: float, inflight: int | None = None,
                 url: str | None = None) -> Any:  # fmt: skip
        heard.append((url or "", outcome))
        return record(self, outcome, started, inflight, url)

    monkeypatch.setattr(engine.PaceController, "record", listened)
    db = tmp_path / "h.sqlite"
    assert _verdicts(post, tmp_path / "r", db) == {url: "blocked", ok: "ok"}
    asked = {p: n for p, n in server.hits.items() if n}
    assert not [p for p in asked if "wappoc" in urlsplit(p).path], asked
    assert sum(n for p, n in asked.items() if "/redirect/302" in p) == 2, asked
    assert [o for u, o in heard if u == url] == [Outcome.SLOW_DOWN, Outcome.SLOW_DOWN]
    (link,) = [
        x for x in json.loads((tmp_path / "r" / "report.json").read_text())["links"]
        if x["url"] == url
    ]  # fmt: skip
    assert (link["reason"], link["http_status"], link["final_url"], link["page_kind"]) == (
        "anti-robot",
        302,
        captcha,
        "anti-robot",
    )
    res = CliRunner().invoke(cli, ["hosts", "--db", str(db), "--json"])
    (row,) = [json.loads(line) for line in res.output.splitlines()]
    assert row["verification_pages"] == 2
