"""Server errors, timeouts, dropped connections and malformed bodies from the
simulator, and what ``openai_api`` does about each.

Each test asserts on what the simulator counted (attempts that reached it,
faults it injected) as well as on what the client reports.  Tests that leave
server handlers winding down after they end (hangs, held streams) run on a
server of their own (``fresh_simulator``) so that nothing they leave counts
into the next test.  The breaker, 429s and stream faults have modules of
their own (``test_openai_breaker``, ``test_openai_rate_limits``,
``test_openai_stream_faults``).
"""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.resilience.errors import (
    CancelledRequestError,
    ConflictError,
    DeadlineExceededError,
    InvalidRequestError,
    MalformedResponseError,
    NetworkError,
    PermissionDeniedError,
    RequestTimeoutError,
    ServerError,
)

from ..helpers import REPLY_PREFIX, WAIT, reply_text
from ..helpers.openai_sim import (
    RESET_TIMEOUT,
    chat_data,
    chat_once,
    chat_soon,
    held_slot,
    make_client,
)

# ----------------------------------------------------- server errors: 5xx


def test_fail_next_500s_are_retried_then_succeed(simulator):
    simulator.configure(fail_next=2)
    with make_client(simulator, max_retries=3) as client:
        response = chat_once(client, "persist")
        stats = client.get_stats()
    assert reply_text(response) == REPLY_PREFIX + "persist"
    counted = simulator.counters()
    assert counted["requests_total"] == 3 == stats["http_attempts"]
    assert counted["faults"]["error"] == 2
    assert counted["by_status"] == {"500": 2, "200": 1}
    assert (stats["total_requests"], stats["successful_requests"], stats["total_retries"]) == (
        1,
        1,
        2,
    )


@pytest.mark.parametrize(
    "status, error_type", [(502, ServerError), (503, ServerError), (529, ServerError)]
)
def test_other_retryable_statuses_are_retried(simulator, status, error_type):
    simulator.configure(error_status=status, fail_next=1)
    with make_client(simulator, max_retries=1) as client:
        chat_once(client)
        simulator.configure(fail_next=2)
        with pytest.raises(error_type) as caught:
            chat_once(client)
    assert caught.value.status == status
    assert simulator.counters()["requests_total"] == 4


def test_retries_exhausted_raise_the_last_error(simulator):
    simulator.configure(fail_next=10)
    with make_client(simulator, max_retries=2, failure_threshold=10) as client:
        with pytest.raises(ServerError) as caught:
            chat_once(client)
        stats = client.get_stats()
    assert caught.value.status == 500
    assert caught.value.attempt == 3
    assert simulator.counters()["requests_total"] == 3
    assert stats["failed_requests"] == 1 and stats["errors_by_type"] == {"server": 1}


def test_error_rate_every_request_succeeds_and_attempts_match_the_server(simulator):
    simulator.configure(error_rate=0.4, seed=7)
    with make_client(
        simulator, max_retries=20, failure_threshold=100, initial_retry_delay=0.0
    ) as client:
        futures = [
            client.queue_with_priority({"endpoint": "chat/completions", "data": chat_data(f"r{i}")})
            for i in range(20)
        ]
        replies = [reply_text(f.result(timeout=WAIT)) for f in futures]
        stats = client.get_stats()
    assert replies == [REPLY_PREFIX + f"r{i}" for i in range(20)]
    counted = simulator.counters()
    assert counted["faults"]["error"] > 0
    assert counted["requests_total"] == stats["http_attempts"] == 20 + stats["total_retries"]
    assert counted["faults"]["error"] == stats["total_retries"]
    assert stats["successful_requests"] == 20
    assert stats["retry_rate"] <= 100


@pytest.mark.parametrize(
    "status, error_type, attempts",
    [
        (408, RequestTimeoutError, 2),
        (409, ConflictError, 2),
        (403, PermissionDeniedError, 1),
        (422, InvalidRequestError, 1),
    ],
)
def test_status_table_retried_or_not(simulator, status, error_type, attempts):
    simulator.script([{"status": status}] * 2)
    with make_client(simulator, max_retries=1) as client, pytest.raises(error_type) as caught:
        chat_once(client)
    assert caught.value.status == status
    assert simulator.counters()["requests_total"] == attempts


def test_mixed_random_faults_every_request_succeeds_and_retries_match_the_faults(simulator):
    simulator.configure(error_rate=0.1, drop_rate=0.1, malformed_rate=0.1, seed=3)
    with make_client(
        simulator,
        max_retries=20,
        failure_threshold=100,
        initial_retry_delay=0.0,
        max_concurrent_requests=4,
    ) as client:
        futures = [
            client.queue_with_priority({"endpoint": "chat/completions", "data": chat_data(f"m{i}")})
            for i in range(30)
        ]
        replies = [reply_text(f.result(timeout=WAIT)) for f in futures]
        stats = client.get_stats()
    assert replies == [REPLY_PREFIX + f"m{i}" for i in range(30)]
    counted = simulator.counters()
    faults = counted["faults"]
    assert faults["error"] and faults["drop"] and faults["malformed"]
    assert faults["error"] + faults["drop"] + faults["malformed"] == stats["total_retries"]
    assert counted["requests_total"] == stats["http_attempts"] == 30 + stats["total_retries"]
    assert stats["errors_by_type"] == {}  # every request succeeded in the end


# ------------------------------------------------------------------ timeouts


def test_hang_times_out_the_attempt_then_the_retry_succeeds(fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(hang_next=1, hang_seconds=3600.0)
    with make_client(simulator, timeout=0.2, max_retries=2) as client:
        response = chat_soon(client, "after a hang")  # within WAIT: the attempt was cut
        stats = client.get_stats()
    assert reply_text(response) == REPLY_PREFIX + "after a hang"
    counted = simulator.counters()
    assert counted["requests_total"] == 2 and counted["faults"]["hang"] == 1
    assert stats["total_retries"] == 1


def test_hang_without_retries_raises_request_timeout(fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(hang_next=1, hang_seconds=10.0)
    with make_client(simulator, timeout=0.2, max_retries=0) as client:
        with pytest.raises(RequestTimeoutError) as caught:
            chat_once(client)
        stats = client.get_stats()
    assert not isinstance(caught.value, DeadlineExceededError)
    assert "0.2" in str(caught.value)
    assert simulator.counters()["requests_total"] == 1
    assert stats["errors_by_type"] == {"timeout": 1}


def test_hangs_count_as_breaker_failures(fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(hang_next=2, hang_seconds=10.0)
    with make_client(
        simulator, timeout=0.15, max_retries=0, failure_threshold=2, reset_timeout=RESET_TIMEOUT
    ) as client:
        for _ in range(2):
            with pytest.raises(RequestTimeoutError):
                chat_once(client)
        assert client.circuit_state == "OPEN"


def test_timeout_set_after_construction(fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(hang_next=1, hang_seconds=10.0)
    simulator.configure(hang_seconds=3600.0)
    with make_client(simulator, max_retries=0) as client:
        client.timeout = 0.2
        with pytest.raises(RequestTimeoutError) as caught:
            chat_soon(client)  # within WAIT, not the default timeout's 30 s
    assert "0.2" in str(caught.value)  # the limit it was cut at: the one set last


def test_a_request_whose_deadline_passes_in_the_queue_leaves_it(fresh_simulator):
    simulator = fresh_simulator
    with make_client(simulator, max_concurrent_requests=1) as client:
        with held_slot(client, simulator):
            client.request_deadline = 0.2
            future = client.queue_with_priority(
                {"endpoint": "chat/completions", "data": chat_data("late")}
            )
            error = future.exception(timeout=WAIT)  # completes while the slot is still held
            assert isinstance(error, DeadlineExceededError)
            assert "waited in the queue" in str(error)
            assert client.get_stats()["current_queue_size"] == 0
    assert simulator.counters()["requests_total"] == 1  # only the held stream


def test_cancelling_requests_in_flight_and_queued(fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(hang_seconds=10.0)
    simulator.script([{"fault": "hang"}], path="/v1/completions")  # only the completion hangs
    with make_client(simulator, max_concurrent_requests=1) as client:
        in_flight = client.queue_with_priority(
            {"endpoint": "completions", "data": {"model": "m", "prompt": "hung"}}
        )
        queued = client.queue_with_priority(
            {"endpoint": "chat/completions", "data": chat_data("waiting")}
        )
        # still pending after a while: the completion is held by the server, the chat waits for the slot
        assert in_flight.wait(0.2) is False
        assert queued.cancel() is True
        assert in_flight.cancel() is True
        assert isinstance(queued.exception(timeout=WAIT), CancelledRequestError)
        assert isinstance(in_flight.exception(timeout=WAIT), CancelledRequestError)
        # the attempt was aborted, not waited for: the only slot is free again at once
        nxt = client.queue_with_priority(
            {"endpoint": "chat/completions", "data": chat_data("next")}
        )
        assert reply_text(nxt.result(timeout=2.0)) == REPLY_PREFIX + "next"
    counted = simulator.counters()
    assert counted["by_path"] == {
        "/v1/completions": 1,
        "/v1/chat/completions": 1,
    }  # "waiting" never went
    assert counted["faults"]["hang"] == 1


# --------------------------------------------------- network and malformed


def test_dropped_connection_is_a_network_error_and_retried(simulator):
    simulator.configure(drop_next=1)
    with make_client(simulator, max_retries=2) as client:
        response = chat_once(client, "after a drop")
        simulator.configure(drop_next=1)
        client.max_retries = 0
        with pytest.raises(NetworkError):
            chat_once(client)
        stats = client.get_stats()
    assert reply_text(response) == REPLY_PREFIX + "after a drop"
    counted = simulator.counters()
    assert counted["faults"]["drop"] == 2
    assert counted["requests_total"] == 3  # drop + retry, then the unretried drop
    assert stats["errors_by_type"] == {"network": 1}


def test_malformed_body_is_retried(simulator):
    simulator.configure(malformed_next=1)
    with make_client(simulator, max_retries=2) as client:
        response = chat_once(client, "after garbage")
        simulator.configure(malformed_next=1)
        client.max_retries = 0
        with pytest.raises(MalformedResponseError):
            chat_once(client)
    assert reply_text(response) == REPLY_PREFIX + "after garbage"
    counted = simulator.counters()
    assert counted["faults"]["malformed"] == 2
    assert counted["requests_total"] == 3
