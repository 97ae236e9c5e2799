"""How long a worker's store calls hold its event loop, on PostgreSQL and on SQLite.

    .venv/bin/python bench/pg_store_time.py [--links 20000] [--hosts 200] [--delay 0.02]

The worker hands its store steps to Store.off_loop: SQLite's run on the loop's own thread (while
one runs, the loop does nothing else: no response is read, no request started), PostgreSQL's in
a thread on a pooled connection. This plans one run per backend on a loopback host farm
(tests/hostfarm.py) and a throwaway cluster (tests/pg.py), works it with one in-process Worker
whose store is wrapped to time every call, and prints per method the calls, their total and
longest time and the thread they ran on, and the share of the run's wall time the loop's own
thread spent inside store calls. A ticker every 10 ms gives the loop's lag as requests feel it.
Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crawler.config import FetchSettings  # noqa: E402
from crawler.db import PgUrl, open_store  # noqa: E402
from crawler.engine import RunOptions, Worker, plan_run, url_tasks  # noqa: E402
from crawler.types import Link  # noqa: E402
from tests.hostfarm import HostFarm  # noqa: E402
from tests.pg import PgCluster, find_bindir  # noqa: E402

TICK = 0.01


class Timed:
    """A store whose every method call is timed (seconds per method name)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.times: dict[str, list[float]] = defaultdict(list)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        if name == "off_loop":
            return attr  # the step it is given is timed, on the thread it runs on

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                where = "" if threading.current_thread() is threading.main_thread() else " (off)"
                self.times[name + where].append(time.perf_counter() - t0)

        return timed


async def _work(store: Timed, run_id: int, settings: FetchSettings) -> tuple[float, list[float]]:
    lags: list[float] = []
    loop = asyncio.get_running_loop()

    async def ticker() -> None:
        while True:
            t = loop.time()
            await asyncio.sleep(TICK)
            lags.append(loop.time() - t - TICK)

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    await Worker(store, run_id, settings).run()  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    tick.cancel()
    return wall, lags


def measure(db: Any, links: list[Link], settings: FetchSettings) -> dict[str, Any]:
    store = open_store(db)
    try:
        run_id = plan_run(
            store, url_tasks(links), started=datetime.now(UTC), sources=["bench.md"],
            digests={}, history=True, options=RunOptions(),
        )  # fmt: skip
        timed = Timed(store)
        wall, lags = asyncio.run(_work(timed, run_id, settings))
        t0 = time.perf_counter()
        store.finish_run(run_id, datetime.now(UTC), "complete")
        finish = time.perf_counter() - t0
        assert store.checked(run_id) == len(links), "not every link was checked"
        return {"wall": wall, "times": dict(timed.times), "lags": lags, "finish": finish}
    finally:
        store.close()


def report(name: str, n: int, r: dict[str, Any]) -> None:
    times: dict[str, list[float]] = r["times"]
    total = sum(sum(v) for k, v in times.items() if not k.endswith(" (off)"))
    off = sum(sum(v) for k, v in times.items() if k.endswith(" (off)"))
    lags = sorted(r["lags"])
    print(f"\n{name}: {n:,} links in {r['wall']:.1f} s ({n / r['wall']:.0f} links/s); "
          f"store calls on the loop's thread {total:.2f} s = {100 * total / r['wall']:.1f} % "
          f"of the wall time, off it (in threads) {off:.2f} s; "
          f"finish_run (after the loop) {r['finish']:.2f} s")  # fmt: skip
    print(f"loop lag over {len(lags)} ticks of {TICK * 1000:.0f} ms: median "
          f"{1000 * statistics.median(lags):.1f} ms, p99 {1000 * lags[int(len(lags) * 0.99)]:.1f} "
          f"ms, max {1000 * lags[-1]:.1f} ms")  # fmt: skip
    print("| method ((off): in a thread) | calls | total s | mean ms | max ms |")
    print("|---|---|---|---|---|")
    for method, v in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        print(f"| {method} | {len(v)} | {sum(v):.2f} | {1000 * sum(v) / len(v):.1f} | "
              f"{1000 * max(v):.1f} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--links", type=int, default=20_000)
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--delay", type=float, default=0.02)
    ap.add_argument("--max-concurrency", type=int, default=64)
    opts = ap.parse_args()
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found")
    farm = HostFarm(opts.hosts, delay=opts.delay).start()
    cluster = PgCluster(bindir).init().start().setup_roles()
    settings = FetchSettings(max_concurrency=opts.max_concurrency, host_interval=0, retries=0)
    print(f"{opts.links:,} links, {opts.hosts} hosts, {opts.delay * 1000:.0f} ms, "
          f"max-concurrency {opts.max_concurrency}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="crawler-storetime-") as tmp:
            urls = list(farm.urls(opts.links // opts.hosts))
            runs: list[tuple[str, Callable[[], Any]]] = [
                ("SQLite", lambda: Path(tmp) / "h.sqlite"),
                ("PostgreSQL", lambda: PgUrl(cluster.url(cluster.new_database()))),
            ]
            for name, db in runs:
                links = [Link(f"{u}?{name}", i + 1) for i, u in enumerate(urls)]
                report(name, len(links), measure(db(), links, settings))
    finally:
        cluster.remove()
        farm.stop()


if __name__ == "__main__":
    main()
