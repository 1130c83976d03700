"""Cooldowns on their own: a rest only lengthens, one ending by now is none, expired pairs
are forgotten, and how long a server's Retry-After is believed for."""

from __future__ import annotations

import math

import pytest

from ipfs_accelerate_py.resilience.keys import Cooldowns, rest_for

INF = math.inf


def test_a_rest_starts_lengthens_and_never_shortens():
    c = Cooldowns()
    assert (c.key_until, c.models) == (-INF, {})
    assert c.cool(5.0, 0.0) == "started"
    assert c.cool(5.0, 1.0) is None  # ends no later: nothing changes
    assert c.cool(4.0, 1.0) is None
    assert c.cool(7.0, 1.0) == "lengthened"
    assert c.cool(8.0, 7.0) == "started"  # the last rest ended exactly now: a new one
    assert c.cool(9.0, 9.0) is None  # ends by now: no rest at all
    assert c.key_until == 8.0


def test_a_model_rest_is_its_own_and_expired_ones_are_forgotten():
    c = Cooldowns()
    assert c.cool(5.0, 0.0, model="m1") == "started"
    assert c.cool(20.0, 0.0, model="m2") == "started"
    assert (c.key_until, c.model_until("m1"), c.model_until("m2")) == (-INF, 5.0, 20.0)
    assert c.model_until("m3") == -INF and c.model_until(None) == -INF
    assert c.cool(30.0, 5.0, model="m3") == "started"  # m1 ended at 5.0: forgotten
    assert c.models == {"m2": 20.0, "m3": 30.0}
    assert c.cool(6.0, 5.0, model="m1") == "started"


def test_report_counts_from_now_and_leaves_out_what_ends_now():
    c = Cooldowns()
    c.cool(10.0, 0.0)
    c.cool(5.0, 0.0, model="a")
    c.cool(8.0, 0.0, model="b")
    assert c.report(2.0) == (8.0, {"a": 3.0, "b": 6.0})
    assert c.report(5.0) == (5.0, {"b": 3.0})
    assert c.report(12.0) == (0.0, {})


@pytest.mark.parametrize(
    ("asked", "fallback", "rest"),
    [
        (3.0, None, (3.0, False)),  # believed
        (60.0, None, (60.0, False)),  # at the cap: believed
        (61.0, None, (1.5, True)),  # over the cap: our default, and said so
        (61.0, 4.0, (4.0, True)),  # over the cap: the outcome's own figure
        (None, None, (1.5, False)),  # none asked: the default, nothing refused
        (None, 2.0, (2.0, False)),
        (-5.0, None, (0.0, False)),  # a wait in the past: none
    ],
)
def test_rest_for(asked, fallback, rest):
    assert rest_for(asked, fallback, max_cooldown=60.0, default_cooldown=1.5) == rest


def test_a_cap_of_zero_believes_no_server_but_still_rests():
    assert rest_for(5.0, None, max_cooldown=0.0, default_cooldown=1.0) == (1.0, True)
    assert rest_for(0.0, None, max_cooldown=0.0, default_cooldown=1.0) == (0.0, False)


def test_latest_is_when_the_last_rest_begun_ends():
    rests = Cooldowns()
    assert rests.latest == -float("inf")
    rests.cool(5.0, 0.0, "m")
    rests.cool(3.0, 0.0)  # ends sooner: the latest stays
    assert rests.latest == 5.0
    rests.cool(4.0, 0.0, "m")  # changes nothing
    assert rests.latest == 5.0
    rests.cool(8.0, 1.0)
    assert rests.latest == 8.0
