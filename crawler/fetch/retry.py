"""Retry policy: which results get another attempt, and how long to wait before it.

Built once per fetcher from tenacity's parts (`retry_policy`); each URL that needs a retry runs
a copy. The wait honours a Retry-After up to a cap and otherwise backs off exponentially with
full jitter. A Retry-After longer than the cap is not waited for at all: the fetcher stops
and pauses the host (crawler/fetch/politeness.py).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import TYPE_CHECKING

from crawler.config import RETRY_STATUSES, FetchSettings
from crawler.types import ErrorKind, FetchResult

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState

#: Errors worth another attempt: the next try may well succeed.
RETRY_ERRORS = frozenset(
    {ErrorKind.TIMEOUT, ErrorKind.CONNECT, ErrorKind.PROTOCOL, ErrorKind.PROXY}
)

#: Statuses whose Retry-After, when longer than the cap, pauses the host instead (RFC 9110
#: §10.2.3: a 503's Retry-After is how long the service expects to be unavailable).
PAUSING_STATUSES = frozenset({429, 503})

RetryPredicate = Callable[[FetchResult], bool]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        now = time.time() if now is None else now
        secs = when.timestamp() - now
    if math.isnan(secs):
        return None
    return max(0.0, secs)


def retry_after(result: FetchResult) -> float | None:
    """The answer's Retry-After in seconds (None without a usable one)."""
    return parse_retry_after(result.headers.get("retry-after")) if result.headers else None


def asks_for_pause(result: FetchResult, cap: float) -> float | None:
    """The pause a 429 or 503 asks for (its Retry-After, seconds) when it is longer than `cap`,
    the most we wait; else None."""
    if result.status not in PAUSING_STATUSES:
        return None
    asked = retry_after(result)
    return asked if asked is not None and asked > cap else None


def retryable(result: FetchResult, extra: RetryPredicate | None = None) -> bool:
    """Whether a result is worth another attempt: a passing network failure, a status of
    RETRY_STATUSES, or what `extra` (an anti-robot page read badly) says."""
    if result.retry_at is not None:
        return False  # the host asked for longer than we wait
    if result.error is not None:
        return result.error in RETRY_ERRORS
    if result.status in RETRY_STATUSES:
        return True
    return bool(extra and result.status and extra(result))


def retry_policy(
    settings: FetchSettings,
    retry: Callable[[FetchResult], bool],
    sleep: Callable[[float], Awaitable[None]],
) -> AsyncRetrying:
    """The fetcher's retry policy, from tenacity's parts: at most settings.retries more
    attempts while `retry` says so, waiting as `wait_retry_after` says; the last result is
    returned, never raised. Run a `.copy()` per URL (tenacity keeps its state on the object).

    tenacity is imported here, when a fetcher first needs a retry: a run where every link
    answers at once never pays for the import.
    """
    from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_random_exponential

    return AsyncRetrying(
        stop=stop_after_attempt(settings.retries + 1),
        retry=retry_if_result(retry),
        wait=wait_retry_after(
            settings.retry_after_max,
            wait_random_exponential(multiplier=settings.backoff_initial, max=settings.backoff_max),
        ),
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        reraise=True,
    )


class wait_retry_after:  # noqa: N801 - named as tenacity's waits are
    """Wait what the last answer's Retry-After asks (at most `cap` seconds), else `fallback`."""

    def __init__(self, cap: float, fallback: Callable[[RetryCallState], float]) -> None:
        self.cap = cap
        self.fallback = fallback

    def __call__(self, state: RetryCallState) -> float:
        if state.outcome is not None and not state.outcome.failed:
            result = state.outcome.result()
            if isinstance(result, FetchResult):
                asked = retry_after(result)
                if asked is not None:
                    return min(asked, self.cap)
        return float(self.fallback(state))
