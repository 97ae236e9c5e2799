"""What the user can do about the links of one verdict: one sentence, for the terminal and
report.md alike. Pure functions of the checks; no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from crawler.types import Check, Verdict


def _post(checks: Sequence[Check]) -> str:
    """The file to name in an enrich command: the one file, else a placeholder."""
    files = {c.link.source for c in checks}
    if len(files) == 1:
        (only,) = files
        if only and only != "-":
            return only if " " not in only else f"'{only}'"
    return "POST"


def failing_runs(check: Check, confirm_runs: int) -> str | None:
    """'2 of 3 failing runs before it counts as dead', from the link's history, for an error."""
    if check.verdict is not Verdict.ERROR or check.history is None:
        return None
    n = check.history.consecutive_failures
    if n <= 0:
        return None
    return f"{n} of {confirm_runs} failing runs before it counts as dead"


def advice(verdict: Verdict, checks: Sequence[Check], confirm_runs: int | None = None) -> str:
    """One sentence on what to do about checks (all of verdict); commands in backticks.

    confirm_runs: the run's --confirm-runs, when known (report.md re-rendered later does not
    know it and names the option instead).
    """
    if verdict is Verdict.DEAD:
        return (
            f"`crawler enrich {_post(checks)} --mark-dead` marks them dead in the post "
            "(`--archive` also adds an Internet Archive snapshot)."
        )
    if verdict is Verdict.BLOCKED:
        hosts = sorted(
            {urlsplit(c.fetch.final_url if c.fetch else c.url).hostname or "" for c in checks}
        )
        hosts = [h for h in hosts if h]
        named = ", ".join(f'`[hosts."{h}"]`' for h in hosts[:3]) or '`[hosts."NAME"]`'
        return (
            "The site refused the robot, so whether the page is alive is unknown: give it the "
            f"cookies or headers a browser sends, under {named} in crawler.toml."
        )
    if verdict is Verdict.ERROR:
        rule = f"{confirm_runs} failing runs" if confirm_runs else "`--confirm-runs` failing runs"
        return (
            f"Wait for the next runs: an error counts as dead only after {rule} in a row "
            "(spanning `--confirm-days` days); one success resets the count."
        )
    if verdict is Verdict.CHANGED:
        return (
            f"`crawler enrich {_post(checks)} --update-titles` replaces the listed titles "
            "with the pages' titles; or fix the post by hand if the page was replaced."
        )
    if verdict is Verdict.REDIRECTED:
        return f"`crawler enrich {_post(checks)} --update-redirects` puts the new URLs in the post."
    return ""
