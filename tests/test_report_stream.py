"""Reports of a run whose checks stream from the history (LazyChecks) are the reports of the
same checks held in memory, sections that come back after another included."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from crawler.config import FetchSettings
from crawler.pipeline import check_links
from crawler.report import FORMATS, junit, render, sarif
from crawler.store import Store
from crawler.types import Check, LazyChecks, Link, Run, Survey, Tally, Verdict
from tests.factories import make_check, make_run, with_history
from tests.server import LocalServer


def sample() -> Run:
    secs = [("A",), ("B",), ("A",), ("C",), ("B",), ("A", "x"), ("A",)]
    checks: list[Check] = []
    for i, sec in enumerate(secs):
        v = [Verdict.OK, Verdict.DEAD, Verdict.ERROR, Verdict.CHANGED][i % 4]
        c = make_check(f"https://e.example/{i}", v, section=sec, line=i + 1)
        if i % 3 == 0:
            c = with_history(c, Verdict.OK if v is Verdict.DEAD else Verdict.DEAD)
        checks.append(replace(c, link=replace(c.link, source=f"p{i % 2}.md")))
    return replace(make_run(*checks), sources=("p0.md", "p1.md"))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_streamed_run_renders_as_the_same_run_in_memory(fmt: str) -> None:
    run = sample()
    passes = []

    def again() -> object:
        passes.append(1)
        return iter(run.checks)

    lazy = replace(run, checks=LazyChecks(again, len(run.checks)))  # type: ignore[arg-type]
    assert render(lazy, fmt) == render(run, fmt)
    assert passes  # it was read as a stream, not turned into a tuple first


def test_html_keeps_a_section_that_comes_back_in_one_table() -> None:
    html = render(sample(), "html")
    # p0.md's A comes back twice after other sections: one table of its three links
    assert html.count('id="s-') == 5  # p0 A, p1 B, p1 C, p0 B, p1 A / x


@pytest.mark.anyio
async def test_a_run_from_the_history_is_streamed_and_read_again_each_pass(
    server: LocalServer, tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "h.sqlite")
    links = [Link(server.url(f"/titled/s{i}"), i + 1) for i in range(5)]
    settings = FetchSettings(host_interval=0, retries=0, timeout=5)
    run = await check_links(links, settings, store=store)
    store.close()  # each pass opens the history again
    assert isinstance(run.checks, LazyChecks)
    assert [c.url for c in run.checks] == [k.url for k in links]
    assert [c.link for c in run.checks] == links  # the caller's own Link objects
    assert run.counts()["ok"] == 5 and len(run.checks) == 5


def _sizeable_links() -> tuple[list[Link], list[str]]:
    """1,500 links in three posts, sections that come back after others, URLs listed twice."""
    links = []
    sources = ["a.md", "b.md", "c.md"]
    for i in range(1500):
        source = sources[i * 3 // 1500]
        section = (f"Part {i % 7 // 3}",) if i % 50 else ("Part 0", "aside")
        url = f"https://h{i % 40}.example/p/{i % 1400}"  # the last 100 repeat earlier URLs
        title = f"标题 {i % 1400}" if i % 9 == 0 else f"Title {i % 1400}"
        links.append(Link(url, i + 1, title, section, source))
    return links, sources


def _sizeable_runs(path: Path) -> tuple[Run, Run]:
    """The last of three stored runs of the sizeable links, read whole and streamed."""
    from tests.factories import write_history

    links, sources = _sizeable_links()
    write_history(path, links, sources, runs=3)
    store = Store.open(path)
    try:
        return store.load_run(), store.load_run(stream=True)
    finally:
        store.close()


def test_a_run_streamed_from_the_history_renders_as_read_into_memory(tmp_path: Path) -> None:
    """Every format of a sizeable stored run (three runs of history: newly broken, recovered,
    streaks, a trend; more checks than a batch) is the same streamed as read whole."""
    whole, streamed = _sizeable_runs(tmp_path / "h.sqlite")
    assert isinstance(streamed.checks, LazyChecks) and not isinstance(whole.checks, LazyChecks)
    assert len(whole.checks) == 1500
    assert any(c.newly_broken for c in whole.checks) and any(c.recovered for c in whole.checks)
    assert len(whole.counts()) >= 6 and whole.trend
    for fmt in sorted(FORMATS):
        assert render(streamed, fmt) == render(whole, fmt), fmt
    for fail_on in (("dead", "error"), ("changed",)):
        for module in (junit, sarif):
            assert module.render(streamed, fail_on) == module.render(whole, fail_on)


@pytest.mark.anyio
async def test_a_run_without_a_history_streams_from_a_scratch_file_that_goes_with_it(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--no-history: the run's checks stream from a temporary SQLite file (no format holds them
    all), which is removed once the run's checks are gone."""
    import gc
    import os
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    links = [Link(server.url(f"/titled/s{i}"), i + 1) for i in range(5)]
    settings = FetchSettings(host_interval=0, retries=0, timeout=5)
    run = await check_links(links, settings)
    assert isinstance(run.checks, LazyChecks) and run.run_id is None
    assert [name[:12] for name in os.listdir(tmp_path)] == ["crawler-run-"]
    assert render(run, "junit").count("<testcase ") == 5
    assert run.counts()["ok"] == 5
    del run
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_strips_of_recent_runs_are_the_last_runs_the_network_was_up(tmp_path: Path) -> None:
    """A streamed check's strip: its first check in each of the last runs before it (at most
    RECENT_RUNS - 1 of them, those whose network was up), oldest first, then this run's."""
    from datetime import datetime

    from crawler.config import RECENT_RUNS
    from tests.factories import write_history

    links = [Link(f"https://h{i % 3}.example/{i % 20}", i + 1, f"T {i}") for i in range(25)]
    write_history(tmp_path / "h.sqlite", links, ["post.md"], runs=RECENT_RUNS + 3)
    store = Store.open(tmp_path / "h.sqlite")
    store.conn.execute("UPDATE runs SET network_down = 1 WHERE id IN (4, 11)")
    last = store.run_info()
    assert last is not None
    want: dict[str, list[tuple[datetime, Verdict]]] = {}
    seen = set()
    for r in store.conn.execute(  # the query the strips were read with before the index
        "SELECT c.url, c.run_id, c.checked_at, c.verdict FROM checks c JOIN runs r "
        "ON r.id = c.run_id WHERE c.run_id < ? AND r.network_down = 0 AND c.run_id IN "
        "(SELECT id FROM runs WHERE id < ? ORDER BY id DESC LIMIT ?) ORDER BY c.run_id, c.id",
        (last.id, last.id, RECENT_RUNS),
    ):
        if (r[0], r[1]) not in seen:
            seen.add((r[0], r[1]))
            at = datetime.fromisoformat(r[2])
            want.setdefault(r[0], []).append((at, Verdict(r[3])))
    run = store.load_run(stream=True)
    store.close()
    got = 0
    for c in run.checks:
        assert c.history is not None
        assert c.history.recent == (*want[c.url], (c.checked_at, c.verdict))[-RECENT_RUNS:]
        got += len(c.history.recent) == RECENT_RUNS - 1  # ten runs back, less the one down
    assert got == len(links)


class _Counted:
    """A run's LazyChecks whose passes are counted: full and lean passes, surveys, picks."""

    def __init__(self, checks: LazyChecks) -> None:
        self.passes = self.surveys = self.picks = 0

        def full() -> Iterator[Check]:
            self.passes += 1
            return iter(checks)

        def lean() -> Iterator[Check]:
            self.passes += 1
            return checks.lean()

        def pick(indices: Sequence[int]) -> Iterator[Check]:
            self.picks += 1
            return checks.pick(indices)

        def survey() -> Iterator[Survey]:
            self.surveys += 1
            return checks.survey()

        self.checks = LazyChecks(full, len(checks), lean, pick, survey=survey)


def test_every_format_is_written_from_one_pass_over_the_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_reports reads the run's checks once for every format together (and for what the
    terminal needs: `also`); what a report says of the whole run is the tally, read once from a
    few columns; the terminal's lines and the exit code need no pass of their own. Each file is
    the format rendered alone from the run held in memory."""
    from crawler import report
    from crawler.cli import _exit_code
    from crawler.report import write_reports
    from crawler.terminal import check_lines, noted

    monkeypatch.setattr(report, "aside_ok", lambda: False)  # one process: see the test below
    whole, streamed = _sizeable_runs(tmp_path / "h.sqlite")
    assert isinstance(streamed.checks, LazyChecks)
    counted = _Counted(streamed.checks)
    run = replace(streamed, checks=counted.checks)
    fail_on = ("dead", "error")
    seen: list[str] = []
    listed: list[Check] = []
    paths = write_reports(
        run, tmp_path / "r", sorted(FORMATS), fail_on, also=[partial(_append_url, seen)]
    )
    assert (counted.passes, counted.surveys) == (1, 1)
    assert counted.picks <= 1  # report.html's few flagged and stray checks, in full
    assert seen == [c.url for c in whole.checks]
    for fmt, path in zip(sorted(FORMATS), paths, strict=True):
        module = {"junit": junit, "sarif": sarif}.get(fmt)
        alone = module.render(whole, fail_on) if module else render(whole, fmt)
        assert path.read_text(encoding="utf-8") == alone, fmt

    write_reports(
        run, tmp_path / "r", ["md"], fail_on, also=[lambda c: noted(c) and listed.append(c)]
    )
    assert (counted.passes, counted.surveys) == (2, 1)
    assert check_lines(run, paths, 2, False, 3, listed) == check_lines(whole, paths, 2, False, 3)
    assert _exit_code(run, fail_on) == _exit_code(whole, fail_on) == 3
    assert _exit_code(run, ("skipped",)) == _exit_code(whole, ("skipped",))
    assert counted.passes == 2  # the lines and the exit code: no pass of their own


def test_the_tally_read_from_the_history_is_the_tally_of_its_checks(tmp_path: Path) -> None:
    """The tally read from the checks' columns (LazyChecks.survey) is Tally.of the checks (a
    run's checks keep the store's links: `crawler check` no longer pairs them with its own)."""
    _, streamed = _sizeable_runs(tmp_path / "h.sqlite")
    assert isinstance(streamed.checks, LazyChecks)
    t = streamed.checks.tally()
    assert t == Tally.of(list(streamed.checks))
    assert t.layout.strays and t.layout.flagged and t.earlier == 0 and t.urls == 1400


def test_report_html_written_by_a_process_of_its_own_is_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When it may fork, write_reports has report.html written by a forked process on its own
    pass while this one writes the other formats and feeds `also` (a lean pass): every file is
    byte for byte the one process's, and `also` still sees every check in order."""
    from crawler import report

    whole, streamed = _sizeable_runs(tmp_path / "h.sqlite")
    forks: list[int] = []

    class Counted(report._Aside):
        def __init__(self, work: Callable[[], None]) -> None:
            super().__init__(work)
            forks.append(self.pid)

    monkeypatch.setattr(report, "_Aside", Counted)
    fail_on = ("dead", "error")
    got = {}
    for aside in (False, True):
        monkeypatch.setattr(report, "aside_ok", lambda aside=aside: aside)
        seen: list[str] = []
        out = tmp_path / f"aside-{aside}"
        paths = report.write_reports(
            streamed, out, sorted(FORMATS), fail_on, also=[partial(_append_url, seen)]
        )
        assert seen == [c.url for c in whole.checks]
        got[aside] = {p.name: p.read_bytes() for p in paths}
        assert sorted(x.name for x in out.iterdir()) == sorted(got[aside])  # no temporary left
    assert len(forks) == 1
    assert got[True] == got[False]


def _append_url(seen: list[str], c: Check) -> None:
    seen.append(c.url)


@pytest.mark.parametrize("share", [0.01, 0.5, 0.9])
def test_report_html_s_rows_made_by_both_processes_are_the_one_process_s_file(
    share: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where it is written aside, the forked writer makes report.html's rows up to a whole
    number of the store's reading batches and this process makes the rest on its own pass
    (html.RowMaker): a split anywhere (in sections that come back after others, among newly
    broken and recovered checks, in three posts) writes every file byte for byte as one
    process does, and `also` still sees every check once, in order."""
    from crawler import report, store
    from crawler.report import html
    from tests.factories import write_history

    links = []
    for i in range(1500):  # three posts of long sections, the first one coming back at times
        section = ("Part 0", "aside") if i % 97 == 5 else (f"Part {i // 200}",)
        url = f"https://h{i % 40}.example/p/{i % 1400}"  # the last 100 repeat earlier URLs
        title = f"标题 {i % 1400}" if i % 9 == 0 else f"Title {i % 1400}"
        links.append(Link(url, i + 1, title, section, ["a.md", "b.md", "c.md"][i * 3 // 1500]))
    write_history(tmp_path / "h.sqlite", links, ["a.md", "b.md", "c.md"], runs=3)
    with contextlib.closing(Store.open(tmp_path / "h.sqlite")) as history:
        whole, streamed = history.load_run(), history.load_run(stream=True)
    layout = streamed.tally().layout
    assert layout.strays and layout.flagged
    monkeypatch.setattr(store, "BATCH", 100)  # a pass reads 100 checks at a time
    monkeypatch.setattr(report, "ASIDE_SHARE", share)
    start = report.aside_start(len(whole.checks))
    assert start is not None and start % 100 == 0 and 0 < start < len(whole.checks)
    made: list[str] = []

    class Counted(html.Handoff):
        def put(self, row: str) -> None:
            made.append(row)
            super().put(row)

    monkeypatch.setattr(html, "Handoff", Counted)
    got = {}
    for aside in (False, True):
        monkeypatch.setattr(report, "aside_ok", lambda aside=aside: aside)
        seen: list[str] = []
        out = tmp_path / f"aside-{aside}"
        paths = report.write_reports(
            streamed, out, sorted(FORMATS), ("dead",), also=[partial(_append_url, seen)]
        )
        assert seen == [c.url for c in whole.checks]
        got[aside] = {p.name: p.read_bytes() for p in paths}
        assert sorted(x.name for x in out.iterdir()) == sorted(got[aside])  # no temporary left
    made_here = [i for i in range(start, len(whole.checks)) if i not in layout.strays]
    assert made and len(made) == len(made_here)
    assert all(row.encode() in got[True]["report.html"] for row in made)
    assert got[True] == got[False]


def _failing_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception) -> Path:
    """A report dir holding an older report.json, report.html's writer raising exc, forked."""
    from crawler import report
    from crawler.report import html

    def write(run: Run, out: object, checks: object = None) -> None:
        raise exc

    monkeypatch.setattr(html, "write", write)
    monkeypatch.setattr(report, "aside_ok", lambda: True)
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.json").write_text("older", encoding="utf-8")
    return out


def test_a_failure_of_report_html_written_aside_fails_the_reports_as_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crawler.errors import CrawlerError
    from crawler.report import write_reports

    message = "cannot write r/report.html: No space left on device"
    out = _failing_page(tmp_path, monkeypatch, CrawlerError(message))
    run = make_run(make_check(), make_check("https://a.example/2", Verdict.DEAD))
    with pytest.raises(CrawlerError) as got:
        write_reports(run, out, ["json", "md", "html"])
    assert str(got.value) == message
    # no report renamed into place, none half-written, no temporary file left
    assert [x.name for x in out.iterdir()] == ["report.json"]
    assert (out / "report.json").read_text(encoding="utf-8") == "older"


def test_a_bug_in_report_html_written_aside_surfaces_as_a_bug_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crawler.errors import CrawlerError
    from crawler.report import write_reports

    out = _failing_page(tmp_path, monkeypatch, ValueError("a bug in the page"))
    run = make_run(make_check())
    with pytest.raises(RuntimeError) as got:
        write_reports(run, out, ["json", "html"])
    assert not isinstance(got.value, CrawlerError)
    assert "ValueError: a bug in the page" in str(got.value)
    assert "Traceback" in str(got.value)
    assert [x.name for x in out.iterdir()] == ["report.json"]


def test_an_os_error_of_the_pass_itself_is_not_blamed_on_a_report_file(tmp_path: Path) -> None:
    """An OSError raised while the reports are written that is not a report file's (here one
    of the pass's readers: a full disk elsewhere) goes on as it is, naming its own file, and
    no report is renamed into place or left half-written."""
    import errno

    from crawler.report import write_reports

    def elsewhere(c: Check) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/var/elsewhere")

    out = tmp_path / "r"
    out.mkdir()
    (out / "report.json").write_text("older", encoding="utf-8")
    run = make_run(make_check(), make_check("https://a.example/2", Verdict.DEAD))
    with pytest.raises(OSError) as got:
        write_reports(run, out, ["json", "md", "html"], also=[elsewhere], aside=False)
    assert got.value.filename == "/var/elsewhere", got.value
    assert "report" not in str(got.value)
    assert [x.name for x in out.iterdir()] == ["report.json"]
    assert (out / "report.json").read_text(encoding="utf-8") == "older"


def test_report_html_is_written_here_when_no_process_can_be_forked_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fork failing (EAGAIN: the process limit) leaves report.html to this process: every file
    is the one process's, not an error blamed on report.html."""
    import errno
    import os

    from crawler import report

    run = sample()
    one = {p.name: p.read_bytes() for p in report.write_reports(run, tmp_path / "one", FORMATS)}

    def no_fork() -> int:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(report, "aside_ok", lambda: True)
    monkeypatch.setattr(os, "fork", no_fork)
    seen: list[str] = []
    paths = report.write_reports(
        run, tmp_path / "r", sorted(FORMATS), also=[partial(_append_url, seen)]
    )
    assert seen == [c.url for c in run.checks]
    assert {p.name: p.read_bytes() for p in paths} == one
    assert sorted(x.name for x in (tmp_path / "r").iterdir()) == sorted(one)
