"""Fetch workers (crawler/workers.py) and parallel `crawler extract`: real forks, real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from crawler.cli import cli
from crawler.config import can_fork, usable_cpus
from crawler.fetch import host_key
from crawler.workers import (
    MAX_WORKERS,
    MIN_URLS,
    FetchPool,
    plan_workers,
    shard,
    site_key,
    split_limit,
)
from tests.procs import running_cli
from tests.server import LocalServer

pytestmark = pytest.mark.skipif(not can_fork(), reason="workers are forked")

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "5"]


@pytest.fixture(scope="module")
def servers() -> Iterator[list[LocalServer]]:
    """Three hosts (one server each, so each counts its own requests in flight)."""
    started = [LocalServer().start() for _ in range(3)]
    try:
        yield started
    finally:
        for s in started:
            s.stop()


def check(post: Path, out: Path, workers: str, *args: str) -> Result:
    """`crawler check` in this process, with fast settings and `--workers`."""
    return CliRunner().invoke(
        cli, ["check", str(post), "--report-dir", str(out), "--workers", workers, *args, *FAST]
    )


def write_post(path: Path, urls: list[str]) -> Path:
    path.write_text("\n\n".join(f"{u}\n\nPlain page" for u in urls) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ planning


def test_shard_keeps_each_host_whole_balanced_and_in_order() -> None:
    urls = [f"http://h{i % 5}.test/{i}" for i in range(50)] + [
        f"http://big.test/{i}" for i in range(30)
    ]
    parts = shard(urls, 2, host_key)
    assert sorted(u for p in parts for u in p) == sorted(urls)
    owners = {host_key(u): i for i, p in enumerate(parts) for u in p}
    for i, p in enumerate(parts):
        assert all(owners[host_key(u)] == i for u in p)  # a host never spans two workers
        assert p == [u for u in urls if u in set(p)]  # the list's own order
    assert sorted(len(p) for p in parts) == [40, 40]


def test_split_limit_never_exceeds_the_global_limit() -> None:
    assert split_limit(64, [5000, 5000]) == [32, 32]
    assert split_limit(64, [9000, 1000]) == [58, 6]
    assert split_limit(7, [1, 1, 1]) == [3, 2, 2]
    assert split_limit(10, [100, 0]) == [10, 0]
    for total in range(2, 40):
        for weights in ([1, 1], [3, 1, 7], [100, 1, 1, 1]):
            shares = split_limit(total, weights)
            assert sum(shares) <= max(total, len(weights))
            assert all(s >= 1 for s in shares)


def test_plan_workers() -> None:
    assert plan_workers(0, MIN_URLS - 1, 50, 64) == 1  # short lists stay in-process
    assert plan_workers(0, MIN_URLS, 1, 64) == 1  # one site cannot be split
    assert plan_workers(1, 100_000, 50, 64) == 1
    assert plan_workers(3, 10, 2, 64) == 2  # never more workers than sites
    assert plan_workers(64, 10, 100, 64) == MAX_WORKERS
    assert plan_workers(4, 10, 100, 3) == 3  # each worker needs a request of the global limit
    assert plan_workers(4, 10, 100, 1) == 1
    assert plan_workers(0, MIN_URLS, 50, 64) == min(usable_cpus(), MAX_WORKERS)


def test_site_key_groups_the_hosts_that_share_cookies() -> None:
    assert site_key("a.example.com") == site_key("b.example.com") == "example.com"
    assert site_key("mp.weixin.qq.com:8443") == "qq.com"
    assert site_key("127.0.0.2:18480") == "127.0.0.2:18480"
    assert site_key("[::1]:8080") == "[::1]:8080"


def test_the_limit_goes_where_it_can_be_used() -> None:
    from crawler.config import FetchSettings
    from crawler.workers import _capacity

    # two big hosts (2 in flight each at most) against a hundred one-URL hosts
    big = [f"http://h{h}.test/{i}" for h in range(2) for i in range(300)]
    small = [f"http://s{h}.test/" for h in range(100)]
    s = FetchSettings(max_concurrency=16, host_concurrency=2)
    weights = [_capacity(big, s), _capacity(small, s)]
    assert weights == [4, 100]
    shares = split_limit(16, weights)
    assert shares[0] <= 4 and sum(shares) == 16


# ------------------------------------------------------------------------------ check runs


def _urls(servers: list[LocalServer]) -> list[str]:
    urls = []
    for i, s in enumerate(servers):
        urls += [s.url(f"/page/plain?w={i}&n={n}") for n in range(4)]
        urls += [s.url(f"/status/404?w={i}"), s.url(f"/status/410?w={i}")]
    return urls


def _verdicts(report: Path) -> list[tuple[str, str, str, str | None]]:
    doc = json.loads(report.read_text(encoding="utf-8"))
    return [(x["url"], x["verdict"], x["reason"], x.get("title")) for x in doc["links"]]


def test_workers_give_the_same_report_as_one_process(
    tmp_path: Path, servers: list[LocalServer], history_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    real_start = FetchPool.start

    def counting_start(self: FetchPool[object]) -> FetchPool[object]:
        started.append(self.n)
        return real_start(self)

    monkeypatch.setattr(FetchPool, "start", counting_start)
    post = write_post(tmp_path / "post.md", _urls(servers))
    got = {}
    for w in ("1", "2"):
        out = tmp_path / f"r{w}"
        r = check(post, out, w, "--no-history")
        assert r.exit_code == 3, r.output  # the 404s are dead
        got[w] = _verdicts(out / "report.json")
    assert started == [2]  # --workers 2 did fork two workers; --workers 1 none
    assert got["1"] == got["2"]
    assert [v for _, v, _, _ in got["2"]].count("ok") == 12
    # and with the history: every check stored once
    r = check(post, tmp_path / "rh", "3")
    assert r.exit_code == 3, r.output
    assert started == [2, 3]
    import sqlite3

    conn = sqlite3.connect(history_db)
    assert conn.execute("SELECT count(*) FROM checks").fetchone()[0] == len(_urls(servers))
    assert conn.execute("SELECT status FROM runs").fetchall() == [("complete",)]
    conn.close()


def test_per_host_limits_hold_across_workers(tmp_path: Path, servers: list[LocalServer]) -> None:
    for s in servers:
        s.reset()
    urls = [s.url(f"/slow?s=0.2&k={k}") for s in servers for k in range(6)]
    post = write_post(tmp_path / "post.md", urls)
    r = check(post, tmp_path / "r", "2", "--no-history", "--host-concurrency", "2")
    assert r.exit_code == 0, r.output
    for s in servers:
        assert 1 <= s.peaks["slow"] <= 2
        assert sum(n for p, n in s.hits.items() if p.startswith("/slow")) == 6


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _args(tmp_path: Path, servers: list[LocalServer]) -> list[str]:
    tag = tmp_path.name  # this test's own requests, not an earlier test's still being served
    urls = [s.url(f"/slow?s=30&k={k}&t={tag}") for s in servers for k in range(2)]
    post = write_post(tmp_path / "slow.md", urls)
    return [sys.executable, "-m", "crawler", "check", str(post), "--report-dir",
            str(tmp_path / "r"), "--workers", "2", *FAST, "--timeout", "60"]  # fmt: skip


def _wait_for_workers(
    proc: subprocess.Popen[bytes], servers: list[LocalServer], tag: str
) -> list[int]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        kids = _children(proc.pid)
        started = sum(n for s in servers for p, n in list(s.hits.items()) if tag in p)
        if len(kids) == 2 and started >= 2:
            return kids
        assert proc.poll() is None, "the run ended early"
        time.sleep(0.05)
    raise AssertionError("the workers never started fetching")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_a_dead_worker_is_one_line_and_a_failed_run(
    tmp_path: Path, servers: list[LocalServer]
) -> None:
    with running_cli(_args(tmp_path, servers)) as proc:
        kids = _wait_for_workers(proc, servers, tmp_path.name)
        os.kill(kids[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    text = err.decode()
    assert "Traceback" not in text
    assert "a fetch worker stopped unexpectedly (killed by signal 9)" in text
    assert not any(Path(f"/proc/{k}").exists() for k in kids)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_run_stops_its_workers(
    tmp_path: Path, servers: list[LocalServer], sig: signal.Signals
) -> None:
    with running_cli(_args(tmp_path, servers)) as proc:
        kids = _wait_for_workers(proc, servers, tmp_path.name)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert not any(Path(f"/proc/{k}").exists() for k in kids)


# ------------------------------------------------------------------------------ extract -j


def test_extract_in_parallel_prints_the_same_lines_in_order(tmp_path: Path) -> None:
    pages = []
    for i in range(70):
        p = tmp_path / f"p{i:02}.html"
        pad = "x" * (i * 300)  # uneven sizes: the split is by bytes
        p.write_text(
            f"<html><head><title>页面 {i}</title></head><body><p>{pad}</p>"
            f"<p>第 {i} 篇的第一段，足够长的一句话，用来当作摘要。</p></body></html>",
            encoding="utf-8",
        )
        pages.append(str(p))
    pages.insert(40, str(tmp_path / "missing.html"))
    runner = CliRunner()
    one = runner.invoke(cli, ["extract", "-j", "1", *pages])
    many = runner.invoke(cli, ["extract", "-j", "3", *pages])
    assert one.exit_code == many.exit_code == 1  # the missing page
    assert many.output == one.output
    lines = [json.loads(x) for x in many.output.splitlines()]
    assert [x["file"] for x in lines] == pages
    assert lines[40]["error"]
    assert [x["title"] for x in lines if "title" in x] == [f"页面 {i}" for i in range(70)]


def test_a_worker_error_reads_as_it_does_without_workers(
    tmp_path: Path, servers: list[LocalServer]
) -> None:
    jar = tmp_path / "cookies.txt"
    jar.write_text("this is not a cookies.txt file\n", encoding="utf-8")
    post = write_post(tmp_path / "post.md", _urls(servers))
    out = {}
    for w in ("1", "2"):
        r = check(post, tmp_path / "r", w, "--no-history", "--cookie-jar", str(jar))
        assert r.exit_code == 1, r.output
        assert "Traceback" not in r.output
        out[w] = r.output.strip().splitlines()[-1]
    assert "cannot read the cookie jar" in out["1"]
    assert out["2"] == out["1"]


def test_an_unreadable_page_in_a_reading_process_keeps_its_place(tmp_path: Path) -> None:
    pages = []
    for i in range(40):
        p = tmp_path / f"p{i:02}.html"
        p.write_text(f"<title>t{i}</title><p>{'x' * 200}</p>", encoding="utf-8")
        pages.append(str(p))
    # A directory among the pages makes read_bytes fail: an error line, not a dead child.
    pages[30] = str(tmp_path)
    r = CliRunner().invoke(cli, ["extract", "-j", "2", *pages])
    lines = [json.loads(x) for x in r.output.splitlines()]
    assert r.exit_code == 1
    assert [x["file"] for x in lines] == pages
    assert "error" in lines[30] and all("title" in x for i, x in enumerate(lines) if i != 30)


@pytest.mark.anyio
async def test_a_damaged_frame_ends_the_worker_instead_of_hanging() -> None:
    import asyncio
    import struct

    from crawler.workers import _read_frames

    r, w = os.pipe()
    os.write(w, struct.pack("!I", 5) + b"\x00garb")  # a whole frame that is not a pickle
    os.close(w)
    queue: asyncio.Queue[tuple[int, str, object]] = asyncio.Queue()
    await asyncio.wait_for(_read_frames(0, r, queue), 5)
    assert queue.get_nowait() == (0, "eof", None)
    os.close(r)
