"""Sentences more than one report format shows."""

from __future__ import annotations

from collections.abc import Iterable

from crawler.types import Check, LazyChecks, Run


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
    if isinstance(run.checks, LazyChecks):
        return run.checks.once("coverage", _coverage)
    return _coverage(run.checks)


def _coverage(checks: Iterable[Check]) -> str | None:
    fetched = earlier = never = 0
    oldest = None
    for c in checks:
        if c.checked_this_run:
            fetched += 1
        elif c.never_checked:
            never += 1
        else:
            earlier += 1
            oldest = c.checked_at if oldest is None else min(oldest, c.checked_at)
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
    fetched = sum(c.checked_this_run for c in run.checks)
    never = sum(c.never_checked for c in run.checks)
    earlier = len(run.checks) - fetched - never
    if not fetched and not never:
        return (
            f"nothing is due: all {earlier} references were checked within recheck_after; "
            "the reports give their last known verdicts"
        )
    line = f"budget: {fetched} references checked this run, {earlier} verdicts from earlier runs"
    return line + (f", {never} not checked yet" if never else "")
