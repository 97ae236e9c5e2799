"""Saved pages → the JSON lines `crawler extract` prints, in one process or in several."""

from __future__ import annotations

import json
import os

from crawler.errors import CrawlerError

TYPE_CHECKING = False  # typing and pathlib are not imported at run time: start-up time counts
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

#: Fewer pages than this per process are read in one process: starting one costs more.
PAGES_PER_JOB = 16


#: Bytes of pages a process is started for when the number is left to us (-j 0): a forked
#: process costs about as much CPU as parsing 2-4 MB, and gains nothing before it has that
#: much to read.
BYTES_PER_JOB = 4 * 1024 * 1024


#: What a page costs beside its bytes (reading the file, the rules, the line), in bytes of
#: parsing: the shares of the processes are balanced by bytes plus this for every page.
PAGE_COST = 4096


#: Characters of lines a reading process writes into its pipe at a time.
CHUNK_CHARS = 64 * 1024


_dumps = json.JSONEncoder(ensure_ascii=False).encode  # one encoder for every line


def page_line(page: str | Path, url: str | None) -> tuple[str, bool]:
    """The JSON line for one saved page, and whether it was read."""
    from crawler.extract.decode import is_binary
    from crawler.extract.meta import extract_fields

    try:
        with open(page, "rb") as f:
            body = f.read()
    except OSError as exc:
        return _dumps({"file": str(page), "error": exc.strerror or str(exc)}), False
    if is_binary(body):  # as `check` refuses a binary post
        error = "is a binary file (contains NUL bytes), not an HTML page"
        return _dumps({"file": str(page), "error": error}), False
    meta = extract_fields(body, url=url, with_hash=False)
    line = _dumps(
        {
            "file": str(page),
            "title": meta["title"],
            "summary": meta["summary"],
            "page_kind": meta["kind"].value,
            "notice": meta["notice"],
            "site": meta["site"],
            "site_name": meta["site_name"],
            "canonical_url": meta["canonical_url"],
            "lang": meta["lang"],
        }
    )
    return line, True


def processes_for(pages: int, size: int, jobs: int, cpus: int, can_fork: bool) -> int:
    """How many processes read `pages` pages of `size` bytes in all: `jobs`, at most one per
    PAGES_PER_JOB pages, one where processes cannot be forked; `jobs` 0 means one per core,
    at most one per BYTES_PER_JOB bytes (a process must pay for its start)."""
    if not can_fork:
        return 1
    if jobs == 0:
        jobs = min(cpus, size // BYTES_PER_JOB)
    return max(1, min(jobs, pages // PAGES_PER_JOB))


def page_sizes(pages: Sequence[str | Path]) -> list[int]:
    """The size of each page's file (0 for one that cannot be read: its error line is cheap)."""
    sizes = []
    for page in pages:
        try:
            sizes.append(os.stat(page).st_size)
        except (OSError, ValueError):
            sizes.append(0)
    return sizes


def weights(sizes: Sequence[int]) -> list[int]:
    """What reading each page costs, in bytes: the bytes read of it plus PAGE_COST."""
    from crawler.extract.meta import MAX_INPUT

    return [min(s, MAX_INPUT) + PAGE_COST for s in sizes]


def shares(weights: Sequence[int], parts: int, start: int = 0) -> list[range]:
    """`parts` runs of consecutive pages from `start` on (fewer if there are fewer pages),
    each of about the same weight: a run's lines can be printed in one piece."""
    total = sum(weights[start:])
    out: list[range] = []
    lo, acc = start, 0
    for i in range(start, len(weights)):
        acc += weights[i]
        # cut after page i once this run holds its share of the total (never an empty run)
        if len(out) < parts - 1 and acc * parts >= total * (len(out) + 1):
            out.append(range(lo, i + 1))
            lo = i + 1
    if lo < len(weights):
        out.append(range(lo, len(weights)))
    return out


def extract_lines(
    pages: Sequence[str | Path], url: str | None, processes: int
) -> Iterator[tuple[str, bool]]:
    """page_line of each page, in the order of `pages`, read by `processes` processes.

    With more than one, the pages are cut in runs of about the same bytes: this process
    reads the first (its lines come as they are read), a forked process each other one, and
    sends its lines back through a pipe, read as they come so that it never waits for us.
    No pool and no pickling: a fork and a pipe each, and the parser (imported before the
    fork) is shared. A reading process that dies (killed, out of memory) is a failure of the
    tool, raised as CrawlerError after the lines before its pages; a page that cannot be
    read is a line of its own.
    """
    import crawler.extract.meta  # noqa: F401 - imported once, before the fork, and shared

    runs = shares(weights(page_sizes(pages)), processes) if processes > 1 else []
    if len(runs) <= 1:
        for page in pages:
            yield page_line(page, url)
        return
    children = _fork_readers([[pages[i] for i in r] for r in runs[1:]], url)
    try:
        for i in runs[0]:
            yield page_line(pages[i], url)
            for child in children:
                child.drain()
        for child in children:
            yield from child.lines()
    finally:
        for child in children:
            child.stop()


class _Reader:
    """A forked process reading a run of pages, as its parent sees it."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd
        self.received: list[bytes] = []
        self.done = False  # the pipe is at its end
        self.status: int | None = None  # the wait status, once reaped

    def drain(self) -> None:
        """Take what the process has written so far, without waiting."""
        while not self.done:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            if data:
                self.received.append(data)
            else:
                self.done = True

    def lines(self) -> Iterator[tuple[str, bool]]:
        """Every line the process sends, then whether it finished (CrawlerError if it died)."""
        os.set_blocking(self.fd, True)
        tail = b""
        while True:
            self.drain()
            data = tail + b"".join(self.received)
            self.received.clear()
            *whole, tail = data.split(b"\n")
            for line in whole:
                if line[:1] == b"!":
                    raise RuntimeError(f"in a reading process: {line[1:].decode('utf-8')}")
                yield line[1:].decode("utf-8"), line[:1] == b"+"
            if self.done:
                break
        os.close(self.fd)
        self.fd = -1
        _, self.status = os.waitpid(self.pid, 0)
        if self.status != 0:  # died: killed, out of memory, or a bug of its own
            raise CrawlerError("a page-reading process died before it finished")

    def stop(self) -> None:
        """Stop the process if it still runs (the lines were not all wanted), and reap it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.status is None:
            import contextlib
            import signal

            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -1


#: The exit code of a reading process that met a bug (it sends its line first).
BUG = 70


def _fork_readers(runs: list[list[str | Path]], url: str | None) -> list[_Reader]:
    """A forked process for each run of pages, each writing its lines into a pipe."""
    import contextlib
    import gc

    children: list[_Reader] = []
    # Objects the collector never visits stay shared with the forked processes instead of
    # being copied page by page when a collection in them touches every object.
    gc.freeze()
    try:
        for run in runs:
            r, w = os.pipe()
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(r)
                os.close(w)
                for child in children:
                    child.stop()
                error = f"cannot start a reading process: {exc.strerror or exc}"
                raise CrawlerError(error) from exc
            if pid == 0:  # the reading process: its lines into the pipe, then exit
                code = BUG
                try:
                    os.close(r)
                    for child in children:
                        os.close(child.fd)
                    code = _read_run(run, url, w)
                except Exception as exc:  # a bug: the parent says so, as of one of its own
                    with contextlib.suppress(OSError):
                        _write_all(w, [f"!{type(exc).__name__}: {exc}"])
                finally:
                    os._exit(code)
            os.close(w)
            os.set_blocking(r, False)
            children.append(_Reader(pid, r))
    finally:
        gc.unfreeze()
    return children


def _read_run(pages: Sequence[str | Path], url: str | None, fd: int) -> int:
    """In a reading process: each page's line into fd, "+" or "-" before it (read or not),
    written some 64 KB at a time; 0 once all are written."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us
    out: list[str] = []
    size = 0
    for page in pages:
        line, ok = page_line(page, url)
        out.append(("+" if ok else "-") + line)
        size += len(line)
        if size >= CHUNK_CHARS:
            _write_all(fd, out)
            out, size = [], 0
    _write_all(fd, out)
    return 0


def _write_all(fd: int, lines: list[str]) -> None:
    data = memoryview(("\n".join(lines) + "\n").encode("utf-8")) if lines else memoryview(b"")
    while data:
        data = data[os.write(fd, data) :]
