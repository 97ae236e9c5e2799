"""Worker processes (crawler/engine.py, `crawler worker`) and parallel `crawler extract`: real
processes, real servers, a real SQLite history."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from crawler import workproc
from crawler.cli import cli
from crawler.config import FetchSettings, can_fork, usable_cpus
from crawler.engine import (
    MAX_WORKERS,
    MIN_URLS,
    RunOptions,
    Worker,
    plan_run,
    plan_workers,
    url_tasks,
)
from crawler.store import Store
from crawler.types import Link
from tests.procs import running_cli, wait_for_stopping, wait_while_running
from tests.server import LocalServer, wait_for

pytestmark = pytest.mark.skipif(not can_fork(), reason="POSIX processes")

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


def test_plan_workers() -> None:
    assert plan_workers(None, MIN_URLS - 1, 50, 64) == 1  # short lists stay in-process
    assert plan_workers(None, MIN_URLS, 1, 64) == 1  # one host cannot be split
    assert plan_workers(1, 100_000, 50, 64) == 1
    assert plan_workers(3, 10, 2, 64) == 2  # never more workers than hosts
    assert plan_workers(64, 10, 100, 64) == MAX_WORKERS
    assert plan_workers(4, 10, 100, 3) == 3  # each worker needs a request of the global limit
    assert plan_workers(4, 10, 100, 1) == 1
    assert plan_workers(None, MIN_URLS, 50, 64) == min(usable_cpus(), MAX_WORKERS)
    assert plan_workers(0, 100_000, 1, 1) == 0  # none here: `crawler worker`s check the run


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
    real_start = workproc.start

    def counting_start(n: int, *args: Any) -> list[BaseProcess]:
        started.append(n)
        return real_start(n, *args)

    monkeypatch.setattr(workproc, "start", counting_start)
    post = write_post(tmp_path / "post.md", _urls(servers))
    got = {}
    for w in ("1", "2"):
        out = tmp_path / f"r{w}"
        r = check(post, out, w, "--no-history")
        assert r.exit_code == 3, r.output  # the 404s are dead
        got[w] = _verdicts(out / "report.json")
    assert sum(started) == 2  # --workers 2 started two worker processes; --workers 1 none
    assert got["1"] == got["2"]
    assert [v for _, v, _, _ in got["2"]].count("ok") == 12
    # and with the history: every check stored once
    r = check(post, tmp_path / "rh", "3")
    assert r.exit_code == 3, r.output
    assert sum(started) == 5
    conn = sqlite3.connect(history_db)
    assert conn.execute("SELECT count(*) FROM checks").fetchone()[0] == len(_urls(servers))
    assert conn.execute("SELECT status FROM runs").fetchall() == [("complete",)]
    conn.close()


def test_the_run_ends_with_its_last_host_not_with_an_idle_worker_s_next_look(
    tmp_path: Path, servers: list[LocalServer], history_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker with no host left looks at the store every `poll` seconds for hosts other
    # workers still hold; here an hour: the run must end once its last host is done, the idle
    # worker stopped by the parent, not when that worker looks again.
    assert Worker.__init__.__kwdefaults__ is not None
    monkeypatch.setitem(Worker.__init__.__kwdefaults__, "poll", 3600.0)
    tag = tmp_path.name
    urls = [servers[0].url(f"/page/plain?t={tag}")]
    urls += [servers[1].url(f"/slow?s=0.3&k={k}&t={tag}") for k in range(3)]
    post = write_post(tmp_path / "post.md", urls)
    r = check(post, tmp_path / "r", "2", "--max-concurrency", "2", "--host-concurrency", "1")
    assert r.exit_code == 0, r.output
    conn = sqlite3.connect(history_db)
    rows = conn.execute("SELECT url, count(*) FROM checks GROUP BY url").fetchall()
    assert sorted(rows) == sorted((u, 1) for u in urls)
    assert conn.execute("SELECT status FROM runs").fetchall() == [("complete",)]
    conn.close()


_LOADED = (
    "import atexit, sys\n"
    "NAMES = ('httpx', 'aiohttp', 'selectolax', 'crawler.cli')\n"
    "atexit.register(lambda: print('loaded:', *[m for m in NAMES if m in sys.modules],"
    " file=sys.stderr))\n"
    "from crawler.start import main\nsys.argv[1:] = sys.argv[2:]\nmain()\n"
)


def test_a_run_planned_for_workers_elsewhere_loads_no_http_stack(
    tmp_path: Path, servers: list[LocalServer], history_db: Path
) -> None:
    # The parent plans, waits and reports: the HTTP stack and the parser are the workers'
    # (bench/README.md: ~7 MB of the parent's memory). It loads them only to fork its own.
    post = write_post(tmp_path / "post.md", _urls(servers))
    args = ["check", str(post), "--report-dir", str(tmp_path / "r"), "--db", str(history_db)]
    for workers, loaded in (("0", "crawler.cli"), ("2", "httpx aiohttp selectolax crawler.cli")):
        budget = ["--budget", "1s"] if workers == "0" else []  # no `crawler worker` comes
        done = subprocess.run(
            [sys.executable, "-c", _LOADED, "-", *args, "--workers", workers, *budget, *FAST],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode in (0, 3), done.stderr
        assert done.stderr.splitlines()[-1] == f"loaded: {loaded}"


def test_workers_forked_by_a_parent_on_postgresql_check_every_link_once(
    tmp_path: Path, servers: list[LocalServer], pg_url: str
) -> None:
    # The parent's connection is open when it forks: each worker opens its own and never
    # touches the parent's (crawler/workproc.py), which serves the reports afterwards.
    import psycopg

    post = write_post(tmp_path / "post.md", _urls(servers))
    r = check(post, tmp_path / "r", "2", "--db", pg_url)
    assert r.exit_code == 3, r.output  # the 404s are dead
    assert len(_verdicts(tmp_path / "r" / "report.json")) == len(_urls(servers))
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT url, count(*) FROM checks GROUP BY url").fetchall()
        assert sorted(rows) == sorted((u, 1) for u in _urls(servers))
        assert conn.execute("SELECT status FROM runs").fetchall() == [("complete",)]


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


@pytest.mark.anyio
async def test_two_runs_on_one_history_stay_apart(server: LocalServer, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    a = [Link(server.url(f"/page/plain?run=a&n={n}"), n + 1) for n in range(3)]
    b = [Link(server.url(f"/status/404?run=b&n={n}"), n + 1) for n in range(2)]
    ids = {}
    for name, links in (("a", a), ("b", b)):
        ids[name] = plan_run(
            store, url_tasks(links), started=now, sources=[f"{name}.md"], digests={},
            history=True, options=RunOptions(),
        )  # fmt: skip
    fast = FetchSettings(host_interval=0, retries=0)
    await Worker(store, ids["b"], fast).run()  # b's worker leaves a's URLs alone
    assert not any("run=a" in p for p in server.hits)
    assert store.open_hosts(ids["a"]) == 1 and store.checked(ids["a"]) == 0
    await Worker(store, ids["a"], fast).run()
    for name, links in (("a", a), ("b", b)):
        store.finish_run(ids[name], now, "complete")
        run = store.load_run(ids[name])
        assert [c.link for c in run.checks] == links
    assert sum(n for p, n in server.hits.items() if "run=" in p) == 5  # each URL once
    store.close()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _slow_run(
    tmp_path: Path, servers: list[LocalServer], seconds: float, fast: int = 0
) -> tuple[list[str], list[str]]:
    """`crawler check --workers 2` of `fast` plain pages and two slow ones per host; its URLs."""
    tag = tmp_path.name  # this test's own requests, not an earlier test's still being served
    urls = []
    for s in servers:
        urls += [s.url(f"/page/plain?k={k}&t={tag}") for k in range(fast)]
        urls += [s.url(f"/slow?s={seconds}&k={k}&t={tag}") for k in range(2)]
    post = write_post(tmp_path / "slow.md", urls)
    args = [sys.executable, "-m", "crawler", "check", str(post), "--report-dir",
            str(tmp_path / "r"), "--workers", "2", "--max-concurrency", "2",
            "--host-concurrency", "1", *FAST, "--timeout", "60"]  # fmt: skip
    return args, urls


def _wait_for_workers(
    proc: subprocess.Popen[bytes], servers: list[LocalServer], tag: str
) -> list[int]:
    """The two worker processes, once both are fetching: each has one request slot (--max-
    concurrency 2 shared by two), so two requests of this test in flight are one from each."""

    def started() -> int:
        return sum(n for s in servers for p, n in list(s.hits.items()) if tag in p)

    def ready() -> bool:
        return started() >= 2 and len(_children(proc.pid)) == 2

    wait_for(ready, lambda: proc.poll() is None, "both workers fetched")
    return _children(proc.pid)


def _holders(db: Path) -> set[int]:
    """Pids of the workers holding host leases."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT lease_owner FROM run_hosts WHERE lease_owner IS NOT NULL")
        return {int(owner.split(":")[-2]) for (owner,) in rows}
    finally:
        conn.close()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_a_killed_worker_leaves_its_hosts_to_the_other(
    tmp_path: Path, servers: list[LocalServer], history_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRAWLER_LEASE_SECONDS", "1")  # a killed worker's leases expire soon
    args, urls = _slow_run(tmp_path, servers, 1.0)
    tag = tmp_path.name
    with running_cli(args) as proc:
        kids = _wait_for_workers(proc, servers, tag)
        held: list[int] = []

        def holding() -> bool:  # a worker leases a host before it asks it anything
            held[:] = sorted(_holders(history_db) & set(kids))
            return bool(held)

        wait_for(holding, lambda: proc.poll() is None, "a worker held a lease")
        victim = held[0]
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    conn = sqlite3.connect(history_db)
    rows = conn.execute("SELECT url, count(*) FROM checks GROUP BY url").fetchall()
    assert sorted(rows) == sorted((u, 1) for u in urls)  # each checked once, none lost
    assert conn.execute("SELECT status FROM runs").fetchall() == [("complete",)]
    conn.close()
    # the victim's hosts were finished by the other worker: some URLs were asked for twice
    asked = sum(n for s in servers for p, n in s.hits.items() if tag in p)
    assert asked >= len(urls)
    assert not any(Path(f"/proc/{k}").exists() for k in kids)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_run_stops_its_workers_and_keeps_their_checks(
    tmp_path: Path, servers: list[LocalServer], history_db: Path, sig: signal.Signals
) -> None:
    args, urls = _slow_run(tmp_path, servers, 30, fast=2)
    with running_cli(args) as proc:
        kids = _wait_for_workers(proc, servers, tmp_path.name)
        conn = sqlite3.connect(history_db)

        def written() -> bool:
            return bool(conn.execute("SELECT count(*) FROM checks").fetchone()[0] >= 2)

        wait_while_running(proc, written, "two checks were written")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert not any(Path(f"/proc/{k}").exists() for k in kids)
    kept = conn.execute("SELECT url FROM checks").fetchall()
    assert len(kept) >= 2 and len(set(kept)) == len(kept)
    assert conn.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    assert conn.execute(
        "SELECT count(*) FROM run_hosts WHERE lease_owner IS NOT NULL"
    ).fetchone() == (0,)  # every lease given back
    conn.close()


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


def test_a_killed_runs_leases_are_freed_by_the_next_check(
    tmp_path: Path, server: LocalServer, history_db: Path
) -> None:
    import socket

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a worker of a run killed with kill -9: its pid is gone, its lease is not
    store = Store.open(history_db)
    links = [Link(server.url("/page/plain?run=killed"), 1)]
    killed = plan_run(
        store, url_tasks(links), started=datetime.now(UTC), sources=["k.md"], digests={},
        history=True, options=RunOptions(),
    )  # fmt: skip
    owner = f"{socket.gethostname()}:{gone.pid}:dead"
    assert store.lease_host(killed, owner, 3600, time.time()) is not None
    store.close()
    post = write_post(tmp_path / "post.md", [server.url("/page/plain?after=kill")])
    r = check(post, tmp_path / "r", "1")
    assert r.exit_code == 0, r.output
    conn = sqlite3.connect(history_db)
    held = conn.execute("SELECT lease_owner FROM run_hosts WHERE run_id = ?", (killed,))
    assert held.fetchall() == [(None,)]  # a `crawler worker` may finish that run at once
    assert conn.execute("SELECT status FROM runs WHERE id = ?", (killed,)).fetchone() == (
        "interrupted",
    )
    conn.close()


# ------------------------------------------------------------- SIGTERM: in-flight requests


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_on_check_finishes_the_requests_in_flight_and_writes_their_checks(
    tmp_path: Path, history_db: Path, workers: str
) -> None:
    from tests.heldserver import HeldServer

    with HeldServer() as a, HeldServer() as b:
        urls = [s.url(f"/p/{i}") for s in (a, b) for i in range(5)]
        post = write_post(tmp_path / "post.md", urls)
        args = [
            sys.executable, "-m", "crawler", "-v", "check", str(post), "--db", str(history_db),
            "--workers", workers, "--report-dir", str(tmp_path / "r"), "--host-concurrency", "2",
            "--max-concurrency", "8", "--retries", "0", "--host-interval", "0", "--timeout", "60",
        ]  # fmt: skip
        with running_cli(args) as proc:
            a.wait_for(2)  # two requests on each host, held
            b.wait_for(2)
            proc.send_signal(signal.SIGTERM)
            if workers == "1":  # in-process: it says when it has stopped starting requests
                wait_for_stopping(proc)
            a.release()
            b.release()
            _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert b"Traceback" not in err
        sent = {s.url(p) for s in (a, b) for p in s.arrived}
        if workers == "1":
            assert len(sent) == 4  # nothing started after the signal
    conn = sqlite3.connect(history_db)
    rows = conn.execute("SELECT url, http_status FROM checks").fetchall()
    assert sorted(rows) == sorted((u, 200) for u in sent)  # every request in flight, once
    assert conn.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    assert conn.execute(
        "SELECT count(*) FROM run_hosts WHERE lease_owner IS NOT NULL"
    ).fetchone() == (0,)
    conn.close()


# ------------------------------------------------------------------- the worker's event loop


@pytest.mark.parametrize("installed", [True, False])
def test_a_worker_runs_on_uvloop_where_it_is_installed_else_on_asyncio_s_loop(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed: bool
) -> None:
    import asyncio

    import uvloop

    import crawler.pipeline

    db = tmp_path / "h.sqlite"
    store = Store.open(db)
    links = [Link(server.url(f"/page/plain?loop={installed}&n={n}"), n + 1) for n in range(3)]
    run_id = plan_run(
        store, url_tasks(links), started=datetime.now(UTC), sources=["l.md"], digests={},
        history=True, options=RunOptions(),
    )  # fmt: skip
    store.close()
    if not installed:
        monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    loops: list[asyncio.AbstractEventLoop] = []
    run = Worker.run

    async def seen(self: Worker) -> None:
        loops.append(asyncio.get_running_loop())
        await run(self)

    monkeypatch.setattr(Worker, "run", seen)
    fast = FetchSettings(host_interval=0, retries=0)
    assert crawler.pipeline.work_on_run(db, run_id, fast) == 0
    (loop,) = loops
    assert isinstance(loop, uvloop.Loop) is installed
    assert isinstance(loop, asyncio.SelectorEventLoop) is not installed
    store = Store.open(db)
    assert store.checked(run_id) == 3
    store.close()
    assert sum(n for p, n in server.hits.items() if f"loop={installed}" in p) == 3


def _many_runs_of_many_hosts(store: Any, runs: int, hosts: int) -> int:
    """A history of `runs` planned runs of `hosts` hosts each, every lease given back (as
    finished runs leave them); the last run's id."""
    from crawler.engine import url_tasks

    run = 0
    for r in range(runs):
        links = [Link(f"http://h{i}.test/{r}", i + 1, None, (), "p.md") for i in range(hosts)]
        run = store.plan_run(datetime.now(UTC), ["p.md"], {}, {}, url_tasks(links))
    return run


def test_renewing_a_worker_s_leases_reads_its_leases_not_the_history_s_hosts(
    tmp_path: Path,
) -> None:
    """A worker renews its leases every few seconds by owner: in a history of 20 runs of
    2,000 hosts that read each of the 40,000 rows (a scan, 120,096 SQLite steps); from the
    index of leased rows it reads the worker's few. Counted in SQLite's own steps."""
    store = Store.open(tmp_path / "h.sqlite")
    try:
        run = _many_runs_of_many_hosts(store, 20, 2000)
        now = time.time()
        held = {store.lease_host(run, "m:1:x", 60.0, now) for _ in range(3)}
        steps = 0

        def step() -> int:
            nonlocal steps
            steps += 1
            return 0

        store.conn.set_progress_handler(step, 1)
        renewed = store.renew_leases("m:1:x", 60.0, now + 1)
        store.conn.set_progress_handler(None, 1)
        assert renewed == {(run, h) for h in held} and len(renewed) == 3
        assert steps < 2000, steps
    finally:
        store.close()
