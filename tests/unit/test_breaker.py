"""Circuit breaker: sequences of events on a fake clock, then the state."""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import replace

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ipfs_accelerate_py.resilience import breaker as breaker_module
from ipfs_accelerate_py.resilience.breaker import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    STATES,
    WINDOW_BUCKETS,
    BreakerOptions,
    CircuitBreaker,
)
from ipfs_accelerate_py.resilience.clock import FakeClock
from ipfs_accelerate_py.resilience.errors import SettingError

from ..helpers import absolute_imports

LEGAL_EDGES = {
    (STATE_CLOSED, STATE_OPEN),
    (STATE_OPEN, STATE_HALF_OPEN),
    (STATE_HALF_OPEN, STATE_OPEN),
    (STATE_HALF_OPEN, STATE_CLOSED),
}


def make(clock: FakeClock | None = None, **options) -> tuple[CircuitBreaker, FakeClock, list]:
    clock = clock or FakeClock()
    breaker = CircuitBreaker(BreakerOptions(**options))
    events: list = []
    breaker.add_listener(lambda old, new, now: events.append((old, new, now)))
    return breaker, clock, events


def play(breaker: CircuitBreaker, clock: FakeClock, script: str) -> None:
    """F failure, S success, I ignored, A acquire, + advance 1s; spaces are ignored."""
    actions = {
        "F": lambda: breaker.on_failure(clock.now()),
        "S": lambda: breaker.on_success(clock.now()),
        "I": lambda: breaker.on_ignored(clock.now()),
        "A": lambda: breaker.try_acquire(clock.now()),
        "+": lambda: clock.advance(1.0),
    }
    for ch in script.replace(" ", ""):
        actions[ch]()


def trip(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(breaker.options.failure_threshold):
        breaker.on_failure(clock.now())
    assert breaker.state(clock.now()) == STATE_OPEN


# ---------------------------------------------------------------- basics


def test_state_strings_and_defaults():
    assert (STATE_CLOSED, STATE_OPEN, STATE_HALF_OPEN) == ("CLOSED", "OPEN", "HALF_OPEN")
    opts = BreakerOptions()
    assert (opts.failure_threshold, opts.reset_timeout, opts.half_open_max_requests) == (5, 30.0, 1)
    assert opts.failure_rate_threshold is None and opts.slow_call_rate_threshold is None
    assert (opts.window_seconds, opts.minimum_calls) == (60.0, 10)
    breaker = CircuitBreaker()
    assert breaker.state(0.0) == STATE_CLOSED
    assert breaker.try_acquire(0.0) is True
    assert breaker.retry_in(0.0) == 0.0


@pytest.mark.parametrize(
    "threshold, script, expected",
    [
        (3, "FF", STATE_CLOSED),
        (3, "FFF", STATE_OPEN),
        (3, "FFSFF", STATE_CLOSED),  # a success resets the count
        (3, "FFSFFF", STATE_OPEN),
        (3, "FFIF", STATE_OPEN),  # ignored outcomes neither count nor reset
        (3, "IIIIIIII", STATE_CLOSED),
        (1, "F", STATE_OPEN),
        (5, "F+F+F+F+F", STATE_OPEN),  # consecutive, not within a time span
    ],
)
def test_consecutive_failure_rule(threshold, script, expected):
    breaker, clock, _ = make(failure_threshold=threshold)
    play(breaker, clock, script)
    assert breaker.state(clock.now()) == expected


def test_open_refuses_until_reset_timeout_then_half_open():
    breaker, clock, events = make(failure_threshold=2, reset_timeout=10.0)
    play(breaker, clock, "FF")
    t_open = clock.now()
    assert breaker.try_acquire(clock.now()) is False
    assert breaker.retry_in(clock.now()) == 10.0
    clock.advance(9.5)
    assert breaker.state(clock.now()) == STATE_OPEN
    assert breaker.try_acquire(clock.now()) is False
    assert breaker.retry_in(clock.now()) == pytest.approx(0.5)
    clock.advance(0.5)  # exactly reset_timeout
    assert breaker.retry_in(clock.now()) == 0.0
    assert breaker.state(clock.now()) == STATE_HALF_OPEN
    assert events == [
        (STATE_CLOSED, STATE_OPEN, t_open),
        (STATE_OPEN, STATE_HALF_OPEN, t_open + 10.0),
    ]


def test_half_open_probe_success_closes():
    breaker, clock, events = make(failure_threshold=1, reset_timeout=5.0)
    play(breaker, clock, "F+++++")
    assert breaker.try_acquire(clock.now()) is True
    breaker.on_success(clock.now())
    assert breaker.state(clock.now()) == STATE_CLOSED
    assert [e[:2] for e in events] == [
        (STATE_CLOSED, STATE_OPEN),
        (STATE_OPEN, STATE_HALF_OPEN),
        (STATE_HALF_OPEN, STATE_CLOSED),
    ]
    snap = breaker.snapshot(clock.now())
    assert snap["consecutive_failures"] == 0 and snap["opened_at"] is None


def test_half_open_probe_failure_reopens_with_full_timeout():
    breaker, clock, events = make(failure_threshold=1, reset_timeout=5.0)
    play(breaker, clock, "F+++++++")  # opened at 1000, probe at 1007
    assert breaker.try_acquire(clock.now()) is True
    breaker.on_failure(clock.now())
    assert breaker.state(clock.now()) == STATE_OPEN
    snap = breaker.snapshot(clock.now())
    assert snap["opened_at"] == 1007.0
    assert snap["retry_in"] == 5.0
    assert snap["times_opened"] == 2
    assert events[-1] == (STATE_HALF_OPEN, STATE_OPEN, 1007.0)
    clock.advance(4.9)
    assert breaker.try_acquire(clock.now()) is False


@pytest.mark.parametrize("limit", [1, 3])
def test_half_open_permit_limit(limit):
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0, half_open_max_requests=limit)
    play(breaker, clock, "F+")
    granted = [breaker.try_acquire(clock.now()) for _ in range(limit + 2)]
    assert granted == [True] * limit + [False, False]
    assert breaker.snapshot(clock.now())["half_open_in_flight"] == limit
    breaker.on_ignored(clock.now())  # one probe ended as a client error: its permit comes back
    assert breaker.try_acquire(clock.now()) is True
    assert breaker.try_acquire(clock.now()) is False
    assert breaker.state(clock.now()) == STATE_HALF_OPEN


def test_probes_that_will_never_report_can_be_forgotten():
    """A forked child's copy: the parent's probes never report there."""
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0, half_open_max_requests=2)
    play(breaker, clock, "F+")
    late = breaker.acquire(clock.now())
    assert breaker.try_acquire(clock.now()) is True and breaker.try_acquire(clock.now()) is False
    breaker.forget_in_flight()
    assert breaker.snapshot(clock.now())["half_open_in_flight"] == 0
    assert breaker.state(clock.now()) == STATE_HALF_OPEN
    assert breaker.try_acquire(clock.now()) is True
    breaker.on_failure(clock.now(), permit=late)  # a forgotten probe reporting after all: ignored
    assert breaker.state(clock.now()) == STATE_HALF_OPEN


def test_half_open_with_three_needs_three_successes():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0, half_open_max_requests=3)
    play(breaker, clock, "F+ AAA SS")
    assert breaker.state(clock.now()) == STATE_HALF_OPEN
    breaker.on_success(clock.now())
    assert breaker.state(clock.now()) == STATE_CLOSED


def test_half_open_with_three_any_failure_reopens():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0, half_open_max_requests=3)
    play(breaker, clock, "F+ AAA SS F")
    assert breaker.state(clock.now()) == STATE_OPEN
    # the third probe's late success does not close it
    breaker.on_success(clock.now())
    assert breaker.state(clock.now()) == STATE_OPEN


def test_half_open_successes_return_permits_and_count_toward_closing():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0, half_open_max_requests=2)
    play(breaker, clock, "F+ AA")
    assert breaker.try_acquire(clock.now()) is False
    breaker.on_success(clock.now())  # 1 of 2 successes, one permit free again
    assert breaker.state(clock.now()) == STATE_HALF_OPEN
    assert breaker.try_acquire(clock.now()) is True
    breaker.on_success(clock.now())
    assert breaker.state(clock.now()) == STATE_CLOSED


# ---------------------------------------------------------------- stale results


def test_success_arriving_while_open_does_not_close():
    breaker, clock, _ = make(failure_threshold=2, reset_timeout=10.0)
    play(breaker, clock, "AFF")  # the first call is still out when it opens
    breaker.on_success(clock.now() + 1.0)
    assert breaker.state(clock.now() + 1.0) == STATE_OPEN
    assert breaker.snapshot(clock.now() + 1.0)["stale_results"] == 1


def test_failure_arriving_while_open_does_not_extend_opened_at():
    breaker, clock, _ = make(failure_threshold=2, reset_timeout=10.0)
    play(breaker, clock, "FF")
    opened_at = clock.now()
    clock.advance(9.0)
    breaker.on_failure(clock.now(), duration=9.0)
    snap = breaker.snapshot(clock.now())
    assert snap["opened_at"] == opened_at
    assert snap["retry_in"] == pytest.approx(1.0)
    clock.advance(1.0)
    assert breaker.state(clock.now()) == STATE_HALF_OPEN


def test_result_in_half_open_with_no_probe_out_is_ignored():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0)
    play(breaker, clock, "F+")
    assert breaker.state(clock.now()) == STATE_HALF_OPEN
    breaker.on_success(clock.now())
    assert breaker.state(clock.now()) == STATE_HALF_OPEN
    breaker.on_failure(clock.now())
    assert breaker.state(clock.now()) == STATE_HALF_OPEN
    assert breaker.snapshot(clock.now())["stale_results"] == 2


def test_permit_from_earlier_state_is_ignored_even_while_a_probe_is_out():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0)
    slow_call = breaker.acquire(clock.now())  # started while CLOSED
    breaker.on_failure(clock.now())
    clock.advance(1.0)
    probe = breaker.acquire(clock.now())
    assert slow_call is not None and probe is not None and probe != slow_call
    breaker.on_success(clock.now(), duration=1.0, permit=slow_call)  # stale: must not close
    assert breaker.state(clock.now()) == STATE_HALF_OPEN
    assert breaker.snapshot(clock.now())["half_open_in_flight"] == 1
    breaker.on_success(clock.now(), permit=probe)
    assert breaker.state(clock.now()) == STATE_CLOSED


def test_stale_ignored_permit_does_not_free_a_probe_slot():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0)
    old = breaker.acquire(clock.now())
    play(breaker, clock, "F+")
    assert breaker.try_acquire(clock.now()) is True
    breaker.on_ignored(clock.now(), permit=old)
    assert breaker.try_acquire(clock.now()) is False


def test_late_failure_from_closed_era_after_reclosing_is_ignored_with_permit():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0)
    old = breaker.acquire(clock.now())
    play(breaker, clock, "F+ A S")
    assert breaker.state(clock.now()) == STATE_CLOSED
    breaker.on_failure(clock.now(), permit=old)
    assert breaker.state(clock.now()) == STATE_CLOSED


def test_permits_are_unique_and_truthy():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0, half_open_max_requests=2)
    closed = [breaker.acquire(clock.now()) for _ in range(3)]
    play(breaker, clock, "F+")
    probes = [breaker.acquire(clock.now()) for _ in range(2)]
    permits = closed + probes
    assert all(permits) and len(set(permits)) == 5


def test_a_probe_reported_twice_counts_once():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0, half_open_max_requests=2)
    play(breaker, clock, "F+")
    probe = breaker.acquire(clock.now())
    breaker.on_success(clock.now(), permit=probe)
    breaker.on_success(clock.now(), permit=probe)  # a bug in the caller: must not close it
    snap = breaker.snapshot(clock.now())
    assert snap["state"] == STATE_HALF_OPEN and snap["stale_results"] == 1
    breaker.on_ignored(clock.now(), permit=probe)
    assert breaker.snapshot(clock.now())["half_open_in_flight"] == 0


def test_without_permits_the_oldest_probe_is_assumed():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0, half_open_max_requests=2)
    play(breaker, clock, "F+")
    first, second = breaker.acquire(clock.now()), breaker.acquire(clock.now())
    breaker.on_ignored(clock.now())  # taken as the first probe's
    breaker.on_success(clock.now(), permit=first)  # so this one is a repeat
    assert breaker.snapshot(clock.now())["stale_results"] == 1
    breaker.on_failure(clock.now(), permit=second)
    assert breaker.state(clock.now()) == STATE_OPEN


# ---------------------------------------------------------------- ignored, record, reset, force


def test_on_ignored_in_closed_counts_nothing():
    breaker, clock, _ = make(failure_threshold=3)
    play(breaker, clock, "F I I I")
    snap = breaker.snapshot(clock.now())
    assert snap["consecutive_failures"] == 1  # not reset, not increased
    assert snap["window"]["calls"] == 1  # only the failure
    play(breaker, clock, "F I F")
    assert breaker.state(clock.now()) == STATE_OPEN


def test_record_is_success_or_failure():
    breaker, clock, _ = make(failure_threshold=2)
    breaker.record(clock.now(), False)
    breaker.record(clock.now(), True)
    breaker.record(clock.now(), False)
    assert breaker.state(clock.now()) == STATE_CLOSED
    breaker.record(clock.now(), False, 0.5)
    assert breaker.state(clock.now()) == STATE_OPEN


def test_reset_goes_back_to_closed_with_counters_zero():
    breaker, clock, events = make(failure_threshold=1)
    play(breaker, clock, "F")
    breaker.reset(clock.now())
    snap = breaker.snapshot(clock.now())
    assert snap["state"] == STATE_CLOSED
    assert (snap["consecutive_failures"], snap["times_opened"], snap["opened_at"]) == (0, 0, None)
    assert events[-1] == (STATE_OPEN, STATE_CLOSED, clock.now())
    assert breaker.try_acquire(clock.now()) is True


def test_reset_without_now_uses_last_time_seen():
    breaker, clock, events = make(failure_threshold=1)
    clock.advance(3.0)
    play(breaker, clock, "F")
    breaker.reset()
    assert events[-1] == (STATE_OPEN, STATE_CLOSED, 1003.0)


@pytest.mark.parametrize("setup", ["", "F", "F+"])
def test_force_open_from_every_state(setup):
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0)
    play(breaker, clock, setup)
    clock.advance(0.5)
    breaker.force_open(clock.now())
    snap = breaker.snapshot(clock.now())
    assert (
        snap["state"] == STATE_OPEN and snap["opened_at"] == clock.now() and snap["retry_in"] == 1.0
    )
    assert breaker.try_acquire(clock.now()) is False
    clock.advance(1.0)
    assert breaker.state(clock.now()) == STATE_HALF_OPEN


# ---------------------------------------------------------------- options at runtime


def test_lower_threshold_at_runtime_applies_to_next_failure():
    breaker, clock, _ = make(failure_threshold=5)
    play(breaker, clock, "FFF")
    breaker.options = replace(breaker.options, failure_threshold=2)
    assert breaker.state(clock.now()) == STATE_CLOSED  # state kept until the next call
    assert breaker.snapshot(clock.now())["consecutive_failures"] == 3
    breaker.on_failure(clock.now())
    assert breaker.state(clock.now()) == STATE_OPEN


def test_reset_timeout_change_while_open_moves_retry_time():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=10.0)
    play(breaker, clock, "F++")
    breaker.options = replace(breaker.options, reset_timeout=60.0)
    assert breaker.state(clock.now()) == STATE_OPEN
    assert breaker.retry_in(clock.now()) == 58.0
    breaker.options = replace(breaker.options, reset_timeout=1.0)
    assert breaker.state(clock.now()) == STATE_HALF_OPEN


def test_half_open_limit_change_at_runtime():
    breaker, clock, _ = make(failure_threshold=1, reset_timeout=1.0, half_open_max_requests=1)
    play(breaker, clock, "F+A")
    assert breaker.try_acquire(clock.now()) is False
    breaker.options = replace(breaker.options, half_open_max_requests=2)
    assert breaker.try_acquire(clock.now()) is True
    assert breaker.try_acquire(clock.now()) is False


def test_options_setter_refuses_other_types():
    breaker = CircuitBreaker()
    with pytest.raises(SettingError) as info:
        breaker.options = {"failure_threshold": 3}
    assert info.value.setting == "options"
    with pytest.raises(SettingError):
        CircuitBreaker({"failure_threshold": 3})


def test_window_seconds_change_empties_window():
    breaker, clock, _ = make(failure_threshold=100)
    play(breaker, clock, "FFFS")
    assert breaker.snapshot(clock.now())["window"]["calls"] == 4
    breaker.options = replace(breaker.options, window_seconds=10.0)
    assert breaker.snapshot(clock.now())["window"]["calls"] == 0


# ---------------------------------------------------------------- rate rules


def test_failure_rate_rule_waits_for_minimum_calls():
    breaker, clock, _ = make(failure_threshold=100, failure_rate_threshold=50.0, minimum_calls=10)
    play(breaker, clock, "FS" * 4 + "F")  # 9 calls, 5 failures: 55% but too few calls
    assert breaker.state(clock.now()) == STATE_CLOSED
    breaker.on_success(clock.now())  # 10 calls, 50% >= 50%
    assert breaker.state(clock.now()) == STATE_OPEN


def test_failure_rate_below_threshold_stays_closed():
    breaker, clock, _ = make(failure_threshold=100, failure_rate_threshold=50.0, minimum_calls=10)
    play(breaker, clock, "FSS" * 10)  # 33%
    snap = breaker.snapshot(clock.now())
    assert snap["state"] == STATE_CLOSED
    assert snap["window"]["calls"] == 30 and snap["window"]["failures"] == 10
    assert snap["window"]["failure_rate"] == pytest.approx(100 / 3)


def test_rate_rule_off_by_default():
    breaker, clock, _ = make(failure_threshold=100, minimum_calls=1)
    play(breaker, clock, "FSFSFSFSFSFF")
    assert breaker.state(clock.now()) == STATE_CLOSED


@pytest.mark.parametrize(
    "duration, expect_open",
    [(1.99, False), (2.0, True), (5.0, True)],  # "at least this slow" counts
)
def test_slow_call_rule(duration, expect_open):
    breaker, clock, _ = make(
        failure_threshold=100,
        slow_call_duration=2.0,
        slow_call_rate_threshold=80.0,
        minimum_calls=5,
    )
    for _ in range(4):
        breaker.on_success(clock.now(), duration)
    assert breaker.state(clock.now()) == STATE_CLOSED  # below minimum_calls
    breaker.on_success(clock.now(), duration)
    assert breaker.state(clock.now()) == (STATE_OPEN if expect_open else STATE_CLOSED)


@pytest.mark.parametrize(
    "only_one",
    [{"slow_call_duration": 1.0}, {"slow_call_rate_threshold": 50.0}],
    ids=["duration-only", "threshold-only"],
)
def test_slow_call_rule_is_off_unless_both_are_set(only_one):
    breaker, clock, events = make(failure_threshold=100, minimum_calls=2, **only_one)  # no error
    assert breaker.options.slow_call_rule is False
    assert breaker.options.is_slow(60.0) is False
    for _ in range(10):
        breaker.on_success(clock.now(), 60.0)  # far slower than any threshold
    snap = breaker.snapshot(clock.now())
    assert snap["state"] == STATE_CLOSED and events == []
    assert snap["window"]["calls"] == 10 and snap["window"]["slow"] == 0
    both = replace(breaker.options, slow_call_duration=1.0, slow_call_rate_threshold=50.0)
    assert both.slow_call_rule is True
    breaker.options = both  # the second setting turns the rule on
    breaker.on_success(clock.now(), 60.0)
    assert breaker.state(clock.now()) == STATE_CLOSED  # 1 slow of 11
    for _ in range(10):
        breaker.on_success(clock.now(), 60.0)
    assert breaker.state(clock.now()) == STATE_OPEN  # 11 slow of 21


def test_slow_rate_counts_slow_failures_and_threshold_is_inclusive():
    breaker, clock, _ = make(
        failure_threshold=100,
        slow_call_duration=1.0,
        slow_call_rate_threshold=50.0,
        minimum_calls=4,
    )
    breaker.on_failure(clock.now(), 3.0)
    breaker.on_success(clock.now(), 0.1)
    breaker.on_success(clock.now(), 0.1)
    snap = breaker.snapshot(clock.now())
    assert snap["window"]["slow"] == 1 and snap["state"] == STATE_CLOSED
    breaker.on_success(clock.now(), 1.0)  # 2 slow of 4: 50%
    assert breaker.state(clock.now()) == STATE_OPEN


def test_window_pruning_forgets_old_outcomes():
    breaker, clock, _ = make(
        failure_threshold=100, failure_rate_threshold=50.0, minimum_calls=4, window_seconds=10.0
    )
    play(breaker, clock, "FFF")  # 3 failures, too few calls to judge
    clock.advance(10.0)
    snap = breaker.snapshot(clock.now())
    assert snap["window"]["calls"] == 0 and snap["window"]["failure_rate"] == 0.0
    play(breaker, clock, "SSSF")  # had the old failures stayed: 4/7 = 57% -> open
    assert breaker.state(clock.now()) == STATE_CLOSED
    assert breaker.snapshot(clock.now())["window"]["failure_rate"] == 25.0


def test_window_keeps_outcomes_inside_window():
    breaker, clock, _ = make(
        failure_threshold=100, failure_rate_threshold=50.0, minimum_calls=4, window_seconds=10.0
    )
    play(breaker, clock, "FF")
    clock.advance(8.0)
    play(breaker, clock, "SF")
    assert breaker.state(clock.now()) == STATE_OPEN


def test_window_memory_is_bounded_at_high_rates():
    breaker, clock, _ = make(failure_threshold=10**9, window_seconds=60.0)
    for _ in range(200):  # 200 s at 500 calls/s
        for _ in range(500):
            breaker.on_success(clock.now(), 0.0)
            clock.advance(0.002)
    assert breaker._window.bucket_count() <= WINDOW_BUCKETS + 1  # noqa: SLF001
    calls = breaker.snapshot(clock.now())["window"]["calls"]
    assert 59 * 500 <= calls <= 60 * 500


def test_window_is_emptied_when_it_opens_and_closes():
    breaker, clock, _ = make(
        failure_threshold=100, failure_rate_threshold=50.0, minimum_calls=2, reset_timeout=1.0
    )
    play(breaker, clock, "FF")
    assert breaker.state(clock.now()) == STATE_OPEN
    play(breaker, clock, "+AS")
    snap = breaker.snapshot(clock.now())
    assert snap["state"] == STATE_CLOSED and snap["window"]["calls"] == 0
    breaker.on_failure(clock.now())  # 1 call: below minimum again
    assert breaker.state(clock.now()) == STATE_CLOSED


# ---------------------------------------------------------------- listeners


def test_listener_events_for_a_full_cycle_outside_the_lock():
    breaker, clock, events = make(failure_threshold=1, reset_timeout=2.0)
    locked_during_call = []
    breaker.add_listener(lambda old, new, now: locked_during_call.append(breaker._lock.locked()))  # noqa: SLF001
    play(breaker, clock, "F ++ A F ++ A S")
    assert events == [
        (STATE_CLOSED, STATE_OPEN, 1000.0),
        (STATE_OPEN, STATE_HALF_OPEN, 1002.0),
        (STATE_HALF_OPEN, STATE_OPEN, 1002.0),
        (STATE_OPEN, STATE_HALF_OPEN, 1004.0),
        (STATE_HALF_OPEN, STATE_CLOSED, 1004.0),
    ]
    assert locked_during_call == [False] * 5


def test_listener_may_call_back_into_the_breaker():
    breaker, clock, _ = make(failure_threshold=1)
    seen = []
    breaker.add_listener(lambda old, new, now: seen.append(breaker.snapshot(now)["state"]))
    breaker.on_failure(clock.now())
    assert seen == [STATE_OPEN]


def test_failing_listener_does_not_stop_others_or_the_transition():
    breaker, clock, events = make(failure_threshold=1)

    def bad(old, new, now):
        raise RuntimeError("listener bug")

    breaker.add_listener(bad)
    later = []
    breaker.add_listener(lambda *args: later.append(args))
    with pytest.raises(RuntimeError, match="listener bug"):
        breaker.on_failure(clock.now())
    assert breaker.state(clock.now()) == STATE_OPEN
    assert len(events) == 1 and len(later) == 1


def test_remove_listener():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=1))
    kept, removed = [], []

    def drop(*args):
        removed.append(args)

    breaker.add_listener(lambda *args: kept.append(args))
    breaker.add_listener(drop)
    breaker.remove_listener(drop)
    breaker.on_failure(1.0)
    assert removed == [] and kept == [(STATE_CLOSED, STATE_OPEN, 1.0)]


def test_no_event_when_nothing_changes():
    breaker, clock, events = make(failure_threshold=3)
    play(breaker, clock, "FFSAI")
    breaker.force_open(clock.now())
    breaker.force_open(clock.now() + 1)  # already open: restarts the timer, no transition
    assert [e[:2] for e in events] == [(STATE_CLOSED, STATE_OPEN)]
    assert breaker.snapshot(clock.now() + 1)["times_opened"] == 1


# ---------------------------------------------------------------- snapshot and validation


def test_snapshot_keys():
    breaker, clock, _ = make()
    snap = breaker.snapshot(clock.now())
    assert {
        "state",
        "consecutive_failures",
        "failure_threshold",
        "reset_timeout",
        "opened_at",
        "retry_in",
        "times_opened",
        "half_open_in_flight",
        "window",
    } <= set(snap)
    assert set(snap["window"]) == {"calls", "failures", "slow", "failure_rate", "slow_rate"}
    assert "CLOSED" in repr(breaker)


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": 2.5}, "failure_threshold"),
        ({"failure_threshold": True}, "failure_threshold"),
        ({"reset_timeout": 0}, "reset_timeout"),
        ({"reset_timeout": -1.0}, "reset_timeout"),
        ({"reset_timeout": float("inf")}, "reset_timeout"),
        ({"reset_timeout": "30"}, "reset_timeout"),
        ({"half_open_max_requests": 0}, "half_open_max_requests"),
        ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 100.5}, "failure_rate_threshold"),
        ({"slow_call_duration": 0, "slow_call_rate_threshold": 50}, "slow_call_duration"),
        ({"slow_call_duration": 1.0, "slow_call_rate_threshold": 0}, "slow_call_rate_threshold"),
        ({"window_seconds": 0}, "window_seconds"),
        ({"minimum_calls": 0}, "minimum_calls"),
    ],
)
def test_validation_names_the_setting(kwargs, setting):
    with pytest.raises(SettingError) as info:
        BreakerOptions(**kwargs)
    assert info.value.setting == setting
    assert setting in str(info.value)
    assert isinstance(info.value, ValueError)


def test_valid_edge_values_accepted():
    BreakerOptions(
        failure_threshold=1, reset_timeout=0.001, failure_rate_threshold=100, minimum_calls=1
    )
    BreakerOptions(slow_call_duration=0.5, slow_call_rate_threshold=100.0)


def test_module_is_sans_io():
    imported = absolute_imports(breaker_module)
    assert not imported & {"time", "asyncio", "socket", "aiohttp", "httpx"}


# ---------------------------------------------------------------- property: state machine


class BreakerMachine(RuleBasedStateMachine):
    """Drive a breaker with random calls and results; check it against what it announced."""

    @initialize(
        threshold=st.integers(1, 4),
        reset_timeout=st.sampled_from([0.5, 1.0, 5.0]),
        half_open=st.integers(1, 3),
        rate=st.sampled_from([None, 50.0]),
    )
    def setup(self, threshold, reset_timeout, half_open, rate):
        self.clock = FakeClock()
        self.options = BreakerOptions(
            failure_threshold=threshold,
            reset_timeout=reset_timeout,
            half_open_max_requests=half_open,
            failure_rate_threshold=rate,
            minimum_calls=3,
            window_seconds=4.0,
        )
        self.breaker = CircuitBreaker(self.options)
        self.events: list = []
        self.breaker.add_listener(lambda old, new, now: self.events.append((old, new, now)))
        self.out: list = []  # calls in flight: (permit, number of events when granted, state when granted)
        self.permits_always_passed = True

    def now(self) -> float:
        return self.clock.now()

    def opened_at_by_events(self):
        return self.events[-1][2] if self.events and self.events[-1][1] == STATE_OPEN else None

    @rule(dt=st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0, 6.0]))
    def advance(self, dt):
        self.clock.advance(dt)

    @rule()
    def acquire(self):
        state = self.breaker.state(self.now())
        opened_at = self.opened_at_by_events()
        permit = self.breaker.acquire(self.now())
        if state == STATE_OPEN:
            assert permit is None
        if permit is not None:
            assert opened_at is None or self.now() >= opened_at + self.options.reset_timeout
            self.out.append((permit, len(self.events), state))

    @precondition(lambda self: self.out)
    @rule(
        data=st.data(),
        outcome=st.sampled_from(["success", "failure", "ignored"]),
        pass_permit=st.booleans(),
        duration=st.sampled_from([0.0, 0.5, 3.0]),
    )
    def complete(self, data, outcome, pass_permit, duration):
        permit, granted_at, granted_state = self.out.pop(
            data.draw(st.integers(0, len(self.out) - 1))
        )
        self.permits_always_passed &= pass_permit
        before = self.breaker.snapshot(self.now())
        current = granted_at == len(self.events)  # no transition since it was granted
        kwargs = {"permit": permit} if pass_permit else {}
        if outcome == "ignored":
            self.breaker.on_ignored(self.now(), **kwargs)
        else:
            getattr(self.breaker, f"on_{outcome}")(self.now(), duration, **kwargs)
        after = self.breaker.snapshot(self.now())
        if before["state"] == STATE_OPEN:
            assert after["state"] == STATE_OPEN and after["opened_at"] == before["opened_at"]
        if pass_permit and not current:
            assert after["stale_results"] == before["stale_results"] + 1
            assert after["state"] == before["state"]
            assert after["half_open_in_flight"] == before["half_open_in_flight"]
        exact = (
            self.permits_always_passed
        )  # without permits, a stale result can be taken for a probe's
        if exact and current and granted_state == STATE_HALF_OPEN and outcome == "failure":
            assert after["state"] == STATE_OPEN and after["opened_at"] == self.now()
        if current and granted_state == STATE_CLOSED and outcome == "failure":
            assert after["state"] == STATE_OPEN or (
                after["consecutive_failures"] == before["consecutive_failures"] + 1
            )

    @invariant()
    def state_is_valid(self):
        assert self.breaker.state(self.now()) in STATES

    @invariant()
    def open_means_refusing_until_reset_timeout(self):
        snap = self.breaker.snapshot(self.now())
        if snap["state"] == STATE_OPEN:
            assert self.now() < snap["opened_at"] + self.options.reset_timeout
            assert snap["opened_at"] == self.opened_at_by_events()
            assert snap["retry_in"] > 0
            assert self.breaker.try_acquire(self.now()) is False

    @invariant()
    def half_open_permits_within_limit(self):
        snap = self.breaker.snapshot(self.now())
        assert 0 <= snap["half_open_in_flight"] <= self.options.half_open_max_requests
        if snap["state"] == STATE_HALF_OPEN and self.permits_always_passed:
            out_now = sum(1 for _, granted_at, _ in self.out if granted_at == len(self.events))
            assert out_now == snap["half_open_in_flight"]
        if snap["state"] != STATE_HALF_OPEN:
            assert snap["half_open_in_flight"] == 0

    @invariant()
    def closed_is_below_threshold(self):
        snap = self.breaker.snapshot(self.now())
        if snap["state"] == STATE_CLOSED:
            assert snap["consecutive_failures"] < self.options.failure_threshold

    @invariant()
    def transitions_are_legal_and_chained(self):
        previous = STATE_CLOSED
        for old, new, _ in self.events:
            assert old == previous and (old, new) in LEGAL_EDGES
            previous = new
        assert previous == self.breaker.state(self.now())
        opened = sum(1 for _, new, _ in self.events if new == STATE_OPEN)
        assert self.breaker.snapshot(self.now())["times_opened"] == opened


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# ---------------------------------------------------------------- threads


def test_threaded_stress():
    breaker = CircuitBreaker(
        BreakerOptions(
            failure_threshold=3,
            reset_timeout=0.05,
            half_open_max_requests=2,
            failure_rate_threshold=60.0,
            minimum_calls=5,
            window_seconds=1.0,
        )
    )
    ticks = itertools.count()
    opened = []
    breaker.add_listener(lambda old, new, now: new == STATE_OPEN and opened.append(now))
    errors: list = []
    max_seen = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                now = next(ticks) * 0.001
                permit = breaker.acquire(now)
                if permit is None:
                    continue
                kwargs = {"permit": permit} if rng.random() < 0.5 else {}
                roll = rng.random()
                now = next(ticks) * 0.001
                if roll < 0.45:
                    breaker.on_failure(now, rng.random(), **kwargs)
                elif roll < 0.9:
                    breaker.on_success(now, rng.random(), **kwargs)
                else:
                    breaker.on_ignored(now, **kwargs)
                max_seen.append(breaker.snapshot(now)["half_open_in_flight"])
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    now = next(ticks) * 0.001
    snap = breaker.snapshot(now)
    assert snap["state"] in STATES
    assert max(max_seen) <= 2
    assert snap["times_opened"] == len(opened) > 0
