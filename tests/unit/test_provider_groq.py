"""The Groq adapter and the ``groq`` backend, both ways, over the in-memory
transport: exactly these requests are built, exactly these recorded answers
and stream transcripts (shaped as console.groq.com documents them) are read,
and Groq's errors and rate-limit headers become these typed values.
"""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py.api_backends.groq import GROQ_MODELS, groq
from ipfs_accelerate_py.providers.base import EMPTY_DELTA, StreamDelta
from ipfs_accelerate_py.providers.openai import OpenAIWire
from ipfs_accelerate_py.providers.openai_compatible import (
    GROQ,
    GROQ_WIRE,
    OpenAICompatibleWire,
    retry_hint,
)
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidInputError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)

from ..helpers import (
    QUICK_RETRIES,
    WALL,
    ClientFactory,
    answer,
    env_cleared,
    scripted,
    sse_event,
    stream_answer,
)
from ..helpers.streams import check_simulated_chat_stream, joined_calls

KEY = "gsk_test_SECRET_0123456789abcdef"
BASE = "https://api.groq.com/openai/v1"
MODEL = "llama-3.3-70b-versatile"

CHAT_ANSWER = {
    "id": "chatcmpl-f51b2cd2-bef7-417e-964e-a08f0b513c22",
    "object": "chat.completion",
    "created": 1730241104,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Fast inference matters."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "queue_time": 0.037,
        "prompt_tokens": 18,
        "prompt_time": 0.0007,
        "completion_tokens": 5,
        "completion_time": 0.02,
        "total_tokens": 23,
        "total_time": 0.021,
    },
    "system_fingerprint": "fp_179b0f92c9",
    "x_groq": {"id": "req_01jbd6g2qdfw2adyrt2az8hz4w"},
}

MODELS_ANSWER = {
    "object": "list",
    "data": [
        {
            "id": MODEL,
            "object": "model",
            "created": 1733447754,
            "owned_by": "Meta",
            "active": True,
            "context_window": 131072,
            "public_apps": None,
            "max_completion_tokens": 32768,
        }
    ],
}


def _chunk(delta, finish=None, **extra):
    return {
        "id": "chatcmpl-a1",
        "object": "chat.completion.chunk",
        "created": 1730241104,
        "model": MODEL,
        "system_fingerprint": "fp_c06d5113ec",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


GROQ_USAGE = {
    "queue_time": 0.018,
    "prompt_tokens": 40,
    "prompt_time": 0.0026,
    "completion_tokens": 3,
    "completion_time": 0.012,
    "total_tokens": 43,
    "total_time": 0.0146,
}
STREAM_CHUNKS = [
    _chunk({"role": "assistant", "content": ""}, x_groq={"id": "req_01jbd6g2qdfw2adyrt2az8hz4w"}),
    _chunk({"content": "Hello"}),
    _chunk({"content": " world"}),
    _chunk({}, "stop", x_groq={"id": "req_01jbd6g2qdfw2adyrt2az8hz4w", "usage": GROQ_USAGE}),
]
STREAM_TRANSCRIPT = [
    line for c in STREAM_CHUNKS for line in (b"data: " + json.dumps(c).encode(), b"")
]
STREAM_TRANSCRIPT += [b"data: [DONE]", b""]

RATE_HEADERS = {  # as Groq documents them: requests per day, tokens per minute
    "x-ratelimit-limit-requests": "14400",
    "x-ratelimit-limit-tokens": "18000",
    "x-ratelimit-remaining-requests": "14370",
    "x-ratelimit-remaining-tokens": "17997",
    "x-ratelimit-reset-requests": "2m59.56s",
    "x-ratelimit-reset-tokens": "7.66s",
}
LIMIT_MESSAGE = (
    "Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01` service tier "
    "`on_demand` on tokens per minute (TPM): Limit 12000, Used 11950, Requested 180. "
    "Please try again in 650ms. Need more tokens? Upgrade to Dev Tier today."
)
LIMIT_BODY = {"error": {"message": LIMIT_MESSAGE, "type": "tokens", "code": "rate_limit_exceeded"}}


no_groq_env = env_cleared("GROQ_API_KEY", "GROQ_BASE_URL")
client_with = ClientFactory(
    groq, key_setting="groq_api_key", key=KEY, defaults=QUICK_RETRIES
).in_memory


# ---------------------------------------------------------------- requests


def test_chat_request_as_sent_and_answer_as_read():
    client, transport = client_with(lambda r: answer(200, CHAT_ANSWER))
    with client:
        reply = client.chat(
            MODEL, [{"role": "user", "content": "Why fast?"}], temperature=0.2, request_id="r-1"
        )
        stats = client.get_stats()
    sent = transport.requests[0]
    assert (sent.method, sent.url) == ("POST", f"{BASE}/chat/completions")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Content-Type"] == sent.headers["Accept"] == "application/json"
    assert sent.headers["X-Client-Request-Id"] == "r-1"
    assert sent.json() == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Why fast?"}],
        "temperature": 0.2,
    }
    assert reply == CHAT_ANSWER
    assert stats["tokens"]["input"] == 18 and stats["tokens"]["output"] == 5


def test_list_models_is_a_get_and_returns_groqs_entries():
    client, transport = client_with(lambda r: answer(200, MODELS_ANSWER))
    with client:
        models = client.list_models()
    sent = transport.requests[0]
    assert (sent.method, sent.url, sent.body) == ("GET", f"{BASE}/models", None)
    assert models == MODELS_ANSWER["data"]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.embeddings("nomic-embed-text-v1_5", "x"),
        lambda c: c.completions(MODEL, "Once upon"),
        lambda c: c.add_to_batch("nomic-embed-text-v1_5", "x"),
    ],
    ids=["embeddings", "completions", "add_to_batch"],
)
def test_operations_groq_lacks_are_refused_before_sending(call):
    client, transport = client_with(lambda r: answer(200, {}))
    with (
        client,
        pytest.raises(
            InvalidInputError, match="the groq backend has no (embeddings|completions) operation"
        ),
    ):
        call(client)
    assert transport.requests == []


def test_the_adapter_says_what_groq_supports():
    assert GROQ_WIRE.operations == {"chat", "models"}
    assert GROQ_WIRE.batch_inputs("embeddings", {"model": "m", "input": ["a"]}) is None
    with pytest.raises(InvalidInputError):
        GROQ_WIRE.embedding_vectors({"data": []})


def test_no_key_for_groqs_own_url_fails_naming_where_the_key_goes():
    client, transport = client_with(lambda r: answer(200, CHAT_ANSWER), groq_api_key=None)
    with client, pytest.raises(AuthenticationError, match="GROQ_API_KEY"):
        client.chat(MODEL, [{"role": "user", "content": "x"}])
    assert transport.requests == []


@pytest.mark.parametrize(
    "metadata, env, expected",
    [
        ({}, {}, BASE),
        ({"groq_api_base": "http://a:1/v1"}, {}, "http://a:1/v1"),
        ({}, {"GROQ_BASE_URL": "http://b:2/openai/v1"}, "http://b:2/openai/v1"),
    ],
)
def test_base_url_from_metadata_or_env(monkeypatch, metadata, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client, _ = client_with(lambda r: answer(200, CHAT_ANSWER), **metadata)
    with client:
        assert client.base_url == expected


def test_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    client, transport = client_with(lambda r: answer(200, CHAT_ANSWER), groq_api_key=None)
    with client:
        client.chat(MODEL, [{"role": "user", "content": "x"}])
        assert KEY not in repr(client)
    assert transport.requests[0].headers["Authorization"] == f"Bearer {KEY}"


def test_model_table_has_groqs_production_models():
    assert GROQ.default_chat_model in GROQ_MODELS
    assert GROQ_MODELS["llama-3.1-8b-instant"].context_window == 131_072
    assert GROQ_MODELS["llama-3.3-70b-versatile"].max_completion_tokens == 32_768
    assert GROQ_MODELS["whisper-large-v3"].kind == "speech-to-text"


# ------------------------------------------------------------------ streams


def test_stream_transcript_parses_to_chunks_and_done():
    parsed = [GROQ_WIRE.parse_stream_event(sse_event(c)) for c in STREAM_CHUNKS]
    assert parsed == [(c, False) for c in STREAM_CHUNKS]
    assert GROQ_WIRE.parse_stream_event(sse_event("[DONE]")) == (None, True)


def test_usage_is_read_from_x_groq_in_the_last_chunk():
    assert [GROQ_WIRE.usage(c) for c in STREAM_CHUNKS] == [(0, 0)] * 3 + [(40, 3)]
    assert GROQ_WIRE.usage(CHAT_ANSWER) == (18, 5)  # a whole answer has it at the top


def test_a_chunk_with_x_groq_error_stops_the_stream_with_a_server_error():
    chunk = _chunk({}, x_groq={"id": "req_1", "error": "upstream model crashed"})
    with pytest.raises(ServerError, match="stopped early: upstream model crashed"):
        GROQ_WIRE.parse_stream_event(sse_event(chunk))


def test_stream_through_the_backend_counts_tokens_from_x_groq():
    client, transport = client_with(lambda r: stream_answer(STREAM_TRANSCRIPT))
    with client:
        with client.chat(MODEL, [{"role": "user", "content": "hi"}], stream=True) as stream:
            chunks = list(stream)
        stats = client.get_stats()
    sent = transport.requests[0]
    assert sent.headers["Accept"] == "text/event-stream"
    assert sent.json()["stream"] is True
    assert "".join(c.text for c in chunks) == "Hello world"
    assert [c.raw for c in chunks] == STREAM_CHUNKS
    assert (
        chunks[-1].usage == stream.usage == {"input_tokens": 40, "output_tokens": 3}
    )  # from x_groq.usage
    assert stats["tokens"]["input"] == 40 and stats["tokens"]["output"] == 3


# ------------------------------------------------------------------- errors


def _error(status, body, headers=None):
    return GROQ_WIRE.error_for(answer(status, body, headers), wall_now=WALL, attempt=1)


@pytest.mark.parametrize(
    "status, body, cls, message",
    [
        (
            400,
            {
                "error": {
                    "message": "'messages' : minimum number of items is 1",
                    "type": "invalid_request_error",
                }
            },
            InvalidRequestError,
            "minimum number of items",
        ),
        (
            401,
            {
                "error": {
                    "message": "Invalid API Key",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            AuthenticationError,
            "Invalid API Key",
        ),
        (
            403,
            {"error": {"message": "Forbidden", "type": "permission_error"}},
            PermissionDeniedError,
            "Forbidden",
        ),
        (
            404,
            {
                "error": {
                    "message": "The model `nope` does not exist or you do not have access to it.",
                    "type": "invalid_request_error",
                    "code": "model_not_found",
                }
            },
            NotFoundError,
            "does not exist",
        ),
        (
            413,
            {"error": {"message": "Request Entity Too Large", "type": "invalid_request_error"}},
            InvalidRequestError,
            "Too Large",
        ),
        (
            498,
            {"error": {"message": "Flex tier capacity exceeded", "type": "capacity_exceeded"}},
            OverloadedError,
            "capacity exceeded",
        ),
        (
            500,
            {"error": {"message": "Internal Server Error", "type": "internal_server_error"}},
            ServerError,
            "Internal",
        ),
        (
            503,
            {"error": {"message": "Service Unavailable", "type": "internal_server_error"}},
            ServerError,
            "Unavailable",
        ),
    ],
)
def test_error_table(status, body, cls, message):
    error = _error(status, body)
    assert type(error) is cls
    assert (error.status, error.provider, error.attempt) == (status, "groq", 1)
    assert message in str(error)


def test_429_with_groqs_headers_reads_retry_after_in_seconds():
    error = _error(429, LIMIT_BODY, {"retry-after": "2", **RATE_HEADERS})
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 2.0  # the header wins over the message's 650ms
    assert "Rate limit reached" in error.message


def test_429_without_retry_after_reads_the_wait_from_the_message():
    assert _error(429, LIMIT_BODY).retry_after == pytest.approx(0.65)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("Please try again in 7.66s.", 7.66),
        ("please try again in 1m26.4s", 86.4),
        ("Please try again in 20ms", 0.02),
        ("try later", None),
        ("", None),
    ],
)
def test_retry_hint(text, seconds):
    assert retry_hint(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_498_is_retried_unless_the_server_says_not_to():
    from ipfs_accelerate_py.resilience.retry import RETRYABLE_STATUSES, RetryOptions, is_retryable

    options = RetryOptions(retryable_statuses=RETRYABLE_STATUSES | GROQ.extra_retryable_statuses)
    assert is_retryable(_error(498, {"error": {"message": "capacity_exceeded"}}), options) is True
    assert (
        is_retryable(_error(498, {"error": {"message": "x"}}, {"x-should-retry": "false"}), options)
        is False
    )


def test_rate_limit_hints_from_groqs_headers():
    assert GROQ_WIRE.rate_limit_hints(RATE_HEADERS) == {
        "requests_remaining": 14370,
        "requests_reset": pytest.approx(179.56),
        "tokens_remaining": 17997,
        "tokens_reset": pytest.approx(7.66),
    }


def test_498_then_success_is_retried_by_the_core():
    handler = scripted(
        answer(498, {"error": {"message": "Flex tier capacity exceeded"}}), answer(200, CHAT_ANSWER)
    )
    client, transport = client_with(handler, max_retries=2)
    with client:
        reply = client.chat(MODEL, [{"role": "user", "content": "x"}])
        stats = client.get_stats()
    assert reply == CHAT_ANSWER
    assert len(transport.requests) == 2 and stats["total_retries"] == 1


def test_429_without_retries_raises_with_the_wait_groq_asked_for():
    client, transport = client_with(
        lambda r: answer(429, LIMIT_BODY, {"retry-after": "3", **RATE_HEADERS}), max_retries=0
    )
    with client, pytest.raises(RateLimitError) as caught:
        client.chat(MODEL, [{"role": "user", "content": "x"}])
    assert caught.value.retry_after == 3.0 and len(transport.requests) == 1
    assert KEY not in str(caught.value)


def test_unknown_operations_are_refused_when_building_an_adapter():
    with pytest.raises(ValueError, match="unknown operations"):
        OpenAICompatibleWire(GROQ, operations={"chat", "rerank"})


# ------------------------------------------------------ stream chunks in common terms


def test_stream_chunks_in_common_terms_with_usage_from_x_groq():
    assert [GROQ_WIRE.stream_delta(c) for c in STREAM_CHUNKS] == [
        EMPTY_DELTA,
        StreamDelta(text="Hello"),
        StreamDelta(text=" world"),
        StreamDelta(finish_reason="stop", usage=(40, 3)),
    ]
    assert (
        OpenAIWire(GROQ).stream_delta(STREAM_CHUNKS[-1]).usage is None
    )  # plain OpenAI knows no x_groq


def test_a_top_level_usage_wins_over_x_groq():
    chunk = {
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2},
        "x_groq": {"id": "req_1", "usage": GROQ_USAGE},
    }
    assert GROQ_WIRE.stream_delta(chunk) == StreamDelta(usage=(7, 2))


@pytest.mark.parametrize(
    "extension", [None, "text", {"usage": "x"}, {"usage": None}, {"id": "req_1"}], ids=repr
)
def test_odd_or_usage_free_extensions_add_no_usage(extension):
    assert GROQ_WIRE.stream_delta(_chunk({"content": "a"}, x_groq=extension)) == StreamDelta(
        text="a"
    )


def test_tool_call_stream_in_common_terms():
    """Groq streams a tool call whole, in one chunk, then finishes with tool_calls."""
    call = {
        "id": "call_abc",
        "type": "function",
        "index": 0,
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    chunks = [
        _chunk({"role": "assistant", "content": None}, x_groq={"id": "req_1"}),
        _chunk({"tool_calls": [call]}),
        _chunk({}, "tool_calls", x_groq={"id": "req_1", "usage": GROQ_USAGE}),
    ]
    deltas = [GROQ_WIRE.stream_delta(c) for c in chunks]
    calls = joined_calls(deltas)
    assert calls[0]["id"] == "call_abc" and json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert deltas[-1] == StreamDelta(finish_reason="tool_calls", usage=(40, 3))


def test_simulator_chat_stream_joins_to_its_reply():
    check_simulated_chat_stream(GROQ_WIRE, model=MODEL)
