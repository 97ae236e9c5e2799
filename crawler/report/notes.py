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
