"""on_circuit_open="wait": requests stay queued, without polling, until a
half-open probe closes the circuit or their deadline ends; "fail" (the
default, the seed's contract) fails fast.  The server's counters show that
nothing was sent while the circuit was OPEN but the one probe."""

from __future__ import annotations

import logging
import socket

import pytest

from ipfs_accelerate_py.resilience.errors import (
    CircuitOpenError,
    DeadlineExceededError,
    InvalidInputError,
    NetworkError,
    ServerError,
)

from ..helpers import WAIT, messages
from ..helpers.openai_sim import CHAT_MODEL, chat_data, chat_once, make_client

PROBE_AFTER = 0.3  # reset_timeout: the outage ends (a few ms) long before the probe goes


def open_circuit(client, simulator) -> None:
    simulator.configure(outage=True)
    for _ in range(2):
        with pytest.raises(ServerError):
            chat_once(client)
    assert client.circuit_state == "OPEN"


def queue_chat(client, text: str, **info):
    return client.queue_with_priority(
        {"endpoint": "chat/completions", "data": chat_data(text), **info}
    )


def test_waiting_requests_go_when_the_probe_closes_the_circuit(simulator):
    with make_client(
        simulator,
        max_retries=0,
        failure_threshold=2,
        reset_timeout=PROBE_AFTER,
        on_circuit_open="wait",
    ) as client:
        open_circuit(client, simulator)
        futures = [queue_chat(client, f"w{i}") for i in range(5)]
        assert not any(f.done() for f in futures)
        assert simulator.counters()["requests_total"] == 2  # nothing sent while OPEN
        simulator.configure(outage=False)
        results = [f.result(WAIT) for f in futures]
        stats = client.get_stats()
        assert client.circuit_state == "CLOSED"
    assert all(r["choices"][0]["message"]["content"] for r in results)
    assert (
        simulator.counters()["requests_total"] == 7
    )  # the 2 failures, the probe and the 4 that waited for it
    assert stats["successful_requests"] == 5 and stats["errors_by_type"].get("circuit_open") is None


def test_a_call_may_wait_while_the_client_fails_fast_and_the_other_way_round(simulator):
    with make_client(
        simulator, max_retries=0, failure_threshold=2, reset_timeout=PROBE_AFTER
    ) as client:
        open_circuit(client, simulator)
        with pytest.raises(CircuitOpenError):
            queue_chat(client, "fails")
        waiting = queue_chat(client, "waits", on_circuit_open="WAIT")
        with pytest.raises(
            InvalidInputError, match="on_circuit_open must be one of 'fail', 'wait'"
        ):
            queue_chat(client, "typo", on_circuit_open="later")
        with pytest.raises(
            InvalidInputError, match="on_circuit_open must be one of 'fail', 'wait'"
        ):
            client.chat(CHAT_MODEL, messages("typo"), on_circuit_open="later")
        assert not waiting.done()
        simulator.configure(outage=False)
        assert waiting.result(WAIT)["choices"]
        open_circuit(client, simulator)
        simulator.configure(
            outage=False
        )  # the probe, once due, closes it: the call below waits for it
        view = client.with_options(on_circuit_open="wait")
        assert view.on_circuit_open == "wait" and client.on_circuit_open == "fail"
        assert view.chat(CHAT_MODEL, messages("view"))["choices"]
        open_circuit(client, simulator)
        simulator.configure(outage=False)
        assert client.chat(model=CHAT_MODEL, messages=messages("call"), on_circuit_open="wait")[
            "choices"
        ]
    with make_client(
        simulator, max_retries=0, failure_threshold=2, reset_timeout=30, on_circuit_open="wait"
    ) as client:
        open_circuit(client, simulator)
        with pytest.raises(CircuitOpenError):
            queue_chat(client, "fails", on_circuit_open="fail").result(WAIT)


def test_a_probe_past_the_deadline_fails_at_once_naming_the_outage(simulator):
    with make_client(
        simulator,
        max_retries=0,
        failure_threshold=2,
        reset_timeout=30,
        on_circuit_open="wait",
        request_deadline=2,
    ) as client:
        open_circuit(client, simulator)
        with pytest.raises(CircuitOpenError) as caught:
            chat_once(client)
    error = caught.value
    assert 25 < error.retry_after <= 30
    assert "circuit OPEN after 2 consecutive failures; last: ServerError: " in str(error)
    assert isinstance(error.__cause__, ServerError) and error.__cause__.status == 503
    assert simulator.counters()["requests_total"] == 2


def test_queued_waiters_are_failed_fast_in_fail_mode_and_kept_in_wait_mode(simulator):
    """Requests queued before the circuit opened: fail mode fails them when it
    opens, wait mode keeps them in their order."""
    for mode, expect_wait in (("fail", False), ("wait", True)):
        simulator.reset()
        simulator.configure(outage=True, latency=0.05)
        with make_client(
            simulator,
            max_retries=0,
            failure_threshold=1,
            reset_timeout=PROBE_AFTER,
            max_concurrent_requests=1,
            on_circuit_open=mode,
        ) as client:
            first = queue_chat(client, "opens it")
            behind = [queue_chat(client, f"behind {i}") for i in range(3)]
            with pytest.raises(ServerError):
                first.result(WAIT)
            if expect_wait:
                simulator.configure(outage=False, latency=0.0)
                assert all(f.result(WAIT)["choices"] for f in behind)
            else:
                for f in behind:
                    with pytest.raises(CircuitOpenError):
                        f.result(WAIT)
        assert simulator.counters()["requests_total"] == (4 if expect_wait else 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_circuit_open_error_names_the_refused_connection_behind_it():
    from ipfs_accelerate_py.api_backends import openai_api

    port = free_port()
    metadata = {
        "openai_api_key": "sk-refused",
        "openai_base_url": f"http://127.0.0.1:{port}/v1",
        "max_retries": 0,
        "failure_threshold": 2,
        "reset_timeout": 30,
    }
    with openai_api(metadata=metadata) as client:
        for _ in range(2):
            with pytest.raises(NetworkError) as refused:
                client.chat(CHAT_MODEL, messages("x"))
        with pytest.raises(CircuitOpenError) as caught:
            client.chat(CHAT_MODEL, messages("x"))
    assert str(refused.value).startswith(
        f"[openai] connection refused to 127.0.0.1:{port} (model {CHAT_MODEL}"
    )
    text = str(caught.value)
    assert (
        f"circuit OPEN after 2 consecutive failures; last: NetworkError: connection refused to 127.0.0.1:{port}"
        in text
    )
    assert isinstance(caught.value.__cause__, NetworkError)
    assert caught.value.host == f"127.0.0.1:{port}" and caught.value.model == CHAT_MODEL


def test_every_transition_of_the_circuit_is_logged_at_warning(simulator, caplog):
    caplog.set_level(logging.WARNING, logger="ipfs_accelerate_py")
    with make_client(
        simulator,
        max_retries=0,
        failure_threshold=2,
        reset_timeout=PROBE_AFTER,
        on_circuit_open="wait",
    ) as client:
        open_circuit(client, simulator)
        simulator.configure(outage=False)
        queue_chat(client, "probe").result(WAIT)
    moves = [
        r.getMessage()
        for r in caplog.records
        if r.name == "ipfs_accelerate_py.engine" and r.levelname == "WARNING"
    ]
    assert moves[0].startswith("openai circuit CLOSED -> OPEN (last failure: ServerError: ")
    assert moves[1:] == ["openai circuit OPEN -> HALF_OPEN", "openai circuit HALF_OPEN -> CLOSED"]


def test_a_wait_for_the_circuit_that_outlasts_the_deadline_says_so(simulator):
    with make_client(
        simulator, max_retries=0, failure_threshold=2, reset_timeout=0.5, on_circuit_open="wait"
    ) as client:
        open_circuit(client, simulator)
        simulator.configure(latency=0.8)  # the probe goes at 0.5 s and is answered at 1.3 s
        client.request_deadline = 0.9
        waiting = queue_chat(
            client, "waits", priority="low"
        )  # ends at 0.9 s, while the probe is out
        client.request_deadline = 10
        probe = queue_chat(client, "probe", priority="high")
        with pytest.raises(DeadlineExceededError) as caught:
            waiting.result(WAIT)
        with pytest.raises(ServerError):
            probe.result(WAIT)
    text = str(caught.value)
    assert "waited in the queue for the circuit (HALF_OPEN; last failure: ServerError: " in text, (
        text
    )


def test_lowering_reset_timeout_while_waiting_moves_the_probe(simulator):
    with make_client(
        simulator, max_retries=0, failure_threshold=2, reset_timeout=60, on_circuit_open="wait"
    ) as client:
        open_circuit(client, simulator)
        waiting = queue_chat(client, "waits")
        simulator.configure(outage=False)
        client.reset_timeout = 0.2  # the probe is due now, not in a minute
        assert waiting.result(WAIT)["choices"]
        assert client.circuit_state == "CLOSED"
