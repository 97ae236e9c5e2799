"""The frontier: what a run still has to check, as the engine and the store exchange it.

A run is planned into the store (its distinct URLs, each with every place it occurs); workers
lease a host at a time, check its pending URLs and write what they found. Everything here is
data; the store interface that keeps it is `crawler.store.Store`'s frontier steps (plan_run,
lease_host, pending, write_finished, …), written once: `crawler.pgstore.PgStore` runs the same
methods on PostgreSQL and differs only in its dialect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from crawler.history import UrlState
from crawler.types import ALIVE, Check, Link, Verdict

#: How due a URL is, most due first (run_urls.due): never checked, failing, alive; NOT_DUE is
#: a URL whose last verdict stands (written at once from the history, never claimed).
NEVER_CHECKED, FAILING, STALE, NOT_DUE = 0, 1, 2, 3
#: The reason of a link a budgeted run did not reach and the history has no verdict for.
UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class Recheck:
    """How long a URL's last verdict stands in a budgeted run before it is due again (the
    InternetArchiveBot's spacing: a week for a page that is there, a day for one failing)."""

    ok: timedelta = timedelta(days=7)
    failing: timedelta = timedelta(days=1)


def due(state: UrlState | None, now: datetime, recheck: Recheck) -> int | None:
    """How due a URL is (NEVER_CHECKED, FAILING, STALE: lower first), None when its last
    verdict still stands. Alive (ok, redirected, changed) is ok; dead, error, blocked fail."""
    if state is None or state.last_checked_at is None or state.last_verdict is None:
        return NEVER_CHECKED
    alive = state.last_verdict in ALIVE
    age = now - state.last_checked_at
    if age < (recheck.ok if alive else recheck.failing):
        return None
    return STALE if alive else FAILING


@dataclass(frozen=True, slots=True)
class UrlTask:
    """One distinct URL of a run and every place it occurs in the run's links."""

    url: str
    host: str  # politeness key, host[:port]: what a worker leases
    links: tuple[tuple[int, Link], ...]  # (position among the run's links, link), in order
    due: int = NEVER_CHECKED  # how due (budgeted runs): hosts and URLs are claimed lowest first
    last_checked: datetime | None = None  # within one `due`, the oldest check goes first
    #: the URL as written when it differs from `url` (a password, crawler/redact.py): what the
    #: request is made with; `url`, with the password as ***, is what is recorded
    fetch_url: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """A URL's outcome, ready to write: one check per occurrence and the state to remember."""

    url: str
    checks: tuple[tuple[int, Check, Verdict], ...]  # (position, check, raw verdict)
    state: UrlState | None  # None: nothing to remember (no history, or reused)
