"""``groq`` against the simulator's OpenAI format (``simulator_path="/v1"``)
over real loopback HTTP: the request as Groq documents it, chat and streams,
and Groq's own errors (scripted with Groq's bodies and headers: ``retry-after``
in whole seconds and no ``retry-after-ms``, 498 flex capacity) with retries
as the core decides.  The OpenAI tests cover the core's behaviour in depth;
this file checks the Groq binding of it.
"""

from __future__ import annotations

import logging

import pytest

from ipfs_accelerate_py.api_backends.groq import groq
from ipfs_accelerate_py.providers.openai_compatible import GROQ
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidInputError,
    OverloadedError,
    RateLimitError,
)
from ipfs_accelerate_py.simulator import key_fingerprint

from ..helpers import (
    FAST,
    REPLY_PREFIX,
    WAIT,
    ClientFactory,
    client_fixture,
    joined_deltas,
    key_cooling_logged,
    messages,
    reply_text,
)

KEY = "gsk_integration_0123456789abcdef"
MODEL = GROQ.default_chat_model
RATE_HEADERS = {
    "x-ratelimit-limit-requests": "14400",
    "x-ratelimit-limit-tokens": "18000",
    "x-ratelimit-remaining-requests": "14399",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-requests": "6s",
    "x-ratelimit-reset-tokens": "0.5s",
}
LIMIT_BODY = {
    "error": {
        "message": "Rate limit reached for model `llama-3.3-70b-versatile` on tokens per minute "
        "(TPM): Limit 18000, Used 18000, Requested 20. Please try again in 1.5s.",
        "type": "tokens",
        "code": "rate_limit_exceeded",
    }
}


make_groq = ClientFactory(groq, "groq_api_base", "groq_api_key", FAST, key=KEY)
client = client_fixture(make_groq)


def test_chat_goes_to_the_chat_path_under_the_keys_fingerprint(simulator, client):
    assert reply_text(client.chat(MODEL, messages("Hello Groq"))) == REPLY_PREFIX + "Hello Groq"
    counted = simulator.counters()
    assert counted["by_path"] == {"/v1/chat/completions": 1}
    assert counted["by_key"] == {key_fingerprint(KEY): 1}
    assert counted["by_model"] == {MODEL: 1}


def test_request_as_sent(recorder):
    base_url, seen = recorder
    with make_groq(base_url) as backend:
        backend.chat(MODEL, messages("hi"), max_completion_tokens=8)
        backend.list_models()
    (method, path, headers, body), (get_method, get_path, _, _) = seen
    headers = {k.lower(): v for k, v in headers.items()}
    assert (method, path, get_method, get_path) == (
        "POST",
        "/v1/chat/completions",
        "GET",
        "/v1/models",
    )
    assert headers["authorization"] == f"Bearer {KEY}"
    assert (
        body == b'{"model":"llama-3.3-70b-versatile","messages":[{"role":"user","content":"hi"}],'
        b'"max_completion_tokens":8}'
    )


def test_stream_deltas_join_to_the_reply(simulator, client):
    text = "stream a few words from groq please"
    with client.chat(MODEL, messages(text), stream=True) as stream:
        chunks = list(stream)
    assert joined_deltas(chunks) == REPLY_PREFIX + text
    assert simulator.counters()["streams"] == {"started": 1, "finished": 1}


def test_list_models_and_refused_embeddings(simulator, client):
    assert [m["id"] for m in client.list_models()] == list(simulator.scenario["models"])
    with pytest.raises(InvalidInputError, match="no embeddings operation"):
        client.embeddings("nomic-embed-text-v1_5", "x")
    assert simulator.counters()["by_path"] == {"/v1/models": 1}  # nothing else reached the server


def test_401_for_a_key_the_server_does_not_know_is_not_retried(simulator):
    simulator.configure(valid_keys=["gsk_the_right_key"])
    with make_groq(simulator.url + GROQ.simulator_path, max_retries=3) as backend:
        with pytest.raises(AuthenticationError) as caught:
            backend.chat(MODEL, messages("x"))
    assert caught.value.status == 401
    assert simulator.counters()["requests_total"] == 1


def test_groq_429_is_retried_after_its_retry_after_in_seconds(simulator, caplog):
    caplog.set_level(logging.INFO, logger="ipfs_accelerate_py")
    simulator.script(
        [
            {"status": 429, "headers": {"retry-after": "0", **RATE_HEADERS}, "body": LIMIT_BODY},
            {"status": 200},
        ]
    )
    # the backoff (an hour) would pass the deadline and fail at once: the server's 0 s it is
    with make_groq(
        simulator.url + GROQ.simulator_path,
        max_retries=2,
        initial_retry_delay=3600.0,
        request_deadline=WAIT,
    ) as backend:
        reply = backend.chat(MODEL, messages("patient"))
        stats = backend.get_stats()
    assert reply_text(reply) == REPLY_PREFIX + "patient"
    (cooled,) = key_cooling_logged(caplog.records)
    assert "cooling 0s after HTTP 429 (Retry-After)" in cooled
    assert simulator.counters()["by_status"] == {"429": 1, "200": 1}
    assert stats["total_retries"] == 1


def test_groq_429_without_retries_carries_groqs_wait_and_message(simulator):
    simulator.script(
        [{"status": 429, "headers": {"retry-after": "2", **RATE_HEADERS}, "body": LIMIT_BODY}]
    )
    with make_groq(simulator.url + GROQ.simulator_path, max_retries=0) as backend:
        with pytest.raises(RateLimitError) as caught:
            backend.chat(MODEL, messages("x"))
    assert caught.value.retry_after == 2.0
    assert "Rate limit reached" in str(caught.value)


def test_498_flex_capacity_and_5xx_are_retried(simulator):
    simulator.script(
        [
            {
                "status": 498,
                "body": {
                    "error": {"message": "Flex tier capacity exceeded", "type": "capacity_exceeded"}
                },
            },
            {"status": 503},
            {"status": 200},
        ]
    )
    with make_groq(simulator.url + GROQ.simulator_path, max_retries=3) as backend:
        assert reply_text(backend.chat(MODEL, messages("again"))) == REPLY_PREFIX + "again"
    assert simulator.counters()["by_status"] == {"498": 1, "503": 1, "200": 1}


def test_498_when_retries_run_out_is_an_overload(simulator):
    simulator.script(
        [{"status": 498, "body": {"error": {"message": "Flex tier capacity exceeded"}}}]
    )
    with make_groq(simulator.url + GROQ.simulator_path, max_retries=0) as backend:
        with pytest.raises(OverloadedError, match="capacity exceeded"):
            backend.chat(MODEL, messages("x"))
