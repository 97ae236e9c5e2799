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


def plan_workers(requested: int, urls: int, sites: int, max_concurrency: int) -> int:
    """How many workers a run gets; 1 means fetch in-process.

    `requested` 0 is automatic: one per core for lists of MIN_URLS distinct URLs or more.
    Never more workers than sites (a site is never split), than requests allowed in flight
    (each worker needs one) or than MAX_WORKERS.
    """
    if sites < 2 or max_concurrency < 2 or not can_fork():
        return 1
    if requested == 0:
        if urls < MIN_URLS:
            return 1
        requested = usable_cpus()
    return max(1, min(requested, sites, max_concurrency, MAX_WORKERS))


def site_key(host: str) -> str:
    """The part of a politeness key (host[:port]) that shares cookies: the last two labels of
    a name (a.example.com and b.example.com go to one worker, so a cookie set for
    .example.com is seen by both), an IP address as it is."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not name or name[-1].isdigit() or name.startswith("["):
        return host  # IPv4 (ends in a digit) or [IPv6]
    return ".".join(name.split(".")[-2:])


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
    """Divide a global in-flight limit among workers in proportion to their weights (what each
    can use: per host, the smaller of its URLs and its own limit).

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
        # What every worker needs, imported once here and shared, not once per worker.
        import crawler.fetch
        import crawler.transport  # noqa: F401

        # Objects the parent already has are never collected again here or in a child: a
        # child's collector would otherwise write to (and so copy) every page they live on.
        # (A caller's own freeze is left as it is: freezes do not nest.)
        if gc.get_freeze_count() == 0:
            gc.collect()
            gc.freeze()
            self._frozen = True
        try:
            for _ in range(self.n):
                self._fork()
        except BaseException:
            self.close()
            raise
        return self

    def _fork(self) -> None:
        fds: list[int] = []
        try:
            job_r, job_w = os.pipe()
            fds += (job_r, job_w)
            out_r, out_w = os.pipe()
            fds += (out_r, out_w)
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise CrawlerError(f"cannot start a fetch worker: {exc.strerror or exc}") from exc
        if pid == 0:  # pragma: no cover - runs in the child (covered by tests through the CLI)
            os.close(job_w)
            os.close(out_r)
            for other in self.workers:  # siblings' pipes must not keep them open
                for fd in (other.job_w, other.out_r):
                    if fd >= 0:
                        os.close(fd)
            _child(job_r, out_w, self.extract, self.retry_on)
        # Tracked at once, so close() can stop it whatever happens next.
        self.workers.append(_Worker(pid, job_w, out_r))
        os.close(job_r)
        os.close(out_w)

    async def fetch_pages(
        self, urls: Sequence[str], settings: FetchSettings
    ) -> AsyncIterator[tuple[FetchResult, M]]:
        """Give each worker its hosts' URLs; yield pairs as they arrive, in no fixed order."""
        from crawler.fetch import host_key

        def key(url: str) -> str:
            return site_key(host_key(url))

        shards = shard(urls, self.n, key)
        limits = split_limit(settings.max_concurrency, [_capacity(s, settings) for s in shards])
        queue: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()
        readers = []
        for i, (worker, part, limit) in enumerate(zip(self.workers, shards, limits, strict=True)):
            job = _encode((part, replace(settings, max_concurrency=max(1, limit))))
            # The worker is blocked reading its job: this write cannot wait long.
            fd, worker.job_w = worker.job_w, -1  # _send_job closes it, whatever happens
            _send_job(fd, job)
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
                    tool_error, message = payload
                    # The tool's own errors (a bad cookie jar) read as they do without workers.
                    raise CrawlerError(
                        message if tool_error else f"a fetch worker failed: {message}"
                    )
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


def _capacity(urls: Sequence[str], settings: FetchSettings) -> int:
    """Requests a worker can have in flight at once: per host, its URLs or its limit."""
    from crawler.config import host_rule
    from crawler.fetch import host_key

    counts: dict[str, int] = {}
    for url in urls:
        k = host_key(url)
        counts[k] = counts.get(k, 0) + 1
    total = 0
    for k, n in counts.items():
        limit = settings.host_concurrency
        if settings.hosts:
            rule = host_rule(settings.hosts, k.rsplit(":", 1)[0])
            if rule is not None and rule.concurrency:
                limit = rule.concurrency
        total += min(n, limit)
    return total


def _encode(obj: object) -> bytes:
    """One message on a pipe: its length, then the pickle (jobs, and the workers' frames)."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _send_job(fd: int, job: bytes) -> None:
    try:
        with open(fd, "wb", closefd=True) as f:
            f.write(job)
    except BrokenPipeError:
        pass  # the worker is gone; its reader reports it


async def _read_frames(i: int, fd: int, queue: asyncio.Queue[tuple[int, str, Any]]) -> None:
    """Read one worker's frames into the queue until its pipe closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    pipe = os.fdopen(fd, "rb", buffering=0, closefd=False)  # the transport owns it
    ended = False
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while True:
            try:
                head = await reader.readexactly(_HEADER.size)
                body = await reader.readexactly(_HEADER.unpack(head)[0])
            except asyncio.IncompleteReadError:
                return
            try:
                kind, payload = pickle.loads(body)
            except Exception:  # noqa: BLE001 - a damaged frame: the worker's end (finally)
                return
            queue.put_nowait((i, kind, payload))
            if kind != "pairs":
                ended = True
                return
    finally:
        transport.close()
        if not ended:  # end of pipe, a damaged frame, anything: the run must not wait on it
            queue.put_nowait((i, "eof", None))


# ------------------------------------------------------------------------------------ the child


def _child(
    job_r: int,
    out_w: int,
    extract: Callable[[FetchResult], Any],
    retry_on: Callable[[FetchResult, Any], bool] | None,
) -> NoReturn:  # pragma: no cover - runs in the child
    """A worker's whole life: read the job, fetch, stream the pairs back, exit."""
    code = 0
    owned = [False]  # whether the event loop's transport owns out_w (then only it may write)
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
        asyncio.run(_serve(urls, settings, extract, retry_on, out_w, owned))
    except BrokenPipeError:
        code = 0  # the parent is gone: nobody to tell
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        code = 1
        if not owned[0]:
            with contextlib.suppress(BaseException):
                _write_frame(out_w, ("error", _error_payload(exc)))
    finally:
        os._exit(code)


def _error_payload(exc: BaseException) -> tuple[bool, str]:
    if isinstance(exc, CrawlerError):
        return True, str(exc)
    return False, f"{type(exc).__name__}: {exc}"


def _write_frame(fd: int, frame: tuple[str, Any]) -> None:
    view = memoryview(_encode(frame))
    while view:
        view = view[os.write(fd, view) :]


async def _serve(
    urls: list[str],
    settings: FetchSettings,
    extract: Callable[[FetchResult], Any],
    retry_on: Callable[[FetchResult, Any], bool] | None,
    out_w: int,
    owned: list[bool],
) -> None:  # pragma: no cover - runs in the child
    loop = asyncio.get_running_loop()
    pipe = os.fdopen(out_w, "wb", buffering=0, closefd=True)  # the transport owns it
    transport, flow = await loop.connect_write_pipe(_Flow, pipe)
    owned[0] = True
    transport.set_write_buffer_limits(high=_BACKLOG)
    try:
        await _stream(urls, settings, extract, retry_on, transport, flow)
    except BrokenPipeError:
        raise
    except Exception as exc:
        # After the frames already queued, so it never lands inside one.
        transport.write(_encode(("error", _error_payload(exc))))
        transport.set_write_buffer_limits(high=0)
        await flow.writable()
        raise
    finally:
        transport.close()


async def _stream(
    urls: list[str],
    settings: FetchSettings,
    extract: Callable[[FetchResult], Any],
    retry_on: Callable[[FetchResult, Any], bool] | None,
    transport: asyncio.WriteTransport,
    flow: _Flow,
) -> None:  # pragma: no cover - runs in the child
    from crawler.fetch import fetch_pages

    loop = asyncio.get_running_loop()
    batch: list[tuple[FetchResult, Any]] = []
    scheduled = False

    def send() -> None:
        # All pairs finished in one turn of the loop travel in one frame.
        nonlocal batch, scheduled
        scheduled = False
        if batch:
            transport.write(_encode(("pairs", batch)))
            batch = []

    async for pair in fetch_pages(urls, settings, extract=extract, retry_on=retry_on):
        batch.append(pair)
        if not scheduled:
            scheduled = True
            loop.call_soon(send)
        await flow.writable()  # the parent is behind: fetch no faster than it reads
    send()
    transport.write(_encode(("done", None)))
    # Everything in the pipe before the process exits.
    transport.set_write_buffer_limits(high=0)
    await flow.writable()


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
