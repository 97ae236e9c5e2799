"""Report stage: Run → text. One pure renderer per format behind `render`; `write_reports` saves.

`write_reports` writes every format from one pass over the run's checks: report.html's template
takes its rows from the pass and each other format is a Feed given every check as it goes by
(what a report says of the run as a whole is its tally, counted before). The JSON, JUnit and
HTML reports are written a piece at a time (never the whole text in memory), each into a
temporary file renamed over the old one when complete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import traceback
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from functools import partial
from itertools import chain, islice
from pathlib import Path
from typing import IO, Protocol, TextIO, cast

from crawler.config import DEFAULT_FAIL_ON, can_fork
from crawler.config import DEFAULT_FORMATS as DEFAULT_FORMATS
from crawler.errors import CrawlerError
from crawler.report import html, issue, json_report, junit, markdown, sarif
from crawler.report.notes import partial_note as partial_note
from crawler.types import Check, LazyChecks, Run, lean

#: format name → (file name, renderer)
FORMATS: dict[str, tuple[str, Callable[[Run], str]]] = {
    "json": ("report.json", json_report.render),
    "md": ("report.md", markdown.render),
    "html": ("report.html", html.render),
    "junit": ("report.junit.xml", junit.render),
    "sarif": ("report.sarif", sarif.render),
    "issue": ("issue.md", issue.render),
}

#: format name → a writer of the same text to an open file, a piece at a time (alone)
WRITERS: dict[str, Callable[[Run, TextIO], None]] = {
    "json": json_report.write,
    "md": markdown.write,
    "html": html.write,
    "junit": junit.write,
    "sarif": sarif.write,
    "issue": issue.write,
}


def render(run: Run, fmt: str) -> str:
    """Render a run in one format."""
    return FORMATS[fmt][1](run)


def new_file_mode() -> int:
    """The mode open() gives a new file here: 0o666 less the umask (mkstemp's files are 0o600)."""
    try:  # Linux: read the umask without changing it (os.umask would, for every thread)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[TextIO]:
    """A file open for writing at path that readers see whole or not at all: the text goes to
    a temporary file in the same directory, renamed over path when the block ends without an
    exception (and removed if it does not). The file gets the mode a new file gets (the umask
    applies), not mkstemp's 0o600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n", buffering=1 << 18) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str | Callable[[TextIO], object]) -> None:
    """Write a file so that readers see the old or the new version, never half of one.

    `text` is the content, or a function that writes it to the open file. The file gets the
    mode a new file gets (the umask applies), not mkstemp's 0o600.
    """
    with atomic_file(path) as f:
        if isinstance(text, str):
            f.write(text)
        else:
            text(f)


class _Out:
    """A report's file as its writer sees it: a failed write names the file (CrawlerError)."""

    __slots__ = ("f", "path")

    def __init__(self, f: TextIO, path: Path) -> None:
        self.f, self.path = f, path

    def write(self, text: str) -> int:
        try:
            return self.f.write(text)
        except OSError as exc:
            raise _cannot(self.path, exc) from exc

    def flush(self) -> None:
        try:
            self.f.flush()
        except OSError as exc:
            raise _cannot(self.path, exc) from exc


def _cannot(path: Path, exc: OSError) -> CrawlerError:
    return CrawlerError(f"cannot write {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def _report_file(path: Path) -> Iterator[TextIO]:
    """atomic_file(path), a failure to write it a CrawlerError naming it. An OSError of the
    block's own (reading the history, starting report.html's writer) is not this file's: it
    goes on as it is, the temporary file removed."""
    own = True  # the OSError comes from the file itself: creating, writing or renaming it
    try:
        with atomic_file(path) as f:
            own = False
            yield cast(TextIO, _Out(f, path))
            own = True  # closing (the last flush) and the rename
    except OSError as exc:
        if not own:
            raise
        raise _cannot(path, exc) from exc


class Feed(Protocol):
    """A report written as the run's checks are fed to it, one at a time, in order."""

    def __call__(self, check: Check) -> None: ...

    def close(self) -> None:
        """Write what is left (the reports that list a few checks write them all here)."""


#: format name → the report's Feed on (run, file, fail_on); html is written by its template,
#: which pulls the checks itself.
FEEDS: dict[str, Callable[[Run, TextIO, Collection[str]], Feed]] = {
    "json": lambda run, out, fail_on: json_report.Feed(run, out),
    "md": lambda run, out, fail_on: markdown.Feed(run, out),
    "junit": junit.Feed,
    "sarif": sarif.Feed,
    "issue": lambda run, out, fail_on: issue.Feed(run, out),
}


def _fed(checks: Iterable[Check], feeds: Sequence[Callable[[Check], object]]) -> Iterator[Check]:
    """The checks, each given to every feed as it is taken."""
    for c in checks:
        for feed in feeds:
            feed(c)
        yield c


def write_reports(
    run: Run,
    report_dir: str | os.PathLike[str],
    formats: Iterable[str],
    fail_on: Collection[str] = DEFAULT_FAIL_ON,
    also: Sequence[Callable[[Check], object]] = (),
    aside: bool = True,
) -> list[Path]:
    """Write every requested format into report_dir from one pass over the run's checks;
    return the paths written. `fail_on`: the verdicts that fail the run, JUnit's failures and
    SARIF's errors. `also`: more consumers of the same pass (each called with every check, in
    order). report.html is written by a forked process on a pass of its own where that is
    safe (aside_ok) and `aside`. The files are renamed into place when every one is
    complete."""
    directory = Path(report_dir)
    formats = list(formats)
    paths: list[Path] = []
    with contextlib.ExitStack() as stack:
        feeds: list[Feed] = []
        page: TextIO | None = None
        for fmt in formats:
            path = directory / FORMATS[fmt][0]
            out = stack.enter_context(_report_file(path))
            paths.append(path)
            if fmt == "html":
                page = out
            else:
                feeds.append(FEEDS[fmt](run, out, fail_on))
        writer = None
        # one pass: in full when report.html shows the strips of recent runs, else lean
        checks: Iterable[Check] = run.checks if page is not None else lean(run.checks)
        maker = None  # the parent's share of report.html's rows, when it is split
        if aside and page is not None and (feeds or also) and aside_ok():
            # report.html, the longest to write, by a process of its own on its own pass (the
            # other core: the workers are gone), while this one writes the rest and makes the
            # page's last rows, from `start` on, on its own pass (shown in full from there).
            run.tally()  # counted once, before: both processes have it
            start = aside_start(len(run.checks))
            handoff = None
            if start is not None:
                handoff = html.Handoff(directory)
                stack.callback(handoff.close)
            try:
                writer = _Aside(partial(_write_page, run, page, start, handoff))
            except OSError:  # no process or pipe to spare (EAGAIN, ENOMEM, EMFILE): written here
                writer = None
        if writer is not None:
            stack.callback(writer.close)
            page = None
            checks = lean(run.checks)
            if start is not None and handoff is not None:
                handoff.making()
                maker = html.RowMaker(run, start, handoff)
                checks = chain(islice(checks, start), _from(run.checks, start))
        checks = _fed(checks, [*feeds, *also, *([maker] if maker is not None else [])])
        if page is not None:
            html.write(run, page, checks)  # its rows are taken from the pass
        for _ in checks:  # the rest of the pass (all of it without report.html)
            pass
        if maker is not None:
            maker.handoff.done()
        for feed in feeds:
            feed.close()
        if writer is not None:
            writer.join()
    return paths  # each file flushed and renamed into place as the stack closed


#: The share of report.html's rows its forked writer makes itself: the parent makes the rest
#: (html.RowMaker) on its own pass, which also feeds every other report. The end of the bench's
#: 10,000-link check (json, md, html), CPU s of the parent / the writer: 0.90 / 1.38 with the
#: writer making every row, 1.23 / 0.89 at 0.7, 1.12 / 1.08 at 0.8 (medians of 4, load 11).
ASIDE_SHARE = 0.8


def aside_start(n: int) -> int | None:
    """Where the parent's share of report.html's n rows starts (a whole number of the store's
    reading batches: no pass reads a batch it does not use); None: the child makes them all."""
    from crawler.store import BATCH

    start = -(-int(n * ASIDE_SHARE) // BATCH) * BATCH
    return start if 0 < start < n else None


def _from(checks: Sequence[Check], start: int) -> Iterator[Check]:
    """The checks from start on, in full."""
    if isinstance(checks, LazyChecks):
        return checks.pick(range(start, len(checks)))
    return islice(checks, start, None)


def _write_page(
    run: Run, page: TextIO, start: int | None = None, handoff: html.Handoff | None = None
) -> None:
    if start is None or handoff is None:
        html.write(run, page)
    else:  # the rows from start on come from the parent
        rest = handoff.reading()
        html.write(run, page, islice(run.checks, start), rest)
    page.flush()


def aside_ok() -> bool:
    """Whether report.html may be written by a forked process: fork is safe here (POSIX, not
    macOS) and this process runs no other thread (one holding a lock at the fork would leave
    it held in the child)."""
    return can_fork() and threading.active_count() == 1


class _Aside:
    """A forked process running one writer; `join` waits for it and raises what it raised.

    The child inherits the open report file (the parent never writes to it, and renames it into
    place once the child is done); it opens its own database connections (each batch of a pass
    opens one: none is open at the fork). Whatever ends it, the child leaves with os._exit,
    running nothing of the parent's (no atexit, no buffers flushed twice).
    """

    def __init__(self, work: Callable[[], None]) -> None:
        r, w = os.pipe()
        try:
            self.pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            raise
        if self.pid == 0:  # the child
            os.close(r)
            code = 0
            try:
                work()
                message = b""
            except CrawlerError as exc:
                message, code = b"E" + str(exc).encode(errors="replace"), 1
            except BaseException:  # a bug: the parent raises it, with the child's traceback
                message, code = b"B" + traceback.format_exc().encode(errors="replace"), 1
            finally:
                with contextlib.suppress(BaseException), os.fdopen(w, "wb") as f:
                    f.write(message)
                os._exit(code)
        os.close(w)
        self.reader: IO[bytes] | None = os.fdopen(r, "rb")

    def join(self) -> None:
        """Wait for the child; its CrawlerError raised here as it is, any other failure as a
        bug (RuntimeError with its traceback)."""
        assert self.reader is not None
        message = self.reader.read()  # until the child's end closes the pipe
        self._wait()
        self.close()
        if message.startswith(b"E"):
            raise CrawlerError(message[1:].decode())
        if message.startswith(b"B"):
            raise RuntimeError("the report.html writer failed:\n" + message[1:].decode())
        if self.status != 0:
            raise RuntimeError(f"the report.html writer ended with wait status {self.status}")

    def close(self) -> None:
        """Reap the child (killed first when the parent stops before `join`)."""
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._wait()

    status: int | None = None

    def _wait(self) -> None:
        _, status = os.waitpid(self.pid, 0)
        self.status = os.waitstatus_to_exitcode(status)
