"""The Anthropic wire (``providers/anthropic.py``) and the ``claude`` backend.

Recorded request/response pairs and stream transcripts in the shapes the
Anthropic Messages API documents, checked both ways: we build exactly this
request, we parse exactly this response.  No sockets: the backend runs over
the in-memory transport.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from ipfs_accelerate_py.api_backends.claude import claude
from ipfs_accelerate_py.providers.anthropic import (
    ANTHROPIC,
    ANTHROPIC_VERSION,
    DEFAULT_MAX_TOKENS,
    AnthropicWire,
    join_system,
    parse_rfc3339,
)
from ipfs_accelerate_py.providers.base import EMPTY_DELTA, StreamDelta, ToolCallDelta
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    AuthenticationError,
    InvalidInputError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from ipfs_accelerate_py.simulator.formats import anthropic as anthropic_format
from ipfs_accelerate_py.transport.base import HttpResponse
from ipfs_accelerate_py.transport.environment import USER_AGENT
from ipfs_accelerate_py.transport.memory import MemoryTransport
from ipfs_accelerate_py.transport.sse import SseEvent, iter_sse

from ..helpers import QUICK_RETRIES, ClientFactory, scripted, stream_answer
from ..helpers.streams import joined_calls, joined_text, simulated_stream, stream_deltas

KEY = "sk-ant-test-SECRET-0123456789"
BASE = "http://anthropic.test"
MODEL = "claude-sonnet-4-5"
WIRE = AnthropicWire(ANTHROPIC)
NOW = parse_rfc3339("2025-06-01T12:00:00Z")
DATE_HEADER = "Sun, 01 Jun 2025 12:00:00 GMT"  # the same instant as NOW

TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    }
]

MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [
        {"type": "text", "text": "Let me check the weather."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "Paris"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 412, "output_tokens": 57},
}

STREAM_TRANSCRIPT = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\": "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\\"Paris\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"""


def decode_events(raw: bytes) -> list[SseEvent]:
    async def lines():
        for line in raw.split(b"\n"):
            yield line

    async def collect():
        return [e async for e in iter_sse(lines())]

    return asyncio.run(collect())


def parse_all(raw: bytes) -> tuple[list, bool]:
    """Every chunk handed over, and whether the end marker came."""
    chunks = []
    for event in decode_events(raw):
        chunk, done = WIRE.parse_stream_event(event)
        if chunk is not None:
            chunks.append(chunk)
        if done:
            return chunks, True
    return chunks, False


def error_body(kind: str, message: str, **extra) -> bytes:
    err = {"type": kind, "message": message, **extra}
    return json.dumps(
        {"type": "error", "error": err, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    ).encode()


# ------------------------------------------------------------ the request


def test_chat_request_as_built_method_path_headers_body():
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    endpoint, data = WIRE.chat_request(
        MODEL,
        messages,
        {"tools": TOOLS, "tool_choice": {"type": "auto"}, "temperature": 0.2},
        False,
    )
    request = WIRE.build_request(
        endpoint, data, api_key=KEY, base_url=BASE, timeout=30.0, request_id="rid-1"
    )
    assert (request.method, request.url) == ("POST", f"{BASE}/v1/messages")
    assert request.headers == {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "anthropic-version": ANTHROPIC_VERSION,
        "x-api-key": KEY,
        "X-Client-Request-Id": "rid-1",
        "User-Agent": USER_AGENT,
    }
    assert "Authorization" not in request.headers
    assert request.json() == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "system": "You are terse.",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "tools": TOOLS,
        "tool_choice": {"type": "auto"},
        "temperature": 0.2,
    }


def test_stream_request_asks_for_sse_and_sets_stream():
    endpoint, data = WIRE.chat_request(
        MODEL, [{"role": "user", "content": "hi"}], {"max_tokens": 64}, True
    )
    request = WIRE.build_request(
        endpoint, data, api_key=KEY, base_url=BASE + "/", timeout=None, stream=True
    )
    assert request.headers["Accept"] == "text/event-stream"
    assert request.json() == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
        "stream": True,
    }
    assert request.url == f"{BASE}/v1/messages"


def test_tool_result_blocks_pass_through_untouched():
    turn = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": MESSAGE["content"]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                    "content": "15 degrees",
                    "is_error": False,
                }
            ],
        },
    ]
    original = json.loads(json.dumps(turn))
    _, data = WIRE.chat_request(MODEL, turn, {"tools": TOOLS}, False)
    assert data["messages"] == original
    assert turn == original  # the caller's list is not changed


@pytest.mark.parametrize(
    "system_param, system_messages, expected",
    [
        (None, ["A"], "A"),
        (None, ["A", "B"], "A\n\nB"),
        ("P", ["A"], "P\n\nA"),
        (
            None,
            [[{"type": "text", "text": "X", "cache_control": {"type": "ephemeral"}}]],
            [{"type": "text", "text": "X", "cache_control": {"type": "ephemeral"}}],
        ),
        (
            "P",
            [[{"type": "text", "text": "X"}]],
            [{"type": "text", "text": "P"}, {"type": "text", "text": "X"}],
        ),
    ],
)
def test_system_messages_become_the_system_field(system_param, system_messages, expected):
    messages = [{"role": "system", "content": s} for s in system_messages] + [
        {"role": "user", "content": "u"}
    ]
    params = {} if system_param is None else {"system": system_param}
    _, data = WIRE.chat_request(MODEL, messages, params, False)
    assert data["system"] == expected
    assert all(m["role"] != "system" for m in data["messages"])


def test_no_system_field_without_system_messages():
    _, data = WIRE.chat_request(MODEL, [{"role": "user", "content": "u"}], {}, False)
    assert "system" not in data


@pytest.mark.parametrize(
    "messages, params, says",
    [
        ([{"role": "tool", "content": "x"}], {}, "tool_result"),
        ([{"role": "system", "content": "only system"}], {}, "at least one 'user' message"),
        (
            [{"role": "user", "content": "u"}],
            {"max_tokens": 0},
            "max_tokens must be a positive integer",
        ),
        (
            [{"role": "user", "content": "u"}],
            {"max_tokens": "100"},
            "max_tokens must be a positive integer",
        ),
        (
            [{"role": "system", "content": 3}, {"role": "user", "content": "u"}],
            {},
            "system message",
        ),
    ],
)
def test_chat_requests_refused_before_sending(messages, params, says):
    with pytest.raises(InvalidInputError, match=says):
        WIRE.chat_request(MODEL, messages, params, False)


def test_models_list_and_one_model_are_gets_without_body():
    for endpoint, data in (WIRE.models_request(), WIRE.model_request(MODEL)):
        request = WIRE.build_request(endpoint, data, api_key=KEY, base_url=BASE, timeout=None)
        assert request.method == "GET" and request.body is None
        assert (
            request.headers["x-api-key"] == KEY
            and request.headers["anthropic-version"] == ANTHROPIC_VERSION
        )
    assert (
        WIRE.build_request(*WIRE.models_request(), api_key=KEY, base_url=BASE, timeout=None).url
        == f"{BASE}/v1/models"
    )


@pytest.mark.parametrize("endpoint", ["messages", "/v1/messages", "v1/messages", " messages/ "])
def test_endpoint_spellings_reach_the_same_path(endpoint):
    assert WIRE.endpoint_path(endpoint) == "v1/messages"


def test_count_tokens_request_has_no_max_tokens():
    endpoint, data = WIRE.count_tokens_request(
        MODEL,
        [{"role": "system", "content": "S"}, {"role": "user", "content": "u"}],
        {"tools": TOOLS},
    )
    assert endpoint == "v1/messages/count_tokens"
    assert data == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "u"}],
        "system": "S",
        "tools": TOOLS,
    }


def test_embeddings_and_completions_are_refused_clearly():
    with pytest.raises(InvalidInputError, match="no embeddings operation"):
        WIRE.embeddings_request("voyage-3", "text", {})
    with pytest.raises(InvalidInputError, match="no completions operation"):
        WIRE.completion_request(MODEL, "prompt", {}, False)


# ----------------------------------------------------------- the response


def test_message_response_parsed_with_its_usage():
    response = HttpResponse(200, {"request-id": "req_1"}, json.dumps(MESSAGE).encode())
    result = WIRE.parse_response("v1/messages", response)
    assert result == MESSAGE
    assert WIRE.usage(result) == (412, 57)


def test_usage_counts_cache_reads_and_writes_as_input():
    usage = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "output_tokens": 5,
    }
    assert WIRE.usage({"usage": usage}) == (1110, 5)
    assert WIRE.usage(
        {"type": "message_start", "message": {"usage": {"input_tokens": 25, "output_tokens": 1}}}
    ) == (25, 1)
    assert WIRE.usage({"input_tokens": 99}) == (0, 0)  # count_tokens: not consumption


def test_models_listing_parsed():
    listing = {
        "data": [
            {
                "type": "model",
                "id": MODEL,
                "display_name": "Claude Sonnet 4.5",
                "created_at": "2025-09-29T00:00:00Z",
            }
        ],
        "has_more": False,
        "first_id": MODEL,
        "last_id": MODEL,
    }
    assert WIRE.models_from(listing) == listing["data"]


@pytest.mark.parametrize(
    "body", [b"[1, 2]", b'{"id": "msg", "content": [{"type": "text", "text": "cut', b""]
)
def test_malformed_bodies_are_typed(body):
    with pytest.raises(MalformedResponseError):
        WIRE.parse_response("v1/messages", HttpResponse(200, {}, body))


def test_error_body_with_200_is_raised_typed():
    with pytest.raises(OverloadedError, match="Overloaded"):
        WIRE.parse_response(
            "v1/messages", HttpResponse(200, {}, error_body("overloaded_error", "Overloaded"))
        )


# ------------------------------------------------------------- the stream


def test_stream_transcript_chunks_and_end_marker():
    chunks, done = parse_all(STREAM_TRANSCRIPT)
    assert done
    assert [c["type"] for c in chunks] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # ping dropped
    text = "".join(
        c["delta"]["text"]
        for c in chunks
        if c["type"] == "content_block_delta" and c["delta"]["type"] == "text_delta"
    )
    assert text == "Hello!"
    partial = "".join(
        c["delta"]["partial_json"]
        for c in chunks
        if c["type"] == "content_block_delta" and c["index"] == 1
    )
    assert json.loads(partial) == {"location": "Paris"}
    assert [WIRE.usage(c) for c in chunks if any(WIRE.usage(c))] == [(25, 1), (0, 15)]
    assert chunks[-2]["delta"]["stop_reason"] == "tool_use"


def test_cumulative_message_delta_usage_carries_input_too():
    """The current API repeats the whole usage in message_delta; older servers
    send only output_tokens there (the transcript above)."""
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 25,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 5,
            "output_tokens": 15,
        },
    }
    chunk, done = WIRE.parse_stream_event(SseEvent("message_delta", json.dumps(delta)))
    assert not done and WIRE.usage(chunk) == (30, 15)


def test_stream_cut_before_message_stop_is_not_done():
    cut = STREAM_TRANSCRIPT[: STREAM_TRANSCRIPT.index(b"event: message_delta")]
    chunks, done = parse_all(cut)
    assert not done and chunks[-1]["type"] == "content_block_stop"


def test_message_delta_is_not_the_end():
    event = SseEvent(
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}',
    )
    assert WIRE.parse_stream_event(event)[1] is False
    assert WIRE.parse_stream_event(SseEvent("message_stop", '{"type":"message_stop"}'))[1] is True


def test_stream_event_type_read_from_data_when_unnamed_and_unknown_events_pass():
    assert WIRE.parse_stream_event(SseEvent(None, '{"type":"message_stop"}')) == (
        {"type": "message_stop"},
        True,
    )
    assert WIRE.parse_stream_event(SseEvent(None, '{"type":"ping"}')) == (None, False)
    future = {"type": "some_new_event", "x": 1}  # Anthropic may add event types
    assert WIRE.parse_stream_event(SseEvent("some_new_event", json.dumps(future))) == (
        future,
        False,
    )
    assert WIRE.parse_stream_event(SseEvent(None, "")) == (None, False)


@pytest.mark.parametrize(
    "kind, cls",
    [
        ("overloaded_error", OverloadedError),
        ("api_error", ServerError),
        ("rate_limit_error", RateLimitError),
        ("invalid_request_error", InvalidRequestError),
        ("something_new_error", ServerError),
    ],
)
def test_stream_error_event_raises_its_typed_error(kind, cls):
    event = SseEvent(
        "error", json.dumps({"type": "error", "error": {"type": kind, "message": f"said {kind}"}})
    )
    with pytest.raises(cls, match=f"said {kind}") as caught:
        WIRE.parse_stream_event(event)
    assert type(caught.value) is cls
    assert caught.value.status is None  # the HTTP status was 200


def test_stream_event_that_is_not_json_is_malformed():
    with pytest.raises(MalformedResponseError):
        WIRE.parse_stream_event(
            SseEvent("content_block_delta", '{"type": "content_block_delta", "delta": {')
        )


# ------------------------------------------------------------- the errors

RESET_IN_30S = "2025-06-01T12:00:30Z"


@pytest.mark.parametrize(
    "status, headers, body, cls, retry_after, should_retry",
    [
        (
            400,
            {},
            error_body("invalid_request_error", "messages: roles must alternate"),
            InvalidRequestError,
            None,
            None,
        ),
        (
            401,
            {},
            error_body("authentication_error", "invalid x-api-key"),
            AuthenticationError,
            None,
            None,
        ),
        (
            403,
            {},
            error_body("permission_error", "no access to this model"),
            PermissionDeniedError,
            None,
            None,
        ),
        (404, {}, error_body("not_found_error", "model: claude-nope"), NotFoundError, None, None),
        (
            413,
            {},
            error_body("request_too_large", "Request exceeds the maximum size"),
            InvalidRequestError,
            None,
            None,
        ),
        (
            429,
            {"retry-after": "7"},
            error_body("rate_limit_error", "Number of requests has exceeded your rate limit"),
            RateLimitError,
            7.0,
            None,
        ),
        (
            429,
            {
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": RESET_IN_30S,
                "anthropic-ratelimit-tokens-remaining": "5000",
                "anthropic-ratelimit-tokens-reset": "2025-06-01T12:00:50Z",
            },
            error_body("rate_limit_error", "requests exhausted"),
            RateLimitError,
            30.0,
            None,
        ),
        (
            429,
            {},
            error_body(
                "rate_limit_error",
                "spend limit",
                details={"error_code": "enforced_spend_limit_reached"},
            ),
            RateLimitError,
            None,
            False,
        ),
        (500, {}, error_body("api_error", "Internal server error"), ServerError, None, None),
        (503, {}, error_body("overloaded_error", "Overloaded"), OverloadedError, None, None),
        (529, {}, error_body("overloaded_error", "Overloaded"), OverloadedError, None, None),
        (
            529,
            {"retry-after": "2", "x-should-retry": "true"},
            error_body("overloaded_error", "Overloaded"),
            OverloadedError,
            2.0,
            True,
        ),
        (502, {}, b"<html>Bad gateway</html>", ServerError, None, None),
    ],
)
def test_error_mapping(status, headers, body, cls, retry_after, should_retry):
    response = HttpResponse(status, {"request-id": "req_hdr", **headers}, body)
    error = WIRE.error_for(response, wall_now=NOW, attempt=2)
    assert type(error) is cls
    assert error.status == status
    assert error.provider == "anthropic"
    assert error.attempt == 2
    assert error.request_id == "req_hdr"
    assert error.retry_after == retry_after
    assert error.should_retry is should_retry
    message = json.loads(body)["error"]["message"] if body.startswith(b"{") else "Bad gateway"
    assert message in error.message


def test_request_id_falls_back_to_the_body():
    error = WIRE.error_for(
        HttpResponse(500, {}, error_body("api_error", "boom")), wall_now=NOW, attempt=1
    )
    assert error.request_id == "req_011CSHoEeqs5C35K2UUqR7Fy"


# ------------------------------------------------------- rate-limit hints


def test_rate_limit_hints_read_anthropic_headers():
    headers = {
        "Date": DATE_HEADER,
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2025-06-01T12:00:01Z",
        "anthropic-ratelimit-tokens-limit": "50000",
        "anthropic-ratelimit-tokens-remaining": "49500",
        "anthropic-ratelimit-tokens-reset": "2025-06-01T12:01:00.250Z",
    }
    assert WIRE.rate_limit_hints(headers) == {
        "requests_remaining": 49,
        "requests_reset": 1.0,
        "tokens_remaining": 49500,
        "tokens_reset": 60.25,
    }


def test_rate_limit_hints_fall_back_to_input_and_output_token_headers():
    headers = {
        "anthropic-ratelimit-input-tokens-remaining": "3000",
        "anthropic-ratelimit-output-tokens-remaining": "800",
        "anthropic-ratelimit-input-tokens-reset": "2025-06-01T12:00:10Z",
    }
    assert WIRE.rate_limit_hints(headers) == {"tokens_remaining": 800}  # no Date: no reset figure
    assert WIRE.rate_limit_hints(dict(headers, date=DATE_HEADER)) == {
        "tokens_remaining": 800,
        "tokens_reset": 10.0,
    }
    assert WIRE.rate_limit_hints({}) is None
    assert WIRE.rate_limit_hints({"anthropic-ratelimit-requests-remaining": "many"}) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2025-06-01T12:00:00Z", NOW),
        ("2025-06-01T14:00:00+02:00", NOW),
        ("2025-06-01T12:00:00.5Z", NOW + 0.5),
        ("2025-06-01T12:00:00.123456789Z", NOW + 0.123456),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_rfc3339(text, expected):
    assert parse_rfc3339(text) == (pytest.approx(expected) if expected is not None else None)


def test_join_system_keeps_blocks():
    assert join_system(["a", "b"]) == "a\n\nb"
    assert join_system([[{"type": "text", "text": "a"}], "b"]) == [
        {"type": "text", "text": "a"},
        {"type": "text", "text": "b"},
    ]


# ------------------------------------------------ the backend, in memory


make_client = ClientFactory(
    claude, "anthropic_api_base", "claude_api_key", QUICK_RETRIES, base_url=BASE, key=KEY
).in_memory


def answer_message(request):
    body = request.json()
    text = body["messages"][-1]["content"]
    reply = dict(
        MESSAGE,
        content=[{"type": "text", "text": f"re: {text}"}],
        stop_reason="end_turn",
        usage={"input_tokens": 11, "output_tokens": 4},
    )
    return HttpResponse(200, {"request-id": "req_ok"}, json.dumps(reply).encode())


def test_backend_chat_sends_anthropic_request_and_counts_tokens():
    client, transport = make_client(answer_message)
    with client:
        result = client.chat(
            MODEL,
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
            max_tokens=50,
        )
        stats = client.get_stats()
    assert result["content"][0]["text"] == "re: hello"
    [sent] = transport.requests
    assert sent.url == f"{BASE}/v1/messages"
    assert sent.headers["x-api-key"] == KEY and "Authorization" not in sent.headers
    assert sent.json()["system"] == "be brief" and sent.json()["max_tokens"] == 50
    assert stats["models"][MODEL]["tokens_in"] == 11
    assert stats["tokens"]["output"] == 4
    assert KEY not in repr(client)


def test_backend_529_is_retried_and_counts_against_the_breaker():
    overloaded = HttpResponse(529, {}, error_body("overloaded_error", "Overloaded"))
    client, transport = make_client(
        scripted(overloaded, overloaded, then=answer_message), failure_threshold=5
    )
    with client:
        result = client.chat(MODEL, [{"role": "user", "content": "x"}])
        breaker = client.generate_report()["circuit_breaker"]
        stats = client.get_stats()
    assert result["content"][0]["text"] == "re: x"
    assert len(transport.requests) == 3
    assert stats["retried_requests"] == 1 and stats["total_retries"] == 2
    assert breaker["window"]["failures"] == 2


def test_backend_529s_open_the_circuit():
    client, transport = make_client(
        lambda r: HttpResponse(529, {}, error_body("overloaded_error", "Overloaded")),
        failure_threshold=2,
        max_retries=1,
        reset_timeout=60,
    )
    with client:
        with pytest.raises(OverloadedError, match="Overloaded"):
            client.chat(MODEL, [{"role": "user", "content": "x"}])
        assert client.circuit_state == "OPEN"
    assert len(transport.requests) == 2


def test_backend_429_waits_retry_after_and_does_not_open_the_circuit():
    limited = HttpResponse(
        429, {"retry-after": "0.01"}, error_body("rate_limit_error", "slow down")
    )
    client, transport = make_client(scripted(limited, then=answer_message), failure_threshold=1)
    with client:
        client.chat(MODEL, [{"role": "user", "content": "x"}])
        assert client.circuit_state == "CLOSED"
    assert len(transport.requests) == 2


@pytest.mark.parametrize(
    "status, body, cls",
    [
        (401, error_body("authentication_error", "invalid x-api-key"), AuthenticationError),
        (404, error_body("not_found_error", "model: nope"), NotFoundError),
        (
            429,
            error_body(
                "rate_limit_error", "spend", details={"error_code": "enforced_spend_limit_reached"}
            ),
            RateLimitError,
        ),
    ],
)
def test_backend_does_not_retry_what_waiting_cannot_fix(status, body, cls):
    client, transport = make_client(lambda r: HttpResponse(status, {}, body))
    with client, pytest.raises(cls):
        client.chat(MODEL, [{"role": "user", "content": "x"}])
    assert len(transport.requests) == 1


def stream_handler(transcript: bytes):
    def handler(request):
        assert request.stream
        return stream_answer(transcript.split(b"\n"))

    return handler


def test_backend_stream_hands_over_events_and_records_output_tokens():
    client, _ = make_client(stream_handler(STREAM_TRANSCRIPT))
    with client:
        with client.chat(MODEL, [{"role": "user", "content": "hi"}], stream=True) as stream:
            chunks = list(stream)
        stats = client.get_stats()
    assert chunks[0].raw["type"] == "message_start" and chunks[-1].raw["type"] == "message_stop"
    assert "ping" not in [c.raw["type"] for c in chunks]
    assert stream.text == "Hello!" and stream.finish_reason == "tool_calls"
    assert stream.usage == {"input_tokens": 25, "output_tokens": 15}
    assert stats["successful_requests"] == 1
    assert stats["tokens"]["output"] == 15


def test_backend_stream_cut_before_message_stop_fails_typed():
    cut = STREAM_TRANSCRIPT[: STREAM_TRANSCRIPT.index(b"event: message_stop")]
    client, _ = make_client(stream_handler(cut))
    with client:
        stream = client.chat(MODEL, [{"role": "user", "content": "hi"}], stream=True)
        with pytest.raises(ApiError, match="end marker"):
            list(stream)


def test_backend_stream_error_event_fails_with_overloaded():
    overloaded = STREAM_TRANSCRIPT[: STREAM_TRANSCRIPT.index(b"event: content_block_stop")] + (
        b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    )
    client, _ = make_client(stream_handler(overloaded))
    with client:
        stream = client.chat(MODEL, [{"role": "user", "content": "hi"}], stream=True)
        with pytest.raises(OverloadedError, match="Overloaded"):
            list(stream)


def test_backend_embeddings_refused_without_sending():
    client, transport = make_client(answer_message)
    with client, pytest.raises(InvalidInputError, match="no embeddings operation"):
        client.embeddings("voyage-3", "text")
    assert transport.requests == []


def test_backend_models_count_tokens_and_get_model():
    def handler(request):
        path = request.url[len(BASE) :]
        if path == "/v1/models":
            body = {"data": [{"type": "model", "id": MODEL}], "has_more": False}
        elif path == f"/v1/models/{MODEL}":
            body = {"type": "model", "id": MODEL, "display_name": "Claude Sonnet 4.5"}
        else:
            assert path == "/v1/messages/count_tokens" and "max_tokens" not in request.json()
            body = {"input_tokens": 14}
        return HttpResponse(200, {}, json.dumps(body).encode())

    client, transport = make_client(handler)
    with client:
        assert client.list_models() == [{"type": "model", "id": MODEL}]
        assert client.get_model(MODEL)["display_name"] == "Claude Sonnet 4.5"
        assert client.count_tokens(MODEL, [{"role": "user", "content": "hi"}]) == 14
        with pytest.raises(InvalidInputError):
            client.get_model("../etc")
        stats = client.get_stats()
    assert [r.method for r in transport.requests] == ["GET", "GET", "POST"]
    assert stats["tokens"]["input"] == 0  # counting tokens consumes none


@pytest.mark.parametrize(
    "metadata, env, expected_key, expected_base",
    [
        ({"anthropic_api_key": "k-meta"}, {}, "k-meta", "https://api.anthropic.com"),
        ({"claude_api_key": "k-claude"}, {}, "k-claude", "https://api.anthropic.com"),
        (
            {},
            {"ANTHROPIC_API_KEY": "k-env", "ANTHROPIC_BASE_URL": "http://env.test"},
            "k-env",
            "http://env.test",
        ),
        (
            {"claude_api_key": "k", "claude_api_base": "http://meta.test"},
            {"ANTHROPIC_BASE_URL": "http://env.test"},
            "k",
            "http://meta.test",
        ),
    ],
)
def test_key_and_base_url_sources(monkeypatch, metadata, env, expected_key, expected_base):
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = claude({}, metadata, transport=MemoryTransport(answer_message))
    with client:
        assert client.api_key == expected_key
        assert client.base_url == expected_base


def test_no_key_against_the_real_api_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    client = claude({}, {}, transport=MemoryTransport(answer_message))
    with client, pytest.raises(AuthenticationError, match="ANTHROPIC_API_KEY"):
        client.chat(MODEL, [{"role": "user", "content": "x"}])


# ------------------------------------------------ stream events in common terms


def _block_delta(index, **delta):
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _message_delta(stop_reason, **usage):
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


def _message_start(**usage):
    return {
        "type": "message_start",
        "message": {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": MODEL,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        },
    }


DELTA_CASES = [
    (
        "message_start: input tokens, output placeholder dropped",
        _message_start(input_tokens=25, output_tokens=1),
        StreamDelta(usage=(25, 0)),
    ),
    (
        "message_start: cache reads and writes are input",
        _message_start(
            input_tokens=25,
            cache_creation_input_tokens=3,
            cache_read_input_tokens=5,
            output_tokens=1,
        ),
        StreamDelta(usage=(33, 0)),
    ),
    (
        "text block opens empty",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        EMPTY_DELTA,
    ),
    (
        "text block opens with text",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": "Hi"},
        },
        StreamDelta(text="Hi"),
    ),
    (
        "tool_use block opens a call",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {},
            },
        },
        StreamDelta(
            tool_calls=(ToolCallDelta(1, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", ""),)
        ),
    ),
    (
        "thinking block",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        },
        EMPTY_DELTA,
    ),
    (
        "server tool block is not the caller's",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "server_tool_use",
                "id": "srvtoolu_01",
                "name": "web_search",
                "input": {},
            },
        },
        EMPTY_DELTA,
    ),
    ("text_delta", _block_delta(0, type="text_delta", text="Hello"), StreamDelta(text="Hello")),
    (
        "input_json_delta",
        _block_delta(1, type="input_json_delta", partial_json='{"location": "San Fra'),
        StreamDelta(tool_calls=(ToolCallDelta(1, None, None, '{"location": "San Fra'),)),
    ),
    (
        "empty input_json_delta",
        _block_delta(1, type="input_json_delta", partial_json=""),
        EMPTY_DELTA,
    ),
    ("thinking_delta", _block_delta(0, type="thinking_delta", thinking="Let me see"), EMPTY_DELTA),
    (
        "signature_delta",
        _block_delta(0, type="signature_delta", signature="EqQBCgIYAhIM1gbcDa9GJwZA"),
        EMPTY_DELTA,
    ),
    (
        "citations_delta",
        _block_delta(0, type="citations_delta", citation={"type": "char_location"}),
        EMPTY_DELTA,
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}, EMPTY_DELTA),
    (
        "end_turn, output tokens",
        _message_delta("end_turn", output_tokens=15),
        StreamDelta(finish_reason="stop", usage=(0, 15)),
    ),
    (
        "tool_use",
        _message_delta("tool_use", output_tokens=89),
        StreamDelta(finish_reason="tool_calls", usage=(0, 89)),
    ),
    (
        "max_tokens",
        _message_delta("max_tokens", output_tokens=5),
        StreamDelta(finish_reason="length", usage=(0, 5)),
    ),
    (
        "stop_sequence",
        _message_delta("stop_sequence", output_tokens=5),
        StreamDelta(finish_reason="stop", usage=(0, 5)),
    ),
    (
        "refusal kept as Anthropic says it",
        _message_delta("refusal", output_tokens=0),
        StreamDelta(finish_reason="refusal", usage=(0, 0)),
    ),
    (
        "cumulative usage carries input too",
        _message_delta("end_turn", input_tokens=25, cache_read_input_tokens=5, output_tokens=15),
        StreamDelta(finish_reason="stop", usage=(30, 15)),
    ),
    (
        "message_delta without usage",
        {"type": "message_delta", "delta": {"stop_reason": "pause_turn"}},
        StreamDelta(finish_reason="pause_turn"),
    ),
    ("message_stop", {"type": "message_stop"}, EMPTY_DELTA),
    ("an event type Anthropic may add", {"type": "some_new_event", "text": "x"}, EMPTY_DELTA),
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
        "x",
        [],
        {},
        {"type": 3},
        {"type": "message_start"},
        {"type": "message_start", "message": {"usage": 5}},
        {
            "type": "content_block_start",
            "content_block": {"type": "tool_use", "id": "t", "name": "f"},
        },  # no index
        {"type": "content_block_start", "index": True, "content_block": {"type": "tool_use"}},
        {"type": "content_block_start", "index": 0, "content_block": "text"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}},
        {
            "type": "content_block_delta",
            "index": -1,
            "delta": {"type": "input_json_delta", "partial_json": "{"},
        },
        {"type": "content_block_delta", "delta": None},
        {"type": "message_delta", "delta": "stop", "usage": None},
    ],
    ids=repr,
)
def test_stream_events_of_unknown_shape_add_nothing(chunk):
    assert WIRE.stream_delta(chunk) == EMPTY_DELTA


def test_stream_transcript_in_common_terms():
    deltas, done = stream_deltas(WIRE, decode_events(STREAM_TRANSCRIPT))
    assert done
    assert joined_text(deltas) == "Hello!"
    calls = joined_calls(deltas)
    assert list(calls) == [1]  # the tool_use is content block 1
    assert calls[1]["id"] == "toolu_01" and calls[1]["name"] == "get_weather"
    assert json.loads(calls[1]["arguments"]) == {"location": "Paris"}
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["tool_calls"]
    assert [d.usage for d in deltas if d.usage] == [(25, 0), (0, 15)]


SIMULATOR_HEADERS = {"anthropic-version": ANTHROPIC_VERSION}


def test_simulator_stream_joins_to_its_reply():
    payload = {
        "model": MODEL,
        "max_tokens": 256,
        "system": "Be brief.",
        "stream": True,
        "messages": [{"role": "user", "content": "What is the capital of France, please?"}],
    }
    events, body = simulated_stream(
        anthropic_format.FORMAT, "/v1/messages", payload, headers=SIMULATOR_HEADERS
    )
    deltas, done = stream_deltas(WIRE, events)
    assert done
    assert joined_text(deltas) == WIRE.reply_text(body) and body["content"][0]["text"].startswith(
        "Simulated reply"
    )
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert [d.usage for d in deltas if d.usage][-1] == WIRE.usage(body)
    assert not any(d.tool_calls for d in deltas)


def test_simulator_tool_use_stream_joins_to_the_tool_input():
    payload = {
        "model": MODEL,
        "max_tokens": 256,
        "stream": True,
        "tools": TOOLS,
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    events, body = simulated_stream(
        anthropic_format.FORMAT, "/v1/messages", payload, headers=SIMULATOR_HEADERS
    )
    deltas, done = stream_deltas(WIRE, events)
    [block] = body["content"]
    assert done and joined_text(deltas) == ""
    assert joined_calls(deltas) == {
        0: {"id": block["id"], "name": "get_weather", "arguments": json.dumps(block["input"])}
    }
    assert (
        json.loads(joined_calls(deltas)[0]["arguments"])
        == block["input"]
        == {"location": "Weather in Paris?"}
    )
    assert deltas[-2].finish_reason == "tool_calls"


def test_each_request_gets_its_own_headers_for_its_own_key():
    """What build_request remembers (endpoints' paths, the headers that hold no key)
    never leaks between requests."""
    endpoint, data = WIRE.chat_request(MODEL, [{"role": "user", "content": "hi"}], {}, False)
    first = WIRE.build_request(
        endpoint, data, api_key="sk-ant-first", base_url=BASE, timeout=None, request_id="r1"
    )
    first.headers["x-api-key"] = "changed by a transport"
    second = WIRE.build_request(
        endpoint, data, api_key="sk-ant-second", base_url=BASE, timeout=None
    )
    again = WIRE.build_request(endpoint, data, api_key="sk-ant-first", base_url=BASE, timeout=None)
    assert second.headers["x-api-key"] == "sk-ant-second"
    assert again.headers["x-api-key"] == "sk-ant-first"
    assert "X-Client-Request-Id" not in again.headers
    assert again.secret_headers == frozenset({"x-api-key"})
    named = WIRE.build_request(
        endpoint,
        data,
        api_key=None,
        base_url=BASE,
        timeout=None,
        extra_headers=(("X-Tenant", "t"),),
    )
    assert "x-api-key" not in named.headers and named.secret_headers == frozenset({"x-tenant"})
    many = [
        WIRE.build_request(endpoint, data, api_key=f"sk-ant-{i}", base_url=BASE, timeout=None)
        for i in range(600)
    ]
    assert [r.headers["x-api-key"] for r in many] == [f"sk-ant-{i}" for i in range(600)]
    paths = [
        WIRE.build_request(f"v1/custom/{i}", data, api_key="k", base_url=BASE, timeout=None).url
        for i in range(600)  # past the 256 paths it remembers: it starts again, answers stay right
    ]
    assert paths == [f"{BASE}/v1/custom/{i}" for i in range(600)]


def test_a_provider_keeps_no_key_once_its_request_is_built():
    """A provider is shared by every client of its class: what it remembers holds no key."""
    endpoint, data = WIRE.chat_request(MODEL, [{"role": "user", "content": "hi"}], {}, False)
    for stream in (False, True):
        WIRE.build_request(
            endpoint,
            data,
            api_key="sk-ant-kept-nowhere",
            base_url=BASE,
            timeout=None,
            stream=stream,
        )
    assert "sk-ant-kept-nowhere" not in repr(vars(WIRE))
