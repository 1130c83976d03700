"""The TGI adapter and the ``hf_tgi`` backend, both ways, over the in-memory
transport: exactly these requests are built, exactly these recorded answers
and stream transcripts (shaped as text-generation-inference documents them)
are read, and TGI's error bodies become these typed errors."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py.api_backends.hf_tgi import hf_tgi
from ipfs_accelerate_py.providers.base import EMPTY_DELTA, StreamDelta, ToolCallDelta
from ipfs_accelerate_py.providers.hf_tgi import TGI, TGIWire
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    AuthenticationError,
    InvalidInputError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from ipfs_accelerate_py.simulator.formats import openai as openai_format
from ipfs_accelerate_py.simulator.formats import tgi as tgi_format
from ipfs_accelerate_py.transport.base import HttpResponse
from ipfs_accelerate_py.transport.memory import MemoryTransport
from ipfs_accelerate_py.transport.sse import SseEvent

from ..helpers import QUICK_RETRIES, ClientFactory, answer, env_cleared, stream_answer
from ..helpers.streams import decoded, joined_text, simulated_stream, stream_deltas

BASE = "http://tgi.test"
TOKEN = "hf_test_SECRET_0123456789"

GENERATE_ANSWER = {
    "generated_text": " Deep learning is a subset of machine learning",
    "details": {
        "finish_reason": "length",
        "generated_tokens": 8,
        "seed": None,
        "prefill": [
            {"id": 1, "text": "<s>", "logprob": None},
            {"id": 1724, "text": "What", "logprob": -9.1},
        ],
        "tokens": [{"id": 21784, "text": " Deep", "logprob": -0.4, "special": False}],
    },
}

STREAM_TRANSCRIPT = [
    b'data:{"index":1,"token":{"id":21784,"text":" Deep","logprob":-0.41,"special":false},"generated_text":null,"details":null}',
    b"",
    b'data:{"index":2,"token":{"id":6509,"text":" learning","logprob":-0.02,"special":false},"generated_text":null,"details":null}',
    b"",
    b'data:{"index":3,"token":{"id":2,"text":"</s>","logprob":-0.1,"special":true},"generated_text":" Deep learning",'
    b'"details":{"finish_reason":"eos_token","generated_tokens":3,"seed":null,"input_length":5}}',
    b"",
]

CHAT_TRANSCRIPT = [
    b'data: {"object":"chat.completion.chunk","id":"","created":1,"model":"tgi","system_fingerprint":"3.0.0-native",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}',
    b"",
    b'data: {"object":"chat.completion.chunk","id":"","created":1,"model":"tgi","system_fingerprint":"3.0.0-native",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"!"},"logprobs":null,"finish_reason":"stop"}],"usage":null}',
    b"",
    b"data: [DONE]",
    b"",
]


no_hf_env = env_cleared("HF_API_TOKEN", "HF_TOKEN", "HF_TGI_BASE_URL", "TGI_BASE_URL")
client_with = ClientFactory(
    hf_tgi, "hf_tgi_api_base", base_url=BASE, defaults=QUICK_RETRIES
).in_memory


def build(endpoint, data, key=None, stream=False):
    return TGIWire(TGI).build_request(
        endpoint, data, api_key=key, base_url=BASE, timeout=5.0, stream=stream
    )


# ---------------------------------------------------------------- requests


def test_generate_builds_tgi_native_request_without_a_key():
    client, transport = client_with(lambda r: answer(200, GENERATE_ANSWER))
    with client:
        client.generate("What is deep learning?", max_new_tokens=20, temperature=0.5, details=True)
    sent = transport.requests[0]
    assert (sent.method, sent.url) == ("POST", f"{BASE}/generate")
    assert "Authorization" not in sent.headers
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == {
        "inputs": "What is deep learning?",
        "parameters": {"max_new_tokens": 20, "temperature": 0.5, "details": True},
    }


def test_generate_without_parameters_sends_only_inputs():
    endpoint, data = TGIWire(TGI).generate_request("Hi", {}, False)
    assert (endpoint, data) == ("generate", {"inputs": "Hi"})


@pytest.mark.parametrize(
    "metadata, env",
    [({"hf_api_key": TOKEN}, {}), ({}, {"HF_API_TOKEN": TOKEN}), ({}, {"HF_TOKEN": TOKEN})],
)
def test_a_hugging_face_token_is_sent_as_bearer(monkeypatch, metadata, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client, transport = client_with(lambda r: answer(200, GENERATE_ANSWER), **metadata)
    with client:
        client.generate("x")
        assert TOKEN not in repr(client)
    assert transport.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "metadata, env, expected",
    [
        ({}, {}, "http://localhost:8080"),
        ({"tgi_api_base": "http://a:1"}, {}, "http://a:1"),
        ({}, {"HF_TGI_BASE_URL": "http://b:2"}, "http://b:2"),
        ({}, {"TGI_BASE_URL": "http://c:3"}, "http://c:3"),
    ],
)
def test_base_url_sources(monkeypatch, metadata, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = hf_tgi({}, metadata, transport=MemoryTransport(lambda r: answer(200, {})))
    with client:
        assert client.base_url == expected


def test_stream_request_goes_to_generate_stream_and_asks_for_sse():
    request = build(*TGIWire(TGI).generate_request("Hi", {"max_new_tokens": 3}, True), stream=True)
    assert (request.method, request.url) == ("POST", f"{BASE}/generate_stream")
    assert request.headers["Accept"] == "text/event-stream"
    assert request.json() == {"inputs": "Hi", "parameters": {"max_new_tokens": 3}}


def test_chat_uses_the_openai_route_with_the_openai_body():
    wire = TGIWire(TGI)
    endpoint, data = wire.chat_request(
        "tgi", [{"role": "user", "content": "Hi"}], {"max_tokens": 5}, True
    )
    request = build(endpoint, data, stream=True)
    assert request.url == f"{BASE}/v1/chat/completions"
    assert request.json() == {
        "model": "tgi",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert wire.completion_request("tgi", "Hi", {}, False) == (
        "v1/completions",
        {"model": "tgi", "prompt": "Hi"},
    )


def test_chat_without_a_model_name_sends_tgi():
    reply = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hey"}}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
    }
    client, transport = client_with(lambda r: answer(200, reply))
    with client:
        assert (
            client.chat(None, [{"role": "user", "content": "Hi"}])["choices"][0]["message"][
                "content"
            ]
            == "Hey"
        )
        assert client.get_stats()["models"]["tgi"]["tokens_in"] == 4
    assert transport.requests[0].json()["model"] == "tgi"


def test_info_is_a_get_without_body_and_lists_the_served_model():
    info = {
        "model_id": "bigscience/bloom-560m",
        "max_input_tokens": 1024,
        "max_total_tokens": 2048,
        "max_client_batch_size": 4,
    }
    client, transport = client_with(lambda r: answer(200, info))
    with client:
        assert client.info() == info
        assert client.list_models() == [
            {
                "id": "bigscience/bloom-560m",
                "object": "model",
                "owned_by": "text-generation-inference",
            }
        ]
    assert [(r.method, r.url, r.body) for r in transport.requests] == [
        ("GET", f"{BASE}/info", None)
    ] * 2


@pytest.mark.parametrize("prompt", ["", None, ["a"], 3])
def test_generate_refuses_a_bad_prompt_before_sending(prompt):
    client, transport = client_with(lambda r: answer(200, GENERATE_ANSWER))
    with client, pytest.raises(InvalidInputError, match="prompt must be a non-empty string"):
        client.generate(prompt)
    assert transport.requests == []


# ---------------------------------------------------------------- responses


def test_generate_response_is_returned_and_its_tokens_counted():
    client, _ = client_with(lambda r: answer(200, GENERATE_ANSWER))
    with client:
        assert client.generate("What") == GENERATE_ANSWER
        tokens = client.get_stats()["tokens"]
    assert (tokens["input"], tokens["output"]) == (2, 8)


@pytest.mark.parametrize(
    "result, expected",
    [
        ({"generated_text": "x"}, (0, 0)),
        ({"generated_text": "x", "details": {"generated_tokens": 4, "input_length": 9}}, (9, 4)),
        (
            {"generated_text": "x", "details": {"generated_tokens": 4, "prefill": [{}, {}, {}]}},
            (3, 4),
        ),
        ({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}, (7, 2)),
        ([{"generated_text": "x"}], (0, 0)),
    ],
)
def test_usage_reads_details_or_openai_usage(result, expected):
    assert TGIWire(TGI).usage(result) == expected


def test_native_stream_transcript_ends_with_the_event_carrying_generated_text():
    client, _ = client_with(lambda r: stream_answer(STREAM_TRANSCRIPT))
    with client:
        events = list(client.generate_stream("What is", max_new_tokens=3))
        tokens = client.get_stats()["tokens"]
    assert [e.raw["token"]["text"] for e in events] == [" Deep", " learning", "</s>"]
    assert [e.raw["generated_text"] for e in events] == [None, None, " Deep learning"]
    assert [e.text for e in events] == [" Deep", " learning", ""]  # the special token is not text
    assert [e.finish_reason for e in events] == [None, None, "stop"]
    assert events[-1].usage == {"input_tokens": 5, "output_tokens": 3}
    assert (tokens["input"], tokens["output"]) == (5, 3)


def test_native_stream_cut_before_its_final_event_is_an_error():
    client, _ = client_with(lambda r: stream_answer(STREAM_TRANSCRIPT[:4]))
    with client:
        stream = client.generate("What is", stream=True)
        assert next(stream).text == " Deep"
        assert next(stream).text == " learning"
        with pytest.raises(NetworkError, match="without its end marker") as info:
            next(stream)
        assert (info.value.chunks_received, info.value.partial_text) == (2, " Deep learning")


def test_chat_stream_transcript_is_read_by_the_openai_mapping_and_ends_at_done():
    client, _ = client_with(lambda r: stream_answer(CHAT_TRANSCRIPT))
    with client:
        chunks = list(client.chat("tgi", [{"role": "user", "content": "Hi"}], stream=True))
    assert "".join(c.text for c in chunks) == "Hello!"
    assert [c.finish_reason for c in chunks] == [None, "stop"]
    assert chunks[0].raw["system_fingerprint"] == "3.0.0-native"


@pytest.mark.parametrize(
    "error_type, cls",
    [
        ("generation", ServerError),
        ("overloaded", RateLimitError),
        ("validation", InvalidRequestError),
        ("incomplete_generation", ServerError),
    ],
)
def test_an_error_event_inside_a_stream_raises_its_typed_error(error_type, cls):
    event = SseEvent(
        None,
        json.dumps({"error": "Request failed during generation: boom", "error_type": error_type}),
    )
    with pytest.raises(cls, match="Request failed during generation: boom") as info:
        TGIWire(TGI).parse_stream_event(event)
    assert info.value.provider == "hf_tgi"


def test_stream_event_table():
    wire = TGIWire(TGI)
    token = {
        "index": 1,
        "token": {"id": 1, "text": "a", "logprob": 0.0, "special": False},
        "generated_text": None,
        "details": None,
    }
    final = dict(
        token,
        generated_text="a",
        details={"finish_reason": "length", "generated_tokens": 1, "seed": None},
    )
    assert wire.parse_stream_event(SseEvent(None, json.dumps(token))) == (token, False)
    assert wire.parse_stream_event(SseEvent(None, json.dumps(final))) == (final, True)
    assert wire.parse_stream_event(SseEvent(None, "")) == (None, False)
    assert wire.parse_stream_event(SseEvent(None, "[DONE]")) == (None, True)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "status, body, cls, retried",
    [
        (
            401,
            {"error": "Authorization header is correct, but the token seems invalid"},
            AuthenticationError,
            False,
        ),
        (403, {"error": "Forbidden"}, PermissionDeniedError, False),
        (404, {"error": "Not Found"}, NotFoundError, False),
        (
            422,
            {
                "error": "Input validation error: `inputs` must have less than 1024 tokens",
                "error_type": "validation",
            },
            InvalidRequestError,
            False,
        ),
        (
            424,
            {
                "error": "Request failed during generation: Server error: CUDA out of memory",
                "error_type": "generation",
            },
            ServerError,
            True,
        ),
        (429, {"error": "Model is overloaded", "error_type": "overloaded"}, RateLimitError, True),
        (
            500,
            {"error": "Incomplete generation", "error_type": "incomplete_generation"},
            ServerError,
            True,
        ),
        (503, {"error": "Model is currently loading", "estimated_time": 0.01}, ServerError, True),
    ],
)
def test_error_table(status, body, cls, retried):
    calls = []

    def handler(request):
        calls.append(request)
        return answer(status, body)

    client, _ = client_with(handler, max_retries=1, failure_threshold=100)
    with client, pytest.raises(ApiError) as info:
        client.generate("x")
    error = info.value
    assert type(error) is cls
    assert error.status == status and error.message == body["error"]
    assert len(calls) == (2 if retried else 1)


def test_a_loading_model_s_estimated_time_is_its_retry_after():
    response = answer(
        503, {"error": "Model bigscience/bloom is currently loading", "estimated_time": 20.5}
    )
    error = TGIWire(TGI).error_for(response, wall_now=0.0, attempt=1)
    assert type(error) is ServerError and error.retry_after == 20.5


def test_a_retry_after_header_wins_over_estimated_time():
    response = answer(503, {"error": "loading", "estimated_time": 20.5}, {"retry-after": "3"})
    assert TGIWire(TGI).error_for(response, wall_now=0.0, attempt=1).retry_after == 3.0


def test_a_text_error_body_keeps_its_text():
    response = HttpResponse(502, {}, b"Bad Gateway")
    error = TGIWire(TGI).error_for(response, wall_now=0.0, attempt=2)
    assert type(error) is ServerError and error.message == "Bad Gateway" and error.attempt == 2


# ------------------------------------------------------ stream events in common terms

WIRE = TGIWire(TGI)


def _event(text, special=False, generated_text=None, details=None, index=1):
    token = {"id": 1, "text": text, "logprob": -0.1, "special": special}
    return {"index": index, "token": token, "generated_text": generated_text, "details": details}


DELTA_CASES = [
    ("a token", _event(" Deep"), StreamDelta(text=" Deep")),
    ("a special token is not text", _event("</s>", special=True), EMPTY_DELTA),
    (
        "last event: reason and counts",
        _event(
            "</s>",
            True,
            " Deep learning",
            {"finish_reason": "eos_token", "generated_tokens": 3, "seed": None, "input_length": 5},
        ),
        StreamDelta(finish_reason="stop", usage=(5, 3)),
    ),
    (
        "last event of an older server: no input_length",
        _event(".", False, "Hi.", {"finish_reason": "length", "generated_tokens": 2, "seed": 7}),
        StreamDelta(text=".", finish_reason="length", usage=(0, 2)),
    ),
    (
        "stop sequence",
        _event("\n", False, "x\n", {"finish_reason": "stop_sequence", "generated_tokens": 1}),
        StreamDelta(text="\n", finish_reason="stop", usage=(0, 1)),
    ),
    ("last event without details", _event("!", False, "Hi!"), StreamDelta(text="!")),
    (
        "OpenAI chunk from /v1",
        json.loads(CHAT_TRANSCRIPT[0][len(b"data: ") :]),
        StreamDelta(text="Hello"),
    ),
    (
        "OpenAI finish",
        json.loads(CHAT_TRANSCRIPT[2][len(b"data: ") :]),
        StreamDelta(text="!", finish_reason="stop"),
    ),
    (
        "OpenAI usage chunk",
        {
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        },
        StreamDelta(usage=(9, 2)),
    ),
    (
        "OpenAI tool call piece",
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"loc'},
                            }
                        ],
                    },
                    "finish_reason": None,
                }
            ]
        },
        StreamDelta(tool_calls=(ToolCallDelta(0, None, "get_weather", '{"loc'),)),
    ),
]


@pytest.mark.parametrize(
    "chunk, expected", [c[1:] for c in DELTA_CASES], ids=[c[0] for c in DELTA_CASES]
)
def test_stream_event_in_common_terms(chunk, expected):
    assert WIRE.stream_delta(chunk) == expected


@pytest.mark.parametrize(
    "chunk",
    [
        None,
        [],
        "x",
        {},
        {"token": None},
        {"token": {"text": 5}},
        {"token": "hi", "details": "done"},
        {"token": {"text": "x", "special": True}, "details": {"generated_tokens": "3"}},
        {"generated_text": "whole"},
    ],
    ids=repr,
)
def test_stream_events_of_unknown_shape_add_nothing(chunk):
    assert WIRE.stream_delta(chunk) == EMPTY_DELTA


def test_native_transcript_in_common_terms():
    deltas, done = stream_deltas(WIRE, decoded(STREAM_TRANSCRIPT))
    assert done and joined_text(deltas) == " Deep learning"
    assert deltas[-1] == StreamDelta(finish_reason="stop", usage=(5, 3))


def test_chat_transcript_in_common_terms():
    deltas, done = stream_deltas(WIRE, decoded(CHAT_TRANSCRIPT))
    assert done and joined_text(deltas) == "Hello!" and deltas[-1].finish_reason == "stop"


@pytest.mark.parametrize("details", [True, False], ids=["with-details", "without"])
def test_simulator_native_stream_joins_to_its_generated_text(details):
    payload = {
        "inputs": "What is deep learning?",
        "parameters": {"max_new_tokens": 50, "details": details},
    }
    events, body = simulated_stream(tgi_format.FORMAT, "/generate_stream", payload)
    deltas, done = stream_deltas(WIRE, events)
    final = body[-1]
    assert done and len(deltas) > 2
    assert joined_text(deltas) == final["generated_text"] and final["generated_text"].startswith(
        "Simulated reply"
    )
    if details:
        assert deltas[-1].finish_reason == "stop"
        assert deltas[-1].usage == (
            final["details"]["input_length"],
            final["details"]["generated_tokens"],
        )
    else:
        assert all(d.finish_reason is None and d.usage is None for d in deltas)


def test_simulator_chat_stream_on_the_openai_route_joins_to_its_reply():
    payload = {
        "model": "tgi",
        "messages": [{"role": "user", "content": "What is deep learning?"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events, body = simulated_stream(openai_format.FORMAT, "/v1/chat/completions", payload)
    deltas, done = stream_deltas(WIRE, events)
    assert done and joined_text(deltas) == WIRE.reply_text(body)
    assert deltas[-1].usage == (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])
