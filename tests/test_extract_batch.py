"""`crawler extract -j N`: saved pages read by a pool of processes (crawler/extract/batch.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from crawler.cli import cli
from crawler.extract import batch
from crawler.extract.command import extract_options, short_command_line


def _pages(tmp_path: Path, n: int) -> list[str]:
    pages = []
    for i in range(n):
        p = tmp_path / f"p{i:02}.html"
        p.write_text(f"<title>t{i}</title><p>{'x' * 200}</p>", encoding="utf-8")
        pages.append(str(p))
    return pages


def test_a_pool_reads_every_page_in_order(tmp_path: Path) -> None:
    pages = [Path(p) for p in _pages(tmp_path, 70)]
    one = list(batch.extract_lines(pages, None, 1))
    two = list(batch.extract_lines(pages, None, 2))
    assert two == one
    assert [json.loads(line)["title"] for line, _ in two] == [f"t{i}" for i in range(70)]


def test_a_reading_process_that_dies_is_a_failure_of_the_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = _pages(tmp_path, 40)
    real = batch.page_line

    def dies_on_page_30(page: Path, url: str | None) -> tuple[str, bool]:
        if page.name == "p30.html":
            os._exit(9)  # as a process killed or out of memory: no line, no exception
        return real(page, url)

    monkeypatch.setattr(batch, "page_line", dies_on_page_30)  # the forked processes inherit it
    r = CliRunner().invoke(cli, ["extract", "-j", "2", *pages])
    assert r.exit_code == 1
    assert r.stderr == "Error: a page-reading process died before it finished\n"
    # The lines before the dead process's pages are printed, in order; none for its pages.
    printed = [json.loads(x)["file"] for x in r.stdout.splitlines()]
    assert printed == pages[: len(printed)] and pages[30] not in printed


def test_a_bug_in_a_reading_process_is_a_bug_not_a_death(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = _pages(tmp_path, 40)
    real = batch.page_line

    def fails_on_page_30(page: str, url: str | None) -> tuple[str, bool]:
        if page.endswith("p30.html"):
            raise KeyError("no such rule")
        return real(page, url)

    monkeypatch.setattr(batch, "page_line", fails_on_page_30)
    with pytest.raises(RuntimeError, match="in a reading process: KeyError: 'no such rule'"):
        list(batch.extract_lines(pages, None, 2))


def test_a_reading_process_sends_more_than_a_pipe_holds(tmp_path: Path) -> None:
    """Its lines are taken as they come: it never waits on a full pipe for this process."""
    pages = []
    for i in range(400):  # lines of ~1 KB: 200 KB from the reading process, a pipe holds 64 KB
        p = tmp_path / f"p{i:03}.html"
        p.write_text(f"<title>{i} {'y' * 900}</title>", encoding="utf-8")
        pages.append(str(p))
    lines = list(batch.extract_lines(pages, None, 2))
    assert [json.loads(line)["title"].split()[0] for line, _ in lines] == [
        str(i) for i in range(400)
    ]
    assert all(ok for _, ok in lines)


def test_lines_no_longer_wanted_stop_the_reading_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader stops (Ctrl-C, a closed stdout): its reading processes are killed and reaped,
    not left reading."""
    pages = _pages(tmp_path, 40)
    real = batch.page_line
    parent = os.getpid()

    def never_ends_in_a_reading_process(page: str, url: str | None) -> tuple[str, bool]:
        if os.getpid() != parent:
            signal.pause()  # until killed
        return real(page, url)

    monkeypatch.setattr(batch, "page_line", never_ends_in_a_reading_process)
    lines = batch.extract_lines(pages, None, 2)
    assert json.loads(next(lines)[0])["title"] == "t0"
    lines.close()
    with pytest.raises(ChildProcessError):  # no child left, running or not reaped
        os.waitpid(-1, os.WNOHANG)


MB = 1024 * 1024


@pytest.mark.parametrize(
    ("pages", "size", "jobs", "cpus", "fork", "expected"),
    [
        (100, 40 * MB, 0, 4, True, 4),  # one per core
        (100, 9 * MB, 0, 4, True, 2),  # but one per 4 MB: a process must pay for its start
        (100, 3 * MB, 0, 4, True, 1),
        (20, 40 * MB, 0, 4, True, 1),  # too few pages for more than one
        (40, 0, 8, 4, True, 2),  # asked for: at most one per 16 pages, whatever their size
        (100, 40 * MB, 3, 4, False, 1),  # no fork here
    ],
)
def test_how_many_processes_read(
    pages: int, size: int, jobs: int, cpus: int, fork: bool, expected: int
) -> None:
    assert batch.processes_for(pages, size, jobs, cpus, fork) == expected


def test_the_pages_are_shared_by_bytes_in_runs_of_consecutive_pages() -> None:
    cost = batch.weights([1 * MB, 1 * MB, 2 * MB, 10, 10, 10, 4 * MB])
    two = batch.shares(cost, 2)
    assert two == [range(0, 4), range(4, 7)]  # 4 MB and a bit, 4 MB and a bit
    assert batch.shares(cost, 3) == [range(0, 3), range(3, 7)]  # fewer: 4 MB in one page
    assert batch.shares(cost, 4, start=6) == [range(6, 7)]  # never an empty run
    many = batch.shares(batch.weights([100] * 50), 7)
    assert [i for r in many for i in r] == list(range(50)) and len(many) == 7
    assert max(map(len, many)) - min(map(len, many)) <= 1


# What `crawler extract` must not import: the rest of the command line, the engine, the stores,
# the HTTP clients, the report templates, the post reader.
HEAVY = (
    "click",  # the short command line reads its arguments itself
    "crawler.types",  # dataclasses: PageKind comes from crawler.pagekind
    "dataclasses",
    "crawler.cli",
    "crawler.options",
    "crawler.configfile",
    "crawler.engine",
    "crawler.store",
    "crawler.pipeline",
    "httpx",
    "aiohttp",
    "jinja2",
    "markdown_it",
)

ENTRY = """
import atexit, json, sys
def heavy(): return sorted(m for m in {heavy} if m in sys.modules)
atexit.register(lambda: sys.stderr.write(json.dumps(heavy())))
sys.argv = ["crawler", *{args}]
from crawler.start import main
main()
"""


def _entry(args: list[str]) -> subprocess.CompletedProcess[str]:
    """`crawler ARGS` through the entry point, in a new process; stderr ends with the heavy
    modules it imported."""
    code = ENTRY.format(heavy=HEAVY, args=args)
    env = {k: v for k, v in os.environ.items() if k != "CRAWLER_CONFIG"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )


def test_crawler_extract_starts_without_the_rest_of_the_command_line(tmp_path: Path) -> None:
    pages = _pages(tmp_path, 3)
    quick = _entry(["extract", "-j", "1", "--url", "https://example.org/", *pages])
    assert quick.returncode == 0, quick.stderr
    assert json.loads(quick.stderr) == []
    # -v is the whole command line's: the same lines, with crawler.cli imported
    full = _entry(["extract", "-v", "-j", "1", "--url", "https://example.org/", *pages])
    assert full.returncode == 0, full.stderr
    assert full.stdout == quick.stdout
    assert "crawler.cli" in json.loads(full.stderr)
    assert [json.loads(x)["title"] for x in quick.stdout.splitlines()] == ["t0", "t1", "t2"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["extract"], 2, "Error: Missing argument 'PAGES...'."),
        (["extract", "-j", "x", "p.html"], 1, "Error: --jobs: 'x' is not a valid integer range"),
        (["extract", "missing.html"], 1, None),  # the page's own error line, exit 1
    ],
)
def test_crawler_extract_fails_as_the_whole_command_line_does(
    tmp_path: Path, args: list[str], code: int, message: str | None
) -> None:
    quick = _entry(args)
    full = _entry(["-v", *args])  # -v before the command: crawler.cli reads it all
    assert quick.returncode == full.returncode == code
    assert quick.stdout == full.stdout
    assert "Traceback" not in quick.stderr
    if message is not None:
        assert message in quick.stderr
        assert quick.stderr.rsplit("\n", 1)[0] == full.stderr.rsplit("\n", 1)[0]


@click.command()
@extract_options
def _click_extract(pages: tuple[Path, ...], url: str | None, jobs: int) -> None:
    """The options of `crawler extract` as click reads them."""


def _as_click_reads(args: list[str]) -> tuple[list[str], str | None, int] | None:
    try:
        ctx = _click_extract.make_context("extract", list(args))
    except click.ClickException:
        return None
    p = ctx.params
    return [str(x) for x in p["pages"]], p["url"], p["jobs"]


_ARGS = st.lists(
    st.sampled_from(
        ["-j", "--jobs", "--url", "--", "-", "2", "64", "65", "x", "-j0", "-j2", "-jx", "-j=2",
         "--jobs=3", "--jobs=", "--url=u", "--jo", "-v", "-h", "--config", "a.html",
         "./b.html", "d//c.html", "dir/", ".", "..", "", "-1", "０"]
    ),
    max_size=6,
)  # fmt: skip


@given(_ARGS)
def test_the_short_command_line_reads_arguments_as_click_does_or_leaves_them(
    args: list[str],
) -> None:
    """What the short command line reads, click reads the same; a command line click refuses
    goes to crawler.cli (None), whose message it is."""
    short = short_command_line(args)
    clicks = _as_click_reads(args)
    if short is not None:
        assert short == clicks
    if clicks is None:
        assert short is None


@pytest.mark.parametrize(
    "args",
    [["a.html"], ["-j", "2", "a.html", "b.html"], ["--jobs=0", "--url", "u", "--", "-v"],
     ["-j2", "./a.html", "d//c.html"]],
)  # fmt: skip
def test_the_short_command_line_reads_the_usual_ones(args: list[str]) -> None:
    assert short_command_line(args) == _as_click_reads(args)
