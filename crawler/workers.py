"""Fetch workers: forked child processes that each fetch and read the URLs of their own hosts.

On a machine with more than one core a long list is split by host among the workers, so fetching
and extraction use every core while the parent classifies, stores and reports. Every host belongs
to exactly one worker, so the per-host limits hold as in one process; the global limit is divided
among the workers. A worker sends back (result without body, what was read) pairs, never bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pickle
import signal
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any, Generic, NoReturn, TypeVar

from crawler.config import FetchSettings, can_fork, usable_cpus
from crawler.errors import CrawlerError
from crawler.types import FetchResult

M = TypeVar("M")

#: Fewer distinct URLs than this are fetched in-process: forking costs more than it saves.
MIN_URLS = 1000
#: At most this many workers, whatever the core count: the parent has work of its own.
MAX_WORKERS = 4

_HEADER = struct.Struct("!I")
_BACKLOG = 1 << 20  # bytes of unsent frames before a worker waits for the parent


def plan_workers(requested: int, urls: int, hosts: int) -> int:
    """How many workers a run gets; 1 means fetch in-process.

    `requested` 0 is automatic: one per core for lists of MIN_URLS distinct URLs or more.
    Never more workers than hosts (a host is never split) or than MAX_WORKERS.
    """
    if hosts < 2 or not can_fork():
        return 1
    if requested == 0:
        if urls < MIN_URLS:
            return 1
        requested = usable_cpus()
    return max(1, min(requested, hosts, MAX_WORKERS))


def shard(urls: Sequence[str], n: int, key: Callable[[str], str]) -> list[list[str]]:
    """Split urls into n lists, each host (`key`) in one list, balanced by URL count.

    Each list keeps the URLs' order; the largest hosts are placed first, each on the list
    with the fewest URLs so far.
    """
    by_host: dict[str, list[str]] = {}
    for url in urls:
        by_host.setdefault(key(url), []).append(url)
    loads = [0] * n
    owner: dict[str, int] = {}
    for host, group in sorted(by_host.items(), key=lambda kv: -len(kv[1])):
        i = loads.index(min(loads))
        owner[host] = i
        loads[i] += len(group)
    out: list[list[str]] = [[] for _ in range(n)]
    for url in urls:
        out[owner[key(url)]].append(url)
    return out


def split_limit(total: int, weights: Sequence[int]) -> list[int]:
    """Divide a global in-flight limit among workers in proportion to their URLs.

    Every worker with URLs gets at least 1; the shares never add up to more than `total`
    unless `total` is smaller than the number of busy workers.
    """
    busy = [w for w in weights if w > 0]
    if not busy:
        return [0 for _ in weights]
    whole = sum(busy)
    shares = [max(1, total * w // whole) if w > 0 else 0 for w in weights]
    # the 1s given to small shards come out of the largest ones
    while sum(shares) > max(total, len(busy)):
        shares[shares.index(max(shares))] -= 1
    # hand out what integer division left over, largest shards first
    spare = total - sum(shares)
    for i in sorted(range(len(weights)), key=lambda i: -weights[i]):
        if spare <= 0:
            break
        if weights[i] > 0:
            shares[i] += 1
            spare -= 1
    return shares


class _Worker:
    """One forked child and the two pipes to it."""

    def __init__(self, pid: int, job_w: int, out_r: int) -> None:
        self.pid = pid
        self.job_w = job_w
        self.out_r = out_r
        self.status: int | None = None

    def reap(self, block: bool) -> int | None:
        """The child's exit status once it has exited (reaping it)."""
        if self.status is None:
            try:
                pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return self.status
            if pid == self.pid:
                self.status = status
        return self.status

    def describe(self) -> str:
        status = self.reap(block=True)
        if status is None:
            return "still running"
        if os.WIFSIGNALED(status):
            return f"killed by signal {os.WTERMSIG(status)}"
        return f"exit code {os.waitstatus_to_exitcode(status)}"


class FetchPool(Generic[M]):
    """Forked workers waiting for their share of a run's URLs.

    Fork early (before the event loop, the history and any thread of the caller's own), hand
    the URLs over with fetch_pages(), close() always. Each worker runs crawler.fetch.fetch_pages
    on its hosts with `extract` and `retry_on` and streams the pairs back.
    """

    def __init__(
        self,
        n: int,
        extract: Callable[[FetchResult], M],
        retry_on: Callable[[FetchResult, M], bool] | None = None,
    ) -> None:
        self.n = n
        self.extract = extract
        self.retry_on = retry_on
        self.workers: list[_Worker] = []
        self._frozen = False

    def start(self) -> FetchPool[M]:
        """Fork the workers; they wait for a job."""
        # Objects the parent already has are never collected again here or in a child: a
        # child's collector would otherwise write to (and so copy) every page they live on.
        gc.collect()
        gc.freeze()
        self._frozen = True
        try:
            for _ in range(self.n):
                self.workers.append(self._fork())
        except BaseException:
            self.close()
            raise
        return self

    def _fork(self) -> _Worker:
        job_r, job_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (job_r, job_w, out_r, out_w):
                os.close(fd)
            raise CrawlerError(f"cannot start a fetch worker: {exc.strerror or exc}") from exc
        if pid == 0:  # pragma: no cover - runs in the child (covered by tests through the CLI)
            os.close(job_w)
            os.close(out_r)
            for other in self.workers:  # siblings' pipes must not keep them open
                os.close(other.job_w)
                os.close(other.out_r)
            _child(job_r, out_w, self.extract, self.retry_on)
        os.close(job_r)
        os.close(out_w)
        return _Worker(pid, job_w, out_r)

    async def fetch_pages(
        self, urls: Sequence[str], settings: FetchSettings
    ) -> AsyncIterator[tuple[FetchResult, M]]:
        """Give each worker its hosts' URLs; yield pairs as they arrive, in no fixed order."""
        from crawler.fetch import host_key

        shards = shard(urls, self.n, host_key)
        limits = split_limit(settings.max_concurrency, [len(s) for s in shards])
        queue: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()
        readers = []
        for i, (worker, part, limit) in enumerate(zip(self.workers, shards, limits, strict=True)):
            job = pickle.dumps(
                (part, replace(settings, max_concurrency=max(1, limit))),
                protocol=pickle.HIGHEST_PROTOCOL,
            )
            # The worker is blocked reading its job: this write cannot wait long.
            _send_job(worker.job_w, job)
            worker.job_w = -1
            readers.append(asyncio.create_task(_read_frames(i, worker.out_r, queue)))
        try:
            running = len(readers)
            while running:
                i, kind, payload = await queue.get()
                if kind == "pairs":
                    for pair in payload:
                        yield pair
                elif kind == "done":
                    running -= 1
                elif kind == "error":
                    raise CrawlerError(f"a fetch worker failed: {payload}")
                else:  # "eof" before "done": the worker died
                    raise CrawlerError(
                        f"a fetch worker stopped unexpectedly ({self.workers[i].describe()})"
                    )
        finally:
            for t in readers:
                t.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    def close(self) -> None:
        """Stop every worker still running and reap it; idempotent."""
        for w in self.workers:
            for fd in (w.job_w, w.out_r):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            w.job_w = w.out_r = -1
            if w.reap(block=False) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGTERM)
                w.reap(block=True)
        if self._frozen:
            gc.unfreeze()
            self._frozen = False


def _send_job(fd: int, job: bytes) -> None:
    try:
        with open(fd, "wb", closefd=True) as f:
            f.write(_HEADER.pack(len(job)))
            f.write(job)
    except BrokenPipeError:
        pass  # the worker is gone; its reader reports it


async def _read_frames(i: int, fd: int, queue: asyncio.Queue[tuple[int, str, Any]]) -> None:
    """Read one worker's frames into the queue until its pipe closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    pipe = os.fdopen(fd, "rb", buffering=0, closefd=False)  # the transport owns it
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while True:
            try:
                head = await reader.readexactly(_HEADER.size)
                body = await reader.readexactly(_HEADER.unpack(head)[0])
            except asyncio.IncompleteReadError:
                queue.put_nowait((i, "eof", None))
                return
            kind, payload = pickle.loads(body)
            queue.put_nowait((i, kind, payload))
            if kind != "pairs":
                return
    finally:
        transport.close()


# ------------------------------------------------------------------------------------ the child


def _child(
    job_r: int,
    out_w: int,
    extract: Callable[[FetchResult], Any],
    retry_on: Callable[[FetchResult, Any], bool] | None,
) -> NoReturn:  # pragma: no cover - runs in the child
    """A worker's whole life: read the job, fetch, stream the pairs back, exit."""
    code = 0
    try:
        # The parent decides about interruptions (Ctrl-C reaches the whole process group);
        # SIGTERM from the parent ends the worker at once.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        gc.enable()
        with contextlib.suppress(AttributeError):
            asyncio.events._set_running_loop(None)  # forked inside a running loop: not ours
        with open(job_r, "rb", closefd=True) as f:
            head = f.read(_HEADER.size)
            if len(head) < _HEADER.size:
                os._exit(0)  # the parent went away before giving work
            job = f.read(_HEADER.unpack(head)[0])
        urls, settings = pickle.loads(job)
        asyncio.run(_serve(urls, settings, extract, retry_on, out_w))
    except BrokenPipeError:
        code = 0  # the parent is gone: nobody to tell
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        code = 1
        with contextlib.suppress(BaseException):
            _write_frame(out_w, ("error", f"{type(exc).__name__}: {exc}"))
    finally:
        os._exit(code)


def _write_frame(fd: int, frame: tuple[str, Any]) -> None:
    data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


async def _serve(
    urls: list[str],
    settings: FetchSettings,
    extract: Callable[[FetchResult], Any],
    retry_on: Callable[[FetchResult, Any], bool] | None,
    out_w: int,
) -> None:  # pragma: no cover - runs in the child
    from crawler.fetch import fetch_pages

    loop = asyncio.get_running_loop()
    pipe = os.fdopen(out_w, "wb", buffering=0, closefd=True)  # the transport owns it
    transport, flow = await loop.connect_write_pipe(_Flow, pipe)
    transport.set_write_buffer_limits(high=_BACKLOG)
    batch: list[tuple[FetchResult, Any]] = []
    scheduled = False

    def send() -> None:
        # All pairs finished in one turn of the loop travel in one frame.
        nonlocal batch, scheduled
        scheduled = False
        if batch:
            data = pickle.dumps(("pairs", batch), protocol=pickle.HIGHEST_PROTOCOL)
            batch = []
            transport.write(_HEADER.pack(len(data)) + data)

    async for pair in fetch_pages(urls, settings, extract=extract, retry_on=retry_on):
        batch.append(pair)
        if not scheduled:
            scheduled = True
            loop.call_soon(send)
        await flow.writable()  # the parent is behind: fetch no faster than it reads
    send()
    done = pickle.dumps(("done", None), protocol=pickle.HIGHEST_PROTOCOL)
    transport.write(_HEADER.pack(len(done)) + done)
    # Everything in the pipe before the process exits.
    transport.set_write_buffer_limits(high=0)
    await flow.writable()
    transport.close()


class _Flow(asyncio.Protocol):
    """Flow control of a worker's pipe to the parent."""

    def __init__(self) -> None:
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._lost = False

    def pause_writing(self) -> None:
        self._resumed.clear()

    def resume_writing(self) -> None:
        self._resumed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._resumed.set()

    async def writable(self) -> None:
        """Return once the pipe's buffer is below its limit; BrokenPipeError if the parent left."""
        if not self._resumed.is_set():
            await self._resumed.wait()
        if self._lost:
            raise BrokenPipeError
