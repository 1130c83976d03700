"""The OPEA adapter and the ``opea`` backend, both ways, over the in-memory
transport: the chat request as the GenAIComps LLM microservice documents it
(``POST :9000/v1/chat/completions``, no key unless one is set), its answer
and stream transcript, and its FastAPI / OPEA error bodies."""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.api_backends.opea import opea
from ipfs_accelerate_py.providers.base import EMPTY_DELTA, StreamDelta
from ipfs_accelerate_py.providers.openai_compatible import OPEA, OPEA_WIRE, validation_message
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidInputError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    ServerError,
)

from ..helpers import QUICK_RETRIES, WALL, ClientFactory, answer, env_cleared, stream_answer
from ..helpers.streams import check_simulated_chat_stream, decoded, stream_deltas

BASE = "http://localhost:9000/v1"
MODEL = "Intel/neural-chat-7b-v3-3"
KEY = "opea-gateway-SECRET-0123456789"
QUESTION = [{"role": "user", "content": "What is Deep Learning?"}]

CHAT_ANSWER = {
    "id": "chatcmpl-8fe1",
    "object": "chat.completion",
    "created": 1737000000,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Deep learning is a subset of ML."},
            "finish_reason": "length",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 12, "total_tokens": 29, "completion_tokens": 17},
}

# what the microservice's stream_generator writes: the upstream chunks as
# ``model_dump_json()``, then ``data: [DONE]``
STREAM_TRANSCRIPT = [
    b'data: {"id":"chatcmpl-1","choices":[{"delta":{"content":"","function_call":null,"refusal":null,"role":"assistant",'
    b'"tool_calls":null},"finish_reason":null,"index":0,"logprobs":null}],"created":1737000000,'
    b'"model":"Intel/neural-chat-7b-v3-3","object":"chat.completion.chunk","service_tier":null,'
    b'"system_fingerprint":null,"usage":null}',
    b"",
    b'data: {"id":"chatcmpl-1","choices":[{"delta":{"content":"Deep","function_call":null,"refusal":null,"role":null,'
    b'"tool_calls":null},"finish_reason":null,"index":0,"logprobs":null}],"created":1737000000,'
    b'"model":"Intel/neural-chat-7b-v3-3","object":"chat.completion.chunk","service_tier":null,'
    b'"system_fingerprint":null,"usage":null}',
    b"",
    b'data: {"id":"chatcmpl-1","choices":[{"delta":{"content":" learning","function_call":null,"refusal":null,'
    b'"role":null,"tool_calls":null},"finish_reason":"length","index":0,"logprobs":null}],"created":1737000000,'
    b'"model":"Intel/neural-chat-7b-v3-3","object":"chat.completion.chunk","service_tier":null,'
    b'"system_fingerprint":null,"usage":null}',
    b"",
    b"data: [DONE]",
    b"",
]

FASTAPI_422 = {
    "detail": [
        {
            "type": "missing",
            "loc": ["body", "messages"],
            "msg": "Field required",
            "input": {"model": MODEL},
        },
        {
            "type": "float_parsing",
            "loc": ["body", "temperature"],
            "msg": "Input should be a valid number",
            "input": "hot",
        },
    ]
}


no_opea_env = env_cleared("OPEA_API_KEY", "OPEA_API_BASE", "OPEA_BASE_URL")
client_with = ClientFactory(opea, defaults=QUICK_RETRIES).in_memory


# ---------------------------------------------------------------- requests


def test_chat_to_the_default_microservice_without_a_key():
    client, transport = client_with(lambda r: answer(200, CHAT_ANSWER))
    with client:
        reply = client.chat(MODEL, QUESTION, max_tokens=17)
    sent = transport.requests[0]
    assert (sent.method, sent.url) == ("POST", f"{BASE}/chat/completions")
    assert "Authorization" not in sent.headers
    assert sent.json() == {"model": MODEL, "messages": QUESTION, "max_tokens": 17}
    assert OPEA_WIRE.reply_text(reply) == "Deep learning is a subset of ML."


@pytest.mark.parametrize(
    "metadata, env",
    [
        ({"opea_api_key": KEY, "opea_api_base": "http://gw:9000/v1"}, {}),
        ({}, {"OPEA_API_KEY": KEY, "OPEA_API_BASE": "http://gw:9000/v1"}),
    ],
)
def test_key_and_base_url_from_metadata_or_env(monkeypatch, metadata, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client, transport = client_with(lambda r: answer(200, CHAT_ANSWER), **metadata)
    with client:
        client.chat(MODEL, QUESTION)
        assert KEY not in repr(client)
    sent = transport.requests[0]
    assert sent.url == "http://gw:9000/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    "call, operation",
    [
        (lambda c: c.completions(MODEL, "x"), "completions"),
        (lambda c: c.embeddings("BAAI/bge-base-en-v1.5", "x"), "embeddings"),
        (lambda c: c.list_models(), "models"),
    ],
)
def test_operations_the_microservice_lacks_are_refused_before_sending(call, operation):
    client, transport = client_with(lambda r: answer(200, {}))
    with (
        client,
        pytest.raises(InvalidInputError, match=f"the opea backend has no {operation} operation"),
    ):
        call(client)
    assert transport.requests == []
    assert OPEA_WIRE.operations == {"chat"} and not OPEA.requires_key


def test_stream_transcript_through_the_backend():
    client, transport = client_with(lambda r: stream_answer(STREAM_TRANSCRIPT))
    with client, client.chat(MODEL, QUESTION, stream=True) as stream:
        chunks = list(stream)
    assert transport.requests[0].json() == {
        "model": MODEL,
        "messages": QUESTION,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert "".join(c.text for c in chunks) == stream.text == "Deep learning"
    assert chunks[-1].finish_reason == stream.finish_reason == "length"
    assert chunks[-1].raw["model"] == "Intel/neural-chat-7b-v3-3"


def test_a_stream_without_done_is_reported_as_cut():
    client, _ = client_with(lambda r: stream_answer(STREAM_TRANSCRIPT[:4]))
    with client:
        stream = client.chat(MODEL, QUESTION, stream=True)
        with pytest.raises(NetworkError, match="without its end marker"):
            list(stream)


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "status, body, cls, message",
    [
        (
            422,
            FASTAPI_422,
            InvalidRequestError,
            "body.messages: Field required; body.temperature: Input should be a valid number",
        ),
        (
            400,
            {
                "object": "error",
                "message": "0 is less than the minimum of 1 - 'max_tokens'",
                "code": 40302,
            },
            InvalidRequestError,
            "less than the minimum",
        ),
        (401, {"detail": "Not authenticated"}, AuthenticationError, "Not authenticated"),
        (404, {"detail": "Not Found"}, NotFoundError, "Not Found"),
        (500, b"Internal Server Error", ServerError, "Internal Server Error"),
    ],
)
def test_error_table(status, body, cls, message):
    error = OPEA_WIRE.error_for(answer(status, body), wall_now=WALL, attempt=1)
    assert type(error) is cls
    assert (error.status, error.provider) == (status, "opea")
    assert message in str(error)


@pytest.mark.parametrize(
    "body, expected",
    [
        (b'{"detail": [{"loc": ["query"], "msg": "bad"}]}', "query: bad"),
        ({"detail": [{"msg": "no location"}]}, "no location"),
        ({"detail": "a string is provider_message's"}, None),
        (b"not json", None),
        ({"detail": [{"loc": ["x"]}]}, None),
    ],
)
def test_validation_message(body, expected):
    assert validation_message(body) == expected


# ------------------------------------------------------ stream chunks in common terms


def test_stream_transcript_in_common_terms():
    """The microservice's chunks carry ``tool_calls: null`` and ``function_call: null``: no tool calls."""
    deltas, done = stream_deltas(OPEA_WIRE, decoded(STREAM_TRANSCRIPT))
    assert done
    assert deltas == [
        EMPTY_DELTA,
        StreamDelta(text="Deep"),
        StreamDelta(text=" learning", finish_reason="length"),
    ]


def test_simulator_chat_stream_joins_to_its_reply():
    check_simulated_chat_stream(OPEA_WIRE, model=MODEL)
