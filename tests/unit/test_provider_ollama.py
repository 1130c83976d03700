"""The Ollama wire: recorded requests and responses checked both ways (we
build exactly this request; we parse exactly this response or stream), the
error table, ``OLLAMA_HOST`` parsing and embeddings batching, over the
in-memory transport.

The transcripts follow Ollama's API documentation (docs.ollama.com/api):
``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/tags``; NDJSON
streams ending with ``"done": true``; ``{"error": "..."}`` bodies.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipfs_accelerate_py.api_backends.ollama import ollama
from ipfs_accelerate_py.providers.base import EMPTY_DELTA, StreamDelta, ToolCallDelta
from ipfs_accelerate_py.providers.ollama import OLLAMA, OllamaWire, normalize_host, request_fields
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    AuthenticationError,
    InvalidInputError,
    InvalidRequestError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SettingError,
)
from ipfs_accelerate_py.simulator.formats import ollama as ollama_format
from ipfs_accelerate_py.transport.base import HttpResponse, StreamResponse
from ipfs_accelerate_py.transport.memory import MemoryTransport

from ..helpers import QUICK_RETRIES, WAIT, WALL, ClientFactory, answer, scripted, stream_answer
from ..helpers.streams import joined_calls, joined_text, simulated_stream, stream_deltas

BASE = "http://ollama.test:11434"
WIRE = OllamaWire(OLLAMA)
HELLO = [{"role": "user", "content": "why is the sky blue?"}]

CHAT_REPLY = {
    "model": "llama3.2",
    "created_at": "2023-12-12T14:13:43.416799Z",
    "message": {"role": "assistant", "content": "Hello! How are you today?"},
    "done": True,
    "done_reason": "stop",
    "total_duration": 5191566416,
    "load_duration": 2154458,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 383809000,
    "eval_count": 298,
    "eval_duration": 4799921000,
}
GENERATE_REPLY = {
    "model": "llama3.2",
    "created_at": "2023-08-04T19:22:45.499127Z",
    "response": "The sky is blue because of Rayleigh scattering.",
    "done": True,
    "done_reason": "stop",
    "context": [1, 2, 3],
    "prompt_eval_count": 14,
    "eval_count": 110,
}
TAGS_REPLY = {
    "models": [
        {
            "name": "llama3.2:latest",
            "model": "llama3.2:latest",
            "size": 2019393189,
            "digest": "a80c4f17",
            "details": {
                "format": "gguf",
                "family": "llama",
                "parameter_size": "3.2B",
                "quantization_level": "Q4_K_M",
            },
        },
        {
            "name": "nomic-embed-text:latest",
            "model": "nomic-embed-text:latest",
            "size": 274302450,
            "digest": "0a109f42",
            "details": {
                "format": "gguf",
                "family": "nomic-bert",
                "parameter_size": "137M",
                "quantization_level": "F16",
            },
        },
    ]
}
CHAT_STREAM = [
    {
        "model": "llama3.2",
        "created_at": "2023-08-04T08:52:19.38Z",
        "message": {"role": "assistant", "content": "The"},
        "done": False,
    },
    {
        "model": "llama3.2",
        "created_at": "2023-08-04T08:52:19.40Z",
        "message": {"role": "assistant", "content": " sky"},
        "done": False,
    },
    {
        "model": "llama3.2",
        "created_at": "2023-08-04T08:52:19.42Z",
        "message": {"role": "assistant", "content": " is blue."},
        "done": False,
    },
    {
        "model": "llama3.2",
        "created_at": "2023-08-04T19:22:45.49Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "total_duration": 4883583458,
        "prompt_eval_count": 26,
        "eval_count": 3,
    },
]


# ----------------------------------------------------------------- helpers


def ndjson(lines: list) -> StreamResponse:
    """A 200 NDJSON stream of ``lines`` (dicts are written as JSON, bytes as they are)."""
    raw = [line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines]
    return stream_answer(raw, {"Content-Type": "application/x-ndjson"})


def embed_reply(req, dims: int = 2) -> HttpResponse:
    """``/api/embed``: one vector per input, in input order; a token per input character."""
    texts = req.json()["input"]
    texts = [texts] if isinstance(texts, str) else texts
    vectors = [[float(len(t)), float(i)][:dims] for i, t in enumerate(texts)]
    return answer(
        200,
        {
            "model": req.json()["model"],
            "embeddings": vectors,
            "total_duration": 1000,
            "load_duration": 10,
            "prompt_eval_count": sum(len(t) for t in texts),
        },
    )


make_client = ClientFactory(
    ollama, "ollama_host", base_url=BASE, defaults={**QUICK_RETRIES, "batch_timeout": 0.005}
).in_memory


def sent(transport: MemoryTransport, n: int = 0) -> tuple[str, str, dict, Any]:
    req = transport.requests[n]
    return req.method, req.url, {k.lower(): v for k, v in req.headers.items()}, req.json()


# ------------------------------------------------------- requests as built


@pytest.mark.parametrize(
    "call, method, path, body",
    [
        (
            lambda c: c.chat("llama3.2", HELLO),
            "POST",
            "/api/chat",
            {"model": "llama3.2", "messages": HELLO, "stream": False},
        ),
        (
            lambda c: c.chat(
                "llama3.2",
                HELLO,
                temperature=0.0,
                seed=101,
                max_tokens=50,
                top_p=0.9,
                stop=["\n"],
                keep_alive="10m",
                format="json",
            ),
            "POST",
            "/api/chat",
            {
                "model": "llama3.2",
                "messages": HELLO,
                "stream": False,
                "keep_alive": "10m",
                "format": "json",
                "options": {
                    "temperature": 0.0,
                    "seed": 101,
                    "num_predict": 50,
                    "top_p": 0.9,
                    "stop": ["\n"],
                },
            },
        ),
        (
            lambda c: c.chat(
                "llama3.2",
                HELLO,
                tools=[{"type": "function", "function": {"name": "f"}}],
                options={"num_ctx": 4096},
            ),
            "POST",
            "/api/chat",
            {
                "model": "llama3.2",
                "messages": HELLO,
                "stream": False,
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "options": {"num_ctx": 4096},
            },
        ),
        (
            lambda c: c.generate(
                "llama3.2", "Why is the sky blue?", system="be brief", num_predict=100
            ),
            "POST",
            "/api/generate",
            {
                "model": "llama3.2",
                "prompt": "Why is the sky blue?",
                "stream": False,
                "system": "be brief",
                "options": {"num_predict": 100},
            },
        ),
        (
            lambda c: c.completions("llama3.2", "Once upon a time"),
            "POST",
            "/api/generate",
            {"model": "llama3.2", "prompt": "Once upon a time", "stream": False},
        ),
        # embeddings go through the batch lane: one text goes out as a list of one
        (
            lambda c: c.embeddings("all-minilm", "Why is the sky blue?"),
            "POST",
            "/api/embed",
            {"model": "all-minilm", "input": ["Why is the sky blue?"]},
        ),
        (
            lambda c: c.embeddings(
                "all-minilm", ["a", "b"], truncate=False, dimensions=2, keep_alive=0
            ),
            "POST",
            "/api/embed",
            {
                "model": "all-minilm",
                "input": ["a", "b"],
                "truncate": False,
                "dimensions": 2,
                "keep_alive": 0,
            },
        ),
        (lambda c: c.list_models(), "GET", "/api/tags", None),
        (
            lambda c: c.make_request("api/chat", {"model": "m", "messages": HELLO}),
            "POST",
            "/api/chat",
            {"model": "m", "messages": HELLO, "stream": False},
        ),
        (
            lambda c: c.make_request(
                "/api/generate", {"model": "m", "prompt": "p", "stream": True}
            ),
            "POST",
            "/api/generate",
            {"model": "m", "prompt": "p", "stream": False},
        ),
        (
            lambda c: c.make_request("generate", {"model": "m", "prompt": "p"}),
            "POST",
            "/api/generate",
            {"model": "m", "prompt": "p", "stream": False},
        ),
        (lambda c: c.make_request("api/show", {"model": "m"}), "POST", "/api/show", {"model": "m"}),
        (lambda c: c.make_request("api/ps"), "GET", "/api/ps", None),
    ],
    ids=[
        "chat",
        "chat-options",
        "chat-tools",
        "generate",
        "completions",
        "embed-one",
        "embed-list",
        "tags",
        "make-request-chat",
        "make-request-generate-forced",
        "make-request-short-name",
        "show",
        "ps",
    ],
)
def test_we_build_exactly_this_request(call, method, path, body):
    def handler(req):
        if req.url.endswith("/api/embed"):
            return embed_reply(req)
        return answer(200, TAGS_REPLY if req.method == "GET" else CHAT_REPLY)

    client, transport = make_client(handler)
    with client:
        call(client)
    got_method, url, headers, got_body = sent(transport)
    assert (got_method, url) == (method, BASE + path)
    assert got_body == body
    assert "authorization" not in headers  # no key: nothing sent
    assert headers["accept"] == "application/json"
    if method != "GET":
        assert headers["content-type"] == "application/json"
    else:
        assert transport.requests[0].body is None


def test_a_key_when_given_is_sent_as_a_bearer_token():
    client, transport = make_client(
        lambda r: answer(200, CHAT_REPLY), ollama_api_key="olk-secret-123"
    )
    with client:
        client.chat("llama3.2", HELLO, request_id="req-9")
    _, _, headers, _ = sent(transport)
    assert headers["authorization"] == "Bearer olk-secret-123"
    assert headers["x-client-request-id"] == "req-9"


def test_a_stream_asks_for_ndjson_and_says_stream_true():
    client, transport = make_client(lambda r: ndjson(CHAT_STREAM))
    with client, client.chat("llama3.2", HELLO, stream=True) as stream:
        list(stream)
    _, _, headers, body = sent(transport)
    assert headers["accept"] == "application/x-ndjson"
    assert body == {"model": "llama3.2", "messages": HELLO, "stream": True}
    assert transport.requests[0].stream is True


# ------------------------------------------------------ responses as parsed


def test_chat_response_is_returned_as_sent_and_its_counts_are_the_usage():
    client, _ = make_client(lambda r: answer(200, CHAT_REPLY))
    with client:
        assert client.chat("llama3.2", HELLO) == CHAT_REPLY
        stats = client.get_stats()
    assert stats["models"]["llama3.2"]["tokens_in"] == 26
    assert stats["models"]["llama3.2"]["tokens_out"] == 298


def test_generate_response_and_usage():
    client, _ = make_client(lambda r: answer(200, GENERATE_REPLY))
    with client:
        result = client.generate("llama3.2", "Why is the sky blue?")
        tokens = client.get_stats()["tokens"]
    assert result["response"] == GENERATE_REPLY["response"]
    assert (tokens["input"], tokens["output"]) == (14, 110)


def test_list_models_reads_the_models_of_api_tags():
    client, _ = make_client(lambda r: answer(200, TAGS_REPLY))
    with client:
        models = client.list_models()
    assert [m["name"] for m in models] == ["llama3.2:latest", "nomic-embed-text:latest"]


@pytest.mark.parametrize(
    "result, expected",
    [
        (CHAT_REPLY, (26, 298)),
        ({"model": "m", "embeddings": [[0.1]], "prompt_eval_count": 8}, (8, 0)),
        ({"model": "m", "response": "", "done": True, "done_reason": "load"}, (0, 0)),
        ({"prompt_eval_count": True, "eval_count": -3}, (0, 0)),
        ([], (0, 0)),
    ],
)
def test_usage_is_prompt_eval_count_in_and_eval_count_out(result, expected):
    assert WIRE.usage(result) == expected


@pytest.mark.parametrize(
    "result, text",
    [
        (CHAT_REPLY, "Hello! How are you today?"),
        (GENERATE_REPLY, GENERATE_REPLY["response"]),
        (CHAT_STREAM[1], " sky"),
        ({"message": {"role": "assistant", "tool_calls": []}}, ""),
        ([], ""),
    ],
)
def test_reply_text_reads_chat_and_generate_responses(result, text):
    assert WIRE.reply_text(result) == text


def test_a_2xx_body_that_reports_an_error_is_a_server_error():
    client, transport = make_client(
        lambda r: answer(200, {"error": "the model failed to generate a response"}), max_retries=1
    )
    with client, pytest.raises(ServerError) as info:
        client.chat("llama3.2", HELLO)
    assert info.value.message == "the model failed to generate a response"
    assert len(transport.requests) == 2  # retried as a server error


def test_a_body_that_is_not_a_json_object_is_malformed():
    client, _ = make_client(lambda r: HttpResponse(200, {}, b"[1, 2]"), max_retries=0)
    with client, pytest.raises(MalformedResponseError):
        client.chat("llama3.2", HELLO)


# ------------------------------------------------------------------ streams


def test_stream_transcript_gives_every_line_and_ends_on_done():
    client, _ = make_client(lambda r: ndjson(CHAT_STREAM + [{"model": "after the end"}]))
    with client:
        with client.chat("llama3.2", HELLO, stream=True) as stream:
            chunks = list(stream)
        stats = client.get_stats()
    assert [c.raw for c in chunks] == CHAT_STREAM  # the line after "done" is never read
    assert "".join(c.text for c in chunks) == stream.text == "The sky is blue."
    assert chunks[-1].finish_reason == stream.finish_reason == "stop"
    assert chunks[-1].usage == {"input_tokens": 26, "output_tokens": 3}
    assert (stats["tokens"]["input"], stats["tokens"]["output"]) == (26, 3)
    assert stats["successful_requests"] == 1


def test_generate_stream():
    lines = [
        {"model": "m", "response": "Hi", "done": False},
        {"model": "m", "response": "!", "done": False},
        {
            "model": "m",
            "response": "",
            "done": True,
            "done_reason": "length",
            "prompt_eval_count": 4,
            "eval_count": 2,
        },
    ]
    client, transport = make_client(lambda r: ndjson(lines))
    with client:
        with client.generate("m", "hello", stream=True, max_tokens=2) as stream:
            assert "".join(c.text for c in stream) == "Hi!"
        assert stream.finish_reason == "length"
        assert stream.usage == {"input_tokens": 4, "output_tokens": 2}
    assert sent(transport)[3] == {
        "model": "m",
        "prompt": "hello",
        "stream": True,
        "options": {"num_predict": 2},
    }


@pytest.mark.parametrize(
    "tail, error, message",
    [
        ([], NetworkError, "stream ended without its end marker"),
        (
            [{"error": "an error was encountered while running the model"}],
            ServerError,
            "an error was encountered while running the model",
        ),
        ([b"{not json"], MalformedResponseError, "not JSON"),
        ([b"[1, 2]"], MalformedResponseError, "not a JSON object"),
    ],
    ids=["cut", "error-line", "malformed", "not-an-object"],
)
def test_a_stream_that_fails_midway_says_so_after_its_chunks(tail, error, message):
    client, _ = make_client(lambda r: ndjson(CHAT_STREAM[:2] + tail))
    with client:
        stream = client.chat("llama3.2", HELLO, stream=True)
        got = [next(stream), next(stream)]
        with pytest.raises(error) as info:
            next(stream)
        stats = client.get_stats()
    assert [c.raw for c in got] == CHAT_STREAM[:2]
    assert message in str(info.value)
    assert "after 2 chunks, 7 characters of text" in str(info.value)
    assert (info.value.chunks_received, info.value.partial_text) == (2, "The sky")
    assert stats["failed_requests"] == 1


@pytest.mark.parametrize(
    "line, done",
    [
        (b'{"model":"m","message":{"role":"assistant","content":"x"},"done":false}', False),
        (
            b'{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}',
            True,
        ),
        (b'{"model":"m","response":"x"}', False),
        (b'{"status":"success"}', False),
    ],
)
def test_parse_stream_event_is_done_only_on_done_true(line, done):
    chunk, finished = WIRE.parse_stream_event(line)
    assert chunk == json.loads(line)
    assert finished is done


# -------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "status, headers, body, cls, message, retry_after",
    [
        (400, {}, {"error": "invalid input type"}, InvalidRequestError, "invalid input type", None),
        (401, {}, {"error": "unauthorized"}, AuthenticationError, "unauthorized", None),
        (
            403,
            {},
            {"error": "cloud model access is disabled"},
            PermissionDeniedError,
            "cloud model access is disabled",
            None,
        ),
        (
            404,
            {},
            {"error": 'model "llama9" not found, try pulling it first'},
            NotFoundError,
            'model "llama9" not found, try pulling it first',
            None,
        ),
        (
            429,
            {"Retry-After": "7"},
            {"error": "you've reached your hourly usage limit"},
            RateLimitError,
            "you've reached your hourly usage limit",
            7.0,
        ),
        (
            429,
            {"retry-after": "Tue, 14 Nov 2023 22:13:30 GMT"},
            {"error": "too many requests"},
            RateLimitError,
            "too many requests",
            10.0,
        ),
        (
            500,
            {},
            {"error": "llama runner process has terminated"},
            ServerError,
            "llama runner process has terminated",
            None,
        ),
        (
            502,
            {},
            {"error": "cloud model cannot be reached"},
            ServerError,
            "cloud model cannot be reached",
            None,
        ),
        (
            503,
            {},
            {"error": "server busy, please try again.  maximum pending requests exceeded"},
            ServerError,
            "server busy, please try again.  maximum pending requests exceeded",
            None,
        ),
        (
            404,
            {"Content-Type": "text/plain"},
            b"404 page not found",
            NotFoundError,
            "404 page not found",
            None,
        ),
    ],
)
def test_error_table(status, headers, body, cls, message, retry_after):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    error = WIRE.error_for(HttpResponse(status, headers, raw), wall_now=WALL, attempt=1)
    assert type(error) is cls
    assert (error.status, error.message, error.retry_after, error.provider) == (
        status,
        message,
        retry_after,
        "ollama",
    )


@pytest.mark.parametrize(
    "status, attempts", [(400, 1), (401, 1), (403, 1), (404, 1), (429, 3), (500, 3), (502, 3)]
)
def test_what_the_core_retries(status, attempts):
    client, transport = make_client(
        lambda r: answer(status, {"error": "no"}, {"retry-after": "0"}), max_retries=2
    )
    with client, pytest.raises(ApiError) as info:
        client.chat("llama3.2", HELLO)
    assert info.value.status == status
    assert len(transport.requests) == attempts


def test_429_then_success_goes_through_and_is_counted_as_retried():
    client, transport = make_client(
        scripted(
            answer(429, {"error": "rate limited"}, {"retry-after": "0"}),
            then=answer(200, CHAT_REPLY),
        )
    )
    with client:
        assert client.chat("llama3.2", HELLO)["message"]["content"] == "Hello! How are you today?"
        assert client.get_stats()["retried_requests"] == 1
    assert len(transport.requests) == 2


# --------------------------------------------------------------- the host


@pytest.mark.parametrize(
    "given, url",
    [
        ("", "http://localhost:11434"),
        ("localhost", "http://localhost:11434"),
        ("localhost:11434", "http://localhost:11434"),
        ("0.0.0.0", "http://localhost:11434"),
        ("0.0.0.0:8080", "http://localhost:8080"),
        ("[::]:11434", "http://localhost:11434"),
        ("gpu-box", "http://gpu-box:11434"),
        ("GPU-Box:1234", "http://gpu-box:1234"),
        ("http://localhost:11434/", "http://localhost:11434"),
        ("http://example.com", "http://example.com:11434"),
        ("https://ollama.com", "https://ollama.com"),
        ("https://example.com:8443/ollama/", "https://example.com:8443/ollama"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("::1", "http://[::1]:11434"),
        ("127.0.0.1:11434", "http://127.0.0.1:11434"),
    ],
)
def test_ollama_host_is_read_as_ollama_reads_it(given, url):
    assert normalize_host(given) == url


@pytest.mark.parametrize(
    "given", ["ftp://host", "host:port", "host:70000", "host:", "[::1", "[::1]x"]
)
def test_an_unreadable_host_is_refused_naming_the_setting(given):
    with pytest.raises(SettingError) as info:
        normalize_host(given)
    assert info.value.setting == "ollama_host"


@pytest.mark.parametrize(
    "metadata, env, url",
    [
        ({}, None, "http://localhost:11434"),
        ({}, "0.0.0.0", "http://localhost:11434"),
        ({}, "gpu-box:11500", "http://gpu-box:11500"),
        ({"ollama_host": "box-a"}, "box-b", "http://box-a:11434"),
        ({"ollama_api_base": "http://box-c:1/"}, None, "http://box-c:1"),
    ],
)
def test_the_backend_takes_its_host_from_metadata_then_ollama_host(monkeypatch, metadata, env, url):
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    if env is not None:
        monkeypatch.setenv("OLLAMA_HOST", env)
    transport = MemoryTransport(lambda r: answer(200, CHAT_REPLY))
    with ollama({}, metadata, transport=transport) as client:
        assert client.base_url == url
        client.chat("llama3.2", HELLO)  # no key needed
    assert transport.requests[0].url == url + "/api/chat"


def test_base_url_can_be_set_as_host_port_and_a_bad_one_is_refused():
    client, transport = make_client(lambda r: answer(200, CHAT_REPLY))
    with client:
        client.base_url = "other-box:12000"
        assert client.base_url == "http://other-box:12000"
        client.chat("llama3.2", HELLO)
        with pytest.raises(SettingError):
            client.base_url = "ftp://nowhere"
        with pytest.raises(SettingError):
            ollama({}, {"ollama_host": "host:notaport"}, transport=transport)
    assert transport.requests[0].url == "http://other-box:12000/api/chat"


# ----------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "params, fields",
    [
        ({}, {}),
        ({"temperature": 0.2}, {"options": {"temperature": 0.2}}),
        ({"max_tokens": 5}, {"options": {"num_predict": 5}}),
        ({"max_tokens": 5, "num_predict": 5}, {"options": {"num_predict": 5}}),
        ({"options": {"top_k": 3}, "seed": 1}, {"options": {"top_k": 3, "seed": 1}}),
        (
            {"keep_alive": "5m", "format": {"type": "object"}, "think": True},
            {"keep_alive": "5m", "format": {"type": "object"}, "think": True},
        ),
        ({"options": {}}, {}),
    ],
)
def test_request_fields_put_model_parameters_in_options(params, fields):
    assert request_fields(params) == fields


@pytest.mark.parametrize(
    "params",
    [
        {"max_tokens": 5, "num_predict": 6},
        {"temperature": 0.1, "options": {"temperature": 0.9}},
        {"options": "hot"},
    ],
)
def test_conflicting_or_bad_options_are_refused(params):
    with pytest.raises(InvalidInputError):
        request_fields(params)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.generate("llama3.2", ["a", "b"]),
        lambda c: c.generate("", "p"),
        lambda c: c.completions("llama3.2", ["a", "b"]),
        lambda c: c.embeddings("all-minilm", [[1, 2, 3]]),
        lambda c: c.embeddings("all-minilm", ""),
        lambda c: c.chat("llama3.2", HELLO, options=[1]),
    ],
    ids=[
        "generate-list",
        "generate-no-model",
        "completions-list",
        "embed-tokens",
        "embed-empty",
        "bad-options",
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(call):
    client, transport = make_client(lambda r: answer(200, CHAT_REPLY))
    with client, pytest.raises(InvalidInputError):
        call(client)
    assert transport.requests == []


# -------------------------------------------------------------- batching


def test_embeddings_of_any_model_are_coalesced_into_one_embed_list():
    client, transport = make_client(embed_reply, max_batch_size=3, batch_timeout=60.0)
    texts = ["a" * 3, "b" * 9, "c" * 6]  # estimated 1, 3 and 2 tokens
    with client:
        assert "my-own-embedder:latest" not in client.supported_batch_models  # batched all the same
        futures = [client.add_to_batch("my-own-embedder:latest", t) for t in texts]
        results = [f.result(WAIT) for f in futures]
        stats = client.get_stats()
    assert len(transport.requests) == 1
    assert sent(transport)[3] == {"model": "my-own-embedder:latest", "input": texts}
    for i, (text, result) in enumerate(zip(texts, results, strict=True)):
        assert result["embeddings"] == [[float(len(text)), float(i)]]
        assert result["model"] == "my-own-embedder:latest"
        assert result["total_duration"] == 1000
    # the server's count (18) is shared out by estimated tokens and adds up to it
    assert [r["prompt_eval_count"] for r in results] == [3, 9, 6]
    assert stats["batches"]["count"] == 1
    assert stats["tokens"]["input"] == 18


def test_a_callers_list_stays_whole_and_alike_requests_only_are_combined():
    client, transport = make_client(embed_reply, max_batch_size=10, batch_timeout=60.0)
    with client:
        first = client.add_to_batch("m", ["x", "yy"])
        other_params = client.add_to_batch("m", "zzz", dimensions=1)
        second = client.add_to_batch("m", "wwww")
        assert client._process_batch() == 2
        a, b, c = (f.result(WAIT) for f in (first, second, other_params))
    bodies = sorted((r.json() for r in transport.requests), key=lambda body: len(body))
    assert bodies == [
        {"model": "m", "input": ["x", "yy", "wwww"]},
        {"model": "m", "input": ["zzz"], "dimensions": 1},
    ]
    assert a["embeddings"] == [[1.0, 0.0], [2.0, 1.0]]
    assert b["embeddings"] == [[4.0, 2.0]]
    assert c["embeddings"] == [[3.0, 0.0]]


def test_make_request_to_embed_is_batched_too():
    client, transport = make_client(embed_reply, max_batch_size=2, batch_timeout=60.0)
    with client:
        futures = [
            client.queue_with_priority(
                {"endpoint": "api/embed", "data": {"model": "m", "input": t}}
            )
            for t in ("p", "qq")
        ]
        assert [f.result(WAIT)["embeddings"] for f in futures] == [[[1.0, 0.0]], [[2.0, 1.0]]]
    assert len(transport.requests) == 1


def test_chat_is_never_batched():
    client, _ = make_client(lambda r: answer(200, CHAT_REPLY))
    with client:
        assert client._engine.batch_inputs("api/chat", {"model": "m", "messages": HELLO}) is None
        assert client._engine.batch_inputs("api/embed", {"model": "m", "input": [[1, 2]]}) is None
        assert client._engine.batch_inputs("api/embed", {"model": "m", "input": ["a"]}) == ["a"]


def test_a_count_mismatch_fails_every_member_never_misaligns():
    def short(req):
        return answer(200, {"model": "m", "embeddings": [[1.0]]})

    client, _ = make_client(short, max_batch_size=2, batch_timeout=60.0)
    with client:
        futures = [client.add_to_batch("m", t) for t in ("a", "b")]
        for f in futures:
            with pytest.raises(MalformedResponseError) as info:
                f.result(WAIT)
            assert "expected 2 results" in str(info.value)


def test_split_batch_result_without_counts_keeps_the_shape():
    members = WIRE.split_batch_result({"model": "m", "embeddings": [[1.0], [2.0], [3.0]]}, [2, 1])
    assert members == [
        {"model": "m", "embeddings": [[1.0], [2.0]]},
        {"model": "m", "embeddings": [[3.0]]},
    ]
    assert WIRE.embedding_vectors(members[0]) == [[1.0], [2.0]]


# ----------------------------------------------------- stream lines in common terms


def _line(message=None, done=False, **extra):
    line = {"model": "qwen3", "created_at": "2025-05-29T09:32:35.123Z", "done": done, **extra}
    if message is not None:
        line["message"] = {"role": "assistant", "content": "", **message}
    return line


DELTA_CASES = [
    ("chat text", CHAT_STREAM[0], StreamDelta(text="The")),
    (
        "chat last line: reason and counts",
        CHAT_STREAM[-1],
        StreamDelta(finish_reason="stop", usage=(26, 3)),
    ),
    ("generate text", {"model": "m", "response": "Hi", "done": False}, StreamDelta(text="Hi")),
    (
        "generate last line",
        GENERATE_REPLY | {"response": ""},
        StreamDelta(finish_reason="stop", usage=(14, 110)),
    ),
    (
        "cut by num_predict",
        _line({}, True, done_reason="length", prompt_eval_count=9, eval_count=4),
        StreamDelta(finish_reason="length", usage=(9, 4)),
    ),
    ("thinking is not reply text", _line({"thinking": "Let me think"}), EMPTY_DELTA),
    (
        "a tool call comes whole",
        _line(
            {
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Toronto"}}}
                ]
            }
        ),
        StreamDelta(tool_calls=(ToolCallDelta(0, None, "get_weather", '{"city": "Toronto"}'),)),
    ),
    (
        "parallel calls: position, or function.index and id when sent",
        _line(
            {
                "tool_calls": [
                    {"function": {"name": "a", "arguments": {}}},
                    {"id": "call_x1", "function": {"index": 3, "name": "b", "arguments": {"n": 1}}},
                ]
            }
        ),
        StreamDelta(
            tool_calls=(
                ToolCallDelta(0, None, "a", "{}"),
                ToolCallDelta(3, "call_x1", "b", '{"n": 1}'),
            )
        ),
    ),
    (
        "a call without arguments",
        _line({"tool_calls": [{"function": {"name": "now"}}]}),
        StreamDelta(tool_calls=(ToolCallDelta(0, None, "now", "{}"),)),
    ),
    (
        "a model load answers done_reason load, no counts",
        {"model": "m", "response": "", "done": True, "done_reason": "load"},
        StreamDelta(finish_reason="load"),
    ),
    (
        "counts before done are not usage yet",
        _line({"content": "x"}, eval_count=1),
        StreamDelta(text="x"),
    ),
    ("a pull progress line", {"status": "pulling manifest"}, EMPTY_DELTA),
]


@pytest.mark.parametrize(
    "chunk, expected", [c[1:] for c in DELTA_CASES], ids=[c[0] for c in DELTA_CASES]
)
def test_stream_line_in_common_terms(chunk, expected):
    assert WIRE.stream_delta(chunk) == expected


@pytest.mark.parametrize(
    "chunk",
    [
        None,
        [],
        "x",
        {},
        {"message": "hi"},
        {"message": {"content": 5}},
        {"response": None},
        {"message": {"tool_calls": [None, {"function": "f"}]}},
        {"message": {"tool_calls": "f"}},
        {"done": "yes", "done_reason": "stop", "eval_count": 3},
    ],
    ids=repr,
)
def test_stream_lines_of_unknown_shape_add_nothing(chunk):
    assert WIRE.stream_delta(chunk) == EMPTY_DELTA


def test_tool_call_arguments_are_valid_json():
    line = _line(
        {
            "tool_calls": [
                {
                    "function": {
                        "name": "get_weather",
                        "arguments": {"city": "Paris", "days": [1, 2]},
                    }
                }
            ]
        }
    )
    calls = joined_calls([WIRE.stream_delta(line)])
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {
        "city": "Paris",
        "days": [1, 2],
    }


@pytest.mark.parametrize(
    "path, payload",
    [
        (
            "/api/chat",
            {
                "model": "llama3.2",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "What is the capital of France?"},
                ],
            },
        ),
        (
            "/api/generate",
            {
                "model": "llama3.2",
                "prompt": "What is the capital of France?",
                "system": "Be brief.",
            },
        ),
    ],
    ids=["chat", "generate"],
)
def test_simulator_stream_joins_to_its_reply(path, payload):
    events, body = simulated_stream(ollama_format.FORMAT, path, dict(payload, stream=True))
    deltas, done = stream_deltas(WIRE, events)
    assert done and len(deltas) > 2
    assert joined_text(deltas) == WIRE.reply_text(body) and WIRE.reply_text(body).startswith(
        "Simulated reply"
    )
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert [d.usage for d in deltas if d.usage] == [WIRE.usage(body)]
