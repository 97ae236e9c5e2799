"""Verdicts over time: (a URL's state before this run, this run's classification) → final verdict.

Pure. The InternetArchiveBot rule: uncertain failures (`error`) become `dead` only after
`runs` failing runs spanning at least `days` days; one success resets the count. Definitive
evidence (404/410, a site's removal notice) is `dead` at first sight. `blocked` neither counts
nor resets: it says nothing about the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from crawler.classify import titles_match
from crawler.config import DEFAULT_CONFIRM_DAYS, DEFAULT_CONFIRM_RUNS, RECENT_RUNS
from crawler.types import ALIVE, Classification, LinkHistory, Verdict

#: Reasons that are the site's own word that the page is gone.
DEFINITIVE_DEAD = frozenset({"http-404", "http-410", "removed-notice", "soft-404"})


@dataclass(frozen=True, slots=True)
class ConfirmRule:
    """When repeated uncertain failures count as death."""

    runs: int = DEFAULT_CONFIRM_RUNS
    days: float = DEFAULT_CONFIRM_DAYS


@dataclass(frozen=True, slots=True)
class UrlState:
    """What the history remembers about one URL between runs."""

    url: str
    last_verdict: Verdict | None = None
    last_title: str | None = None  # the page's title at the last check (None unless alive)
    last_checked_at: datetime | None = None
    verdict_since: datetime | None = None
    last_alive_title: str | None = None  # the title last seen as fine: what a new one is held to
    fail_runs: int = 0  # failing runs since the last alive one
    first_failed_at: datetime | None = None
    recent: tuple[tuple[datetime, Verdict], ...] = field(default_factory=tuple)


_FAILING = frozenset({Verdict.ERROR, Verdict.DEAD})
_NO_STATE = UrlState(url="")


def is_failure(c: Classification) -> bool:
    """Does this classification count toward a failing streak?"""
    return c.verdict in _FAILING


def apply_history(
    state: UrlState | None,
    raw: Classification,
    title: str | None,
    listed_title: str | None,
    now: datetime,
    rule: ConfirmRule = ConfirmRule(),
) -> tuple[Classification, LinkHistory]:
    """This run's final classification of one occurrence and its history fields."""
    state = state or _NO_STATE
    final = raw

    # Failing streak, this run included.
    first_failed: datetime | None
    if raw.verdict in _FAILING:
        fail_runs = state.fail_runs + 1
        first_failed = state.first_failed_at or now
    else:
        fail_runs, first_failed = state.fail_runs, state.first_failed_at
        if raw.verdict in ALIVE:
            fail_runs, first_failed = 0, None

    if raw.verdict is Verdict.ERROR and fail_runs >= rule.runs and first_failed is not None:
        span = now - first_failed
        if span >= timedelta(days=rule.days):
            final = Classification(
                Verdict.DEAD,
                "confirmed-dead",
                f"failing in {fail_runs} runs since {first_failed:%Y-%m-%d} "
                f"({span.days} days): {raw.detail}",
            )

    # A title that moved since it was last seen as fine, when the post's own title can't tell.
    # It stays `changed` (its baseline is kept, see next_state) until the post gives the new
    # title (anchor text included) or the user accepts it (Store.accept_title).
    baseline = state.last_alive_title
    if (
        final.verdict is Verdict.OK
        and title
        and baseline
        and not titles_match(baseline, title)
        and not (listed_title and titles_match(listed_title, title))
    ):
        final = Classification(
            Verdict.CHANGED,
            "title-changed-since-last-check",
            f"the title was “{baseline}” when last seen as fine, now “{title}”",
        )
    elif final.verdict is Verdict.CHANGED and final.reason == "title-changed":
        final = replace(final, detail=final.detail + " (compared with the post)")

    since = now
    if state.last_verdict is final.verdict and state.verdict_since is not None:
        since = state.verdict_since
    recent = (*state.recent, (now, final.verdict))[-RECENT_RUNS:]
    failing = final.verdict in _FAILING
    hist = LinkHistory(
        previous_verdict=state.last_verdict,
        previous_title=state.last_title,
        previous_checked_at=state.last_checked_at,
        since=since,
        first_failed_at=first_failed if failing else None,
        consecutive_failures=fail_runs if failing else 0,
        recent=recent,
    )
    return final, hist


def next_state(
    state: UrlState | None,
    url: str,
    final: Classification,
    raw: Classification,
    title: str | None,
    now: datetime,
    hist: LinkHistory,
) -> UrlState:
    """The state to remember after this run."""
    state = state or _NO_STATE
    alive = raw.verdict in ALIVE
    failing = raw.verdict in _FAILING
    # `changed` by the comparison with the title last seen as fine: that title stays the one to
    # compare with, so the change is reported on every run until it is accepted.
    held = final.verdict is Verdict.CHANGED and raw.verdict is Verdict.OK
    return UrlState(
        url=url,
        last_verdict=final.verdict,
        last_title=title if final.verdict in ALIVE else None,  # a 404 page's title is no title
        last_checked_at=now,
        verdict_since=hist.since,
        last_alive_title=(
            (title or state.last_alive_title) if alive and not held else state.last_alive_title
        ),
        fail_runs=(hist.consecutive_failures if failing else (0 if alive else state.fail_runs)),
        first_failed_at=(hist.first_failed_at or now)
        if failing
        else (None if alive else state.first_failed_at),
        recent=hist.recent,
    )
