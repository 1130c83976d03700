"""The engine's events (``client.subscribe``) over real HTTP to the simulator:
a retried request, a breaker trip, a key cooldown, and a subscriber that
raises.  Every event of a request is published before its caller's future
completes, so a test reads them as soon as the call returns."""

from __future__ import annotations

import logging

import pytest

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.engine.events import (
    AttemptEnded,
    AttemptStarted,
    BreakerTransition,
    KeyCooled,
    KeyRefused,
    RequestDone,
    RequestQueued,
    RetryScheduled,
)
from ipfs_accelerate_py.engine.keyring import key_fingerprint
from ipfs_accelerate_py.resilience.errors import AuthenticationError, ServerError

from ..helpers import FAST, REPLY_PREFIX, ClientFactory, messages, reply_text

KEY = "sk-events-0123456789abcdef"
MODEL = "gpt-4o-mini"
make_client = ClientFactory(openai_api, "openai_api_base", "openai_api_key", FAST, key=KEY).on


def test_a_retried_request_tells_each_step_in_order(simulator):
    simulator.script([{"status": 503}])
    seen: list[object] = []
    with make_client(simulator, max_retries=2) as client:
        unsubscribe = client.subscribe(seen.append)
        response = client.chat(MODEL, messages("again"))
        unsubscribe()
        client.chat(MODEL, messages("unheard"))
    assert reply_text(response) == REPLY_PREFIX + "again"
    kinds = [type(e) for e in seen]
    assert kinds == [
        RequestQueued,
        AttemptStarted,
        AttemptEnded,
        RetryScheduled,
        AttemptStarted,
        AttemptEnded,
        RequestDone,
    ]
    queued, first, failed, retry, second, ok, done = seen
    request_id = queued.request_id
    assert all(getattr(e, "request_id", request_id) == request_id for e in seen)
    assert (first.attempt, second.attempt) == (1, 2)
    assert (failed.outcome, failed.reason, failed.status) == ("failure", "server", 503)
    assert (retry.reason, retry.error_kind, retry.attempt) == ("backoff", "server", 1)
    assert retry.delay == pytest.approx(FAST["initial_retry_delay"])
    assert (ok.outcome, ok.reason, ok.status) == ("success", "ok", 200)
    assert (done.ok, done.error_kind, done.attempts, done.model) == (True, None, 2, MODEL)
    assert KEY not in repr(seen)  # keys by fingerprint only
    assert simulator.counters()["requests_total"] == 3  # the unsubscribed call went, unheard


def test_a_breaker_trip_is_told_with_the_failure_behind_it(simulator):
    simulator.configure(outage=True)
    trips: list[BreakerTransition] = []
    with make_client(simulator, max_retries=0, failure_threshold=2, reset_timeout=30) as client:
        client.subscribe(trips.append, BreakerTransition)
        for _ in range(2):
            with pytest.raises(ServerError):
                client.chat(MODEL, messages("down"))
        assert client.circuit_state == "OPEN"
        stats = client.get_stats()
    assert [(t.old, t.new) for t in trips] == [("CLOSED", "OPEN")]
    assert trips[0].provider == "openai"
    assert trips[0].cause is not None and trips[0].cause.startswith("ServerError")
    # the statistics hear the same transition (they are a subscriber too)
    transitions = str(stats)
    assert "OPEN" in transitions


def test_a_429_tells_which_key_cools_for_which_model_and_how_long(simulator):
    simulator.script([{"status": 429, "headers": {"retry-after": "0.05"}}])
    cooled: list[KeyCooled] = []
    retries: list[RetryScheduled] = []
    with make_client(simulator, max_retries=2) as client:
        client.subscribe(cooled.append, KeyCooled)
        client.subscribe(retries.append, RetryScheduled)
        client.chat(MODEL, messages("cool"))
    assert len(cooled) == 1
    event = cooled[0]
    assert (event.model, event.seconds) == (MODEL, pytest.approx(0.05))
    assert event.until == pytest.approx(event.at + 0.05)
    assert event.key_name == key_fingerprint(KEY)  # named, never the secret
    assert [(r.reason, r.error_kind) for r in retries] == [("rate_limited", "rate_limit")]


def test_a_refused_lone_key_is_told_with_no_key_left_and_never_its_secret(simulator):
    simulator.configure(valid_keys=["sk-someone-else"])
    refused: list[KeyRefused] = []
    with make_client(simulator) as client:
        client.subscribe(refused.append, KeyRefused)
        for _ in range(2):  # a lone key is never disabled: each request hears its own 401
            with pytest.raises(AuthenticationError):
                client.chat(MODEL, messages("refused"))
    assert [(e.key_name, e.status, e.usable_keys) for e in refused] == [
        (key_fingerprint(KEY), 401, 0)
    ] * 2
    assert KEY not in repr(refused)


def test_a_refused_key_among_several_counts_the_keys_still_usable(simulator):
    keys = {"a": "sk-events-a-0123456789", "b": "sk-events-b-0123456789"}
    simulator.configure(valid_keys=[keys["b"]])
    refused: list[KeyRefused] = []
    api_keys = [{"name": name, "key": key} for name, key in keys.items()]
    with make_client(simulator, key=None, api_keys=api_keys, key_strategy="round-robin") as client:
        client.subscribe(refused.append, KeyRefused)
        client.chat(MODEL, messages("a is refused, b answers"))
        simulator.configure(valid_keys=["sk-someone-else"])
        with pytest.raises(AuthenticationError):
            client.chat(MODEL, messages("b is refused too"))
    assert [(e.key_name, e.status, e.usable_keys) for e in refused] == [
        ("a", 401, 1),
        ("b", 401, 0),
    ]


def test_a_subscriber_that_raises_never_breaks_a_request_and_is_logged_once(simulator, caplog):
    caplog.set_level(logging.ERROR, logger="ipfs_accelerate_py.engine.events")
    heard: list[object] = []

    def broken(event: object) -> None:
        raise RuntimeError("subscriber bug")

    with make_client(simulator) as client:
        client.subscribe(broken)
        client.subscribe(heard.append, RequestDone)
        answers = [reply_text(client.chat(MODEL, messages(f"n{i}"))) for i in range(3)]
        client.unsubscribe(broken)
    assert answers == [REPLY_PREFIX + f"n{i}" for i in range(3)]
    assert [e.ok for e in heard] == [True, True, True]  # the others still hear every event
    logged = [r for r in caplog.records if "subscriber" in r.getMessage()]
    assert len(logged) == 1
    assert "RuntimeError: subscriber bug" in logged[0].exc_text
