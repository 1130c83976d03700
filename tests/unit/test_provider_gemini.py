"""The Gemini wire adapter and the ``gemini`` backend over the in-memory
transport: recorded requests and responses checked both ways, stream
transcripts, the error table, and batching through ``batchEmbedContents``.

The shapes are Gemini API v1beta's as documented (generateContent,
streamGenerateContent?alt=sse, embedContent, batchEmbedContents, countTokens,
models.list; ``{"error": {"code", "message", "status", "details"}}``).
"""

from __future__ import annotations

import base64
import json
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipfs_accelerate_py.api_backends.gemini import gemini, image_part
from ipfs_accelerate_py.providers.base import EMPTY_DELTA, StreamDelta, ToolCallDelta
from ipfs_accelerate_py.providers.gemini import GEMINI, GEMINI_EMBEDDING_LIMITS, GeminiWire
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
)
from ipfs_accelerate_py.simulator.formats import gemini as gemini_format
from ipfs_accelerate_py.transport.base import HttpResponse
from ipfs_accelerate_py.transport.sse import SseEvent

from ..helpers import QUICK_RETRIES, ClientFactory, answer, scripted, stream_answer
from ..helpers.streams import joined_calls, joined_text, simulated_stream, stream_deltas

KEY = "AIzaSy-test-SECRET-0123456789"
BASE = "http://gemini.invalid/v1beta"
MODEL = "gemini-2.5-flash"
EMBED = "gemini-embedding-001"
WIRE = GeminiWire(GEMINI)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
PNG_B64 = base64.b64encode(PNG).decode()

REPLY = {
    "candidates": [
        {
            "content": {"parts": [{"text": "Hello! How can I help?"}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 7, "totalTokenCount": 11},
    "modelVersion": MODEL,
    "responseId": "abc123",
}


def user(text):
    return [{"role": "user", "content": text}]


def sse_stream(chunks, close_log=None):
    """A StreamResponse whose body is ``data: <json>`` events; each close is logged in ``close_log``."""
    lines = [
        line
        for chunk in chunks
        for line in (
            b"data: " + (chunk if isinstance(chunk, bytes) else json.dumps(chunk).encode()),
            b"",
        )
    ]
    return stream_answer(
        lines, on_close=None if close_log is None else lambda: close_log.append(True)
    )


def fake_embeddings(req):
    """Answer batchEmbedContents with one vector per request: [len(text), position]."""
    body = req.json()
    texts = [r["content"]["parts"][0]["text"] for r in body["requests"]]
    return answer(
        200, {"embeddings": [{"values": [float(len(t)), float(i)]} for i, t in enumerate(texts)]}
    )


make_client = ClientFactory(
    gemini, "gemini_api_base", "gemini_api_key", QUICK_RETRIES, base_url=BASE, key=KEY
).in_memory


def sent(transport, n=0):
    req = transport.requests[n]
    return req.method, req.url, {k.lower(): v for k, v in req.headers.items()}, req.json()


# ------------------------------------------------------- requests, recorded


CHAT_BODY = {
    "contents": [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello"}]},
        {
            "role": "user",
            "parts": [
                {"text": "Describe this"},
                {"inline_data": {"mime_type": "image/png", "data": PNG_B64}},
            ],
        },
    ],
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "generationConfig": {
        "temperature": 0.2,
        "maxOutputTokens": 64,
        "topP": 0.9,
        "stopSequences": ["END"],
    },
}
CHAT_MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello"},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Describe this"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        ],
    },
]


def test_chat_request_as_sent_method_url_headers_and_body():
    client, transport = make_client(lambda r: answer(200, REPLY))
    with client:
        result = client.chat(
            MODEL, CHAT_MESSAGES, temperature=0.2, max_tokens=64, top_p=0.9, stop="END"
        )
    method, url, headers, body = sent(transport)
    assert (method, url) == ("POST", f"{BASE}/models/{MODEL}:generateContent")
    assert headers["x-goog-api-key"] == KEY
    assert "authorization" not in headers
    assert KEY not in url and "key=" not in url
    assert headers["content-type"] == "application/json"
    assert body == CHAT_BODY
    assert result == REPLY


def test_stream_request_goes_to_stream_generate_content_with_alt_sse():
    client, transport = make_client(lambda r: sse_stream([REPLY]))
    with client:
        with client.chat(MODEL, user("Hi"), stream=True) as stream:
            assert [c.raw for c in stream] == [REPLY]
        assert (stream.text, stream.finish_reason) == ("Hello! How can I help?", "stop")
    method, url, headers, body = sent(transport)
    assert (method, url) == ("POST", f"{BASE}/models/{MODEL}:streamGenerateContent?alt=sse")
    assert headers["accept"] == "text/event-stream"
    assert KEY not in url
    assert body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


@pytest.mark.parametrize(
    "call, method, path, body",
    [
        (
            lambda c: c.embeddings(EMBED, "one text"),
            "POST",
            f"models/{EMBED}:batchEmbedContents",
            {
                "requests": [
                    {"model": f"models/{EMBED}", "content": {"parts": [{"text": "one text"}]}}
                ]
            },
        ),
        (
            lambda c: c.embeddings(EMBED, ["a", "b"], task_type="RETRIEVAL_DOCUMENT", dimensions=8),
            "POST",
            f"models/{EMBED}:batchEmbedContents",
            {
                "requests": [
                    {
                        "model": f"models/{EMBED}",
                        "taskType": "RETRIEVAL_DOCUMENT",
                        "outputDimensionality": 8,
                        "content": {"parts": [{"text": t}]},
                    }
                    for t in ("a", "b")
                ]
            },
        ),
        (
            lambda c: c.embed_content(EMBED, "solo", output_dimensionality=4),
            "POST",
            f"models/{EMBED}:embedContent",
            {"outputDimensionality": 4, "content": {"parts": [{"text": "solo"}]}},
        ),
        (
            lambda c: c.count_tokens(MODEL, user("count")),
            "POST",
            f"models/{MODEL}:countTokens",
            {"contents": [{"role": "user", "parts": [{"text": "count"}]}]},
        ),
        (
            lambda c: c.count_tokens(MODEL, [{"role": "system", "content": "S"}, *user("count")]),
            "POST",
            f"models/{MODEL}:countTokens",
            {
                "generateContentRequest": {
                    "model": f"models/{MODEL}",
                    "contents": [{"role": "user", "parts": [{"text": "count"}]}],
                    "systemInstruction": {"parts": [{"text": "S"}]},
                }
            },
        ),
        (lambda c: c.get_model(MODEL), "GET", f"models/{MODEL}", None),
        (lambda c: c.list_models(), "GET", "models?pageSize=1000", None),
        (
            lambda c: c.completions(MODEL, "Once upon"),
            "POST",
            f"models/{MODEL}:generateContent",
            {"contents": [{"role": "user", "parts": [{"text": "Once upon"}]}]},
        ),
        (
            lambda c: c.make_request(f"/v1beta/models/{MODEL}:generateContent", {"contents": []}),
            "POST",
            f"models/{MODEL}:generateContent",
            {"contents": []},
        ),
        (
            lambda c: c.make_request(
                "generateContent", {"model": f"models/{MODEL}", "contents": []}
            ),
            "POST",
            f"models/{MODEL}:generateContent",
            {"contents": []},
        ),
        (
            lambda c: c.make_request("tunedModels/my-model:generateContent", {"contents": []}),
            "POST",
            "tunedModels/my-model:generateContent",
            {"contents": []},
        ),
        (
            lambda c: c.generate_content(
                MODEL,
                [{"role": "user", "parts": [{"text": "n"}]}],
                safetySettings=[
                    {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}
                ],
            ),
            "POST",
            f"models/{MODEL}:generateContent",
            {
                "contents": [{"role": "user", "parts": [{"text": "n"}]}],
                "safetySettings": [
                    {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}
                ],
            },
        ),
    ],
    ids=[
        "embed-one",
        "embed-list",
        "embedContent",
        "countTokens",
        "countTokens-system",
        "get-model",
        "list-models",
        "completions",
        "path-endpoint",
        "method-endpoint",
        "tuned-model",
        "generate-content",
    ],
)
def test_each_operation_builds_exactly_this_request(call, method, path, body):
    def handler(req):
        if "batchEmbedContents" in req.url:
            return fake_embeddings(req)
        return answer(
            200, {"models": [], "embedding": {"values": [1.0]}, "totalTokens": 3, **REPLY}
        )

    client, transport = make_client(handler, batch_timeout=0.0)
    with client:
        call(client)
    got_method, url, headers, got_body = sent(transport)
    assert (got_method, url, got_body) == (method, f"{BASE}/{path}", body)
    assert headers["x-goog-api-key"] == KEY and KEY not in url


def test_the_key_comes_from_metadata_then_the_environment(monkeypatch):
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "from-gemini-env")
    assert gemini({}, {"gemini_api_base": BASE}).api_key == "from-gemini-env"
    monkeypatch.setenv("GOOGLE_API_KEY", "from-google-env")
    assert gemini({}, {"gemini_api_base": BASE}).api_key == "from-google-env"
    assert gemini({}, {"gemini_api_key": "meta-g", "gemini_api_base": BASE}).api_key == "meta-g"
    assert (
        gemini(
            {}, {"google_api_key": "meta-google", "gemini_api_key": "x", "gemini_api_base": BASE}
        ).api_key
        == "meta-google"
    )
    monkeypatch.setenv("GEMINI_BASE_URL", "http://env.invalid/v1beta")
    assert gemini({}, {}).base_url == "http://env.invalid/v1beta"
    monkeypatch.delenv("GEMINI_BASE_URL")
    assert gemini({}, {}).base_url == "https://generativelanguage.googleapis.com/v1beta"


# ----------------------------------------------------------------- messages


def test_raw_image_bytes_become_inline_data_with_the_recognised_type():
    jpeg = b"\xff\xd8\xff\xe0" + b"\x01" * 4
    webp = b"RIFF\x00\x00\x00\x00WEBPVP8 "
    assert image_part(PNG) == {"inline_data": {"mime_type": "image/png", "data": PNG_B64}}
    assert image_part(jpeg)["inline_data"]["mime_type"] == "image/jpeg"
    assert image_part(webp)["inline_data"]["mime_type"] == "image/webp"
    assert image_part(b"????", "image/heic")["inline_data"]["mime_type"] == "image/heic"
    with pytest.raises(InvalidInputError, match="mime_type"):
        image_part(b"????")
    _, data = WIRE.chat_request(MODEL, [{"role": "user", "content": ["look", PNG]}], {}, False)
    assert data["contents"][0]["parts"] == [{"text": "look"}, image_part(PNG)]


def test_native_gemini_parts_pass_through():
    part = {
        "file_data": {
            "mime_type": "application/pdf",
            "file_uri": "https://generativelanguage.googleapis.com/v1beta/files/x",
        }
    }
    _, data = WIRE.chat_request(
        MODEL, [{"role": "model", "content": [part]}, *user("and?")], {}, False
    )
    assert data["contents"] == [
        {"role": "model", "parts": [part]},
        {"role": "user", "parts": [{"text": "and?"}]},
    ]


@pytest.mark.parametrize(
    "messages, params, match",
    [
        ([{"role": "tool", "content": "x"}], {}, "role 'tool'"),
        ([{"role": "system", "content": "only rules"}], {}, "at least one 'user'"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}],
                }
            ],
            {},
            "data URL",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}],
                }
            ],
            {},
            "base64",
        ),
        ([{"role": "user", "content": None}], {}, "content must be"),
        ([{"role": "user", "content": [{"type": "audio"}]}], {}, "unknown part"),
        (user("x"), {"logit_bias": {}}, "unknown parameter 'logit_bias'"),
        (user("x"), {"response_format": {"type": "json_schema"}}, "response_format"),
    ],
)
def test_what_gemini_cannot_take_is_refused_before_sending(messages, params, match):
    client, transport = make_client(lambda r: answer(200, REPLY))
    with client, pytest.raises(InvalidInputError, match=match):
        client.chat(MODEL, messages, **params)
    assert transport.requests == []


def test_generation_parameters_map_to_generation_config():
    _, data = WIRE.chat_request(
        MODEL,
        user("x"),
        {
            "n": 2,
            "top_k": 40,
            "seed": 7,
            "stop": ["a", "b"],
            "response_format": {"type": "json_object"},
            "generationConfig": {"temperature": 1.0},
            "thinkingConfig": {"thinkingBudget": 0},
            "tools": [{"codeExecution": {}}],
        },
        False,
    )
    assert data["generationConfig"] == {
        "temperature": 1.0,
        "candidateCount": 2,
        "topK": 40,
        "seed": 7,
        "stopSequences": ["a", "b"],
        "responseMimeType": "application/json",
        "thinkingConfig": {"thinkingBudget": 0},
    }
    assert data["tools"] == [{"codeExecution": {}}]


@pytest.mark.parametrize("bad", [[1, 2, 3], [[1, 2], [3]], ["ok", ""]])
def test_embeddings_take_text_only(bad):
    with pytest.raises(InvalidInputError):
        WIRE.embeddings_request(EMBED, bad, {})
    with pytest.raises(InvalidInputError, match="task_type"):
        WIRE.embeddings_request(EMBED, "x", {"encoding_format": "float"})


# ---------------------------------------------------------------- responses


def test_usage_reads_usage_metadata_thinking_counted_as_output():
    assert WIRE.usage(REPLY) == (4, 7)
    assert WIRE.usage(
        {
            "usageMetadata": {
                "promptTokenCount": 3,
                "candidatesTokenCount": 2,
                "thoughtsTokenCount": 10,
            }
        }
    ) == (3, 12)
    assert WIRE.usage({"embeddings": []}) == (0, 0)
    client, _ = make_client(lambda r: answer(200, REPLY))
    with client:
        client.chat(MODEL, user("x"))
        assert client.get_stats()["tokens"]["input"] == 4
        assert client.get_stats()["tokens"]["output"] == 7


def test_vectors_and_models_are_read_from_either_shape():
    assert WIRE.embedding_vectors({"embeddings": [{"values": [1.0]}, {"values": [2.0]}]}) == [
        [1.0],
        [2.0],
    ]
    assert WIRE.embedding_vectors({"embedding": {"values": [3.0]}}) == [[3.0]]
    with pytest.raises(MalformedResponseError):
        WIRE.embedding_vectors({"data": []})
    assert WIRE.models_from({"models": [{"name": "models/a"}], "nextPageToken": "t"}) == [
        {"name": "models/a"}
    ]


def test_list_models_follows_next_page_token():
    pages = {
        None: {"models": [{"name": "models/a"}], "nextPageToken": "p2"},
        "p2": {"models": [{"name": "models/b"}]},
    }

    def handler(req):
        token = req.url.partition("pageToken=")[2] or None
        return answer(200, pages[token])

    client, transport = make_client(handler)
    with client:
        assert [m["name"] for m in client.list_models()] == ["models/a", "models/b"]
    assert transport.requests[1].url == f"{BASE}/models?pageSize=1000&pageToken=p2"


# ------------------------------------------------------------------ streams

STREAM = [
    {
        "candidates": [{"content": {"parts": [{"text": "The"}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        "modelVersion": MODEL,
    },
    {
        "candidates": [{"content": {"parts": [{"text": " answer"}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        "modelVersion": MODEL,
    },
    {
        "candidates": [
            {
                "content": {"parts": [{"text": "."}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
        "modelVersion": MODEL,
    },
]


@pytest.mark.parametrize(
    "chunk, done",
    [
        (STREAM[0], False),
        (STREAM[2], True),
        ({"candidates": [{"finishReason": "MAX_TOKENS", "content": {"parts": []}}]}, True),
        (
            {"candidates": [{"finishReason": "STOP"}, {"content": {"parts": [{"text": "x"}]}}]},
            False,
        ),
        (
            {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}},
            True,
        ),
        ({"usageMetadata": {"promptTokenCount": 3}}, False),
    ],
    ids=["text", "stop", "max-tokens", "one-of-two-finished", "prompt-blocked", "usage-only"],
)
def test_a_stream_is_done_when_every_candidate_has_a_finish_reason(chunk, done):
    assert WIRE.parse_stream_event(SseEvent(None, json.dumps(chunk))) == (chunk, done)


def test_blank_events_are_skipped_and_garbage_is_malformed():
    assert WIRE.parse_stream_event(SseEvent(None, "  ")) == (None, False)
    with pytest.raises(MalformedResponseError):
        WIRE.parse_stream_event(SseEvent(None, "not json"))


def test_a_stream_transcript_is_handed_over_whole_with_its_usage():
    closed: list = []
    client, _ = make_client(lambda r: sse_stream(STREAM, closed))
    with client:
        with client.chat(MODEL, user("q"), stream=True) as stream:
            chunks = list(stream)
        assert [c.raw for c in chunks] == STREAM
        assert [c.text for c in chunks] == ["The", " answer", "."]
        assert [c.finish_reason for c in chunks] == [None, None, "stop"]
        assert chunks[-1].usage == {"input_tokens": 5, "output_tokens": 3}
        stats = client.get_stats()
        assert (stats["tokens"]["input"], stats["tokens"]["output"]) == (5, 3)
    assert closed == [True]


def test_a_stream_that_closes_before_a_finish_reason_was_cut():
    client, _ = make_client(lambda r: sse_stream(STREAM[:2]))
    with client:
        stream = client.chat(MODEL, user("q"), stream=True)
        assert next(stream).raw == STREAM[0]
        assert next(stream).raw == STREAM[1]
        with pytest.raises(NetworkError, match="end marker") as info:
            next(stream)
        assert (info.value.chunks_received, info.value.partial_text) == (2, "The answer")


def test_an_error_inside_a_stream_is_typed_from_its_code():
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    client, _ = make_client(lambda r: sse_stream([STREAM[0], error]))
    with client:
        stream = client.chat(MODEL, user("q"), stream=True)
        assert next(stream).text == "The"
        with pytest.raises(ServerError, match="UNAVAILABLE: The model is overloaded") as info:
            next(stream)
        assert info.value.status == 503
        assert "(stream ended after 1 chunks, 3 characters of text)" in str(info.value)


# ------------------------------------------------------------------- errors


def google_error(code, status, message, *details):
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}
QUOTA_FAILURE = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [
        {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        }
    ],
}
KEY_INVALID = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "API_KEY_INVALID",
    "domain": "googleapis.com",
    "metadata": {"service": "generativelanguage.googleapis.com"},
}


@pytest.mark.parametrize(
    "status, headers, body, cls, retry_after",
    [
        (
            400,
            {},
            google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
            InvalidRequestError,
            None,
        ),
        (
            400,
            {},
            google_error(400, "FAILED_PRECONDITION", "User location is not supported."),
            InvalidRequestError,
            None,
        ),
        (
            400,
            {},
            google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                KEY_INVALID,
            ),
            AuthenticationError,
            None,
        ),
        (
            401,
            {},
            google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
            AuthenticationError,
            None,
        ),
        (
            403,
            {},
            google_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
            PermissionDeniedError,
            None,
        ),
        (
            404,
            {},
            google_error(404, "NOT_FOUND", "models/nope is not found for API version v1beta."),
            NotFoundError,
            None,
        ),
        (
            429,
            {},
            google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota.",
                QUOTA_FAILURE,
                RETRY_INFO,
            ),
            RateLimitError,
            30.0,
        ),
        (
            429,
            {},
            google_error(429, "RESOURCE_EXHAUSTED", "Quota.", {**RETRY_INFO, "retryDelay": "1.5s"}),
            RateLimitError,
            1.5,
        ),
        (
            429,
            {},
            google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota.",
                {**RETRY_INFO, "retryDelay": {"seconds": 2, "nanos": 500000000}},
            ),
            RateLimitError,
            2.5,
        ),
        (
            429,
            {"Retry-After": "7"},
            google_error(429, "RESOURCE_EXHAUSTED", "Quota.", RETRY_INFO),
            RateLimitError,
            7.0,
        ),
        (
            429,
            {},
            google_error(
                429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."
            ),
            RateLimitError,
            None,
        ),
        (
            500,
            {},
            google_error(500, "INTERNAL", "An internal error has occurred."),
            ServerError,
            None,
        ),
        (
            503,
            {},
            google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
            ServerError,
            None,
        ),
        (
            504,
            {},
            google_error(
                504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."
            ),
            ServerError,
            None,
        ),
    ],
    ids=[
        "400",
        "400-precondition",
        "400-bad-key",
        "401",
        "403",
        "404",
        "429-retryinfo",
        "429-fraction",
        "429-duration-object",
        "429-header-first",
        "429-plain",
        "500",
        "503",
        "504",
    ],
)
def test_error_table(status, headers, body, cls, retry_after):
    response = HttpResponse(status, headers, json.dumps(body).encode())
    err = WIRE.error_for(response, wall_now=0.0, attempt=1)
    assert type(err) is cls
    assert err.status == status and err.provider == "gemini" and err.attempt == 1
    assert err.retry_after == retry_after
    assert err.message == f"{body['error']['status']}: {body['error']['message']}"


def test_an_error_body_in_a_list_and_a_text_body_are_read():
    listed = HttpResponse(
        429, {}, json.dumps([google_error(429, "RESOURCE_EXHAUSTED", "slow", RETRY_INFO)]).encode()
    )
    err = WIRE.error_for(listed, wall_now=0.0, attempt=1)
    assert isinstance(err, RateLimitError) and err.retry_after == 30.0 and "slow" in err.message
    text = WIRE.error_for(
        HttpResponse(502, {}, b"<html>Bad Gateway</html>"), wall_now=0.0, attempt=1
    )
    assert isinstance(text, ServerError) and "Bad Gateway" in text.message


def test_429_is_retried_after_retry_info_delay_then_succeeds():
    limited = answer(
        429, google_error(429, "RESOURCE_EXHAUSTED", "q", {**RETRY_INFO, "retryDelay": "0.02s"})
    )
    client, transport = make_client(
        scripted(limited, then=answer(200, REPLY)), initial_retry_delay=5.0, max_retries=2
    )
    with client:
        assert client.chat(MODEL, user("x")) == REPLY
        assert len(transport.requests) == 2
        assert client.get_stats()["retried_requests"] == 1


def test_a_bad_key_is_not_retried_and_does_not_open_the_breaker():
    body = google_error(
        400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", KEY_INVALID
    )
    client, transport = make_client(lambda r: answer(400, body), failure_threshold=1)
    with client:
        with pytest.raises(AuthenticationError) as info:
            client.chat(MODEL, user("x"))
        assert KEY not in str(info.value)
        assert len(transport.requests) == 1
        assert client.circuit_state == "CLOSED"


def test_a_method_endpoint_without_a_model_is_refused():
    with pytest.raises(InvalidInputError, match="data\\['model'\\]"):
        WIRE.build_request(
            "generateContent", {"contents": []}, api_key=KEY, base_url=BASE, timeout=1.0
        )
    client, transport = make_client(lambda r: answer(200, REPLY))
    with client, pytest.raises(InvalidInputError, match="models/\\{model\\}:generateContent"):
        client.make_request("generateContent", {"contents": []})
    assert transport.requests == []


# ----------------------------------------------------------------- batching


def test_single_text_callers_go_out_as_one_batch_embed_contents():
    client, transport = make_client(fake_embeddings, max_batch_size=50, batch_timeout=60.0)
    texts = [f"text number {i}" + "x" * i for i in range(12)]
    with client:
        client.supported_batch_models = [EMBED]
        futures = [client.add_to_batch(EMBED, t) for t in texts]
        assert client._process_batch() == 1
        results = [f.result(5) for f in futures]
    assert len(transport.requests) == 1
    method, url, _, body = sent(transport)
    assert url == f"{BASE}/models/{EMBED}:batchEmbedContents"
    assert [r["content"]["parts"][0]["text"] for r in body["requests"]] == texts
    assert all(r["model"] == f"models/{EMBED}" for r in body["requests"])
    for i, (text, result) in enumerate(zip(texts, results, strict=True)):
        assert result == {"embeddings": [{"values": [float(len(text)), float(i)]}]}


def test_a_callers_list_stays_whole_and_gets_its_own_run():
    client, transport = make_client(fake_embeddings, max_batch_size=50, batch_timeout=60.0)
    with client:
        first = client.add_to_batch(EMBED, ["a", "bb"])
        second = client.add_to_batch(EMBED, "ccc")
        third = client.add_to_batch(EMBED, ["dddd", "e", "ff"])
        client._process_batch()
        assert first.result(5) == {"embeddings": [{"values": [1.0, 0.0]}, {"values": [2.0, 1.0]}]}
        assert second.result(5) == {"embeddings": [{"values": [3.0, 2.0]}]}
        assert WIRE.embedding_vectors(third.result(5)) == [[4.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    assert len(transport.requests) == 1


def test_no_call_carries_more_than_100_requests():
    assert GEMINI_EMBEDDING_LIMITS.max_inputs == 100
    client, transport = make_client(
        fake_embeddings, max_batch_size=1000, batch_timeout=60.0, queue_size=1000
    )
    texts = [f"t{i}" for i in range(250)]
    with client:
        futures = [client.add_to_batch(EMBED, t) for t in texts]
        client._process_batch()
        vectors = [WIRE.embedding_vectors(f.result(5))[0][0] for f in futures]
    sizes = [len(req.json()["requests"]) for req in transport.requests]
    assert sizes == [100, 100, 50]
    assert vectors == [float(len(t)) for t in texts]


def test_only_alike_requests_share_a_call():
    client, transport = make_client(fake_embeddings, max_batch_size=50, batch_timeout=60.0)
    with client:
        futures = [
            client.add_to_batch(EMBED, "q1", task_type="RETRIEVAL_QUERY"),
            client.add_to_batch(EMBED, "d1", task_type="RETRIEVAL_DOCUMENT"),
            client.add_to_batch(EMBED, "q2", task_type="RETRIEVAL_QUERY"),
        ]
        client._process_batch()
        [f.result(5) for f in futures]
    bodies = sorted((req.json() for req in transport.requests), key=lambda b: len(b["requests"]))
    assert [[r["taskType"] for r in b["requests"]] for b in bodies] == [
        ["RETRIEVAL_DOCUMENT"],
        ["RETRIEVAL_QUERY"] * 2,
    ]


def test_concurrent_embeddings_callers_are_coalesced():
    n = 16
    client, transport = make_client(fake_embeddings, max_batch_size=8, batch_timeout=5.0)
    start = threading.Barrier(n)
    results: dict = {}

    def embed(i):
        start.wait()
        results[i] = client.embeddings(EMBED, "y" * (i + 1))

    with client:
        threads = [threading.Thread(target=embed, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(transport.requests) == 2
    assert all(WIRE.embedding_vectors(results[i])[0][0] == float(i + 1) for i in range(n))


def test_a_short_batch_answer_is_an_error_for_every_member_never_a_misalignment():
    client, _ = make_client(
        lambda r: answer(200, {"embeddings": [{"values": [1.0]}]}),
        batch_timeout=60.0,
        max_retries=0,
    )
    with client:
        futures = [client.add_to_batch(EMBED, t) for t in ("a", "b")]
        client._process_batch()
        for future in futures:
            with pytest.raises(ApiError, match="expected 2"):
                future.result(5)


@pytest.mark.parametrize(
    "requests",
    [
        [{"model": f"models/{EMBED}", "content": {"parts": [{"text": "a"}, {"text": "b"}]}}],
        [
            {"model": f"models/{EMBED}", "content": {"parts": [{"text": "a"}]}},
            {
                "model": f"models/{EMBED}",
                "taskType": "CLUSTERING",
                "content": {"parts": [{"text": "b"}]},
            },
        ],
        [
            {
                "model": f"models/{EMBED}",
                "content": {"parts": [{"inline_data": {"mime_type": "image/png", "data": "x"}}]},
            }
        ],
    ],
    ids=["two-parts", "mixed-params", "not-text"],
)
def test_requests_that_are_not_plain_alike_texts_go_as_they_are(requests):
    assert WIRE.batch_inputs("batchEmbedContents", {"model": EMBED, "requests": requests}) is None


@given(
    st.lists(
        st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4), min_size=1, max_size=6
    )
)
def test_batch_payload_and_split_round_trip(members):
    endpoint, data = WIRE.embeddings_request(EMBED, members[0], {"task_type": "CLUSTERING"})
    template = WIRE.batch_template(endpoint, data)
    inputs = [t for m in members for t in m]
    payload = WIRE.batch_payload(template, inputs)
    assert WIRE.batch_inputs(endpoint, {**payload, "model": EMBED}) == inputs
    result = {"embeddings": [{"values": [float(i)]} for i in range(len(inputs))]}
    parts = WIRE.split_batch_result(result, [len(m) for m in members])
    flat = [v for part in parts for v in WIRE.embedding_vectors(part)]
    assert flat == [[float(i)] for i in range(len(inputs))]
    assert [len(p["embeddings"]) for p in parts] == [len(m) for m in members]


# ------------------------------------------------------- stream chunks in common terms


def _candidate_chunk(parts, finish=None, usage=None, **candidate):
    chunk = {
        "candidates": [{"content": {"parts": parts, "role": "model"}, "index": 0, **candidate}],
        "modelVersion": MODEL,
        "responseId": "r1",
    }
    if finish is not None:
        chunk["candidates"][0]["finishReason"] = finish
    if usage is not None:
        chunk["usageMetadata"] = usage
    return chunk


WEATHER_CALL = {"name": "get_weather", "args": {"location": "Paris", "unit": "celsius"}}
DELTA_CASES = [
    ("text, prompt usage so far", STREAM[0], StreamDelta(text="The", usage=(5, 0))),
    (
        "last chunk: finish and whole usage",
        STREAM[2],
        StreamDelta(text=".", finish_reason="stop", usage=(5, 3)),
    ),
    (
        "several text parts",
        _candidate_chunk([{"text": "a"}, {"text": "b"}]),
        StreamDelta(text="ab"),
    ),
    (
        "thoughts are not reply text",
        _candidate_chunk(
            [{"text": "Hmm", "thought": True}, {"text": "Yes"}],
            usage={"promptTokenCount": 2, "candidatesTokenCount": 1, "thoughtsTokenCount": 4},
        ),
        StreamDelta(text="Yes", usage=(2, 5)),
    ),
    (
        "a function call, whole",
        _candidate_chunk([{"functionCall": WEATHER_CALL}], "STOP"),
        StreamDelta(
            tool_calls=(ToolCallDelta(0, None, "get_weather", json.dumps(WEATHER_CALL["args"])),),
            finish_reason="stop",
        ),
    ),
    (
        "parallel calls: index by position, id when given",
        _candidate_chunk(
            [
                {"text": "Checking."},
                {
                    "functionCall": {"id": "fc_1", "name": "a", "args": {"x": 1}},
                    "thoughtSignature": "c2ln",
                },
                {"functionCall": {"id": "fc_2", "name": "b"}},
            ]
        ),
        StreamDelta(
            text="Checking.",
            tool_calls=(
                ToolCallDelta(0, "fc_1", "a", '{"x": 1}'),
                ToolCallDelta(1, "fc_2", "b", "{}"),
            ),
        ),
    ),
    (
        "MAX_TOKENS",
        _candidate_chunk([{"text": "cut"}], "MAX_TOKENS"),
        StreamDelta(text="cut", finish_reason="length"),
    ),
    (
        "SAFETY",
        _candidate_chunk([], "SAFETY", safetyRatings=[]),
        StreamDelta(finish_reason="content_filter"),
    ),
    (
        "MALFORMED_FUNCTION_CALL kept, lowercased",
        {"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL", "index": 0}]},
        StreamDelta(finish_reason="malformed_function_call"),
    ),
    (
        "unspecified is no reason",
        _candidate_chunk([{"text": "x"}], "FINISH_REASON_UNSPECIFIED"),
        StreamDelta(text="x"),
    ),
    (
        "prompt blocked",
        {
            "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 3},
        },
        StreamDelta(finish_reason="content_filter", usage=(3, 0)),
    ),
    ("usage only", {"usageMetadata": {"promptTokenCount": 3}}, StreamDelta(usage=(3, 0))),
    (
        "second candidate is not the reply",
        {"candidates": [{"content": {"parts": [{"text": "other"}]}, "index": 1}]},
        EMPTY_DELTA,
    ),
]


@pytest.mark.parametrize(
    "chunk, expected", [c[1:] for c in DELTA_CASES], ids=[c[0] for c in DELTA_CASES]
)
def test_stream_chunk_in_common_terms(chunk, expected):
    assert WIRE.stream_delta(chunk) == expected


@pytest.mark.parametrize(
    "chunk",
    [
        None,
        [],
        "x",
        {},
        {"candidates": None},
        {"candidates": [None]},
        {"candidates": [{"content": "text"}]},
        {"candidates": [{"content": {"parts": [None, 3, {"text": 5}, {"functionCall": "f"}]}}]},
        {"candidates": [{"finishReason": ["STOP"]}]},
        {"promptFeedback": {"blockReason": "BLOCK_REASON_UNSPECIFIED"}},
        {"promptFeedback": "blocked"},
        {"modelVersion": MODEL},
    ],
    ids=repr,
)
def test_stream_chunks_of_unknown_shape_add_nothing(chunk):
    assert WIRE.stream_delta(chunk) == EMPTY_DELTA


def test_usage_ignores_counts_that_are_not_counts():
    assert WIRE.usage(
        {"usageMetadata": {"promptTokenCount": "many", "candidatesTokenCount": -2}}
    ) == (0, 0)


def test_function_call_arguments_are_valid_json():
    deltas = [
        WIRE.stream_delta(
            _candidate_chunk(
                [{"functionCall": WEATHER_CALL}, {"functionCall": {"name": "now"}}], "STOP"
            )
        )
    ]
    calls = joined_calls(deltas)
    assert {i: (c["name"], json.loads(c["arguments"])) for i, c in calls.items()} == {
        0: ("get_weather", WEATHER_CALL["args"]),
        1: ("now", {}),
    }


def test_simulator_stream_joins_to_its_reply():
    payload = {
        "contents": [
            {"role": "user", "parts": [{"text": "What is the capital of France, please?"}]}
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
    }
    events, body = simulated_stream(
        gemini_format.FORMAT,
        "/v1beta/models/{model}:streamGenerateContent",
        payload,
        params={"model": MODEL},
        query={"alt": "sse"},
    )
    deltas, done = stream_deltas(WIRE, events)
    assert done and len(deltas) > 1
    assert joined_text(deltas) == WIRE.reply_text(body) and WIRE.reply_text(body).startswith(
        "Simulated reply"
    )
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert deltas[-1].usage == WIRE.usage(body)
