"""issue.md: the broken links of many posts, grouped by post — the body of one issue for a
whole blog. Fetched text is escaped as in report.md; only the broken links are kept in memory.
"""

from __future__ import annotations

from typing import TextIO

from crawler.report.markdown import url_cell
from crawler.report.notes import coverage_note, partial_note
from crawler.sanitize import table_cell, visible
from crawler.types import BROKEN, Check, Run, Verdict, lean

#: The verdicts listed, worst first (the others are counted in the summary line only).
LISTED = (Verdict.DEAD, Verdict.ERROR)


def _code(text: str) -> str:
    """A file name as inline code: one line, no backquote to end it early."""
    return "`" + visible(text).replace("`", "'") + "`"


def _row(c: Check) -> str:
    when = f"{c.checked_at:%Y-%m-%d}"
    if c.checked_this_run:
        when += " (this run)"
    h = c.history
    note = " (newly broken)" if c.newly_broken else ""
    if c.verdict is Verdict.ERROR and h is not None and h.consecutive_failures:
        note = f" ({h.consecutive_failures} failing runs)"
    return (
        f"| {c.link.line} | {c.verdict.value}{note} | {url_cell(c.url)} "
        f"| {table_cell(c.link.listed_title)} | {table_cell(c.detail or c.reason)} | {when} |"
    )


def render(run: Run, feed: Feed | None = None) -> str:
    """The issue body: counts, then one section per post with a broken link, worst first;
    `feed`: the run's checks already fed to one (by default a pass of its own)."""
    counts = run.counts()
    if feed is None:
        feed = Feed(run, None)
        for c in lean(run.checks):
            feed(c)
    by_post, total = feed.by_post, feed.total
    broken = sum(len(v) for v in by_post.values())
    out = [f"# Broken links: {broken} in {len(by_post)} of {len(run.sources)} posts", ""]
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    out += [f"{total} references, last known verdicts: {summary or 'none'}.", ""]
    for note in (partial_note(run), coverage_note(run)):
        if note:
            out += [note, ""]
    if run.network_down:
        out += ["**The network was down during this run: no link was judged dead.**", ""]
    if not by_post:
        out += ["No broken links.", ""]
    rank = {v: i for i, v in enumerate(LISTED)}
    # the posts with the most dead links first, then by name
    order = sorted(
        by_post.items(),
        key=lambda kv: (-sum(c.verdict is Verdict.DEAD for c in kv[1]), -len(kv[1]), kv[0]),
    )
    for post, checks in order:
        dead = sum(c.verdict is Verdict.DEAD for c in checks)
        out += [f"## {_code(post)} ({dead} dead, {len(checks) - dead} in doubt)", ""]
        out += ["| line | verdict | URL | listed title | detail | checked |"]
        out += ["|---:|---|---|---|---|---|"]
        checks.sort(key=lambda c: (rank.get(c.verdict, len(rank)), c.link.line))
        out += [_row(c) for c in checks]
        out.append("")
    out += [
        "`dead`: gone (404/410, the site's removal notice, or failing over days); `error`: could "
        "not tell this time, dead after repeated failing runs. `crawler enrich POST --mark-dead` "
        "marks the dead ones in a post.",
        "",
    ]
    return "\n".join(out)


def write(run: Run, out: TextIO) -> None:
    """Write the issue body to out."""
    out.write(render(run))


class Feed:
    """The issue body, written at close() from the checks fed to it (it holds the broken)."""

    __slots__ = ("run", "out", "by_post", "total")

    def __init__(self, run: Run, out: TextIO | None) -> None:
        self.run, self.out = run, out
        self.by_post: dict[str, list[Check]] = {}
        self.total = 0

    def __call__(self, check: Check) -> None:
        self.total += 1
        if check.verdict in BROKEN:
            self.by_post.setdefault(check.link.source or "-", []).append(check)

    def close(self) -> None:
        """Write the body."""
        if self.out is not None:
            self.out.write(render(self.run, self))
