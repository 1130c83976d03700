"""What an attempt holds comes back, whatever raises, wherever.

An attempt holds a concurrency slot, a breaker permit (the one probe a
HALF_OPEN circuit lets through) and a key lease.  Each test here opens the
circuit, lets it turn HALF_OPEN (a fake clock, no sleeping), sends one probe
that fails at one step of the attempt (building the request, sending it,
reading the answer, parsing it, reading its usage, the stream), then
counts what is still held and checks that the next request reaches the
server and succeeds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.resilience.clock import FakeClock
from ipfs_accelerate_py.resilience.errors import ApiError, InvalidInputError, MalformedResponseError
from ipfs_accelerate_py.transport.base import HttpResponse, StreamResponse
from ipfs_accelerate_py.transport.memory import MemoryTransport

from ..helpers import QUICK_RETRIES, WAIT, answer, stream_answer

MODEL = "gpt-4o-mini"
RESET = 10.0


def chat_data(text: str = "hi", **extra: Any) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def chat_body(usage: Any = None) -> bytes:
    usage = usage if usage is not None else '{"prompt_tokens": 2, "completion_tokens": 3}'
    return (
        b'{"choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":%s}'
        % str(usage).encode()
    )


def stream_lines(texts=("one ", "two")) -> list:
    lines = []
    for text in texts:
        lines += [
            b"data: "
            + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode(),
            b"",
        ]
    return lines + [b"data: [DONE]", b""]


class Server:
    """The in-memory server: 500 while ``down``, else a chat answer (or a
    stream); ``fault(request)`` may replace the answer; counts what it saw."""

    def __init__(self) -> None:
        self.down = False
        self.fault: Callable[[Any], Any] = lambda request: None
        self.seen = 0

    def __call__(self, request) -> Any:
        self.seen += 1
        if self.down:
            return answer(500, {"error": {"message": "down"}})
        faulty = self.fault(request)
        if faulty is not None:
            return faulty
        if request.stream:
            return stream_answer(stream_lines())
        return HttpResponse(200, {"content-type": "application/json"}, chat_body())


@pytest.fixture
def half_open():
    """``(client, server, clock)``: a client whose circuit is HALF_OPEN."""
    clock, server = FakeClock(), Server()
    metadata = {
        "openai_api_base": "http://test.invalid/v1",
        "openai_api_key": "sk-test-0123456789abcdef0123",
        "failure_threshold": 1,
        "reset_timeout": RESET,
        "max_retries": 0,
        **QUICK_RETRIES,
    }
    client = openai_api({}, metadata, transport=MemoryTransport(server), clock=clock)
    server.down = True
    assert (
        client.queue_with_priority({"endpoint": "chat/completions", "data": chat_data()}).exception(
            WAIT
        )
        is not None
    )
    server.down = False
    clock.advance(RESET + 1)
    assert client.circuit_state == "HALF_OPEN"
    yield client, server, clock
    client.close()


def outcome(client, data: dict, stream: bool = False) -> Any:
    """The request's result or error (a stream read to its end), never waiting past WAIT."""
    future = client.queue_with_priority(
        {"endpoint": "chat/completions", "data": data, "stream": stream}
    )
    error = future.exception(WAIT)
    if error is not None or not stream:
        return error if error is not None else future.result(0)
    try:
        return [chunk.text for chunk in future.result(0)]
    except Exception as exc:  # the stream's own end
        return exc


def held(client) -> dict:
    """What is still held: slots, key leases, half-open probe permits."""
    stats = client.get_stats()
    return {
        "in_flight": stats["in_flight"],
        "key_leases": sum(row["in_flight"] for row in stats["key_pool"].values()),
        "probes": client.generate_report()["circuit_breaker"]["half_open_in_flight"],
    }


NOTHING = {"in_flight": 0, "key_leases": 0, "probes": 0}


def assert_all_back_and_next_goes_through(client, server, clock) -> None:
    assert held(client) == NOTHING
    if client.circuit_state == "OPEN":  # the probe counted as a failure: wait for the next probe
        clock.advance(RESET + 1)
    server.fault = lambda request: None
    before = server.seen
    assert outcome(client, chat_data("next"))["choices"][0]["message"]["content"] == "ok"
    assert server.seen == before + 1
    assert client.circuit_state == "CLOSED"
    assert held(client) == NOTHING


def boom(kind: type) -> Callable[..., Any]:
    def raiser(*args: Any, **kwargs: Any) -> Any:
        raise (
            kind("injected")
            if kind is not MalformedResponseError
            else kind("injected", provider="openai")
        )

    return raiser


# --------------------------------------------------------------- the steps


def test_unserialisable_data_in_the_probe_gives_back_its_permit(half_open):
    client, server, clock = half_open
    seen = server.seen
    error = outcome(client, chat_data(tags={"a", "set"}))
    assert isinstance(error, InvalidInputError) and "cannot be sent as JSON" in str(error)
    assert server.seen == seen  # refused before sending
    assert_all_back_and_next_goes_through(client, server, clock)


@pytest.mark.parametrize("kind", [RuntimeError, InvalidInputError, MalformedResponseError])
@pytest.mark.parametrize("step", ["build", "send", "read", "parse"])
def test_an_exception_at_each_step_leaves_nothing_held(half_open, monkeypatch, step, kind):
    client, server, clock = half_open
    engine = client._engine
    if step == "build":
        monkeypatch.setattr(engine.provider, "build_request", boom(kind))
    elif step == "send":
        server.fault = boom(kind)
    elif step == "read":  # the engine reads the answer's headers (rate-limit hints) before its body
        monkeypatch.setattr(engine.keys, "hints", boom(kind))
    else:
        monkeypatch.setattr(engine.provider, "parse_response", boom(kind))
    error = outcome(client, chat_data())
    assert isinstance(error, Exception), error
    monkeypatch.undo()
    assert_all_back_and_next_goes_through(client, server, clock)


@pytest.mark.parametrize("usage", ["NaN", "1e400", '"many"', "-5", '{"prompt_tokens": "x"}'])
def test_garbage_usage_is_ignored_with_a_warning_and_the_request_succeeds(half_open, caplog, usage):
    client, server, clock = half_open
    figures = (
        f'{{"prompt_tokens": {usage}, "completion_tokens": 1}}'
        if not usage.startswith("{")
        else usage
    )
    server.fault = lambda request: HttpResponse(200, {}, chat_body(figures))
    with caplog.at_level(logging.WARNING, "ipfs_accelerate_py.engine"):
        result = outcome(client, chat_data())
    assert result["choices"][0]["message"]["content"] == "ok", result
    assert client.get_stats()["successful_requests"] >= 1
    if usage in ("NaN", "1e400", '"many"'):
        assert any("usage" in record.getMessage() for record in caplog.records), caplog.text
    assert_all_back_and_next_goes_through(client, server, clock)


@pytest.mark.parametrize("kind", [RuntimeError, MalformedResponseError])
@pytest.mark.parametrize("step", ["first_chunk", "chunk_delta", "stream_read"])
def test_an_exception_in_a_stream_leaves_nothing_held(half_open, monkeypatch, step, kind):
    client, server, clock = half_open
    engine = client._engine
    if step == "first_chunk":
        monkeypatch.setattr(engine.provider, "parse_stream_event", boom(kind))
    elif step == "chunk_delta":
        monkeypatch.setattr(engine.provider, "stream_delta", boom(kind))
    else:
        server.fault = lambda request: _failing_stream(kind)
    error = outcome(client, chat_data(), stream=True)
    assert isinstance(error, ApiError), error  # typed, whatever was raised
    if step != "stream_read":
        assert isinstance(error, MalformedResponseError), (
            error
        )  # a chunk that cannot be read is a malformed answer
    monkeypatch.undo()
    assert_all_back_and_next_goes_through(client, server, clock)


def _failing_stream(kind: type) -> StreamResponse:
    """A stream that sends one chunk, then fails with ``kind``."""
    error = (
        kind("injected")
        if kind is not MalformedResponseError
        else kind("injected", provider="openai")
    )

    async def produce():
        yield stream_lines(["one "])[0]
        yield b""
        raise error

    async def close() -> None:
        pass

    return StreamResponse(200, {"content-type": "text/event-stream"}, produce(), close)
