"""`crawler extract`: saved pages → one JSON line each on stdout, started with little more
than the extract stage itself.

crawler.start sends `crawler extract PAGES [-j N] [--url URL]` here, where only the extract
stage is imported: not crawler.cli, whose other commands' options, configuration file and
settings were a third of the command's start-up, nor click, another fifth: the arguments are
read here as click reads them. Anything else (-v, --config, -h, a value out of range, a
CRAWLER_CONFIG in the environment) goes to crawler.cli, whose `extract` is the same command
with the common options, and whose click says what is wrong.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing and pathlib are not imported at run time: start-up time counts
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

#: The values -j takes (click.IntRange of `extract_options`; the short command line's too).
MAX_JOBS = 64

#: Lines written to stdout at a time: one write per line would be one system call per page
#: where stdout is unbuffered (PYTHONUNBUFFERED).
LINES_PER_WRITE = 64


def extract_options(fn: F) -> F:
    """PAGES, --url and -j: the options of `crawler extract` (crawler.cli adds -v and --config)."""
    from pathlib import Path

    import click  # here: the short command line reads these options without click

    fn = click.option(
        "-j",
        "--jobs",
        type=click.IntRange(0, MAX_JOBS),
        default=0,
        show_default=True,
        help="Processes reading pages at once; 0 = one per core (one per 4 MB and 16 pages).",
    )(fn)
    fn = click.option(
        "--url", default=None, help="The URL the page was saved from (selects site rules)."
    )(fn)
    return click.argument("pages", nargs=-1, required=True, type=click.Path(path_type=Path))(fn)


def run(pages: Sequence[str | Path], url: str | None, jobs: int) -> int:
    """Print the line of every page, in the order given; 1 when a page could not be read."""
    from crawler.extract.batch import extract_lines, page_sizes, processes_for

    processes = 1
    if jobs != 1 and len(pages) > 1:
        from crawler.cpus import can_fork, usable_cpus

        size = sum(page_sizes(pages)) if jobs == 0 else 0
        processes = processes_for(len(pages), size, jobs, usable_cpus(), can_fork())
    failed = False
    out: list[str] = []
    try:
        for line, ok in extract_lines(pages, url, processes):
            failed |= not ok
            out.append(line)
            if len(out) >= LINES_PER_WRITE:
                sys.stdout.write("\n".join(out) + "\n")
                out.clear()
    finally:  # the lines read before a failure of the tool are printed too
        if out:
            sys.stdout.write("\n".join(out) + "\n")
    return 1 if failed else 0


def _page_name(arg: str) -> str:
    """The page argument as str(pathlib.Path(arg)) writes it, which the whole command line
    prints (click.Path(path_type=Path)); pathlib is imported only for an argument it would
    change ("./a.html", "a//b.html", "dir/")."""
    if arg and "//" not in arg and not arg.endswith("/") and "." not in arg.split("/"):
        return arg
    from pathlib import Path

    return str(Path(arg))


def short_command_line(args: Sequence[str]) -> tuple[list[str], str | None, int] | None:
    """PAGES, --url and --jobs of `crawler extract ARGS` when ARGS hold only these, each as
    click reads it, and every value is good; None for anything else (crawler.cli reads it, and
    says what is wrong with it)."""
    if "CRAWLER_CONFIG" in os.environ:  # a configuration file could set options: crawler.cli
        return None
    pages: list[str] = []
    url: str | None = None
    jobs = "0"
    rest = iter(args)
    for arg in rest:
        if arg == "--":
            pages.extend(rest)
            break
        if not arg.startswith("-") or arg == "-":
            pages.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if eq and name in ("--jobs", "--url"):
            pass  # --jobs=2
        elif arg in ("-j", "--jobs", "--url"):
            name, value = arg, next(rest, "\0")  # click takes the next argument, whatever it is
            if value == "\0":
                return None
        elif arg.startswith("-j") and not eq:
            name, value = "-j", arg[2:]  # -j2
        else:
            return None
        if name == "--url":
            url = value
        else:
            jobs = value
    if not pages or not (jobs.isascii() and jobs.isdigit() and int(jobs) <= MAX_JOBS):
        return None
    return [_page_name(p) for p in pages], url, int(jobs)


def quick(args: list[str]) -> None:
    """Run `crawler extract ARGS` and exit, unless ARGS need the whole command line (returns)."""
    parsed = short_command_line(args)
    if parsed is None:
        return
    from crawler.start import finish

    finish(lambda: run(*parsed))
