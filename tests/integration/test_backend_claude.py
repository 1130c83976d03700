"""``claude`` against the simulator's Anthropic format over real loopback HTTP:
the request as Anthropic documents it, responses, tool use, named-event
streams, errors (401, 404, 429 with ``anthropic-ratelimit-*``, 500, 529) with
the retries and breaker behaviour the core decides.

Nothing sleeps to wait for an event; the only real waits are the simulator's
sub-second rate-limit windows and Retry-After figures.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from ipfs_accelerate_py.api_backends.claude import claude
from ipfs_accelerate_py.providers.anthropic import ANTHROPIC_VERSION, DEFAULT_MAX_TOKENS
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidInputError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    ServerError,
)
from ipfs_accelerate_py.simulator import Simulator, estimate_tokens, key_fingerprint
from ipfs_accelerate_py.transport.base import HttpResponse

from ..helpers import FAST, REPLY_PREFIX, ClientFactory, post_json, recorder_fixture

KEY = "sk-ant-integration-0123456789"
MODEL = "claude-sonnet-4-5"
WIRE = claude.provider
TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
    },
}


make_client = ClientFactory(claude, "anthropic_api_base", "anthropic_api_key", FAST, key=KEY).on


def user(text: str) -> list:
    return [{"role": "user", "content": text}]


def reply_text(message: dict) -> str:
    return "".join(b["text"] for b in message["content"] if b["type"] == "text")


def raw_post(sim: Simulator, body: dict, key: str = KEY) -> HttpResponse:
    """One request by hand, to look at the simulator's headers."""
    headers = {
        "content-type": "application/json",
        "x-api-key": key,
        "anthropic-version": ANTHROPIC_VERSION,
    }
    return post_json(sim.url + "/v1/messages", body, headers)


# --------------------------------------------------------------- operations


def test_chat_reply_usage_and_what_the_server_counted(simulator):
    messages = [{"role": "system", "content": "Be brief."}] + user("Hello there")
    with make_client(simulator) as client:
        message = client.chat(MODEL, messages)
        stats = client.get_stats()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert reply_text(message) == REPLY_PREFIX + "Hello there"
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {
        "input_tokens": estimate_tokens("Be brief.") + estimate_tokens("Hello there"),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": estimate_tokens(REPLY_PREFIX + "Hello there"),
    }
    counted = simulator.counters()
    assert counted["by_path"] == {"/v1/messages": 1}
    assert counted["by_format"] == {"anthropic": 1}
    assert counted["by_key"] == {key_fingerprint(KEY): 1}
    assert counted["by_model"] == {MODEL: 1}
    assert stats["tokens"]["input"] == counted["tokens"]["prompt"]
    assert stats["tokens"]["output"] == counted["tokens"]["completion"]


def test_max_tokens_and_stop_sequences_reach_the_server(simulator):
    with make_client(simulator) as client:
        cut = client.chat(MODEL, user("a fairly long prompt to be cut"), max_tokens=2)
        stopped = client.chat(MODEL, user("one two three"), stop_sequences=["two"])
    assert (reply_text(cut), cut["stop_reason"]) == (
        (REPLY_PREFIX + "a fairly long")[:8],
        "max_tokens",
    )
    assert (reply_text(stopped), stopped["stop_reason"], stopped["stop_sequence"]) == (
        REPLY_PREFIX + "one ",
        "stop_sequence",
        "two",
    )


def test_tool_use_round_trip(simulator):
    with make_client(simulator) as client:
        first = client.chat(
            MODEL, user("Paris"), tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather"}
        )
        [block] = first["content"]
        assert first["stop_reason"] == "tool_use"
        assert block["type"] == "tool_use" and block["name"] == "get_weather"
        assert block["input"] == {"location": "Paris"}
        turns = user("Paris") + [
            {"role": "assistant", "content": first["content"]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": block["id"], "content": "15 degrees"}
                ],
            },
        ]
        second = client.chat(MODEL, turns, tools=[TOOL])
    assert reply_text(second) == REPLY_PREFIX + "15 degrees"


def test_count_tokens(simulator):
    with make_client(simulator) as client:
        counted = client.count_tokens(
            MODEL, [{"role": "system", "content": "sys prompt"}] + user("count these words")
        )
    assert counted == estimate_tokens("sys prompt") + estimate_tokens("count these words")
    assert simulator.counters()["by_path"] == {"/v1/messages/count_tokens": 1}


def test_list_models_reads_the_models_route(simulator):
    with make_client(simulator) as client:
        models = client.list_models()
    assert [m["id"] for m in models] == list(simulator.scenario["models"])
    assert simulator.counters()["by_path"] == {"/v1/models": 1}


def test_embeddings_are_refused_without_a_request(simulator):
    with make_client(simulator) as client:
        with pytest.raises(InvalidInputError, match="no embeddings operation"):
            client.embeddings("voyage-3", ["a", "b"])
    assert simulator.counters()["requests_total"] == 0


# ------------------------------------------------------- the request as sent


recorder = recorder_fixture(
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
)


def test_request_as_sent_headers_and_body(recorder):
    base_url, seen = recorder
    with claude({}, {"claude_api_key": KEY, "claude_api_base": base_url}) as client:
        client.chat(
            MODEL,
            [{"role": "system", "content": "S"}] + user("hi"),
            temperature=0.5,
            tools=[TOOL],
            tool_choice={"type": "auto"},
            request_id="req-9",
        )
    [(method, path, headers, body)] = seen
    assert (method, path) == ("POST", "/v1/messages")
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == ANTHROPIC_VERSION
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers
    assert json.loads(body) == {
        "model": MODEL,
        "messages": user("hi"),
        "system": "S",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "temperature": 0.5,
        "tools": [TOOL],
        "tool_choice": {"type": "auto"},
    }


# ---------------------------------------------------------------- streaming


def test_stream_events_join_to_the_non_stream_reply(simulator):
    text = "stream me a reply with several words in it please"
    with make_client(simulator) as client:
        whole = client.chat(MODEL, user(text))
        with client.chat(MODEL, user(text), stream=True) as stream:
            events = list(stream)
        stats = client.get_stats()
    kinds = [e.raw["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert "ping" not in kinds
    deltas = [e.text for e in events if e.text]
    assert len(deltas) > 2 and "".join(deltas) == stream.text == reply_text(whole)
    assert events[-2].raw["delta"]["stop_reason"] == "end_turn"
    assert events[-2].finish_reason == stream.finish_reason == "stop"
    assert stream.usage == {
        "input_tokens": whole["usage"]["input_tokens"],
        "output_tokens": whole["usage"]["output_tokens"],
    }
    assert events[0].raw["message"]["usage"]["input_tokens"] == whole["usage"]["input_tokens"]
    assert simulator.counters()["streams"] == {"started": 1, "finished": 1}
    # message_delta carries the cumulative usage (input too), so the stream is counted in full
    assert events[-2].raw["usage"]["input_tokens"] == whole["usage"]["input_tokens"]
    assert stats["tokens"]["output"] == 2 * whole["usage"]["output_tokens"]
    assert stats["tokens"]["input"] == 2 * whole["usage"]["input_tokens"]


def test_stream_tool_input_json_deltas_join_to_the_input(simulator):
    choice = {"type": "any"}
    with make_client(simulator) as client:
        whole = client.chat(MODEL, user("Lisbon"), tools=[TOOL], tool_choice=choice)
        with client.chat(
            MODEL, user("Lisbon"), tools=[TOOL], tool_choice=choice, stream=True
        ) as stream:
            events = list(stream)
    start = next(e.raw for e in events if e.raw["type"] == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["input"] == {}
    partial = "".join(piece.arguments for e in events for piece in e.tool_calls)
    assert json.loads(partial) == whole["content"][0]["input"] == {"location": "Lisbon"}
    (call,) = stream.tool_calls
    assert (call["index"], call["id"], call["name"]) == (
        0,
        start["content_block"]["id"],
        "get_weather",
    )
    assert json.loads(call["arguments"]) == {"location": "Lisbon"}
    assert stream.finish_reason == "tool_calls"


def test_stream_cut_by_the_server_is_a_network_error(simulator):
    simulator.configure(stream_cut_after=3)
    with make_client(simulator) as client:
        stream = client.chat(MODEL, user("cut me off early please"), stream=True)
        with pytest.raises(NetworkError):
            list(stream)
        assert client.get_stats()["failed_requests"] == 1
    assert simulator.counters()["faults"]["stream_cut"] == 1


def sse(*events: dict) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


START = {
    "type": "message_start",
    "message": {
        "id": "msg_s",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": MODEL,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    },
}
BLOCK = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
DELTA = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}


@pytest.mark.parametrize(
    "transcript, cls, says",
    [
        (
            sse(START, BLOCK, DELTA),
            NetworkError,
            "end marker",
        ),  # closed cleanly without message_stop
        (
            sse(
                START,
                BLOCK,
                DELTA,
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ),
            OverloadedError,
            "Overloaded",
        ),
    ],
)
def test_stream_that_ends_without_message_stop_or_with_an_error_event(
    simulator, transcript, cls, says
):
    simulator.script(
        [{"body": transcript, "headers": {"Content-Type": "text/event-stream"}}],
        path="/v1/messages",
    )
    with make_client(simulator) as client:
        stream = client.chat(MODEL, user("x"), stream=True)
        got = []
        with pytest.raises(cls, match=says) as info:
            for event in stream:
                got.append(event)
    assert [e.raw["type"] for e in got] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
    ]
    assert stream.text == info.value.partial_text == "Hel"
    assert info.value.chunks_received == 3


# ------------------------------------------------------------------- errors


def test_401_with_anthropics_message_is_not_retried(simulator):
    simulator.configure(valid_keys=["sk-ant-the-right-one"])
    with make_client(simulator, key="sk-ant-wrong") as client:
        with pytest.raises(AuthenticationError, match="invalid x-api-key") as caught:
            client.chat(MODEL, user("x"))
        assert client.circuit_state == "CLOSED"
    assert caught.value.status == 401
    assert simulator.counters()["by_status"] == {"401": 1}


def test_404_for_an_unknown_model_is_not_retried(simulator):
    simulator.configure(strict_models=True, models=["claude-haiku-4-5"])
    with make_client(simulator) as client:
        with pytest.raises(NotFoundError, match="model: claude-nope"):
            client.chat("claude-nope", user("x"))
    assert simulator.counters()["by_status"] == {"404": 1}


def test_400_from_the_server_names_the_field(simulator):
    with make_client(simulator) as client:
        with pytest.raises(InvalidRequestError, match="max_tokens: Field required"):
            client.make_request("messages", {"model": MODEL, "messages": user("x")})
    assert simulator.counters()["by_status"] == {"400": 1}


def test_429_carries_anthropic_rate_limit_headers(simulator):
    simulator.configure(rate_limits={"rpm": 1, "tpm": 1000}, rate_window=30.0)
    body = {"model": MODEL, "max_tokens": 10, "messages": user("x")}
    first, second = raw_post(simulator, body), raw_post(simulator, body)
    assert first.status == 200
    hints = WIRE.rate_limit_hints(first.headers)
    assert hints["requests_remaining"] == 0
    assert hints["tokens_remaining"] < 1000
    assert 25.0 <= hints["requests_reset"] <= 31.0
    assert second.status == 429
    error = WIRE.error_for(second, wall_now=0.0, attempt=1)
    assert isinstance(error, RateLimitError)
    assert error.retry_after is not None and 25.0 <= error.retry_after <= 30.0
    assert json.loads(second.body)["error"]["type"] == "rate_limit_error"


def test_429_is_retried_after_the_servers_wait(simulator):
    simulator.configure(rate_limits={"rpm": 1}, rate_window=0.3)
    with make_client(simulator, failure_threshold=1) as client:
        replies = [reply_text(client.chat(MODEL, user(t))) for t in ("a", "b")]
        stats = client.get_stats()
        assert client.circuit_state == "CLOSED"  # a rate limit is not an outage
    assert replies == [REPLY_PREFIX + "a", REPLY_PREFIX + "b"]
    assert stats["retried_requests"] == 1
    assert simulator.counters()["rate_limited"] == 1


def test_429_without_retries_reports_the_wait(simulator):
    simulator.configure(rate_limits={"rpm": 1}, rate_window=30.0)
    with make_client(simulator, max_retries=0) as client:
        client.chat(MODEL, user("a"))
        with pytest.raises(RateLimitError, match="rate limit") as caught:
            client.chat(MODEL, user("b"))
    assert 25.0 <= caught.value.retry_after <= 30.0


@pytest.mark.parametrize("status, cls", [(529, OverloadedError), (500, ServerError)])
def test_server_errors_are_retried_and_count_against_the_breaker(simulator, status, cls):
    simulator.configure(fail_next=2, error_status=status)
    with make_client(simulator, failure_threshold=5) as client:
        message = client.chat(MODEL, user("after the storm"))
        breaker = client.generate_report()["circuit_breaker"]
    assert reply_text(message) == REPLY_PREFIX + "after the storm"
    assert simulator.counters()["by_status"] == {str(status): 2, "200": 1}
    assert breaker["window"]["failures"] == 2 and breaker["state"] == "CLOSED"


def test_529_error_body_is_anthropics(simulator):
    simulator.configure(fail_next=2, error_status=529)
    raw = raw_post(simulator, {"model": MODEL, "max_tokens": 10, "messages": user("x")})
    assert raw.status == 529
    assert json.loads(raw.body) == {
        "type": "error",
        "error": {
            "type": "overloaded_error",
            "message": "Simulated server error (injected fault).",
        },
    }
    with make_client(simulator, max_retries=0) as client:
        with pytest.raises(OverloadedError, match="Simulated server error") as caught:
            client.chat(MODEL, user("x"))
    assert caught.value.status == 529


def test_an_outage_answers_529_and_opens_the_circuit(simulator):
    simulator.configure(outage=True)
    with make_client(simulator, failure_threshold=3, max_retries=2, reset_timeout=60) as client:
        with pytest.raises(OverloadedError):
            client.chat(MODEL, user("x"))
        assert client.circuit_state == "OPEN"
    assert simulator.counters()["by_status"] == {"529": 3}


def test_malformed_body_is_retried(simulator):
    simulator.configure(malformed_next=1)
    with make_client(simulator) as client:
        message = client.chat(MODEL, user("whole again"))
    assert reply_text(message) == REPLY_PREFIX + "whole again"
    assert simulator.counters()["faults"]["malformed"] == 1


def test_the_simulator_refuses_a_request_without_anthropic_version(simulator):
    """So every other test here also shows the backend sent the header."""
    request = urllib.request.Request(
        simulator.url + "/v1/messages",
        data=json.dumps({"model": MODEL, "max_tokens": 5, "messages": user("x")}).encode(),
        headers={"content-type": "application/json", "x-api-key": KEY},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
