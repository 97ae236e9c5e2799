"""The worker processes of `crawler check`: forked from the parent once it has loaded what a
worker runs, so that the modules' memory is shared instead of loaded again by each.

A worker started by exec loads its ~30 MB of modules (the HTTP stack, the parser, the engine)
again, each of them. Forked (multiprocessing's fork start method), it shares the parent's
pages until it writes to them: the parent loads the worker's modules first (httpx and aiohttp,
which it otherwise never loads) and freezes what it holds (`gc.freeze()`: the workers'
collections never write to those objects, so their pages stay shared).

Each worker starts clean: a process group of its own (Ctrl-C reaches the parent only, which
stops the workers in order), the default signal handlers and no wakeup fd of the parent's event
loop (SIGINT and SIGTERM are blocked around the fork, so none reaches a worker before that),
stderr into the parent's file for the workers (the parent shows its last line), and its own
event loop and database connection (crawler.pipeline.work_on_run): nothing the parent had open
is used.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import sys
from multiprocessing.process import BaseProcess
from typing import IO

from crawler import extract, fetch
from crawler.config import FetchSettings
from crawler.db import Db
from crawler.pipeline import work_on_run
from crawler.start import finish

_STOPS = {signal.SIGINT, signal.SIGTERM}


def _work(db: Db, run_id: int, settings: FetchSettings, parent: int, err: int) -> None:
    """A forked worker: work on the run until it is done, or until the parent is gone."""
    os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)  # the parent's event loop's: a signal here would wake it
    for sig in _STOPS:
        signal.signal(sig, signal.SIG_DFL)
    os.dup2(err, 2)
    # The parent's sys.stderr may be no file at all (a test's captured output): its one line on
    # a failure goes to fd 2, where the parent reads it.
    old, sys.stderr = sys.stderr, open(2, "w", errors="backslashreplace", closefd=False)  # noqa: SIM115
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is old:
            handler.setStream(sys.stderr)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
    finish(lambda: work_on_run(db, run_id, settings, parent, once=True))


def start(
    n: int, db: Db, run_id: int, settings: FetchSettings, err: IO[bytes]
) -> list[BaseProcess]:
    """Fork n workers on the run; their stderr goes to `err`."""
    # What a worker runs, loaded here so that the workers share it (the names load on first use).
    import aiohttp  # noqa: F401 - the fetch stage's transport loads it on first use
    import httpx_aiohttp  # noqa: F401

    assert extract.extract_meta is not None and fetch.Fetcher is not None
    gc.freeze()  # in effect until the run's end (crawler.pipeline.few_collections)
    ctx = multiprocessing.get_context("fork")
    args = (db, run_id, settings, os.getpid(), err.fileno())
    procs: list[BaseProcess] = []
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        for _ in range(n):
            p = ctx.Process(target=_work, args=args)
            p.start()
            procs.append(p)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return procs
