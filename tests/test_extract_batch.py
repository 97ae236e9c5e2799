"""`crawler extract -j N`: saved pages read by a pool of processes (crawler/extract/batch.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from crawler.extract import batch


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


@pytest.mark.parametrize(
    ("pages", "jobs", "cpus", "fork", "expected"),
    [
        (100, 0, 4, True, 4),  # one per core
        (20, 0, 4, True, 1),  # too few pages for more than one
        (40, 8, 4, True, 2),  # at most one per 16 pages
        (100, 3, 4, False, 1),  # no fork here
    ],
)
def test_how_many_processes_read(
    pages: int, jobs: int, cpus: int, fork: bool, expected: int
) -> None:
    assert batch.processes_for(pages, jobs, cpus, fork) == expected
