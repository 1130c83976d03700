"""The clocks: the system one reads the monotonic and the epoch clocks; the fake one moves
only when told to, its wall time keeping step with it."""

from __future__ import annotations

import time

import pytest

from ipfs_accelerate_py.resilience.clock import SYSTEM_CLOCK, FakeClock, SystemClock


def test_the_system_clock_reads_monotonic_time_and_wall_time():
    assert SYSTEM_CLOCK.now is time.monotonic
    assert SYSTEM_CLOCK.wall is time.time
    assert isinstance(SYSTEM_CLOCK, SystemClock)
    assert repr(SYSTEM_CLOCK) == "SystemClock()"


def test_a_fake_clock_starts_where_told_and_its_wall_follows():
    clock = FakeClock()
    assert (clock.now(), clock.wall()) == (1000.0, 1_700_000_000.0)
    clock = FakeClock(start=5, wall_start=100)
    assert (clock.now(), clock.wall()) == (5.0, 100.0)
    assert type(clock.now()) is float


def test_advance_moves_both_times_and_returns_the_new_now():
    clock = FakeClock(start=10.0, wall_start=500.0)
    assert clock.advance(2.5) == 12.5
    assert (clock.now(), clock.wall()) == (12.5, 502.5)
    assert clock.advance(0) == 12.5  # standing still is allowed


def test_a_fake_clock_never_goes_backwards():
    clock = FakeClock(start=10.0)
    with pytest.raises(ValueError, match="a clock cannot go backwards"):
        clock.advance(-0.001)
    assert clock.now() == 10.0


def test_fake_clock_repr_shows_its_time():
    assert repr(FakeClock(start=3.0)) == "FakeClock(now=3.0)"
