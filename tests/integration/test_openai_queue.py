"""The priority queue and live settings of ``openai_api``, against the simulator.

Saturation is made deterministic by holding the client's only slot with an
open, stalled stream (:func:`held_slot`); nothing sleeps to wait for
something.  Tests that hold a slot run on a server of their own
(``fresh_simulator``): the stalled handler winds down after the test ends.
"""

from __future__ import annotations

import asyncio

import pytest

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.resilience.errors import InvalidRequestError, QueueFullError, ServerError
from ipfs_accelerate_py.simulator import key_fingerprint

from ..helpers import REPLY_PREFIX, WAIT, messages, reply_text
from ..helpers.openai_sim import CHAT_MODEL, chat_data, held_slot, make_client

# ------------------------------------------------------------ priority queue


def test_queue_with_priority_returns_the_seeds_dict(fresh_simulator):
    simulator = fresh_simulator
    with make_client(simulator, max_concurrent_requests=1) as client:
        with held_slot(client, simulator):
            future = client.queue_with_priority(
                {
                    "endpoint": "chat/completions",
                    "data": chat_data("seed dict"),
                    "api_key": client.api_key,
                    "request_id": "req-123",
                },
                client.PRIORITY_HIGH,
            )
            # what the seed's polling loop reads, while the request waits
            assert isinstance(future, dict)
            assert future.get("completed", False) is False
            assert future["result"] is None and future["error"] is None
        assert future.wait(WAIT) is True
        assert future.get("completed", False) is True
        assert future.get("error") is None
        assert reply_text(future["result"]) == REPLY_PREFIX + "seed dict"
        assert future.result(timeout=0) is future["result"]
        assert future["request_id"] == "req-123"


def test_queue_with_priority_error_lands_in_the_dict(simulator):
    simulator.script([{"status": 400}])
    with make_client(simulator) as client:
        future = client.queue_with_priority(
            {"endpoint": "chat/completions", "data": chat_data("bad")}
        )
        assert future.wait(WAIT)
        assert future["completed"] is True and future["result"] is None
        assert isinstance(future["error"], InvalidRequestError)
        with pytest.raises(InvalidRequestError):
            future.result(timeout=0)


async def test_queued_futures_can_be_awaited_from_an_event_loop(simulator):
    with make_client(simulator, max_concurrent_requests=4) as client:
        results = await asyncio.gather(
            *[
                client.queue_with_priority(
                    {"endpoint": "chat/completions", "data": chat_data(f"awaited {i}")}
                )
                for i in range(12)
            ]
        )
    assert [reply_text(r) for r in results] == [REPLY_PREFIX + f"awaited {i}" for i in range(12)]
    counted = simulator.counters()
    assert counted["requests_total"] == 12 and counted["peak_concurrency"] <= 4


def test_high_priority_queued_later_finishes_before_low_queued_earlier(fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(latency=0.02)
    finished: list[str] = []
    with make_client(simulator, max_concurrent_requests=1) as client:
        with held_slot(client, simulator):
            futures = []
            for name, priority in [
                ("low-0", 2),
                ("low-1", 2),
                ("normal-0", 1),
                ("high-0", 0),
                ("low-2", 2),
                ("high-1", 0),
                ("high-2", 0),
            ]:
                future = client.queue_with_priority(
                    {"endpoint": "chat/completions", "data": chat_data(name), "request_id": name},
                    priority,
                )
                future.add_done_callback(lambda f: finished.append(f["request_id"]))
                futures.append(future)
            assert client.get_stats()["queue_by_priority"] == {0: 3, 1: 1, 2: 3}
            assert finished == []  # all wait behind the held slot
        results = {f["request_id"]: f.result(timeout=WAIT) for f in futures}
    assert finished == ["high-0", "high-1", "high-2", "normal-0", "low-0", "low-1", "low-2"]
    assert all(reply_text(r) == REPLY_PREFIX + name for name, r in results.items())
    counted = simulator.counters()
    assert counted["peak_concurrency"] == 1
    assert counted["requests_total"] == 8  # 7 queued + the held stream


def test_queue_full_fails_at_once_with_a_typed_error(fresh_simulator):
    simulator = fresh_simulator
    with make_client(simulator, max_concurrent_requests=1, queue_size=2) as client:
        with held_slot(client, simulator):
            accepted = [
                client.queue_with_priority(
                    {"endpoint": "chat/completions", "data": chat_data(f"q{i}")}
                )
                for i in range(2)
            ]
            with pytest.raises(QueueFullError) as caught:
                client.queue_with_priority(
                    {"endpoint": "chat/completions", "data": chat_data("one too many")}
                )
            with pytest.raises(QueueFullError):
                client.chat(CHAT_MODEL, messages("sync too"))
        assert [reply_text(f.result(timeout=WAIT)) for f in accepted] == [
            REPLY_PREFIX + "q0",
            REPLY_PREFIX + "q1",
        ]
        stats = client.get_stats()
    assert "Request queue is full" in str(caught.value)
    assert "queue_size" in str(caught.value)  # says how to fix it
    assert stats["rejected_requests"] == 2
    assert stats["errors_by_type"].get("queue_full") == 2
    # the refused requests never reached the server: the held stream and the two accepted did
    assert simulator.counters()["requests_total"] == 3


# ------------------------------------------------------------- live settings


def _concurrent_chats(client: openai_api, n: int) -> list:
    futures = [
        client.queue_with_priority({"endpoint": "chat/completions", "data": chat_data(f"c{i}")})
        for i in range(n)
    ]
    return [f.result(timeout=WAIT) for f in futures]


def test_max_concurrent_requests_set_after_construction_caps_the_servers_peak(simulator):
    simulator.configure(latency=0.1)
    with make_client(simulator, max_concurrent_requests=1) as client:
        client.max_concurrent_requests = 3
        _concurrent_chats(client, 6)
        assert simulator.counters()["peak_concurrency"] == 3
        simulator.reset(scenario=False)
        client.max_concurrent_requests = 2
        _concurrent_chats(client, 4)
        assert simulator.counters()["peak_concurrency"] == 2


def test_raising_max_concurrent_requests_lets_a_queued_request_go_at_once(fresh_simulator):
    simulator = fresh_simulator
    with make_client(simulator, max_concurrent_requests=1) as client:
        with held_slot(client, simulator):
            waiting = client.queue_with_priority(
                {"endpoint": "chat/completions", "data": chat_data("waiting")}
            )
            assert waiting.wait(0.1) is False  # behind the held slot
            client.max_concurrent_requests = 2
            assert (
                reply_text(waiting.result(timeout=WAIT)) == REPLY_PREFIX + "waiting"
            )  # slot still held


def test_max_retries_zero_set_after_construction_means_one_attempt(simulator):
    with make_client(simulator, max_retries=3) as client:
        client.max_retries = 0
        simulator.configure(fail_next=1)
        with pytest.raises(ServerError) as caught:
            client.chat(CHAT_MODEL, messages("once"))
        assert caught.value.status == 500
        assert simulator.counters()["requests_total"] == 1
        client.max_retries = 2
        simulator.configure(fail_next=2)
        client.chat(CHAT_MODEL, messages("thrice"))
    assert simulator.counters()["requests_total"] == 4


def test_failure_threshold_set_after_construction(simulator):
    with make_client(simulator, max_retries=0, failure_threshold=5) as client:
        client.failure_threshold = 1
        simulator.configure(fail_next=1)
        with pytest.raises(ServerError):
            client.chat(CHAT_MODEL, messages("x"))
        assert client.circuit_state == "OPEN"


def test_queue_size_set_after_construction(fresh_simulator):
    simulator = fresh_simulator
    with make_client(simulator, max_concurrent_requests=1, queue_size=50) as client:
        client.queue_size = 1
        with held_slot(client, simulator):
            waiting = client.queue_with_priority(
                {"endpoint": "chat/completions", "data": chat_data("w")}
            )
            with pytest.raises(QueueFullError):
                client.queue_with_priority({"endpoint": "chat/completions", "data": chat_data("x")})
        waiting.result(timeout=WAIT)


def test_api_key_set_after_construction_is_used_for_the_next_request(simulator):
    with make_client(simulator, key="sk-before") as client:
        client.chat(CHAT_MODEL, messages("a"))
        client.api_key = "sk-after"
        client.chat(CHAT_MODEL, messages("b"))
        keys = client.get_stats()["keys"]
    assert simulator.counters()["by_key"] == {
        key_fingerprint("sk-before"): 1,
        key_fingerprint("sk-after"): 1,
    }
    # the client names keys by the same fingerprint as the server's counters
    assert {name: row["requests"] for name, row in keys.items()} == simulator.counters()["by_key"]
