"""report.md: a broken-link report to paste into an issue. Fetched text is escaped."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TextIO

from crawler.advice import advice
from crawler.report.notes import coverage_note, partial_note
from crawler.sanitize import table_cell
from crawler.types import Check, Run, Verdict, lean

#: Sections of the report, in the order a reader needs them.
ORDER = (Verdict.DEAD, Verdict.CHANGED, Verdict.BLOCKED, Verdict.ERROR, Verdict.REDIRECTED)
HEADINGS = {
    Verdict.DEAD: "Dead",
    Verdict.CHANGED: "Changed",
    Verdict.BLOCKED: "Blocked (the site refused the robot; liveness unknown)",
    Verdict.ERROR: "Errors (could not tell this time)",
    Verdict.REDIRECTED: "Moved permanently",
}


def url_cell(url: str) -> str:
    """A URL as an autolink when it is plain http(s), else as escaped text."""
    if re.fullmatch(r"https?://[^\s<>|\\`]+", url):
        return f"<{url}>"
    return table_cell(url)


def _table(checks: Iterable[Check], with_verdict: bool = False) -> list[str]:
    head = "| line | URL | listed title | fetched title | reason | detail | since |"
    rule = "|---:|---|---|---|---|---|---|"
    if with_verdict:
        head, rule = "| verdict (was) " + head, "|---" + rule
    rows = [head, rule]
    for c in checks:
        title = c.page_title
        h = c.history
        since = f"{h.since:%Y-%m-%d}" if h and h.since else ""
        as_of = f" (checked {c.checked_at:%Y-%m-%d})" if c.cached else ""
        row = (
            f"| {c.link.line} | {url_cell(c.url)} | {table_cell(c.link.listed_title)} "
            f"| {table_cell(title)} | {table_cell(c.reason)} | {table_cell(c.detail)}{as_of} "
            f"| {since} |"
        )
        if with_verdict:
            prev = h.previous_verdict.value if h and h.previous_verdict else "-"
            row = f"| {c.verdict.value} ({prev}) " + row
        rows.append(row)
    return rows


def wanted(check: Check) -> bool:
    """Whether the report lists the check: one that needs attention."""
    return check.verdict in _LISTED or check.newly_broken or check.recovered


_LISTED = frozenset(ORDER)


def render(run: Run, attention: Sequence[Check] | None = None) -> str:
    """The whole Markdown report; `attention`: the run's checks that need it (`wanted`), in
    order, when already picked (by default a pass of its own)."""
    counts = run.counts()
    src = ", ".join(run.sources) or "input"
    out = [f"# Link report for {table_cell(src)}", ""]
    out.append(
        f"Checked {len(run.checks)} references on {run.finished_at:%Y-%m-%d %H:%M} UTC "
        f"in {(run.finished_at - run.started_at).total_seconds():.1f} s."
    )
    out.append("")
    partial = partial_note(run)
    if partial:
        out += [f"**{partial}**", ""]
    coverage = coverage_note(run)
    if coverage:
        out += [coverage, ""]
    if run.network_down:
        out += ["**The network was down during this run: no link was judged dead.**", ""]
    out += ["| verdict | count |", "|---|---:|"]
    out += [f"| {name} | {n} |" for name, n in counts.items()]
    out.append("")
    # one pass: the links that need attention (few), then the sections from them
    if attention is None:
        attention = [c for c in lean(run.checks) if wanted(c)]
    for title, picked in (
        ("Newly broken since the last run", [c for c in attention if c.newly_broken]),
        ("Recovered since the last run", [c for c in attention if c.recovered]),
    ):
        if picked:
            out += [f"## {title} ({len(picked)})", ""]
            out += _table(picked, with_verdict=True)
            out.append("")
    for verdict in ORDER:
        group = [c for c in attention if c.verdict is verdict]
        if not group:
            continue
        out += [f"## {HEADINGS[verdict]} ({len(group)})", ""]
        out += [f"What to do: {advice(verdict, group)}", ""]
        many = len(run.sources) > 1
        sections: dict[tuple[str, ...], list[Check]] = {}
        for c in group:
            key = ((c.link.source,) if many else ()) + c.link.section
            sections.setdefault(key, []).append(c)
        for section, checks in sections.items():
            out += [f"### {table_cell(' / '.join(section)) or '(no section)'}", ""]
            out += _table(checks)
            out.append("")
    if not any(counts[v.value] for v in ORDER) and not partial:
        out += ["All links are alive and match their listed titles.", ""]
    return "\n".join(out)


def write(run: Run, out: TextIO) -> None:
    """Write the Markdown report to out (it lists only the links that need attention: small)."""
    out.write(render(run))


class Feed:
    """The report, written at close() from the checks fed to it (it holds those it lists)."""

    __slots__ = ("run", "out", "attention")

    def __init__(self, run: Run, out: TextIO) -> None:
        self.run, self.out = run, out
        self.attention: list[Check] = []

    def __call__(self, check: Check) -> None:
        if wanted(check):
            self.attention.append(check)

    def close(self) -> None:
        """Write the report."""
        self.out.write(render(self.run, self.attention))
