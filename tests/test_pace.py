"""The pace controller (crawler/pace.py), on an injected clock."""

from __future__ import annotations

from crawler.pace import (
    BACKOFF_INTERVAL,
    BURST,
    BURST_SPAN,
    CLEAN_RUN,
    RATE_LIMITED,
    REPROBE_GROWTH,
    START_INTERVAL,
    START_LIMIT,
    TIMEOUT_BURST,
    TIMEOUT_WINDOW,
    Blame,
    Outcome,
    Pace,
    PaceController,
)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def clean(c: PaceController, clock: Clock, n: int, inflight: int | None = None) -> None:
    for _ in range(n):
        clock.t += 0.01
        c.record(Outcome.CLEAN, clock.t, inflight)


def page(c: PaceController, clock: Clock, url: str, inflight: int | None = None) -> Blame | None:
    clock.t += 0.01
    return c.record(Outcome.SLOW_DOWN, clock.t, inflight, url)


def burst(c: PaceController, clock: Clock, inflight: int | None = None) -> None:
    """Verification pages from BURST distinct URLs in a row: the host's limit fell."""
    for i in range(BURST):
        page(c, clock, f"https://h/burst/{clock.t}/{i}", inflight)


def test_a_new_host_starts_at_the_start_pace() -> None:
    c = PaceController(8, clock=Clock())
    assert (c.limit, c.interval, c.known_max) == (START_LIMIT, START_INTERVAL, None)
    assert c.good == START_LIMIT


def test_a_run_of_clean_answers_adds_one_in_flight_and_halves_the_interval() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock)
    clean(c, clock, CLEAN_RUN - 1)
    assert c.limit == START_LIMIT
    clean(c, clock, 1)
    assert c.limit == START_LIMIT + 1
    assert c.good == START_LIMIT  # the level the run filled is proven, the new one not yet
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


def test_a_verification_page_alone_at_the_proven_level_is_the_urls_own() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(4, 0.0))
    assert page(c, clock, "https://h/always-blocked", inflight=4) is Blame.URL
    assert (c.limit, c.known_max, c.slowdowns) == (4, None, 0)
    # ... and it does not hold the pace back: one in fifty such URLs, growth goes on
    for i in range(CLEAN_RUN * 6):
        if i % 50 == 49:
            assert page(c, clock, f"https://h/blocked/{i}", inflight=c.good) is Blame.URL
        else:
            clean(c, clock, 1)
    assert c.limit == 8 and c.slowdowns == 0


def test_a_burst_from_distinct_urls_at_the_proven_level_halves_and_remembers_the_limit() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(6, 0.0))
    for i in range(BURST - 1):
        assert page(c, clock, f"https://h/{i}", inflight=6) is Blame.URL
    assert page(c, clock, "https://h/last", inflight=6) is Blame.PACE
    assert c.limit == 3
    assert c.known_max == 5
    assert c.interval == BACKOFF_INTERVAL
    assert c.slowdowns == 1
    clean(c, clock, CLEAN_RUN * 10)
    assert c.limit == 5  # back to just under the limit it was shown the pages at, no further


def test_pages_far_apart_or_from_one_url_are_no_burst() -> None:
    clock = Clock()
    c = PaceController(4, clock=clock, start=Pace(4, 0.0))
    for i in range(BURST * 3):  # one page every BURST_SPAN answers
        page(c, clock, f"https://h/{i}", inflight=4)
        clean(c, clock, BURST_SPAN, inflight=4)
    for _ in range(BURST * 2):  # one URL asked again and again
        page(c, clock, "https://h/same", inflight=4)
    assert c.slowdowns == 0 and c.known_max is None


def test_urls_asked_again_together_after_their_cool_down_are_no_burst() -> None:
    clock = Clock()
    c = PaceController(4, clock=clock, start=Pace(4, 0.0))
    urls = [f"https://h/blocked/{i}" for i in range(BURST + 2)]
    for u in urls:  # each alone: the URL's own
        assert page(c, clock, u, inflight=4) is Blame.URL
        clean(c, clock, BURST_SPAN, inflight=4)
    for u in urls:  # asked again one after another, each shown the page again
        assert page(c, clock, u, inflight=3) is Blame.URL
    assert (c.limit, c.known_max, c.slowdowns) == (4, None, 0)


def test_a_url_asked_again_above_the_proven_level_is_asked_once_more_and_the_pace_holds() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(3, 0.0))
    assert page(c, clock, "https://h/b", inflight=3) is Blame.URL
    clean(c, clock, CLEAN_RUN, inflight=3)  # 3 proven, 4 allowed
    assert page(c, clock, "https://h/b", inflight=4) is Blame.PACE  # may be the probe's
    assert (c.limit, c.known_max, c.slowdowns) == (4, None, 0)


def test_pages_above_the_proven_level_go_back_to_it() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(3, 0.0))
    clean(c, clock, CLEAN_RUN)  # 3 proven, 4 allowed: a probe
    assert (c.good, c.limit) == (3, 4)
    assert page(c, clock, "https://h/o", inflight=4) is Blame.URL  # alone, it may be the URL
    # ... or the probe's: 4 is not asked again until the URL's next answer says which
    assert (c.limit, c.known_max, c.slowdowns) == (3, 3, 0)
    assert page(c, clock, "https://h/p", inflight=4) is Blame.PACE  # sent before: a second
    assert (c.limit, c.known_max, c.slowdowns) == (3, 3, 1)
    assert c.interval == 0.0  # a probe that failed is no reason to space the starts
    clean(c, clock, CLEAN_RUN * 10)
    assert c.limit == 3


def test_a_probe_page_from_a_url_blocked_at_any_pace_is_undone_when_it_is_asked_again() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(3, 0.0))
    clean(c, clock, CLEAN_RUN)
    page(c, clock, "https://h/also-blocked", inflight=4)
    page(c, clock, "https://h/always-blocked", inflight=4)  # two in a row: taken for a probe
    assert c.known_max == 3
    # asked again after their cool-down, at the proven level, both are shown the page again
    assert page(c, clock, "https://h/always-blocked", inflight=3) is Blame.URL
    assert c.known_max == 3  # one of them may still have been the pace's
    assert page(c, clock, "https://h/also-blocked", inflight=3) is Blame.URL
    assert (c.known_max, c.limit) == (None, 4)  # the probe goes on


def test_a_probe_page_whose_url_then_passes_was_the_pace() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(3, 0.0))
    clean(c, clock, CLEAN_RUN)
    page(c, clock, "https://h/o", inflight=4)
    page(c, clock, "https://h/p", inflight=4)
    clock.t += 0.01
    c.record(Outcome.CLEAN, clock.t, 3, "https://h/p")
    assert c.known_max == 3
    page(c, clock, "https://h/p", inflight=3)  # a later page for it is a new one
    assert c.known_max == 3


def test_a_burst_from_urls_blocked_at_any_pace_is_undone_when_they_are_asked_again() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(6, 0.0))
    urls = [f"https://h/blocked/{i}" for i in range(BURST)]
    for u in urls:  # three URLs blocked at any pace, by chance close together
        page(c, clock, u, inflight=6)
    assert (c.limit, c.known_max) == (3, 5)
    clean(c, clock, CLEAN_RUN, inflight=3)
    for u in urls:
        assert page(c, clock, u, inflight=3) is Blame.URL
    assert (c.limit, c.known_max, c.good) == (6, None, 6)
    assert c.interval == 0.0


def test_a_burst_is_kept_once_one_of_its_urls_passes_when_asked_again() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(6, 0.0))
    urls = [f"https://h/{i}" for i in range(BURST)]
    for u in urls:
        page(c, clock, u, inflight=6)
    clock.t += 0.01
    c.record(Outcome.CLEAN, clock.t, 3, urls[0])
    for u in urls[1:]:
        page(c, clock, u, inflight=3)
    assert (c.limit, c.known_max) == (3, 5)


def test_answers_to_requests_started_before_a_slowdown_are_not_counted() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(6, 0.0))
    before = clock.t
    clock.t += 1
    burst(c, clock, inflight=6)
    assert (c.limit, c.slowdowns, c.known_max) == (3, 1, 5)
    # the other requests that were in flight at the old pace get the page too: no more
    # slowdowns, and each is put down to the pace (it is asked again)
    for i in range(5):
        assert c.record(Outcome.SLOW_DOWN, before, 6, f"https://h/old/{i}") is Blame.PACE
    assert (c.limit, c.slowdowns, c.known_max) == (3, 1, 5)
    # nor do their clean answers count towards growing again
    for _ in range(CLEAN_RUN * 3):
        c.record(Outcome.CLEAN, before)
    assert c.limit == 3


def test_a_429_above_the_proven_level_slows_down_like_a_verification_page() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(2, 0.0))
    clean(c, clock, CLEAN_RUN)
    page(c, clock, "https://h/429", inflight=3)
    assert page(c, clock, "https://h/429/b", inflight=3) is Blame.PACE
    assert (c.limit, c.known_max) == (2, 2)


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
        burst(c, clock, inflight=1)
    assert c.limit == 1
    assert c.known_max == 1
    assert c.interval > 0


def test_a_long_clean_stretch_at_the_learned_max_probes_one_higher() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(3, 0.0), reprobe=50)
    clean(c, clock, 1, inflight=3)
    assert page(c, clock, "https://h/o", inflight=4) is Blame.URL  # 4 shown a page: max 3
    assert page(c, clock, "https://h/p", inflight=4) is Blame.PACE
    assert c.known_max == 3
    clean(c, clock, 49)
    assert c.known_max == 3
    clean(c, clock, 1 + CLEAN_RUN)
    assert c.known_max == 4
    assert c.limit == 4


def test_a_maximum_kept_from_the_last_run_waits_twice_before_its_first_probe() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(3, 0.0, known_max=3), reprobe=50)
    clean(c, clock, 99)
    assert c.known_max == 3
    clean(c, clock, 1)
    assert c.known_max == 4


def fail_probe(c: PaceController, clock: Clock, level: int) -> None:
    """Pages from two URLs at `level` in flight: a probe too far."""
    page(c, clock, f"https://h/{clock.t}/a", inflight=level)
    page(c, clock, f"https://h/{clock.t}/b", inflight=level)


def test_each_failed_reprobe_doubles_the_wait_for_the_next_and_one_that_passes_resets_it() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(3, 0.0, known_max=3), reprobe=50)
    waits = []
    for _ in range(6):
        n = 0
        while c.known_max == 3:
            clean(c, clock, 1, inflight=3)
            n += 1
        waits.append(n)
        clean(c, clock, CLEAN_RUN - 1, inflight=3)  # the limit grows to the probe's 4
        assert c.limit == 4
        fail_probe(c, clock, 4)
        assert (c.known_max, c.limit) == (3, 3)
    assert waits == [100, 200, 400, 800, REPROBE_GROWTH * 50, REPROBE_GROWTH * 50]
    clean(c, clock, REPROBE_GROWTH * 50 + CLEAN_RUN, inflight=3)
    clean(c, clock, CLEAN_RUN, inflight=4)  # this time 4 passes: proven
    assert (c.good, c.known_max) == (4, 4)
    n = 0
    while c.known_max == 4:
        clean(c, clock, 1, inflight=4)
        n += 1
    assert c.known_max == 5 and n <= 50  # the next probe after 50 again (the proof counted)


def test_a_page_at_the_proven_level_whose_url_then_passes_was_the_pace() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(5, 0.0, known_max=5))
    assert page(c, clock, "https://h/o", inflight=5) is Blame.URL  # alone: maybe the URL's
    assert (c.limit, c.known_max, c.good) == (5, 5, 5)
    clean(c, clock, 3, inflight=5)
    assert c.limit == 5
    clock.t += 0.01
    assert c.record(Outcome.CLEAN, clock.t, 5, "https://h/o") is None  # asked again: passes
    assert (c.limit, c.known_max, c.good) == (4, 4, 4)  # so 5 was too much
    assert c.pace() == Pace(4, 0.0, known_max=5)  # for the run only (one URL)
    assert c.slowdowns == 0  # one step down, not a halving
    clean(c, clock, CLEAN_RUN * 10, inflight=4)
    assert c.limit == 4


def test_a_page_at_the_proven_level_whose_url_is_blocked_again_holds_the_pace() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(5, 0.0, known_max=5))
    assert page(c, clock, "https://h/always-blocked", inflight=5) is Blame.URL
    clean(c, clock, 3, inflight=5)
    assert page(c, clock, "https://h/always-blocked", inflight=5) is Blame.URL
    assert (c.limit, c.known_max, c.good) == (5, 5, 5)


def test_the_reprobe_never_crosses_the_ceiling() -> None:
    clock = Clock()
    c = PaceController(3, clock=clock, start=Pace(3, 0.0, known_max=3), reprobe=5)
    clean(c, clock, 100)
    assert c.known_max == 3 and c.limit == 3


def test_the_pace_kept_is_the_proven_level_not_a_probe_above_it() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(4, 0.1, known_max=4), reprobe=10)
    clean(c, clock, 20, inflight=4)  # known_max probed one higher, the limit grew to it
    assert (c.limit, c.known_max) == (5, 5)
    assert c.pace() == Pace(4, c.interval, known_max=4)
    again = PaceController(8, clock=clock, start=c.pace())
    assert (again.limit, again.known_max, again.good) == (4, 4, 4)
    clean(c, clock, CLEAN_RUN, inflight=5)  # the run filled 5: proven
    assert c.pace() == Pace(5, c.interval, known_max=5)


def test_the_pace_kept_after_a_burst_is_where_the_run_ended() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(4, 0.1))
    clock.t += 1
    burst(c, clock, inflight=4)
    clean(c, clock, CLEAN_RUN)
    assert c.pace() == Pace(2, 0.1, known_max=3)  # 0.1 doubled, then halved; 3 not proven


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


def test_the_requests_in_flight_at_a_burst_are_what_is_too_much() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(6, 0.0))
    clock.t += 1
    burst(c, clock, inflight=4)
    assert c.known_max == 3
    assert c.limit == 3


def test_a_burst_remembers_the_most_in_flight_its_pages_met() -> None:
    # A whole-blog run: two pages at 5 in flight, then one from a URL blocked at any pace
    # answered at 2 made the burst; taking its 2 for the limit set known_max to 1, and the
    # last 200 s of WeChat (and the next run, which starts there) went one request at a time.
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(5, 0.0))
    assert page(c, clock, "https://h/a", inflight=5) is Blame.URL
    assert page(c, clock, "https://h/b", inflight=5) is Blame.URL
    assert page(c, clock, "https://h/blocked-at-any-pace", inflight=2) is Blame.PACE
    assert (c.limit, c.known_max) == (2, 4)
    clean(c, clock, CLEAN_RUN * 5, inflight=4)
    assert c.limit == 4


def test_a_probe_page_alone_keeps_its_level_unasked_until_its_url_answers_again() -> None:
    # A host one under its limit shows the page to one request in so many (WeChat's 6: at 7 in
    # flight, the 7th to arrive): a probe to 7 met one page, then a run of clean answers took 7
    # for proven and probed 8, where two pages set known_max to 7, one above the host's limit
    # (the post's simulated web: 8 in flight on day 2, 7 on day 3).
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(6, 0.0))
    clean(c, clock, CLEAN_RUN, inflight=6)
    assert (c.good, c.limit) == (6, 7)  # a probe
    assert page(c, clock, "https://h/first", inflight=7) is Blame.URL  # asked again later
    assert (c.limit, c.known_max) == (6, 6)
    for _ in range(CLEAN_RUN * 3):
        clean(c, clock, 1, inflight=c.limit)
        assert c.limit <= 6
    clock.t += 0.01  # asked again after its cool-down, it passes: the page was the probe's
    c.record(Outcome.CLEAN, clock.t, 6, "https://h/first")
    clean(c, clock, CLEAN_RUN * 3, inflight=6)
    assert (c.limit, c.known_max) == (6, 6)
    assert c.pace() == Pace(6, 0.0, known_max=6)  # the next run starts there


def test_a_probe_page_alone_from_a_url_blocked_at_any_pace_lets_the_probe_go_on() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(6, 0.0))
    clean(c, clock, CLEAN_RUN, inflight=6)
    page(c, clock, "https://h/always-blocked", inflight=7)
    assert (c.limit, c.known_max) == (6, 6)
    clean(c, clock, 3, inflight=6)
    # asked again at the proven level, shown the page again: the URL's own
    assert page(c, clock, "https://h/always-blocked", inflight=6) is Blame.URL
    assert (c.limit, c.known_max, c.good) == (7, None, 6)
    clean(c, clock, CLEAN_RUN, inflight=7)
    assert c.limit == 8


def test_a_probe_too_far_remembers_the_fewest_in_flight_that_met_its_pages() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(6, 0.0))
    clean(c, clock, CLEAN_RUN, inflight=6)
    page(c, clock, "https://h/a", inflight=7)
    # a request sent before at more in flight (its count was taken when it started)
    assert page(c, clock, "https://h/b", inflight=8) is Blame.PACE
    assert (c.limit, c.known_max, c.slowdowns) == (6, 6, 1)


def test_a_lone_429_holds_its_url_and_a_second_url_s_holds_the_host() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock)
    clean(c, clock, 20)
    assert not c.rate_limited("https://h/a")  # one URL's: it waits its Retry-After alone
    assert not c.rate_limited("https://h/a")  # the same URL's retry: still one URL
    assert RATE_LIMITED == 2
    assert c.rate_limited("https://h/b")  # another URL's within BURST_SPAN answers: the host
    clean(c, clock, BURST_SPAN)
    assert not c.rate_limited("https://h/c")  # the others are BURST_SPAN answers back
    assert (c.limit, c.slowdowns) == (START_LIMIT + 2, 0)  # the pace hears the answers alone


def test_one_page_at_the_proven_level_whose_url_then_passes_lowers_the_pace_for_the_run_only() -> (
    None
):
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(5, 0.0, known_max=5))
    page(c, clock, "https://h/o", inflight=5)
    clock.t += 0.01
    c.record(Outcome.CLEAN, clock.t, 5, "https://h/o")
    assert (c.limit, c.known_max) == (4, 4)
    clean(c, clock, CLEAN_RUN * 3, inflight=4)
    assert (c.limit, c.known_max) == (4, 4)  # for the rest of the run
    assert c.pace() == Pace(4, 0.0, known_max=5)  # one page is not kept for the next run
    again = PaceController(8, clock=clock, start=c.pace())
    clean(again, clock, CLEAN_RUN, inflight=4)
    assert (again.limit, again.known_max) == (5, 5)


def test_a_second_url_that_passes_after_a_page_at_the_proven_level_is_kept() -> None:
    clock = Clock()
    c = PaceController(8, clock=clock, start=Pace(5, 0.0, known_max=5))
    for url, inflight in (("https://h/o", 5), ("https://h/p", 4)):
        page(c, clock, url, inflight=inflight)
        clean(c, clock, 3, inflight=inflight)
        clock.t += 0.01
        c.record(Outcome.CLEAN, clock.t, inflight, url)
    assert (c.limit, c.known_max) == (3, 3)  # each one step down in the run
    # what both say: 5 in flight is too much (a page at 4 says 5 is too)
    assert c.pace() == Pace(3, 0.0, known_max=4)
