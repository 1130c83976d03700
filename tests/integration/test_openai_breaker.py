"""The circuit breaker of ``openai_api`` against a simulator outage.

The only real waiting here is the breaker's ``reset_timeout`` (0.3 s),
done with ``threading.Event().wait`` (:func:`wait_real`).
"""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.resilience.errors import (
    CircuitOpenError,
    ServerError,
)

from ..helpers import REPLY_PREFIX, WAIT, reply_text
from ..helpers.openai_sim import RESET_TIMEOUT, chat_data, chat_once, make_client, wait_real

# ----------------------------------------------------------- circuit breaker


def test_outage_opens_the_breaker_then_it_fails_fast(simulator):
    simulator.configure(outage=True)
    with make_client(
        simulator, max_retries=0, failure_threshold=3, reset_timeout=RESET_TIMEOUT
    ) as client:
        for _ in range(3):
            with pytest.raises(ServerError) as caught:
                chat_once(client)
            assert caught.value.status == 503
        assert client.circuit_state == "OPEN"
        assert client.check_circuit_breaker() is False
        for _ in range(5):  # fast: a call that waited for the probe would meet the outage
            with pytest.raises(CircuitOpenError) as fast:
                chat_once(client)
        stats = client.get_stats()
    assert "OPEN" in str(fast.value) and "next probe in" in str(fast.value)
    assert 0 < fast.value.retry_after <= RESET_TIMEOUT
    counted = simulator.counters()
    assert counted["requests_total"] == 3  # nothing reached the server while OPEN
    assert counted["faults"]["outage"] == 3
    assert stats["errors_by_type"].get("circuit_open") == 5


def test_breaker_opens_during_one_requests_retries(simulator):
    simulator.configure(outage=True)
    with make_client(
        simulator, max_retries=10, failure_threshold=2, reset_timeout=RESET_TIMEOUT
    ) as client:
        with pytest.raises(CircuitOpenError):
            chat_once(client)  # the third attempt finds the breaker OPEN and stops there
        assert client.circuit_state == "OPEN"
    assert simulator.counters()["requests_total"] == 2


def test_breaker_half_open_probe_closes_it_on_recovery(simulator):
    simulator.configure(outage=True)
    with make_client(
        simulator, max_retries=0, failure_threshold=2, reset_timeout=RESET_TIMEOUT
    ) as client:
        for _ in range(2):
            with pytest.raises(ServerError):
                chat_once(client)
        assert client.circuit_state == "OPEN"
        simulator.configure(outage=False)
        wait_real(RESET_TIMEOUT + 0.02)
        assert client.circuit_state == "HALF_OPEN"
        assert client.check_circuit_breaker() is True
        assert reply_text(chat_once(client, "probe")) == REPLY_PREFIX + "probe"
        assert client.circuit_state == "CLOSED"
        chat_once(client, "after")
        report = client.generate_report()
    assert simulator.counters()["requests_total"] == 4
    transitions = [(t["from"], t["to"]) for t in client.get_stats()["breaker_transitions"]]
    assert transitions[:3] == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]
    assert report["circuit_breaker"]["state"] == "CLOSED"


def test_a_failed_half_open_probe_opens_the_breaker_again(simulator):
    simulator.configure(outage=True)
    with make_client(
        simulator, max_retries=0, failure_threshold=1, reset_timeout=RESET_TIMEOUT
    ) as client:
        with pytest.raises(ServerError):
            chat_once(client)
        wait_real(RESET_TIMEOUT + 0.02)
        assert client.circuit_state == "HALF_OPEN"
        with pytest.raises(ServerError):
            chat_once(client, "probe")  # still down
        assert client.circuit_state == "OPEN"
        with pytest.raises(CircuitOpenError):
            chat_once(client)
    assert simulator.counters()["requests_total"] == 2


def _open_then_wait_for_half_open(client, simulator) -> None:
    simulator.configure(outage=True)
    with pytest.raises(ServerError):
        chat_once(client)
    assert client.circuit_state == "OPEN"
    wait_real(RESET_TIMEOUT + 0.02)
    assert client.circuit_state == "HALF_OPEN"


def _queue_chats(client, n: int) -> list:
    return [
        client.queue_with_priority({"endpoint": "chat/completions", "data": chat_data(f"h{i}")})
        for i in range(n)
    ]


def test_half_open_sends_one_probe_and_the_others_wait_for_its_verdict(simulator):
    with make_client(
        simulator,
        max_retries=0,
        failure_threshold=1,
        reset_timeout=RESET_TIMEOUT,
        max_concurrent_requests=3,
    ) as client:
        _open_then_wait_for_half_open(client, simulator)
        simulator.configure(outage=False, latency=0.1)  # the probe stays in flight a while
        futures = _queue_chats(client, 3)
        replies = [reply_text(f.result(timeout=WAIT)) for f in futures]
        assert client.circuit_state == "CLOSED"
    assert replies == [REPLY_PREFIX + f"h{i}" for i in range(3)]
    counted = simulator.counters()
    assert counted["requests_total"] == 4
    assert counted["peak_concurrency"] == 2  # the probe alone, then the two that waited, together


def test_a_failed_probe_fails_the_requests_that_waited_for_it(simulator):
    with make_client(
        simulator,
        max_retries=0,
        failure_threshold=1,
        reset_timeout=RESET_TIMEOUT,
        max_concurrent_requests=3,
    ) as client:
        _open_then_wait_for_half_open(client, simulator)
        simulator.configure(latency=0.1)  # still down; the probe stays in flight a while
        futures = _queue_chats(client, 3)
        outcomes = [f.exception(timeout=WAIT) for f in futures]
        assert client.circuit_state == "OPEN"
    assert isinstance(outcomes[0], ServerError)
    assert all(isinstance(o, CircuitOpenError) for o in outcomes[1:]), outcomes
    assert simulator.counters()["requests_total"] == 2


def test_reset_timeout_lowered_while_open_takes_effect(simulator):
    simulator.configure(fail_next=1)
    with make_client(simulator, max_retries=0, failure_threshold=1, reset_timeout=30.0) as client:
        with pytest.raises(ServerError):
            chat_once(client)
        assert client.circuit_state == "OPEN"
        client.reset_timeout = 0.1
        wait_real(0.12)
        assert client.circuit_state == "HALF_OPEN"
        chat_once(client)
        assert client.circuit_state == "CLOSED"
    assert simulator.counters()["requests_total"] == 2
