"""`crawler extract`: saved pages → one JSON line each on stdout, started with little more
than the extract stage itself.

crawler.start sends `crawler extract PAGES [-j N] [--url URL]` here, where only click and the
extract stage are imported: not crawler.cli, whose other commands' options, configuration file
and settings were a third of the command's start-up. Arguments this short command line does
not know (-v, --config, -h, a CRAWLER_CONFIG in the environment) go to crawler.cli, whose
`extract` is the same command with the common options.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: Lines written to stdout at a time: one write per line would be one system call per page
#: where stdout is unbuffered (PYTHONUNBUFFERED).
LINES_PER_WRITE = 64


def extract_options(fn: F) -> F:
    """PAGES, --url and -j: the options of `crawler extract` (crawler.cli adds -v and --config)."""
    fn = click.option(
        "-j",
        "--jobs",
        type=click.IntRange(0, 64),
        default=0,
        show_default=True,
        help="Processes reading pages at once; 0 = one per core (one per 4 MB and 16 pages).",
    )(fn)
    fn = click.option(
        "--url", default=None, help="The URL the page was saved from (selects site rules)."
    )(fn)
    return click.argument("pages", nargs=-1, required=True, type=click.Path(path_type=Path))(fn)


def run(pages: Sequence[Path], url: str | None, jobs: int) -> int:
    """Print the line of every page, in the order given; 1 when a page could not be read."""
    from crawler.extract.batch import extract_lines, page_sizes, processes_for

    processes = 1
    if jobs != 1 and len(pages) > 1:
        from crawler.config import can_fork, usable_cpus

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


#: The options of the short command line, and whether each takes a value.
_OPTIONS = {"-j": True, "--jobs": True, "--url": True}


def _short_enough(args: Sequence[str]) -> bool:
    """Whether args hold only PAGES, -j/--jobs and --url (the whole CLI reads anything else)."""
    if "CRAWLER_CONFIG" in os.environ:  # a configuration file could set options: crawler.cli
        return False
    takes_value = False
    for arg in args:
        if takes_value:
            takes_value = False
        elif arg == "--":
            return True
        elif arg.startswith("-") and arg != "-":
            name, eq, _ = arg.partition("=")
            if name in _OPTIONS:
                takes_value = not eq
            elif not (arg.startswith("-j") and arg[2:].isdigit()):  # -j2
                return False
    return True


@click.command("extract", context_settings={"help_option_names": ["-h", "--help"]})
@extract_options
def _extract(pages: tuple[Path, ...], url: str | None, jobs: int) -> None:
    """Print what the crawler reads from saved HTML pages, one JSON object per line."""
    sys.exit(run(pages, url, jobs))


def quick(args: list[str]) -> None:
    """Run `crawler extract ARGS` and exit, unless ARGS need the whole command line (returns)."""
    if not _short_enough(args):
        return
    from crawler.start import finish

    finish(lambda: _extract.main(args, prog_name="crawler extract", standalone_mode=False))
