"""What `crawler check` prints about a run: the summary line, then one line per link that
needs attention with what to do about it. `link_line` is the only place a link's line is made,
so that colour or another style can wrap it."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from crawler.advice import advice, failing_runs
from crawler.sanitize import terminal as safe
from crawler.types import Check, Run, Verdict

#: Verdicts listed one line a link, in this order.
LISTED = (Verdict.DEAD, Verdict.CHANGED, Verdict.ERROR, Verdict.BLOCKED)


def where(check: Check) -> str:
    """file:line of the link, as editors and compilers write it."""
    source = check.link.source
    return f"{'<stdin>' if source in ('', '-') else source}:{check.link.line}"


def link_line(check: Check, confirm_runs: int | None = None) -> str:
    """One line about one link: its verdict (or `recovered`), file:line, URL and detail, then
    what changed since the last run and, for an error, how far it is from counting as dead."""
    prev = check.history.previous_verdict if check.history else None
    notes = []
    if check.newly_broken and prev is not None:
        notes.append(f"newly broken, was {prev.value}")
    if check.recovered and prev is not None:
        notes.append(f"recovered, was {prev.value}")
    runs = failing_runs(check, confirm_runs) if confirm_runs else None
    if runs:
        notes.append(runs)
    label = "recovered" if check.recovered and check.verdict not in LISTED else check.verdict.value
    line = f"  {label:<9} {safe(where(check))}  {safe(check.url)}  {safe(check.detail)[:160]}"
    return line + (f"  ({'; '.join(notes)})" if notes else "")


def summary_line(run: Run) -> str:
    """References, URLs, time and the count of each verdict; how many came from the cache
    (all of it the run's tally)."""
    t = run.tally()
    counts = ", ".join(f"{n} {v}" for v, n in t.counts.items() if n)
    seconds = (run.finished_at - run.started_at).total_seconds()
    line = f"{len(run.checks)} references, {t.urls} URLs in {seconds:.1f} s"
    line += f": {counts}" if counts else ""
    return line + (f" ({t.cached} reused from the history)" if t.cached else "")


def noted(check: Check) -> bool:
    """Whether the terminal lists the check (a line of its own)."""
    return check.verdict in _LISTED or check.recovered


_LISTED = frozenset(LISTED)


def summary_lines(
    run: Run,
    paths: Sequence[Path],
    confirm_runs: int | None = None,
    listed: Sequence[Check] | None = None,
) -> list[str]:
    """The summary line; each dead, changed, error and blocked link, each group followed by
    what to do (`→ …`); the links that recovered; the report files. `listed`: the run's checks
    that are `noted`, in order, when already picked (by default a pass of its own)."""
    lines = [summary_line(run)]
    if listed is None:
        listed = [c for c in run.checks if noted(c)]
    for verdict in LISTED:
        group = [c for c in listed if c.verdict is verdict]
        lines += [link_line(c, confirm_runs) for c in group]
        if group:
            lines.append(f"  → {advice(verdict, group, confirm_runs)}")
    lines += [link_line(c) for c in listed if c.recovered and c.verdict not in LISTED]
    lines += [f"report: {p}" for p in paths]
    return lines


#: The colour of each verdict word on a terminal.
VERDICT_COLOURS = {
    "ok": "green",
    "redirected": "cyan",
    "changed": "yellow",
    "dead": "red",
    "blocked": "blue",
    "error": "magenta",
    "skipped": "bright_black",
}
# A verdict word where the terminal lines have one: leading a link's line ...
_LEADING_VERDICT = re.compile(r"^(\s+)(" + "|".join(VERDICT_COLOURS) + r")\b")
# ... or counted in the summary line: "3 dead, 1 changed".
_COUNTED_VERDICT = re.compile(r"(?<=\d )()(" + "|".join(VERDICT_COLOURS) + r")(?=,|$| \()")


def use_colour() -> bool | None:
    """click.echo's `color`: off with NO_COLOR, on with FORCE_COLOR (NO_COLOR wins, as in
    CPython), else click's own rule: only on a terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR", "") not in ("", "0", "false"):
        return True
    return None


def paint(line: str, summary: bool = False) -> str:
    """A terminal line with its verdict words coloured (click.echo drops the colour when the
    output is not a terminal); `summary`: the summary line, whose counts are coloured."""

    def one(m: re.Match[str]) -> str:
        word = m.group(2)
        bold = True if word in ("dead", "error") else None
        styled = click.style(word, fg=VERDICT_COLOURS[word], bold=bold)
        return m.group(1) + styled

    return (_COUNTED_VERDICT if summary else _LEADING_VERDICT).sub(one, line)


class Progress:
    """A one-line counter on a TTY; otherwise a plain line at every tenth of the way.

    Links are listed once, with their details, in the summary at the end.
    """

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.done = 0
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.step = max(1, total // 10)

    def __call__(self, n: int) -> None:
        before = self.done
        self.done += n
        if self.quiet:
            return
        if self.tty:
            click.echo(f"\r  checked {self.done}/{self.total}", nl=False, err=True)
        elif self.done // self.step > before // self.step or self.done == self.total:
            click.echo(f"checked {self.done}/{self.total}", err=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            click.echo("\r" + " " * 40 + "\r", nl=False, err=True)


def check_lines(
    run: Run,
    reports: Sequence[Path],
    excluded: int,
    quiet: bool,
    confirm_runs: int | None,
    listed: Sequence[Check] | None = None,
) -> list[str]:
    """What `crawler check` prints on stdout, coloured: the summary line, then (unless quiet)
    a line per link that needs attention and one per report file (`listed`: summary_lines')."""
    lines = summary_lines(run, reports, confirm_runs, listed)
    if excluded:
        lines[0] += f" ({excluded} excluded)"
    out = [paint(lines[0], summary=True)]
    if not quiet:
        # On a network-down run every link failed the same way: the caller's one line says it.
        out += [paint(x) for x in lines[1:] if not run.network_down or x.startswith("report:")]
    return out
