"""Rate limits have a scope: a 429 cools the (key, model) pair it was for.

Over real HTTP to a server that limits per model, as OpenAI, Gemini and a
LiteLLM deployment do; each test asserts what the server saw as well as what
the caller got.
"""

from __future__ import annotations

import json
import logging
import threading

import pytest

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    DeadlineExceededError,
    QueueFullError,
    RateLimitDeadlineError,
    RateLimitError,
)

from ..helpers import Reply, eventually, messages, recording_server

KEY = "sk-scope-test-0123456789abcdefghijklmnopqrstuvwxyz012345"


def completion(model: str) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"hello from {model}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


def limited(models: dict) -> object:
    """A server answering 429 for the models in ``models`` (their answers: ``(headers, body)``), 200 else."""

    def reply(method: str, path: str, body: bytes) -> object:
        model = json.loads(body)["model"]
        if model in models:
            headers, error = models[model]
            return Reply(
                429,
                error
                or {"error": {"message": f"Rate limit reached for {model}", "type": "requests"}},
                headers,
            )
        return completion(model)

    return reply


def models_seen(seen: list) -> list:
    return [json.loads(body)["model"] for _, _, _, body in seen]


def client_for(url: str, **settings: object) -> openai_api:
    return openai_api(metadata={"openai_api_key": KEY, "openai_base_url": url, **settings})


def test_a_429_for_one_model_does_not_stall_another_on_the_same_key():
    with (
        recording_server(limited({"model-a": ({"Retry-After": "30"}, None)}), "/v1") as (
            url,
            seen,
        ),
        client_for(url, max_retries=3, request_deadline=120) as client,
    ):
        waiting = client.queue_with_priority(
            {
                "endpoint": "chat/completions",
                "data": {"model": "model-a", "messages": messages("a")},
            }
        )
        pool_name = client.api_key_names[0]
        # model-a is answered 429 + Retry-After 30 and waits for its pair to cool ...
        eventually(
            lambda: client.get_stats()["key_pool"][pool_name]["cooling_models"],
            "the 429 back and its pair cooling",
        )
        # ... while model-b, on the same key, is answered at once
        answer = client.chat("model-b", messages("b"), request_id="b-1")
        assert answer["choices"][0]["message"]["content"] == "hello from model-b"
        assert not waiting.done()
        state = client.get_stats()["key_pool"][pool_name]
        assert 25.0 < state["cooling_models"]["model-a"] <= 30.0
        assert "model-b" not in state["cooling_models"] and state["cooling_until"] == 0.0
        waiting.cancel()
    assert models_seen(seen) == ["model-a", "model-b"]  # model-a was not sent again while it cooled


def test_cooling_past_the_deadline_fails_at_once_with_the_figure_the_model_and_the_key():
    with (
        recording_server(limited({"model-a": ({"Retry-After": "30"}, None)}), "/v1") as (
            url,
            seen,
        ),
        client_for(url, max_retries=3, request_deadline=5) as client,
    ):
        with pytest.raises(RateLimitDeadlineError) as caught:
            client.chat("model-a", messages("a"))
        error = caught.value
        with pytest.raises(
            RateLimitDeadlineError
        ) as again:  # queued behind the cooling pair: not sent at all
            client.chat("model-a", messages("a again"))
    assert isinstance(error, RateLimitError) and isinstance(error, DeadlineExceededError)
    assert 25.0 < error.retry_after <= 30.0
    assert error.model == "model-a" and error.key_name == client.api_key_names[0]
    assert error.status == 429 and isinstance(error.__cause__, RateLimitError)
    text = str(error)
    assert (
        "no key may send model model-a for another" in text
        and "deadline in" in text
        and "Retry-After" in text
    )
    assert KEY not in text
    assert again.value.__cause__ is None and 20.0 < again.value.retry_after <= 30.0
    assert models_seen(seen) == ["model-a"]


def test_a_pair_ready_before_the_deadline_is_waited_for():
    answers = iter([Reply(429, {"error": {"message": "slow down"}}, {"retry-after-ms": "200"})])

    def reply(method: str, path: str, body: bytes) -> object:
        return next(answers, None) or completion(json.loads(body)["model"])

    with recording_server(reply, "/v1") as (url, seen):
        with client_for(url, max_retries=2, request_deadline=30) as client:
            answer = client.chat("model-a", messages("a"))
            stats = client.get_stats()
    assert answer["model"] == "model-a"
    assert models_seen(seen) == ["model-a", "model-a"]
    assert stats["retried_requests"] == 1 and stats["successful_requests"] == 1


@pytest.mark.parametrize("initial_retry_delay", [0.25, 4.0])
def test_a_429_without_retry_after_cools_its_pair_for_the_retry_policy_backoff(initial_retry_delay):
    with (
        recording_server(limited({"model-a": ({}, None)}), "/v1") as (url, seen),
        client_for(
            url, max_retries=0, initial_retry_delay=initial_retry_delay, retry_jitter=0
        ) as client,
    ):
        with pytest.raises(RateLimitError) as caught:
            client.chat("model-a", messages("a"))
        state = client.get_stats()["key_pool"][client.api_key_names[0]]
    assert caught.value.retry_after is None  # the server gave none
    assert initial_retry_delay - 0.2 < state["cooling_models"]["model-a"] <= initial_retry_delay
    assert models_seen(seen) == ["model-a"]


def test_an_exhausted_quota_cools_the_whole_key():
    quota = {
        "error": {
            "message": "You exceeded your current quota",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    }
    with (
        recording_server(limited({"model-a": ({"Retry-After": "60"}, quota)}), "/v1") as (
            url,
            seen,
        ),
        client_for(url, max_retries=0, request_deadline=5) as client,
    ):
        with pytest.raises(RateLimitError) as first:
            client.chat("model-a", messages("a"))
        with pytest.raises(RateLimitDeadlineError) as other:
            client.chat("model-b", messages("b"))
        state = client.get_stats()["key_pool"][client.api_key_names[0]]
    assert first.value.key_wide and "current quota" in str(first.value)
    assert "key-wide" in str(other.value) and other.value.model == "model-b"
    assert 50.0 < state["cooling_until"] <= 60.0
    assert models_seen(seen) == ["model-a"]  # model-b never went: the key has no quota left


def test_a_cooled_pair_and_a_disabled_key_are_logged_with_the_figure_and_no_secret(caplog):
    caplog.set_level(logging.DEBUG, logger="ipfs_accelerate_py")
    answers = iter([Reply(429, {"error": {"message": "slow"}}, {"retry-after": "0.1"})])

    def reply(method: str, path: str, body: bytes) -> object:
        return next(answers, None) or Reply(
            401, {"error": {"message": "Incorrect API key provided"}}
        )

    with recording_server(reply, "/v1") as (url, seen):
        with client_for(url, max_retries=1, request_deadline=10) as client:
            client.add_api_key("backup", KEY[::-1])
            with pytest.raises(AuthenticationError):  # the backup key: refused
                client.chat("model-a", messages("a"))
    records = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    cooled = [
        m for name, level, m in records if name == "ipfs_accelerate_py.keys" and level == "INFO"
    ]
    assert any(
        "for model model-a cooling 0.1s after HTTP 429 (Retry-After)" in m for m in cooled
    ), records
    disabled = [
        m for name, level, m in records if name == "ipfs_accelerate_py.keys" and level == "WARNING"
    ]
    assert any("disabled: AuthenticationError (HTTP 401)" in m for m in disabled), records
    retries = [
        m for name, level, m in records if name == "ipfs_accelerate_py.engine" and level == "DEBUG"
    ]
    assert any("HTTP 429" in m and "retry 1/1" in m for m in retries), records
    assert all(KEY not in m and KEY[::-1] not in m for _, _, m in records)
    assert len(seen) == 3  # 429 on one key, then 401 on each


def test_requests_held_for_a_cooling_model_still_count_against_queue_size():
    with (
        recording_server(limited({"model-a": ({"Retry-After": "30"}, None)}), "/v1") as (
            url,
            seen,
        ),
        client_for(url, max_retries=3, request_deadline=120, queue_size=3) as client,
    ):
        data = {"model": "model-a", "messages": messages("a")}
        first = client.queue_with_priority({"endpoint": "chat/completions", "data": data})
        pool_name = client.api_key_names[0]
        eventually(
            lambda: client.get_stats()["key_pool"][pool_name]["cooling_models"],
            "the 429 back and its pair cooling",
        )
        held = [
            client.queue_with_priority({"endpoint": "chat/completions", "data": data})
            for _ in range(2)
        ]
        with pytest.raises(QueueFullError):
            client.queue_with_priority({"endpoint": "chat/completions", "data": data})
        for future in [first, *held]:
            future.cancel()
    assert models_seen(seen) == ["model-a"]


def test_a_second_key_that_is_only_busy_is_waited_for_not_a_reason_to_fail():
    """k1 cools 30 s for the model; k2 is busy with another request: the next
    request waits for k2 to finish (it frees at once), neither failing nor
    waiting out k1's 30 s."""
    gate = threading.Event()

    def reply(method: str, path: str, body: bytes) -> object:
        text = json.loads(body)["messages"][0]["content"]
        if text == "slow":
            gate.wait(10)  # held until the test lets it go
            return completion("model-a")
        if text == "refused":
            return Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "30"})
        return completion("model-a")

    with (
        recording_server(reply, "/v1") as (url, seen),
        openai_api(
            metadata={
                "openai_base_url": url,
                "request_deadline": 5,
                "max_retries": 0,
                "api_keys": [
                    {"name": "k1", "key": KEY, "max_concurrent": 1},
                    {"name": "k2", "key": KEY[::-1], "max_concurrent": 1},
                ],
            }
        ) as client,
    ):
        client.key_strategy = "round-robin"
        with pytest.raises(RateLimitError):  # k1 now cools for model-a
            client.chat("model-a", messages("refused"))
        slow = client.queue_with_priority(
            {
                "endpoint": "chat/completions",
                "data": {"model": "model-a", "messages": messages("slow")},
            }
        )
        eventually(lambda: len(seen) == 2, "k2 taken by the slow request")
        waiting = client.queue_with_priority(
            {
                "endpoint": "chat/completions",
                "data": {"model": "model-a", "messages": messages("next")},
            }
        )
        gate.set()
        assert slow.result(10)["model"] == "model-a"
        assert (
            waiting.result(10)["model"] == "model-a"
        )  # on k2, once free: not failed, not after k1's 30 s
    keys = [headers["authorization"][-8:] for _, _, headers, _ in seen]
    assert keys == [KEY[-8:], KEY[::-1][-8:], KEY[::-1][-8:]]


def test_a_key_passed_in_extra_headers_is_redacted_from_what_the_server_echoes():
    secret = "sk-proj-" + "Z" * 40

    def reply(method: str, path: str, body: bytes) -> object:
        return Reply(401, {"error": {"message": f"Incorrect API key provided: {secret}"}})

    with recording_server(reply, "/v1") as (url, seen):
        with client_for(url, max_retries=0) as client:
            with pytest.raises(AuthenticationError) as caught:
                client.chat(
                    "model-a", messages("a"), extra_headers={"Authorization": f"Bearer {secret}"}
                )
    assert seen[0][2]["authorization"] == f"Bearer {secret}"  # the server did get it
    assert secret not in str(caught.value) and secret.encode() not in caught.value.body
    assert "Incorrect API key provided: ***" in str(caught.value)
