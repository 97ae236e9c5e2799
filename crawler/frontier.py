"""The frontier: what a run still has to check, and the store interface that keeps it.

A run is planned into the store (its distinct URLs, each with every place it occurs); workers
lease a host at a time, check its pending URLs and write what they found. Everything here is
data or an interface: `crawler.store.Store` (SQLite) implements `FrontierStore`, and another
backend (PostgreSQL) implements the same methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from crawler.history import UrlState
from crawler.pace import Pace
from crawler.types import ALIVE, Check, FetchResult, Link, PageMeta, Run, Verdict

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


@dataclass(frozen=True, slots=True)
class Finished:
    """A URL's outcome, ready to write: one check per occurrence and the state to remember."""

    url: str
    checks: tuple[tuple[int, Check, Verdict], ...]  # (position, check, raw verdict)
    state: UrlState | None  # None: nothing to remember (no history, or reused)


class FrontierStore(Protocol):
    """What the engine needs from a store. Every write is one short transaction; writing a
    URL's checks is idempotent per (run, url): the first writer wins, later ones are dropped."""

    def plan_run(
        self,
        started_at: datetime,
        sources: Sequence[str],
        digests: Mapping[str, str],
        plan: Mapping[str, Any],
        tasks: Iterable[UrlTask],
    ) -> int:
        """Insert a running run and its distinct URLs (pending) in one transaction."""
        ...

    def run_plan(self, run_id: int) -> dict[str, Any]:
        """The plan a run was made with (what its workers follow)."""
        ...

    def lease_host(self, run_id: int, owner: str, seconds: float, now: float) -> str | None:
        """Lease a host with pending URLs in the run whose lease is free or expired."""
        ...

    def pending(self, run_id: int, host: str) -> list[UrlTask]:
        """The run's most due pending URLs on a host (those of its lowest `due`), oldest check
        first, then in the links' order."""
        ...

    def pending_urls(self, run_id: int, size: int) -> Iterator[list[UrlTask]]:
        """Every pending URL of the run, `size` at a time (what a budget left unchecked)."""
        ...

    def latest_checks(self, urls: Sequence[str]) -> dict[str, Check]:
        """The latest stored check of each URL from a run whose network was up (none that
        only says the URL was not reached)."""
        ...

    def renew_leases(self, owner: str, seconds: float, now: float) -> int:
        """Extend every lease the owner holds; the number renewed."""
        ...

    def release_host(self, run_id: int, host: str, owner: str) -> None:
        """Give a host back (marking it done for the run when nothing is pending)."""
        ...

    def release_stale_leases(self, machine: str, alive: Any) -> int:
        """Free the leases of this machine's processes that `alive(pid)` says are gone."""
        ...

    def write_finished(self, run_id: int, items: Sequence[Finished]) -> int:
        """Write the checks of URLs still pending and mark them done; the number written."""
        ...

    def open_hosts(self, run_id: int) -> int:
        """Hosts of the run with URLs not yet done."""
        ...

    def host_paces(self, hosts: Iterable[str]) -> dict[str, Pace]:
        """The pace each host ended its last run at (hosts never seen are absent)."""
        ...

    def save_pace(self, host: str, pace: Pace, at: datetime, verification_pages: int = 0) -> None:
        """Keep the pace a host ended a lease at, and add the verification pages it met."""
        ...

    def checked(self, run_id: int) -> int:
        """Checks written for the run so far."""
        ...

    def states(self, urls: Iterable[str]) -> dict[str, UrlState]:
        """The remembered state of each known URL among urls."""
        ...

    def last_check(self, url: str) -> tuple[FetchResult, PageMeta, datetime] | None:
        """The latest stored fetch of url from a run whose network was up."""
        ...

    def finish_run(self, run_id: int, finished_at: datetime, status: str) -> bool:
        """Close a run: counts, network-down, the URL states; True if the network was down."""
        ...

    def load_run(
        self, run_id: int | None = None, *, text_hash: bool = True, stream: bool = False
    ) -> Run:
        """A run with every check, in the links' order (for the reports); with `stream`, read
        from the store at each pass (LazyChecks)."""
        ...
