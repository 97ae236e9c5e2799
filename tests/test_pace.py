"""The pace controller (crawler/pace.py), on an injected clock."""

from __future__ import annotations

from crawler.pace import (
    BACKOFF_INTERVAL,
    CLEAN_RUN,
    START_INTERVAL,
    START_LIMIT,
    TIMEOUT_BURST,
    TIMEOUT_WINDOW,
    Outcome,
    Pace,
    PaceController,
)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def clean(c: PaceController, clock: Clock, n: int) -> None:
    for _ in range(n):
        clock.t += 0.01
        c.record(Outcome.CLEAN, clock.t)


def test_a_new_host_starts_at_the_start_pace() -> None:
    c = PaceController(8, clock=Clock())
    assert (c.limit, c.interval, c.known_max) == (START_LIMIT, START_INTERVAL, None)


def test_a_run_of_clean_answers_adds_one_in_flight_and_halves_the_interval() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock)
    clean(c, clock, CLEAN_RUN - 1)
    assert c.limit == START_LIMIT
    clean(c, clock, 1)
    assert c.limit == START_LIMIT + 1
    assert c.interval == START_INTERVAL / 2


def test_the_interval_reaches_zero_and_the_limit_stops_at_the_ceiling() -> None:
    clock = Clock()
    c = PaceController(5, clock=clock)
    clean(c, clock, CLEAN_RUN * 20)
    assert c.limit == 5
    assert c.interval == 0.0


def test_a_user_interval_is_a_floor_never_crossed() -> None:
    clock = Clock()
    c = PaceController(5, clock=clock, min_interval=0.3, start=Pace(1, 0.0))
    assert c.interval == 0.3
    clean(c, clock, CLEAN_RUN * 20)
    assert c.interval == 0.3


def test_a_learned_pace_above_the_ceiling_is_brought_under_it() -> None:
    c = PaceController(3, clock=Clock(), start=Pace(7, 0.0, known_max=7))
    assert c.limit == 3


def test_a_verification_page_halves_the_limit_and_remembers_the_limit_as_too_much() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(6, 0.0))
    clock.t += 1
    c.record(Outcome.SLOW_DOWN, clock.t - 0.5)
    assert c.limit == 3
    assert c.known_max == 5
    assert c.interval == BACKOFF_INTERVAL
    assert c.slowdowns == 1
    clean(c, clock, CLEAN_RUN * 10)
    assert c.limit == 5  # back to just under the limit it was shown the page at, no further


def test_answers_to_requests_started_before_a_slowdown_are_not_counted() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(6, 0.0))
    before = clock.t
    clock.t += 1
    c.record(Outcome.SLOW_DOWN, before)
    # the other requests that were in flight at the old pace get the page too: one slowdown
    for _ in range(5):
        c.record(Outcome.SLOW_DOWN, before)
    assert (c.limit, c.slowdowns, c.known_max) == (3, 1, 5)
    # nor do their clean answers count towards growing again
    for _ in range(CLEAN_RUN * 3):
        c.record(Outcome.CLEAN, before)
    assert c.limit == 3


def test_a_429_slows_down_like_a_verification_page() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(4, 0.0))
    c.record(Outcome.SLOW_DOWN, clock.t)
    assert (c.limit, c.known_max) == (2, 3)


def test_a_burst_of_timeouts_halves_but_scattered_timeouts_do_not() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(4, 0.0))
    for _ in range(TIMEOUT_BURST * 3):
        clock.t += TIMEOUT_WINDOW  # one every window: never a burst
        c.record(Outcome.TIMEOUT, clock.t)
    assert c.limit == 4
    for _ in range(TIMEOUT_BURST):
        clock.t += 0.1
        c.record(Outcome.TIMEOUT, clock.t)
    assert c.limit == 2
    assert c.known_max is None  # a timeout says the host is slow, not where its limit is


def test_neutral_answers_neither_grow_nor_slow_down() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock)
    for _ in range(CLEAN_RUN * 3):
        c.record(Outcome.NEUTRAL, clock.t)
    assert c.limit == START_LIMIT and c.slowdowns == 0


def test_a_trouble_answer_restarts_the_run_of_clean_answers() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(2, 0.0))
    clean(c, clock, CLEAN_RUN - 1)
    clock.t += 0.1
    c.record(Outcome.TIMEOUT, clock.t)  # one timeout: no burst, but not clean
    clean(c, clock, CLEAN_RUN - 1)
    assert c.limit == 2
    clean(c, clock, 1)
    assert c.limit == 3


def test_never_below_one_in_flight() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(1, 0.0))
    for _ in range(5):
        clock.t += 1
        c.record(Outcome.SLOW_DOWN, clock.t)
    assert c.limit == 1
    assert c.known_max == 1
    assert c.interval > 0


def test_a_long_clean_stretch_at_the_learned_max_probes_one_higher() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(3, 0.0, known_max=3), reprobe=50)
    clean(c, clock, 49)
    assert c.known_max == 3
    clean(c, clock, 1 + CLEAN_RUN)
    assert c.known_max == 4
    assert c.limit == 4


def test_the_reprobe_never_crosses_the_ceiling() -> None:
    clock = Clock()
    c = PaceController(3, clock=clock, start=Pace(3, 0.0, known_max=3), reprobe=5)
    clean(c, clock, 100)
    assert c.known_max == 3 and c.limit == 3


def test_the_pace_kept_is_where_the_run_ended() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(4, 0.1))
    clock.t += 1
    c.record(Outcome.SLOW_DOWN, clock.t)
    clean(c, clock, CLEAN_RUN)
    assert c.pace() == Pace(3, 0.1, known_max=3)  # 0.1 doubled, then halved
    again = PaceController(8, clock=clock, start=c.pace())
    assert (again.limit, again.known_max) == (3, 3)


def test_the_limit_grows_only_when_the_run_filled_it() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(4, 0.2))
    for _ in range(CLEAN_RUN):
        clock.t += 0.2
        c.record(Outcome.CLEAN, clock.t, inflight=1)  # the interval keeps one in flight
    assert c.limit == 4 and c.interval == 0.1
    for i in range(CLEAN_RUN):
        clock.t += 0.1
        c.record(Outcome.CLEAN, clock.t, inflight=4 if i == 3 else 2)
    assert c.limit == 5


def test_the_requests_in_flight_at_a_verification_page_are_what_is_too_much() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(6, 0.0))
    clock.t += 1
    c.record(Outcome.SLOW_DOWN, clock.t - 0.5, inflight=4)
    assert c.known_max == 3
    assert c.limit == 3
