"""Saved pages → the JSON lines `crawler extract` prints, in one process or in a pool of them."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from crawler.errors import CrawlerError

#: Fewer pages than this per process are read in one process: starting one costs more.
PAGES_PER_JOB = 16


#: Pages sent to a reading process at a time: enough to make a message worth its cost, few
#: enough that a run of megabyte pages does not leave the other processes idle at the end.
CHUNK_MAX = 8


def page_line(page: Path, url: str | None) -> tuple[str, bool]:
    """The JSON line for one saved page, and whether it was read."""
    from crawler.extract.meta import extract_meta
    from crawler.inputs import is_binary

    try:
        body = page.read_bytes()
    except OSError as exc:
        return json.dumps({"file": str(page), "error": exc.strerror or str(exc)}), False
    if is_binary(body):  # as `check` refuses a binary post
        error = "is a binary file (contains NUL bytes), not an HTML page"
        return json.dumps({"file": str(page), "error": error}), False
    meta = extract_meta(body, url=url, with_hash=False)
    line = json.dumps(
        {
            "file": str(page),
            "title": meta.title,
            "summary": meta.summary,
            "page_kind": meta.kind.value,
            "notice": meta.notice,
            "site": meta.site,
            "site_name": meta.site_name,
            "canonical_url": meta.canonical_url,
            "lang": meta.lang,
        },
        ensure_ascii=False,
    )
    return line, True


def processes_for(pages: int, jobs: int, cpus: int, can_fork: bool) -> int:
    """How many processes read `pages` pages: `jobs` (0 = one per core from 32 pages on),
    at most one per PAGES_PER_JOB pages, and one where processes cannot be forked."""
    if not can_fork:
        return 1
    if jobs == 0:
        jobs = cpus if pages >= 2 * PAGES_PER_JOB else 1
    return max(1, min(jobs, pages // PAGES_PER_JOB))


def _line(args: tuple[Path, str | None]) -> tuple[str, bool]:
    """page_line for one (page, url) pair: what the pool's processes run."""
    return page_line(*args)


def extract_lines(
    pages: Sequence[Path], url: str | None, processes: int
) -> Iterator[tuple[str, bool]]:
    """page_line of each page, in the order of `pages`, read by `processes` processes.

    A reading process that dies (killed, out of memory) is a failure of the tool, raised as
    CrawlerError; a page that cannot be read is a line of its own.
    """
    import crawler.extract.meta  # noqa: F401 - imported once, before the fork, and shared

    if processes <= 1:
        for page in pages:
            yield page_line(page, url)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    chunksize = max(1, min(CHUNK_MAX, len(pages) // (4 * processes)))
    context = multiprocessing.get_context("fork")  # the parser, imported above, is shared
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_ignore_sigint)
    try:
        try:
            lines = pool.map(_line, [(p, url) for p in pages], chunksize=chunksize)
        except OSError as exc:  # map starts the processes
            raise CrawlerError(f"cannot start a reading process: {exc.strerror or exc}") from exc
        try:
            yield from lines
        except BrokenProcessPool as exc:
            raise CrawlerError("a page-reading process died before it finished") from exc
    finally:
        pool.shutdown(cancel_futures=True)


def _ignore_sigint() -> None:
    """In a reading process: leave Ctrl-C to the parent, which stops the pool."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
