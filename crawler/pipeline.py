"""One run: plan it into the store, work it (in this process or in worker processes), close it,
and read it back for the reports. The only module that wires the stages together.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import chain, islice
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Protocol

from crawler.config import DEFAULT_FAIL_ON, FetchSettings
from crawler.db import Db
from crawler.engine import (
    BATCH,
    LEASE_SECONDS,
    Clock,
    ProgressFn,
    RunOptions,
    Worker,
    occurrences,
    plan_run,
    plan_workers,
    reads_as_anti_robot,
    reuse_stored,
    sort_due,
    url_tasks,
    write_known,
)
from crawler.errors import ConfigError, CrawlerError
from crawler.fetch import host_key
from crawler.frontier import UrlTask
from crawler.inputs import Inputs
from crawler.local import Remap
from crawler.redact import redact_url
from crawler.store import Store
from crawler.types import (
    NETWORK_ERRORS,
    Check,
    FetchResult,
    LazyChecks,
    Link,
    Run,
    Verdict,
)

__all__ = [
    "RunOptions",
    "RunStopped",
    "check_links",
    "network_is_down",
    "reads_as_anti_robot",
    "run_worker_processes",
    "wait_for_workers",
    "unique_urls",
]

log = logging.getLogger(__name__)

#: Seconds between the parent's looks at its worker processes (and the progress count).
WATCH_SECONDS = 0.2
#: Seconds a worker process gets after SIGTERM, beyond the fetch timeout its requests in flight
#: may take, to write what it finished and give its hosts back.
STOP_SECONDS = 10.0


class RunStopped(Exception):
    """The run was cancelled (Ctrl-C, SIGTERM, a time limit); `run` holds what was checked,
    with status "interrupted"."""

    def __init__(self, run: Run) -> None:
        super().__init__(f"run stopped after {len(run.checks)} checks")
        self.run = run


def network_is_down(results: Sequence[FetchResult]) -> bool:
    """True when no host answered at all and every failure was at the network level (URLs never
    requested, such as invalid ones, say nothing either way)."""
    results = [r for r in results if r.attempts]
    if not results:
        return False
    answered = {host_key(r.url) for r in results if r.status is not None}
    if answered:
        return False
    return all(r.error in NETWORK_ERRORS for r in results)


def unique_urls(links: Sequence[Link]) -> list[str]:
    """The URLs to fetch, each once, in order of first appearance."""
    return list(dict.fromkeys(link.url for link in links))


async def check_links(
    links: Iterable[Link],
    settings: FetchSettings,
    *,
    sources: Sequence[str] = (),
    digests: dict[str, str] | None = None,
    store: Store | None = None,
    options: RunOptions | None = None,
    progress: ProgressFn | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Clock | None = None,
    lease_seconds: float = LEASE_SECONDS,
) -> Run:
    """Check every distinct URL once, judge each occurrence, record it; return the Run as the
    store has it (its checks' links are the store's: equal to the caller's but for
    `anchor_text`, which only judging reads).

    `links` are read once, to plan the run, and written into the plan as they come (a run with
    a budget, --max-age or --only failing gathers its URLs first: it reads their history);
    then no link or URL is held here (O(hosts)): a caller that passes an iterator that lets
    each link go once read holds none while the run is planned or worked (check_inputs does,
    for 100,000 links).
    Without a `store` the run is kept in a scratch store (a temporary file, which the run's
    checks keep as long as they are read) and no history is read or written.
    `settings.workers` asks for worker processes (plan_workers); `sleep` and `clock` reach
    only the in-process worker.
    """
    from crawler.engine import _utcnow

    clock = clock or _utcnow
    options = options or RunOptions()
    budgeted = options.budget is not None
    started = clock()
    # A run that reads each URL's history before its plan (what is due, what may be reused)
    # gathers the URLs here; any other is planned as its links come, holding none of them.
    tasks: list[UrlTask] | None = None
    stands: list[UrlTask] = []
    if (budgeted or options.max_age is not None or options.only_failing) and store is not None:
        tasks = url_tasks(links)
        if budgeted:  # without a history every URL is due
            tasks, stands = sort_due(store, tasks, started, options.recheck)
            tasks += stands
    if settings.cookie_jar and settings.workers not in (0, 1):
        # The tool's own errors read as they do in one process, before any worker starts (and
        # before the run is planned: the workers are counted from the plan).
        from crawler.fetch import load_cookie_jar

        load_cookie_jar(settings.cookie_jar)
    if settings.workers == 0 and store is None:
        raise ConfigError(
            "--workers 0 leaves the run to `crawler worker` processes, which find it in the "
            "history: it needs one (not --no-history)"
        )
    with contextlib.ExitStack() as stack:
        history = store is not None
        scratch = None
        if store is None:
            # A file, not memory: worker processes share it, and the reports stream from it
            # (the directory goes when the run's checks do).
            scratch = _Scratch()
            store = Store.open(Path(scratch.name) / "run.sqlite")
            stack.callback(store.close)
        run_id = plan_run(
            store,
            occurrences(links) if tasks is None else tasks,
            started=started,
            sources=sources,
            digests=digests or {},
            history=history,
            options=options,
            lease_seconds=lease_seconds,
        )
        urls, hosts = store.run_size(run_id)
        n = plan_workers(settings.workers, urls, hosts, settings.max_concurrency)
        status = "interrupted"
        cancelled = False
        try:
            reused = reuse_stored(store, run_id, tasks or (), settings, options, clock)
            for i in range(0, len(stands), BATCH):  # verdicts that stand: not fetched
                reused += write_known(store, run_id, stands[i : i + BATCH], started)
            # The plan is in the store: nothing per link stays here while the run is worked.
            del tasks, stands
            if progress is not None and reused:
                progress(reused)
            if n == 0:
                await wait_for_workers(store, run_id, progress, options.budget, settings.timeout)
            elif n > 1:
                await run_worker_processes(store, run_id, settings, n, progress, budgeted)
            else:
                await Worker(
                    store, run_id, settings, clock=clock, sleep=sleep, progress=progress
                ).run()
            if budgeted:  # what the budget left: its last known verdict, or "unchecked"
                for part in store.pending_urls(run_id, BATCH):
                    write_known(store, run_id, part, started)
            status = "complete"
        except asyncio.CancelledError:
            cancelled = True  # the caller gets what was checked, to report it as partial
        finally:
            store.finish_run(run_id, clock(), status)
        # The run is read back as the reports go (flat memory), from the history or the
        # scratch store, which its checks keep.
        run = store.load_run(run_id, text_hash=False, stream=True)
        if scratch is not None and isinstance(run.checks, LazyChecks):
            run = replace(run, checks=run.checks.keeping(scratch))
        # A scratch store's run is no run of any history.
        run = run if history else replace(run, run_id=None)
        if cancelled:
            raise RunStopped(run)
        return run


class _Scratch:
    """A temporary directory, removed when this object goes (a run's checks hold it)."""

    def __init__(self) -> None:
        self.name = tempfile.mkdtemp(prefix="crawler-run-")
        weakref.finalize(self, shutil.rmtree, self.name, ignore_errors=True)


def _database(store: Store) -> Db:
    """The store's database, as a worker opens it."""
    from crawler.db import parse_db

    url = getattr(store, "url", None)
    return parse_db(getattr(url, "conninfo", None) or store.path)


def _describe(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _last_line(err: IO[bytes]) -> str:
    err.seek(0)
    lines = [x.strip() for x in err.read().decode(errors="replace").splitlines() if x.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last.removeprefix("Error: ").removeprefix("error: ")


async def run_worker_processes(
    store: Store,
    run_id: int,
    settings: FetchSettings,
    n: int,
    progress: ProgressFn | None = None,
    budgeted: bool = False,
) -> None:
    """Start n worker processes on the run, wait for them, and follow the progress.

    Each gets an equal share of the requests in flight. A worker killed mid-run costs nothing
    but time: its leases expire and the others finish its hosts. A worker that fails (exit code
    1) ends the run with its one line; so does the end of every worker with hosts still open
    (unless the run is `budgeted`: its workers stop claiming when the time is up).
    """
    from crawler import workproc

    share = replace(settings, max_concurrency=max(1, settings.max_concurrency // n), workers=1)
    err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _stop
    procs: list[BaseProcess] = []
    exited = _Exits()
    try:
        try:
            procs += workproc.start(n, _database(store), run_id, share, err)
        except OSError as exc:
            raise CrawlerError(f"cannot start a worker process: {exc.strerror or exc}") from exc
        exited.watch(procs)
        seen = store.written(run_id)
        while True:
            codes = [p.exitcode for p in procs]
            now = store.written(run_id)
            if progress is not None and now > seen:
                progress(now - seen)
            seen = now
            for code in codes:
                if code is not None and code > 0:
                    line = _last_line(err)
                    raise CrawlerError(
                        f"a worker failed ({_describe(code)}): {line}" if line else
                        f"a worker failed ({_describe(code)})"
                    )  # fmt: skip
            if all(code is not None for code in codes):
                break
            if not store.open_hosts(run_id):
                # Every host is done, its checks written: a worker still running is only
                # waiting to see it (engine.POLL_SECONDS); _stop ends it now.
                break
            await exited.wait(WATCH_SECONDS)
        if store.open_hosts(run_id) and not budgeted:  # a budget leaves hosts open
            how = ", ".join(sorted({_describe(c) for c in codes if c is not None and c != 0}))
            raise CrawlerError(
                f"the workers stopped before the run was done ({how or 'no reason given'})"
            )
    finally:
        exited.close()
        _stop(procs, settings.timeout + STOP_SECONDS)
        err.close()


class _Exits:
    """Wakes the parent's watch as soon as a worker process ends (its sentinel becomes
    readable), not at the next tick: the last worker's exit is the end of the requests."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()
        self.fds: set[int] = set()

    def watch(self, procs: Sequence[BaseProcess]) -> None:
        for p in procs:
            self.fds.add(p.sentinel)
            self.loop.add_reader(p.sentinel, self._ended, p.sentinel)

    def _ended(self, fd: int) -> None:
        self.loop.remove_reader(fd)  # readable from now on: once is enough
        self.fds.discard(fd)
        self.event.set()

    async def wait(self, seconds: float) -> None:
        """Until a worker ends, or `seconds` at most."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), seconds)
        self.event.clear()

    def close(self) -> None:
        for fd in self.fds:
            self.loop.remove_reader(fd)
        self.fds.clear()


async def wait_for_workers(
    store: Store,
    run_id: int,
    progress: ProgressFn | None = None,
    budget: timedelta | None = None,
    grace: float = 0.0,
) -> None:
    """`--workers 0`: work on nothing here; follow the progress of the `crawler worker`
    processes (on any machine) that check the run, until none of its hosts is left open, or,
    with a `budget`, until it is spent and the requests then in flight had `grace` s to end."""
    log.info("run %d planned: waiting for `crawler worker` processes to check it", run_id)
    loop = asyncio.get_running_loop()
    end = None if budget is None else loop.time() + budget.total_seconds() + grace
    seen = store.written(run_id)
    while store.open_hosts(run_id) and (end is None or loop.time() < end):
        await asyncio.sleep(WATCH_SECONDS)
        now = store.written(run_id)
        if progress is not None and now > seen:
            progress(now - seen)
        seen = now


def _stop(procs: Sequence[BaseProcess], grace: float) -> None:
    """SIGTERM every worker still running (each finishes its requests in flight, writes what it
    found and exits), then reap; SIGKILL one still running after `grace` seconds."""
    for p in procs:
        if p.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
    for p in procs:
        p.join(grace)
        if p.exitcode is None:
            p.kill()
            p.join()


def worker_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop for a worker when uvloop is installed, else None (asyncio's own).

    A worker spends its CPU on the request path, where uvloop's loop and transports cost less
    (the fetcher alone: 587 -> 474 us of CPU a request, bench/README.md). Where uvloop is not
    installed (it does not build on Windows) the worker runs the same code on asyncio's loop.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


#: Seconds between looks for an open run, for a `crawler worker` with nothing to do.
JOIN_POLL_SECONDS = 2.0


def work_on_run(
    db: Db,
    run_id: int | None,
    settings: FetchSettings,
    parent: int | None = None,
    once: bool = True,
) -> int:
    """`crawler worker`: work on one run of the store at db until it is done (or, without a
    `run_id`, on each open run in turn: until none is left with `once`, else forever); the exit
    code.

    SIGTERM (and Ctrl-C, unless started by a parent, which decides about interruptions) ends
    the worker once it has written what it finished and given its hosts back. With a `parent`,
    the worker also stops when that process is gone.
    """
    import signal

    from crawler.db import open_store

    if parent is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = open_store(db)

    def alive() -> bool:
        return parent is None or os.getppid() == parent

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        if parent is None:  # a second Ctrl-C, as a second SIGTERM, stops without waiting
            loop.add_signal_handler(signal.SIGINT, task.cancel)

        async def watch_parent() -> None:
            while alive():  # noqa: ASYNC110 - nothing to wait on but the parent's pid
                await asyncio.sleep(1.0)
            task.cancel()

        watcher = asyncio.create_task(watch_parent())
        try:
            if run_id is not None:
                await Worker(store, run_id, settings, alive=alive).run()
                return
            while True:
                open_id = store.open_run()
                if open_id is not None:
                    await Worker(store, open_id, settings, alive=alive).run()
                elif once:
                    return
                else:
                    await asyncio.sleep(JOIN_POLL_SECONDS)
        finally:
            watcher.cancel()

    try:
        with asyncio.Runner(loop_factory=worker_loop_factory()) as runner:
            runner.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        return 0 if parent is not None else 130
    finally:
        store.close()
    return 0


class Progress(Protocol):
    """A progress display: called with the checks just written, closed at the end."""

    def __call__(self, n: int) -> None: ...

    def close(self) -> None: ...


@contextlib.contextmanager
def few_collections() -> Iterator[None]:
    """Run a check with fewer garbage collections: everything alive at the start (modules,
    the links) is never scanned again, and the young generation is collected less often.

    A check allocates a few hundred containers per request and keeps every result to the end;
    with the default thresholds the collector runs thousands of times and takes ~10 % of the
    CPU. The settings are restored afterwards (tests run checks in-process).
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def _run_cancellable(coro: Awaitable[Run]) -> Run:
    """Run coro; SIGTERM and Ctrl-C cancel it, so the run is closed cleanly (the first lets the
    requests in flight finish, a second stops at once: engine.Worker.run)."""
    import signal

    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def lease_seconds() -> float:
    """Host leases' length: CRAWLER_LEASE_SECONDS (tests shorten it), else the engine's."""
    value = os.environ.get("CRAWLER_LEASE_SECONDS")
    try:
        return float(value) if value else LEASE_SECONDS
    except ValueError:
        raise CrawlerError(f"CRAWLER_LEASE_SECONDS={value!r} is not a number of seconds") from None


def run_check(
    found: Inputs,
    settings: FetchSettings,
    db: Db | None,
    options: RunOptions,
    progress: Progress,
    partial_ok: bool = False,
    links: Iterable[Link] | None = None,
) -> Run:
    """One run of the pipeline with the history locked for its duration, on `links` (read
    once; by default found.links).

    A run stopped by Ctrl-C or SIGTERM is returned as it stands (status "interrupted") when
    `partial_ok`; otherwise it raises KeyboardInterrupt.
    """
    from crawler.db import open_store

    store = None
    try:
        store = open_store(db) if db is not None else None
        if store is not None:
            store.lock()
        coro = check_links(
            found.links if links is None else links,
            settings,
            sources=found.sources,
            digests=found.digests,
            store=store,
            options=options,
            progress=progress,
            lease_seconds=lease_seconds(),
        )
        try:
            return asyncio.run(_run_cancellable(coro))
        except RunStopped as stop:
            if not partial_ok:
                raise KeyboardInterrupt from None
            return stop.run
    finally:
        progress.close()
        if store is not None:
            store.close()


def _check_report_dir(report_dir: str | os.PathLike[str]) -> None:
    """Make sure reports can be written into report_dir before a run spends any time on the
    network: a CrawlerError (exit 1) names the directory and what is wrong. Nothing is created
    here (a run that fails for another reason leaves no empty directory behind)."""
    directory = Path(report_dir)
    if directory.exists():
        if not directory.is_dir():
            raise CrawlerError(f"report dir {directory}: not a directory")
        where = directory
    else:  # the nearest existing ancestor must be a directory the reports can be created in
        where = directory.parent
        while not where.exists() and where != where.parent:
            where = where.parent
        if not where.is_dir():
            raise CrawlerError(f"report dir {directory}: cannot create it ({where} is a file)")
    if not os.access(where, os.W_OK | os.X_OK):
        raise CrawlerError(f"report dir {directory}: cannot write in {where} (permission denied)")


@dataclass(frozen=True, slots=True)
class CheckJob:
    """What `crawler check` was asked for."""

    inputs: tuple[str, ...]
    settings: FetchSettings
    db: Db | None  # None: neither read nor write the history
    report_dir: Path
    formats: Sequence[str]
    include: Sequence[re.Pattern[str]] = ()
    exclude: Sequence[re.Pattern[str]] = ()
    remap: Sequence[Remap] = ()
    options: RunOptions = RunOptions()
    fail_on: Sequence[str] = DEFAULT_FAIL_ON
    offline: bool = False
    allow_empty: bool = False
    include_fragments: bool = False
    root_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class CheckDone:
    """A finished (or stopped) `crawler check`: the run, its report files, how many links
    were excluded (filters, ignore comments, --no-private, --offline) and the checks the
    terminal lists, picked in the reports' pass."""

    run: Run
    reports: list[Path]
    excluded: int
    noted: Sequence[Check] | None = None  # the checks the terminal lists (terminal.noted)


def check_inputs(job: CheckJob, progress: Callable[[int], Progress]) -> CheckDone:
    """`crawler check`: read the inputs, filter them, check web and local links, write the
    reports. `progress` makes the display for a number of links."""
    from crawler import fragments, local
    from crawler.inputs import Sifted, nothing_to_check, sift_links, stream_links

    # The links come as the posts are read, and each is let go once planned into the store:
    # the parent holds nothing per link while the run is read, planned and worked (a post of
    # 100,000 links read whole: ~70 MB traced, 37 MB of it Links), nor while the reports stream.
    found = stream_links(job.inputs, every=True)
    sifted = Sifted(excluded=found.ignored)
    links = sift_links(found.links, job.remap, job.include, job.exclude, sifted)
    if job.settings.no_private or job.offline:
        links = sifted.web_only(links, job.settings.no_private, job.offline)
    first = next(links, None)
    if first is None and not sifted.others and not job.allow_empty:
        raise nothing_to_check(found.sources, sifted.excluded)
    _check_report_dir(job.report_dir)  # before the first request, not after the whole crawl
    cited: dict[int, Link] = {}
    shown = _Shown(progress)
    if job.include_fragments:  # each cited page fetched once: every link is looked at first
        listed = [first, *links] if first is not None else []
        # (recorded and reported with a URL's password as ***, as every URL: the plan too)
        cited = {
            i: replace(k, url=redact_url(k.url)) if "@" in k.url else k
            for i, k in fragments.strip_fragments(listed).items()
        }
        anchors_for = frozenset(
            redact_url(listed[i].url) for i, k in cited.items() if fragments.fragment(k.url)
        )
        options = replace(job.options, anchors_for=anchors_for)
        planned = shown.count(_drain(listed))
    else:
        options = job.options
        planned = shown.count(_read_ahead(chain((first,), links)) if first is not None else links)
    inputs = Inputs([], found.digests, found.sources, found.ignored)
    with few_collections():
        if job.offline:  # nothing fetched: the history is neither read nor written
            now = datetime.now(UTC)
            run = Run(started_at=now, finished_at=now, sources=tuple(found.sources), checks=())
        else:
            run = run_check(inputs, job.settings, job.db, options, shown, True, planned)
        if cited and len(run.checks) == shown.n:  # an interrupted run's checks have gaps
            run = replace(run, checks=fragments.apply(run.checks, cited))
        if sifted.others:
            extra = local.check_local(sifted.others, job.root_dir, job.include_fragments)
            run = replace(run, checks=local.merge(run.checks, extra, found.sources))
        paths, listed_checks, refused = report_run(run, job.report_dir, job.formats, job.fail_on)
    return CheckDone(run, paths, sifted.excluded + refused, listed_checks)


class _Shown:
    """check_inputs' progress display, made once the run's links are counted: they are
    counted as they are planned, which is over before the first check is written."""

    def __init__(self, make: Callable[[int], Progress]) -> None:
        self.make = make
        self.n = 0
        self.display: Progress | None = None

    def count(self, links: Iterable[Link]) -> Iterator[Link]:
        for link in links:
            self.n += 1
            yield link

    def __call__(self, n: int) -> None:
        if self.display is None:
            self.display = self.make(self.n)
        self.display(n)

    def close(self) -> None:
        if self.display is not None:
            self.display.close()


#: Links read ahead of the plan: parsing and the store's inserts taken link by link cost
#: ~40 % more CPU to plan 100,000 links than in runs of a few thousand (~1.5 MB of links).
READ_AHEAD = 4096


def _read_ahead(links: Iterator[Link]) -> Iterator[Link]:
    """The links in order, read READ_AHEAD at a time, each let go once handed on."""
    while batch := list(islice(links, READ_AHEAD)):
        yield from _drain(batch)


def _drain(links: list[Link]) -> Iterator[Link]:
    """The links in order, each let go by the list as it is read (the list ends empty)."""
    links.reverse()
    while links:
        yield links.pop()


def report_run(
    run: Run, report_dir: Path, formats: Sequence[str], fail_on: Sequence[str]
) -> tuple[list[Path], list[Check], int]:
    """`crawler check`'s end: the reports written from one pass over the run's checks, which
    also picks the checks the terminal lists (terminal.noted) and counts the links
    --no-private refused when their host name resolved to a private address (skipped web
    links: local links and other schemes that are skipped are counted as skipped). Returns
    the report files, the listed checks and that count."""
    # Imported once the run is over: the first request need not wait for the templates.
    from crawler import local
    from crawler.report import write_reports
    from crawler.terminal import noted

    listed: list[Check] = []
    refused = 0

    def seen(c: Check) -> None:
        nonlocal refused
        if c.verdict is Verdict.SKIPPED and local.kind_of(c.url) is local.Kind.WEB:
            refused += 1
        if noted(c):
            listed.append(c)

    paths = write_reports(run, report_dir, list(formats), fail_on, also=[seen])
    return paths, listed, refused


def rerender(
    db: Db,
    run_id: int | None,
    report_dir: Path,
    formats: Sequence[str],
    fail_on: Sequence[str] = DEFAULT_FAIL_ON,
) -> tuple[Run, list[Path]]:
    """`crawler report`: a past run (the latest when run_id is None) read back from the history
    and its reports written again."""
    from crawler.db import open_store, require_history

    require_history(db)
    store = open_store(db)
    try:
        run = store.load_run(run_id, stream=True)
    finally:
        store.close()
    _check_report_dir(report_dir)
    from crawler.report import write_reports

    return run, write_reports(run, report_dir, list(formats), fail_on)
