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


#: Bytes of pages given to a forked reading process at a time.
CHUNK_BYTES = 1024 * 1024


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


def _chunk_lines(pages: Sequence[str | Path], url: str | None) -> list[tuple[str, bool]]:
    """page_line of each page: what a forked reading process runs, a chunk at a time."""
    return [page_line(page, url) for page in pages]


def extract_lines(
    pages: Sequence[str | Path], url: str | None, processes: int
) -> Iterator[tuple[str, bool]]:
    """page_line of each page, in the order of `pages`, read by `processes` processes.

    With more than one, this process reads the first 1/processes of the pages' bytes (its
    lines come as they are read) while forked processes read the rest, given CHUNK_BYTES of
    pages at a time: a message each way per chunk, not per page, and a Ctrl-C waits for no
    more than the chunks being read. A reading process
    that dies (killed, out of memory) is a failure of the tool, raised as CrawlerError after
    the lines before its pages; a page that cannot be read is a line of its own.
    """
    import crawler.extract.meta  # noqa: F401 - imported once, before the fork, and shared

    cost = weights(page_sizes(pages)) if processes > 1 else []
    own = shares(cost, processes)[0] if cost else range(len(pages))
    if len(own) == len(pages):
        for page in pages:
            yield page_line(page, url)
        return
    rest = sum(cost[own.stop :])
    chunks = shares(cost, max(processes - 1, -(-rest // CHUNK_BYTES)), own.stop)
    import gc
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("fork")  # the parser, imported above, is shared
    pool = ProcessPoolExecutor(processes - 1, mp_context=context, initializer=_ignore_sigint)
    try:
        # Objects the collector never visits stay shared with the forked processes instead
        # of being copied page by page when a collection in them touches every object.
        gc.freeze()
        try:
            futures = [pool.submit(_chunk_lines, [pages[i] for i in r], url) for r in chunks]
        except OSError as exc:  # the first submit starts the processes
            raise CrawlerError(f"cannot start a reading process: {exc.strerror or exc}") from exc
        finally:
            gc.unfreeze()
        for i in own:
            yield page_line(pages[i], url)
        for future in futures:
            try:
                lines = future.result()
            except BrokenProcessPool as exc:
                raise CrawlerError("a page-reading process died before it finished") from exc
            yield from lines
    finally:
        pool.shutdown(cancel_futures=True)


def _ignore_sigint() -> None:
    """In a reading process: leave Ctrl-C to the parent, which stops the pool."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
