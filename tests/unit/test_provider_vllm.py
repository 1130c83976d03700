"""The vLLM adapter and the ``vllm`` backend, both ways, over the in-memory
transport: requests as built (no key unless one is set), recorded answers
and stream transcripts shaped as vLLM's OpenAI-compatible server sends them,
its error bodies, and embeddings batched for any model the server serves."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py.api_backends.vllm import vllm
from ipfs_accelerate_py.providers.base import StreamDelta, ToolCallDelta
from ipfs_accelerate_py.providers.openai_compatible import VLLM, VLLM_WIRE
from ipfs_accelerate_py.resilience.batching import NO_LIMITS
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
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
from ..helpers.streams import (
    check_simulated_chat_stream,
    decoded,
    joined_calls,
    stream_deltas,
)

BASE = "http://localhost:8000/v1"
MODEL = "Qwen/Qwen2.5-1.5B-Instruct"
EMBEDDER = "intfloat/e5-mistral-7b-instruct"
KEY = "vllm-token-SECRET-0123456789"

COMPLETION_ANSWER = {
    "id": "cmpl-9b4a1c",
    "object": "text_completion",
    "created": 1737000000,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "text": " Paris.",
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": None,
            "prompt_logprobs": None,
        }
    ],
    "usage": {
        "prompt_tokens": 7,
        "total_tokens": 10,
        "completion_tokens": 3,
        "prompt_tokens_details": None,
    },
}

COMPLETION_TRANSCRIPT = [
    b'data: {"id":"cmpl-1","object":"text_completion","created":1737000000,"model":"Qwen/Qwen2.5-1.5B-Instruct",'
    b'"choices":[{"index":0,"text":" Paris","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}',
    b"",
    b'data: {"id":"cmpl-1","object":"text_completion","created":1737000000,"model":"Qwen/Qwen2.5-1.5B-Instruct",'
    b'"choices":[{"index":0,"text":".","logprobs":null,"finish_reason":"stop","stop_reason":null}],"usage":null}',
    b"",
    b'data: {"id":"cmpl-1","object":"text_completion","created":1737000000,"model":"Qwen/Qwen2.5-1.5B-Instruct",'
    b'"choices":[],"usage":{"prompt_tokens":7,"total_tokens":9,"completion_tokens":2}}',
    b"",
    b"data: [DONE]",
    b"",
]


no_vllm_env = env_cleared("VLLM_API_KEY", "VLLM_BASE_URL")


def embeddings_answer(req):
    body = req.json()
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [
        {"index": i, "object": "embedding", "embedding": [float(len(t)), float(i)]}
        for i, t in enumerate(inputs)
    ]
    usage = {
        "prompt_tokens": 2 * len(inputs),
        "total_tokens": 2 * len(inputs),
        "completion_tokens": 0,
    }
    return answer(
        200,
        {
            "id": "embd-1",
            "object": "list",
            "created": 1737000000,
            "model": body["model"],
            "data": data,
            "usage": usage,
        },
    )


client_with = ClientFactory(vllm, defaults=QUICK_RETRIES).in_memory


# ---------------------------------------------------------------- requests


def test_completion_to_the_default_local_server_without_a_key():
    client, transport = client_with(lambda r: answer(200, COMPLETION_ANSWER))
    with client:
        reply = client.completions(MODEL, "The capital of France is", max_tokens=4)
    sent = transport.requests[0]
    assert (sent.method, sent.url) == ("POST", f"{BASE}/completions")
    assert "Authorization" not in sent.headers
    assert sent.json() == {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 4}
    assert VLLM_WIRE.reply_text(reply) == " Paris."


@pytest.mark.parametrize(
    "metadata, env", [({"vllm_api_key": KEY}, {}), ({}, {"VLLM_API_KEY": KEY})]
)
def test_a_key_when_given_is_sent_as_bearer(monkeypatch, metadata, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client, transport = client_with(lambda r: answer(200, COMPLETION_ANSWER), **metadata)
    with client:
        client.completions(MODEL, "x")
        assert KEY not in repr(client)
    assert transport.requests[0].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    "metadata, env, expected",
    [
        ({"vllm_api_base": "http://gpu-1:8000/v1"}, {}, "http://gpu-1:8000/v1"),
        ({}, {"VLLM_BASE_URL": "http://gpu-2:8000/v1"}, "http://gpu-2:8000/v1"),
    ],
)
def test_base_url_from_metadata_or_env(monkeypatch, metadata, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client, transport = client_with(
        lambda r: answer(200, {"object": "list", "data": []}), **metadata
    )
    with client:
        assert client.list_models() == []
    assert (transport.requests[0].method, transport.requests[0].url) == (
        "GET",
        f"{expected}/models",
    )


def test_chat_and_embeddings_requests_as_built():
    assert VLLM_WIRE.chat_request(
        MODEL, [{"role": "user", "content": "hi"}], {"top_k": 5}, True
    ) == (
        "chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "top_k": 5,
            "stream": True,
            "stream_options": {"include_usage": True},  # a stream asks for its usage
        },
    )
    assert VLLM_WIRE.embeddings_request(EMBEDDER, ["a", "b"], {"encoding_format": "float"}) == (
        "embeddings",
        {"model": EMBEDDER, "input": ["a", "b"], "encoding_format": "float"},
    )


def test_the_adapter_offers_all_four_operations_and_no_batch_caps():
    assert VLLM_WIRE.operations == {"chat", "completions", "embeddings", "models"}
    assert VLLM.batch_any_model and not VLLM.requires_key
    assert VLLM_WIRE.batch_limits(EMBEDDER) == NO_LIMITS


# ------------------------------------------------------------------ streams


def test_completion_stream_transcript_with_usage():
    client, transport = client_with(lambda r: stream_answer(COMPLETION_TRANSCRIPT))
    with client:
        with client.completions(
            MODEL, "The capital of France is", stream=True, stream_options={"include_usage": True}
        ) as stream:
            chunks = list(stream)
        stats = client.get_stats()
    assert transport.requests[0].json()["stream"] is True
    assert "".join(c.text for c in chunks) == " Paris."
    assert [c.finish_reason for c in chunks] == [None, "stop", None]
    assert chunks[-1].raw["usage"] == {
        "prompt_tokens": 7,
        "total_tokens": 9,
        "completion_tokens": 2,
    }
    assert chunks[-1].usage == stream.usage == {"input_tokens": 7, "output_tokens": 2}
    assert (stats["tokens"]["input"], stats["tokens"]["output"]) == (7, 2)


def test_an_error_event_inside_a_stream_is_raised():
    with pytest.raises(ServerError, match="out of memory"):
        VLLM_WIRE.parse_stream_event(
            sse_event(
                {
                    "error": {
                        "message": "CUDA out of memory",
                        "type": "InternalServerError",
                        "code": 500,
                    }
                }
            )
        )


# ----------------------------------------------------------------- batching


def test_embeddings_for_any_served_model_are_batched_and_split_back():
    client, transport = client_with(embeddings_answer, batch_timeout=30.0)
    with client:
        assert client.supported_batch_models == []  # not needed: the server decides what it serves
        first = client.add_to_batch(EMBEDDER, "alpha")
        second = client.add_to_batch(EMBEDDER, ["beta", "gamma"])
        assert client._process_batch() == 1
        one, two = first.result(timeout=5), second.result(timeout=5)
    [sent] = transport.requests
    assert sent.json() == {"model": EMBEDDER, "input": ["alpha", "beta", "gamma"]}
    assert VLLM_WIRE.embedding_vectors(one) == [[5.0, 0.0]]
    assert VLLM_WIRE.embedding_vectors(two) == [[4.0, 1.0], [5.0, 2.0]]
    assert one["usage"]["prompt_tokens"] + two["usage"]["prompt_tokens"] == 6


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "status, body, cls, message",
    [
        (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 32768 tokens.",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                }
            },
            InvalidRequestError,
            "maximum context length",
        ),
        (
            400,
            {
                "object": "error",
                "message": "best_of must be 1 when using greedy sampling.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            },
            InvalidRequestError,
            "best_of must be 1",
        ),
        (401, {"error": "Unauthorized"}, AuthenticationError, "Unauthorized"),
        (
            404,
            {
                "error": {
                    "message": "The model `gpt-4` does not exist.",
                    "type": "NotFoundError",
                    "param": "model",
                    "code": 404,
                }
            },
            NotFoundError,
            "does not exist",
        ),
        (
            500,
            {
                "error": {
                    "message": "EngineCore encountered an issue.",
                    "type": "InternalServerError",
                    "code": 500,
                }
            },
            ServerError,
            "EngineCore",
        ),
        (503, b"Service Unavailable", ServerError, "Service Unavailable"),
    ],
)
def test_error_table(status, body, cls, message):
    error = VLLM_WIRE.error_for(answer(status, body), wall_now=WALL, attempt=2)
    assert type(error) is cls
    assert (error.status, error.provider, error.attempt) == (status, "vllm", 2)
    assert message in str(error)


def test_a_500_then_success_is_retried_by_the_core():
    client, transport = client_with(
        scripted(answer(500, {"error": {"message": "boom"}}), answer(200, COMPLETION_ANSWER)),
        max_retries=1,
    )
    with client:
        assert client.completions(MODEL, "x") == COMPLETION_ANSWER
    assert len(transport.requests) == 2


# ------------------------------------------------------ stream chunks in common terms


def test_completion_transcript_in_common_terms():
    deltas, done = stream_deltas(VLLM_WIRE, decoded(COMPLETION_TRANSCRIPT))
    assert done
    assert deltas == [
        StreamDelta(text=" Paris"),
        StreamDelta(text=".", finish_reason="stop"),
        StreamDelta(usage=(7, 2)),
    ]


def test_tool_call_pieces_as_vllm_streams_them_join_into_json():
    """vLLM's tool parsers send the name first (no arguments key), then argument fragments."""

    def chunk(delta, finish=None):
        return {
            "id": "chatcmpl-2",
            "object": "chat.completion.chunk",
            "created": 1737000000,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk(
            {
                "tool_calls": [
                    {
                        "id": "chatcmpl-tool-5d7d",
                        "type": "function",
                        "index": 0,
                        "function": {"name": "get_weather"},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'Dallas"}'}}]}),
        chunk({"content": ""}, "tool_calls"),
    ]
    deltas = [VLLM_WIRE.stream_delta(c) for c in chunks]
    assert deltas[1] == StreamDelta(
        tool_calls=(ToolCallDelta(0, "chatcmpl-tool-5d7d", "get_weather", ""),)
    )
    calls = joined_calls(deltas)
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {
        "city": "Dallas"
    }
    assert deltas[-1] == StreamDelta(finish_reason="tool_calls")


def test_simulator_chat_stream_joins_to_its_reply():
    check_simulated_chat_stream(VLLM_WIRE, model=MODEL)
