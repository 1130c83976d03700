"""The engine through the public surface, over the in-memory transport.

No sockets here (tests/integration does real HTTP); waiting is on futures
and events, never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections import Counter

import pytest

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    CancelledRequestError,
    CircuitOpenError,
    DeadlineExceededError,
    InvalidInputError,
    InvalidRequestError,
    QueueFullError,
    RateLimitError,
    ServerError,
    SettingError,
    ShutdownError,
)
from ipfs_accelerate_py.transport.base import HttpResponse
from ipfs_accelerate_py.transport.memory import MemoryTransport

from ..helpers import QUICK_RETRIES, ClientFactory, scripted

SECRET = "sk-test-SECRET-0123456789abcdef"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def ok_body(req) -> bytes:
    body = req.json() or {}
    if req.url.endswith("/embeddings"):
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t))]}
            for i, t in enumerate(inputs)
        ]
        return json.dumps(
            {"object": "list", "data": data, "usage": {"prompt_tokens": len(inputs)}}
        ).encode()
    content = (body.get("messages") or [{}])[-1].get("content", "")
    return json.dumps(
        {
            "choices": [{"message": {"role": "assistant", "content": f"re: {content}"}}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 3},
        }
    ).encode()


def ok(req) -> HttpResponse:
    """A 200 answer to ``req`` (see :func:`ok_body`)."""
    return HttpResponse(200, {}, ok_body(req))


make_client = ClientFactory(
    openai_api,
    "openai_api_base",
    "openai_api_key",
    QUICK_RETRIES,
    base_url="http://test.invalid/v1",
    key=SECRET,
).in_memory


class Gate:
    """An async handler that holds every request until released."""

    def __init__(self, status=200) -> None:
        self.released = threading.Event()
        self.seen: list = []
        self.in_flight = 0
        self.peak = 0
        self.status = status
        self.arrived = threading.Semaphore(0)

    async def __call__(self, req):
        self.seen.append(req.json())
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.arrived.release()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.released.wait)
        self.in_flight -= 1
        return HttpResponse(self.status, {}, ok_body(req))


def test_chat_returns_the_provider_response_and_counts_it():
    client, transport = make_client(ok)
    with client:
        result = client.chat("gpt-4o-mini", [{"role": "user", "content": "hello"}])
        assert result["choices"][0]["message"]["content"] == "re: hello"
        sent = transport.requests[0]
        assert sent.url == "http://test.invalid/v1/chat/completions"
        assert sent.headers["Authorization"] == f"Bearer {SECRET}"
        stats = client.get_stats()
        assert stats["total_requests"] == stats["successful_requests"] == 1
        assert stats["models"]["gpt-4o-mini"]["tokens_in"] == 2


def test_priority_order_under_saturation():
    gate = Gate()
    client, _ = make_client(gate, max_concurrent_requests=1)
    with client:
        blocker = client.queue_with_priority(
            {"endpoint": "chat/completions", "data": dict(CHAT, tag="blocker")}
        )
        assert gate.arrived.acquire(timeout=5)
        futures = []
        for tag, prio in [
            ("low1", 2),
            ("normal1", 1),
            ("low2", 2),
            ("high1", 0),
            ("high2", 0),
            ("normal2", 1),
        ]:
            futures.append(
                client.queue_with_priority(
                    {"endpoint": "chat/completions", "data": dict(CHAT, tag=tag)}, prio
                )
            )
        assert [r["request_id"] for r in client.request_queue][:2] == [
            futures[3]["request_id"],
            futures[4]["request_id"],
        ]
        gate.released.set()
        for f in [blocker] + futures:
            f.result(5)
        order = [body["tag"] for body in gate.seen]
        assert order == ["blocker", "high1", "high2", "normal1", "normal2", "low1", "low2"]
        assert gate.peak == 1


def test_max_concurrency_is_respected_and_can_be_raised_while_running():
    gate = Gate()
    client, _ = make_client(gate, max_concurrent_requests=2)
    with client:
        futures = [
            client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT})
            for _ in range(6)
        ]
        assert gate.arrived.acquire(timeout=5) and gate.arrived.acquire(timeout=5)
        assert not gate.arrived.acquire(timeout=0.05)
        assert client.get_stats()["in_flight"] == 2
        client.max_concurrent_requests = 4
        assert gate.arrived.acquire(timeout=5) and gate.arrived.acquire(timeout=5)
        gate.released.set()
        for f in futures:
            f.result(5)
        assert gate.peak == 4


def test_queue_full_fails_at_once_with_a_typed_error_that_says_how_to_fix_it():
    gate = Gate()
    client, _ = make_client(gate, max_concurrent_requests=1, queue_size=2)
    with client:
        first = client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT})
        assert gate.arrived.acquire(timeout=5)
        queued = [
            client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT})
            for _ in range(2)
        ]
        with pytest.raises(QueueFullError) as info:
            client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT})
        assert "Request queue is full" in str(info.value)
        assert "queue_size" in str(info.value)
        gate.released.set()
        for f in [first] + queued:
            f.result(5)
        stats = client.get_stats()
        assert stats["errors_by_type"].get("queue_full") == 1


def test_429_then_success_is_retried_and_each_attempt_reads_its_own_retry_after():
    script = scripted(
        HttpResponse(429, {"retry-after-ms": "30"}, b'{"error":{"message":"slow down"}}'),
        HttpResponse(503, {"retry-after": "0.06"}, b'{"error":{"message":"busy"}}'),
        then=ok,
    )
    loop_time = []

    def handler(req):
        loop_time.append(asyncio.get_running_loop().time())
        return script(req)

    client, transport = make_client(handler, initial_retry_delay=5.0)
    with client:
        client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
        assert len(transport.requests) == 3
        gaps = [b - a for a, b in zip(loop_time, loop_time[1:], strict=False)]
        # the backoff would be 5 s; the servers' own figures are what was waited
        assert 0.028 <= gaps[0] < 1.0  # libuv timers have 1 ms resolution
        assert 0.058 <= gaps[1] < 1.0
        stats = client.get_stats()
        assert stats["retried_requests"] == 1 and stats["total_retries"] == 2
        assert stats["retry_rate"] == 100.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(status):
    client, transport = make_client(
        lambda r: HttpResponse(status, {}, b'{"error":{"message":"no"}}')
    )
    with client:
        with pytest.raises(ApiError) as info:
            client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
        assert info.value.status == status
        assert len(transport.requests) == 1
        assert client.circuit_state == "CLOSED"


def test_x_should_retry_false_overrides_a_retryable_status():
    client, transport = make_client(lambda r: HttpResponse(503, {"x-should-retry": "false"}, b"{}"))
    with client, pytest.raises(ServerError):
        client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
    assert len(transport.requests) == 1


def test_breaker_opens_then_fails_fast_without_touching_the_server():
    client, transport = make_client(
        lambda r: HttpResponse(500, {}, b'{"error":{"message":"down"}}'),
        failure_threshold=3,
        max_retries=0,
        reset_timeout=60,
    )
    with client:
        for _ in range(3):
            with pytest.raises(ServerError):
                client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
        assert client.circuit_state == "OPEN"
        assert client.check_circuit_breaker() is False
        with pytest.raises(CircuitOpenError) as info:
            client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
        assert info.value.retry_after is not None and 0 < info.value.retry_after <= 60
        assert len(transport.requests) == 3
        report = client.generate_report()
        assert report["circuit_breaker"]["state"] == "OPEN"
        assert report["errors"]["circuit_open"] == 1


def test_rate_limits_and_client_errors_do_not_open_the_breaker():
    client, _ = make_client(
        lambda r: HttpResponse(429, {"retry-after-ms": "1"}, b"{}"),
        failure_threshold=1,
        max_retries=1,
    )
    with client:
        for _ in range(3):
            with pytest.raises(RateLimitError):
                client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
        assert client.circuit_state == "CLOSED"


def test_cancel_a_queued_request_removes_it_at_once():
    gate = Gate()
    client, _ = make_client(gate, max_concurrent_requests=1)
    with client:
        first = client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT})
        assert gate.arrived.acquire(timeout=5)
        victim = client.queue_with_priority(
            {"endpoint": "chat/completions", "data": dict(CHAT, tag="victim")}
        )
        assert len(client.request_queue) == 1
        assert victim.cancel() is True
        with pytest.raises(CancelledRequestError):
            victim.result(5)
        assert client.request_queue == []
        gate.released.set()
        first.result(5)
        assert all(body.get("tag") != "victim" for body in gate.seen)


def test_deadline_passes_while_queued():
    gate = Gate()
    client, _ = make_client(gate, max_concurrent_requests=1, request_deadline=0.05)
    with client:
        first = client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT})
        assert gate.arrived.acquire(timeout=5)
        late = client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT})
        with pytest.raises(DeadlineExceededError) as info:
            late.result(5)
        assert "queue" in str(info.value)
        assert client.request_queue == []
        gate.released.set()
        first.wait(5)


def test_close_fails_queued_requests_with_shutdown_and_none_hang():
    gate = Gate()
    client, transport = make_client(gate, max_concurrent_requests=1)
    first = client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT})
    assert gate.arrived.acquire(timeout=5)
    queued = [
        client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT}) for _ in range(5)
    ]
    closer = threading.Thread(target=client._engine.close, kwargs={"grace": 5.0})
    closer.start()
    for f in queued:
        with pytest.raises(ShutdownError):
            f.result(5)
    gate.released.set()
    closer.join(10)
    assert not closer.is_alive()
    first.result(5)
    assert transport.closed
    with pytest.raises(ShutdownError):
        client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT})


def test_every_future_completes_exactly_once_under_stress():
    rng = random.Random(7)
    lock = threading.Lock()

    def handler(req):
        with lock:
            roll = rng.random()
        if roll < 0.2:
            return HttpResponse(500, {}, b"{}")
        if roll < 0.3:
            return HttpResponse(429, {"retry-after-ms": "1"}, b"{}")
        if roll < 0.35:
            return HttpResponse(400, {}, b"{}")
        return HttpResponse(200, {}, ok_body(req))

    client, _ = make_client(
        handler,
        max_concurrent_requests=8,
        queue_size=10_000,
        failure_threshold=10_000,
        max_retries=2,
    )
    completions = Counter()
    futures = []
    flock = threading.Lock()

    def worker(n):
        for i in range(n):
            f = client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT}, i % 3)
            f.add_done_callback(lambda fut: completions.update([fut["request_id"]]))
            if i % 17 == 0:
                f.cancel()
            with flock:
                futures.append(f)

    threads = [threading.Thread(target=worker, args=(250,)) for _ in range(8)]
    with client:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for f in futures:
            assert f.wait(30)
        stats = client.get_stats()
    assert len(futures) == 2000
    assert set(completions.values()) == {1}
    assert len(completions) == 2000
    cancelled = sum(isinstance(f["error"], CancelledRequestError) for f in futures)
    assert (
        0 < cancelled <= 8 * len(range(0, 250, 17))
    )  # the ones cancel() was asked for; it may lose a race
    assert (
        stats["cancelled_requests"] == cancelled
    )  # a cancelled request is neither a success nor a failure
    assert (
        stats["total_requests"]
        == 2000
        == (stats["successful_requests"] + stats["failed_requests"] + stats["cancelled_requests"])
    )
    assert stats["in_flight"] == 0 and stats["current_queue_size"] == 0


def test_every_future_completes_once_through_cooling_models_an_open_circuit_and_cancels():
    """The paths of rate-limit scope and circuit waiting under load: three
    models, each 429'd now and then for a few ms, outages that open the
    circuit, half the callers waiting for it and half failing fast, two keys,
    cancels: every request ends exactly once and nothing is left held."""
    rng = random.Random(11)
    lock = threading.Lock()

    def handler(req):
        with lock:
            roll = rng.random()
        if roll < 0.15:
            return HttpResponse(503, {}, b"{}")
        if roll < 0.3:
            return HttpResponse(429, {"retry-after-ms": str(rng.randint(1, 20))}, b"{}")
        if roll < 0.33:
            return HttpResponse(429, {}, b'{"error": {"code": "insufficient_quota"}}')
        return HttpResponse(200, {}, ok_body(req))

    client, _ = make_client(
        handler,
        max_concurrent_requests=6,
        queue_size=10_000,
        failure_threshold=4,
        reset_timeout=0.02,
        max_retries=3,
        request_deadline=2.0,
        initial_retry_delay=0.001,
        max_retry_delay=0.01,
    )
    client.add_api_key("second", "sk-second-0123456789abcdef")
    completions = Counter()
    futures: list = []
    waiting: list = []
    refused = Counter()
    flock = threading.Lock()

    def worker(w, n):
        for i in range(n):
            data = dict(CHAT, model=f"model-{(w + i) % 3}")
            info = {
                "endpoint": "chat/completions",
                "data": data,
                "on_circuit_open": "wait" if i % 2 else "fail",
            }
            try:
                f = client.queue_with_priority(info, i % 3)
            except (CircuitOpenError, QueueFullError) as exc:
                refused.update([type(exc).__name__])  # refused at admission: it never had a future
                continue
            f.add_done_callback(lambda fut: completions.update([fut["request_id"]]))
            if i % 23 == 0:
                f.cancel()
            with flock:
                futures.append(f)
                if i % 2:
                    waiting.append(f)

    threads = [threading.Thread(target=worker, args=(w, 150)) for w in range(6)]
    with client:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for f in futures:
            assert f.wait(30)
        stats = client.get_stats()
        engine = client._engine.snapshot()
    assert len(futures) + sum(refused.values()) == 6 * 150  # every worker got through its requests
    assert set(completions.values()) == {1} and len(completions) == len(futures)
    assert (
        stats["total_requests"]
        == stats["successful_requests"] + stats["failed_requests"] + stats["cancelled_requests"]
    )
    assert stats["successful_requests"] > 0
    assert engine["in_flight"] == engine["queue_size"] == engine["backing_off"] == 0
    assert all(state["in_flight"] == 0 for state in engine["key_pool"].values())
    assert client._engine._held_count == 0
    assert (
        stats["errors_by_type"].get("circuit_open", 0) > 0
    )  # the circuit did open: fail-fast callers met it
    assert not any(
        isinstance(f["error"], CircuitOpenError) for f in waiting
    )  # the probe came within every deadline


def test_embeddings_are_batched_and_each_caller_gets_its_own_vector():
    client, transport = make_client(ok, max_batch_size=4, batch_timeout=5.0)
    with client:
        texts = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff", "g", "hh"]
        futures = [client.add_to_batch("text-embedding-3-small", t) for t in texts]
        results = [f.result(5) for f in futures]
        assert len(transport.requests) == 2
        for text, result in zip(texts, results, strict=True):
            assert result["data"] == [
                {"object": "embedding", "index": 0, "embedding": [float(len(text))]}
            ]
        stats = client.get_stats()
        assert stats["batches"]["count"] == 2
        assert stats["total_requests"] == 8


def test_process_batch_sends_without_waiting_for_the_timeout():
    client, transport = make_client(ok, max_batch_size=100, batch_timeout=60.0)
    with client:
        futures = [client.add_to_batch("text-embedding-3-small", t) for t in ["x", "yy", "zzz"]]
        assert client._process_batch() == 1
        assert [f.result(5)["data"][0]["embedding"] for f in futures] == [[1.0], [2.0], [3.0]]
        assert len(transport.requests) == 1


def test_batch_count_mismatch_is_an_error_never_a_misalignment():
    def short(req):
        return HttpResponse(200, {}, b'{"data":[{"index":0,"embedding":[1.0]}]}')

    client, _ = make_client(short, max_batch_size=2, batch_timeout=5.0, max_retries=0)
    with client:
        futures = [client.add_to_batch("text-embedding-3-small", t) for t in ["a", "b"]]
        for f in futures:
            with pytest.raises(ApiError):
                f.result(5)


@pytest.mark.parametrize(
    "name, value",
    [
        ("max_concurrent_requests", 0),
        ("max_concurrent_requests", -1),
        ("max_concurrent_requests", "many"),
        ("queue_size", 0),
        ("max_retries", -1),
        ("backoff_factor", 0.5),
        ("failure_threshold", 0),
        ("reset_timeout", 0),
        ("max_batch_size", 0),
        ("batch_timeout", -0.1),
        ("batching_enabled", "perhaps"),
        ("timeout", 0),
    ],
)
def test_invalid_settings_are_refused_naming_the_setting(name, value):
    client, _ = make_client(ok)
    with client:
        before = getattr(client, name)
        with pytest.raises(SettingError) as info:
            setattr(client, name, value)
        assert name in str(info.value)
        assert getattr(client, name) == before


def test_invalid_setting_in_metadata_is_refused():
    with pytest.raises(SettingError, match="queue_size"):
        make_client(lambda r: None, queue_size=-5)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.queue_with_priority({"endpoint": "chat/completions", "data": CHAT}, 5),
        lambda c: c.queue_with_priority(
            {"endpoint": "chat/completions", "data": CHAT}, "urgent"
        ),  # "high" is a priority
        lambda c: c.queue_with_priority(["not", "a", "dict"]),
        lambda c: c.queue_with_priority({"data": CHAT}),
        lambda c: c.chat("gpt-4o-mini", "hello"),
        lambda c: c.chat("gpt-4o-mini", []),
        lambda c: c.chat("", [{"role": "user", "content": "x"}]),
        lambda c: c.chat(None, [{"role": "user", "content": "x"}]),
        lambda c: c.embeddings("text-embedding-3-small", []),
        lambda c: c.embeddings("text-embedding-3-small", 42),
        lambda c: c.make_request("chat/completions", "not a dict"),
    ],
)
def test_bad_input_gets_a_typed_error_before_anything_is_sent(call):
    client, transport = make_client(ok)
    with client:
        with pytest.raises(InvalidInputError):
            call(client)
        assert transport.requests == []


def test_a_key_never_appears_in_logs_errors_reprs_or_reports(caplog):
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}"}}).encode()
    client, _ = make_client(
        scripted(HttpResponse(500, {}, b"{}"), HttpResponse(401, {}, echo), then=ok), max_retries=2
    )
    caplog.set_level(logging.DEBUG)
    with client:
        with pytest.raises(ApiError) as info:
            client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
        client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
        texts = [
            str(info.value),
            repr(info.value),
            repr(client),
            json.dumps(client.get_stats(), default=str),
            json.dumps(client.generate_report(include_details=True), default=str),
            caplog.text,
        ]
    for text in texts:
        assert SECRET not in text
        assert SECRET[-12:] not in text


def test_sync_call_from_the_engine_loop_is_refused_not_deadlocked():
    client, _ = make_client(ok)
    with client:
        outcome = {}

        def inside():
            try:
                client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
            except RuntimeError as exc:
                outcome["error"] = exc

        client._run_on_engine(inside)
        assert "deadlock" in str(outcome["error"])


def test_future_is_awaitable_from_another_loop():
    client, _ = make_client(ok)

    async def main():
        f = client.queue_with_priority({"endpoint": "chat/completions", "data": CHAT})
        return await f

    with client:
        result = asyncio.run(main())
    assert result["choices"][0]["message"]["content"] == "re: hi"


def test_track_request_result_feeds_breaker_and_stats():
    client, _ = make_client(ok, failure_threshold=2)
    with client:
        client.track_request_result(success=True)
        client.track_request_result(success=False, error_type="RateLimitError")
        assert client.circuit_state == "CLOSED"
        client.track_request_result(success=False, error_type="ConnectionError")
        client.track_request_result(success=False, error_type="ConnectionError")
        assert client.circuit_state == "OPEN"
        stats = client.get_stats()
        assert stats["errors_by_type"]["ConnectionError"] == 2


def test_invalid_response_body_is_a_typed_retryable_error():
    client, transport = make_client(scripted(HttpResponse(200, {}, b"<html>oops"), then=ok))
    with client:
        client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
        assert len(transport.requests) == 2
        assert client.get_stats()["attempt_status_counts"]


def test_invalid_request_error_carries_provider_message():
    client, _ = make_client(
        lambda r: HttpResponse(400, {"x-request-id": "abc"}, b'{"error":{"message":"bad model"}}')
    )
    with client, pytest.raises(InvalidRequestError) as info:
        client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
    assert "bad model" in str(info.value)
    assert info.value.request_id == "abc"


def test_data_that_cannot_be_json_is_refused_with_a_typed_error_and_frees_its_slot():
    client, transport = make_client(ok, max_concurrent_requests=1)
    with client:
        with pytest.raises(InvalidInputError, match="JSON"):
            client.make_request("chat/completions", {"model": "m", "messages": [], "bad": object()})
        assert client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])["choices"]
        assert len(transport.requests) == 1


def test_slow_call_settings_can_be_set_one_at_a_time():
    client, _ = make_client(ok)
    with client:
        client.slow_call_duration = 5  # alone: the slow-call rule stays off, no error
        assert client.slow_call_duration == 5.0
        assert client._engine.breaker.options.slow_call_rule is False
        client.slow_call_rate_threshold = 50
        assert (client.slow_call_duration, client.slow_call_rate_threshold) == (5.0, 50.0)
        options = client._engine.breaker.options
        assert (options.slow_call_duration, options.slow_call_rate_threshold) == (5.0, 50.0)
        assert options.slow_call_rule is True
        assert client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])["choices"]


def test_keys_given_only_as_a_list_are_enough_for_the_real_service(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    transport = MemoryTransport(lambda r: HttpResponse(200, {}, ok_body(r)))
    with openai_api(
        {}, {"api_keys": [{"name": "k1", "key": SECRET}]}, transport=transport
    ) as client:
        client.chat("gpt-4o-mini", [{"role": "user", "content": "x"}])
    assert transport.requests[0].url == "https://api.openai.com/v1/chat/completions"
    assert transport.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
