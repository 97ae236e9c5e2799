"""A worker's PostgreSQL steps do not stop its event loop (PgStore.off_loop: a thread and a
pooled connection each), against tests/pg.py's real cluster and tests/hostfarm.py's hosts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest

from crawler.config import FetchSettings
from crawler.db import PgUrl
from crawler.engine import RunOptions, Worker, plan_run, url_tasks
from crawler.pgstore import PgStore
from crawler.types import Link
from tests.hostfarm import HostFarm

#: How long the test waits for what it expects before failing (never reached when it passes).
PATIENCE = 120.0


def _waiting_on_a_lock(url: str) -> int:
    """The sessions of url's database waiting for a lock (the worker's blocked write)."""
    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


async def _until(what: Callable[[], bool], why: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while not await asyncio.to_thread(what):
        assert loop.time() < deadline, why
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_a_worker_goes_on_fetching_while_postgresql_holds_its_write(pg_url: str) -> None:
    farm = HostFarm(4, delay=0.05).start()
    store = PgStore.open(PgUrl(pg_url))
    blocker = psycopg.connect(pg_url)  # a transaction of its own holds the lock until rollback
    # Should the worker's loop stop on its write (the store's steps on the loop's thread),
    # this test's own coroutine could never release the lock: a timer does, and the test fails.
    watchdog = threading.Timer(PATIENCE, blocker.rollback)
    try:
        links = [Link(u, i + 1) for i, u in enumerate(farm.urls(150))]
        run_id = plan_run(
            store, url_tasks(links), started=datetime.now(UTC), sources=["post.md"],
            digests={}, history=True, options=RunOptions(),
        )  # fmt: skip
        blocker.execute("LOCK TABLE checks IN SHARE MODE")  # no check can be written
        watchdog.start()
        settings = FetchSettings(
            host_interval=0, retries=0, max_concurrency=8, host_concurrency=2, timeout=30
        )
        worker = asyncio.create_task(Worker(store, run_id, settings).run())
        await _until(
            lambda: _waiting_on_a_lock(pg_url) >= 1,
            "the worker's write never waited while the test's loop ran",
        )
        hits = sum(farm.hits.values())
        # While the write waits, the worker's loop still reads answers and sends requests.
        await _until(
            lambda: sum(farm.hits.values()) >= hits + 40 and _waiting_on_a_lock(pg_url) >= 1,
            "the worker stopped fetching while its write waited for PostgreSQL",
        )
        assert not worker.done()
        blocker.rollback()
        await worker
        assert store.checked(run_id) == len(links)
        assert sorted(farm.hits.values()) == [1] * len(links)  # each page fetched once
    finally:
        watchdog.cancel()
        blocker.close()
        store.close()
        farm.stop()
