"""Sentences more than one report format shows."""

from __future__ import annotations

from crawler.types import Run


def partial_note(run: Run) -> str | None:
    """The sentence every report puts first when the run did not check every link."""
    n = len(run.checks)
    if run.status == "interrupted":
        return (
            f"Partial run: it was stopped (Ctrl-C, SIGTERM or a time limit) after {n} "
            "references were checked; the others are not in this report."
        )
    if run.status == "running":
        return (
            f"This run has not finished (it is still going, or was killed): the report shows "
            f"the {n} references checked so far."
        )
    return None


def coverage_note(run: Run) -> str | None:
    """How much of the run's verdicts this run fetched, when not all (a budgeted run, or
    --max-age): how many come from earlier runs, from when, and how many links were never
    checked. None when this run fetched every link."""
    t = run.tally()
    fetched, earlier, never, oldest = t.fetched, t.earlier, t.never, t.oldest
    if not earlier and not never:
        return None
    if not fetched and not never:
        return (
            f"Nothing was due: no link was fetched this run; the {earlier} verdicts are the "
            f"last known ones (the oldest from {oldest:%Y-%m-%d})."
        )
    out = f"{_n(fetched, 'reference was', 'references were')} checked this run"
    if earlier:
        out += (
            f", {_n(earlier, 'verdict is from an earlier run', 'verdicts are from earlier runs')}"
            f" (the oldest from {oldest:%Y-%m-%d})"
        )
    if never:
        out += f", {_n(never, 'reference is', 'references are')} not checked yet"
        out += " (the time budget ran out)"
    return out + "."


def _n(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def budget_line(run: Run) -> str:
    """The terminal's line after a budgeted run: what it fetched, or that nothing was due."""
    t = run.tally()
    fetched, never, earlier = t.fetched, t.never, t.earlier
    if not fetched and not never:
        return (
            f"nothing is due: all {earlier} references were checked within recheck_after; "
            "the reports give their last known verdicts"
        )
    line = f"budget: {fetched} references checked this run, {earlier} verdicts from earlier runs"
    return line + (f", {never} not checked yet" if never else "")
