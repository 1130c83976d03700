"""Streams of every backend that streams, sync and async, over loopback
against the simulator's own wire format for that backend.

After the first chunk a stall, a cut or a malformed chunk ends the stream
with a typed error that says how much arrived (and carries it); before the
first chunk the same faults are retried like any request.  Closing a
stream early frees its slot and key and the simulator sees the connection
close.  The statistics record each stream's end, time to first token and
rate.
"""

from __future__ import annotations

import asyncio

import pytest

from ipfs_accelerate_py.api_backends import BACKENDS
from ipfs_accelerate_py.providers.base import Wire
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    MalformedResponseError,
    NetworkError,
    RequestTimeoutError,
    StreamStalledError,
)

from ..helpers import FAST, REPLY_PREFIX, WAIT, ClientFactory, eventually, messages

STREAMING = sorted(
    name
    for name, backend in BACKENDS.items()
    if type(backend.provider).parse_stream_event is not Wire.parse_stream_event
    and backend.provider.spec.default_chat_model
)
MODES = ("sync", "async")
TEXT = "one two three four five six seven eight"
KEY = "sk-streams-0123456789"


def test_every_backend_that_chats_streams():
    assert set(STREAMING) == {
        "claude",
        "gemini",
        "groq",
        "hf_tgi",
        "ollama",
        "openai",
        "opea",
        "ovms",
        "vllm",
    }


def make(name: str, simulator, **settings):
    backend = BACKENDS[name]
    metadata = backend.connection_metadata(
        simulator.url + backend.provider.spec.simulator_path, KEY
    )
    metadata.update(FAST, **settings)
    return backend({}, metadata)


def model_of(client) -> str:
    return client.provider.spec.default_chat_model


def read(client, mode: str, text: str = TEXT, *, stop_after=None):
    """``(chunks, error, stream)``: the stream read to its end (or its
    error, or ``stop_after`` chunks, then closed), sync or async."""
    if mode == "sync":
        chunks = []
        with client.chat(model_of(client), messages(text), stream=True) as stream:
            try:
                for chunk in stream:
                    chunks.append(chunk)
                    if stop_after is not None and len(chunks) >= stop_after:
                        break
            except ApiError as error:
                return chunks, error, stream
        return chunks, None, stream

    async def main():
        chunks = []
        stream = await client.achat(model_of(client), messages(text), stream=True)
        async with stream:
            try:
                async for chunk in stream:
                    chunks.append(chunk)
                    if stop_after is not None and len(chunks) >= stop_after:
                        break
            except ApiError as error:
                return chunks, error, stream
        return chunks, None, stream

    return asyncio.run(main())


def assert_says_what_arrived(chunks: list, error: ApiError) -> None:
    assert chunks, "the fault was set after the first chunk"
    assert error.chunks_received == len(chunks)
    assert error.partial_text == "".join(c.text for c in chunks)
    assert (
        f"stream ended after {len(chunks)} chunks, {len(error.partial_text)} characters of text"
        in str(error)
    )
    assert (REPLY_PREFIX + TEXT).startswith(error.partial_text)


def assert_released(client) -> None:
    eventually(lambda: client.current_requests == 0, "the stream's slot is free")
    pool = client.get_stats()["key_pool"]
    assert all(row["in_flight"] == 0 for row in pool.values()), pool


backends = pytest.mark.parametrize("name", STREAMING)
modes = pytest.mark.parametrize("mode", MODES)


# ------------------------------------------------------------- whole streams


@backends
@modes
def test_a_stream_joins_to_the_reply_and_records_its_figures(simulator, name, mode):
    with make(name, simulator) as client:
        chunks, error, stream = read(client, mode)
        stats = client.get_stats()
        report = client.generate_report()
    assert error is None
    assert report["streams"] == stats["streams"]
    assert stream.text == "".join(c.text for c in chunks) == REPLY_PREFIX + TEXT
    assert stream.finish_reason == "stop"
    assert chunks[-1].raw is not None
    assert simulator.counters()["streams"] == {"started": 1, "finished": 1}
    streams = stats["streams"]
    assert (streams["total"], streams["completed"], streams["failed"]) == (1, 1, 0)
    assert streams["time_to_first_token"]["count"] == 1
    assert 0 < streams["time_to_first_token"]["max"] < WAIT
    assert streams["tokens_per_second"]["streams_measured"] == 1
    assert stats["successful_requests"] == 1


# ------------------------------------------------- faults after the first chunk


MID_STREAM_FAULTS = {
    # fault: (simulator scenario, client settings, error raised, its kind, the simulator's fault counter)
    "stall": ({"stream_stall_after": 3, "stall_seconds": 5.0}, {"stream_stall_timeout": 0.1},
              StreamStalledError, "stream_stalled", "stream_stall"),
    "cut": ({"stream_cut_after": 3}, {}, NetworkError, "network", "stream_cut"),
    "malformed": ({"stream_malformed_after": 3}, {}, MalformedResponseError, "malformed", "stream_malformed"),
}  # fmt: skip


@backends
@modes
@pytest.mark.parametrize("fault", sorted(MID_STREAM_FAULTS))
def test_a_fault_after_the_first_chunk_ends_the_stream_with_a_typed_error_saying_what_arrived(
    fresh_simulator, name, mode, fault
):
    scenario, settings, error_type, kind, counter = MID_STREAM_FAULTS[fault]
    fresh_simulator.configure(**scenario)
    with make(name, fresh_simulator, max_retries=3, **settings) as client:
        chunks, error, _ = read(client, mode)
        assert isinstance(error, error_type)
        assert_says_what_arrived(chunks, error)
        assert_released(client)
        stats = client.get_stats()
    assert stats["streams"]["ended_by"] == {kind: 1}
    assert stats["failed_requests"] == 1 and stats["errors_by_type"] == {kind: 1}
    counted = fresh_simulator.counters()
    assert (
        counted["requests_total"] == 1
    )  # a started stream is not retried: its text was handed over
    assert counted["faults"][counter] == 1


def test_a_stall_names_the_setting_that_bounds_it(fresh_simulator):
    fresh_simulator.configure(stream_stall_after=3, stall_seconds=5.0)
    with make("openai", fresh_simulator, stream_stall_timeout=0.2) as client:
        _, error, _ = read(client, "sync")
        stats = client.get_stats()
    assert isinstance(error, RequestTimeoutError)
    assert "no chunk for 0.2s (see client.stream_stall_timeout)" in str(error)
    assert stats["streams"]["stalled"] == 1


# ------------------------------------------------ faults before the first chunk


@backends
@modes
@pytest.mark.parametrize("fault", ["stream_cut_after", "stream_malformed_after"])
def test_a_fault_before_the_first_chunk_is_retried_and_the_caller_sees_a_whole_stream(
    simulator, name, mode, fault
):
    simulator.script([{fault: 0}])
    with make(name, simulator, max_retries=2) as client:
        chunks, error, stream = read(client, mode)
        stats = client.get_stats()
    assert error is None
    assert stream.text == REPLY_PREFIX + TEXT
    assert simulator.counters()["requests_total"] == 2
    assert stats["total_attempts"] == 2 and stats["successful_requests"] == 1


@backends
@modes
def test_a_stream_that_stalls_before_its_first_chunk_is_retried(fresh_simulator, name, mode):
    fresh_simulator.script([{"stream_stall_after": 0}])
    fresh_simulator.configure(stall_seconds=5.0)
    with make(name, fresh_simulator, timeout=0.15, max_retries=2) as client:
        chunks, error, stream = read(client, mode)
        stats = client.get_stats()
    assert error is None
    assert stream.text == REPLY_PREFIX + TEXT
    assert fresh_simulator.counters()["requests_total"] == 2
    assert stats["errors_by_type"] == {} and stats["http_attempts"] == 2
    assert stats["streams"]["completed"] == 1


# ---------------------------------------------------------- closing early


@backends
@modes
def test_closing_a_stream_early_frees_its_slot_and_key_and_the_server_sees_it_go(
    fresh_simulator, name, mode
):
    fresh_simulator.configure(stream_chunk_delay=0.05)
    with make(name, fresh_simulator, max_concurrent_requests=1) as client:
        chunks, error, stream = read(client, mode, stop_after=2)
        assert error is None and len(chunks) == 2 and stream.finished
        assert_released(client)
        eventually(
            lambda: fresh_simulator.counters()["client_disconnects"] == 1,
            "the simulator sees the client go",
        )
        stats = client.get_stats()
        assert (
            client.chat(model_of(client), messages("after")) is not None
        )  # the one slot is free again
    assert fresh_simulator.counters()["streams"]["finished"] == 0
    assert stats["streams"]["cancelled"] == 1
    assert stats["cancelled_requests"] == 1 and stats["failed_requests"] == 0


def test_a_stream_dropped_without_closing_is_closed_when_collected(fresh_simulator):
    fresh_simulator.configure(stream_chunk_delay=0.05)
    with make("openai", fresh_simulator, max_concurrent_requests=1) as client:
        stream = client.chat(model_of(client), messages(TEXT), stream=True)
        next(stream)
        del stream
        assert_released(client)
        eventually(
            lambda: fresh_simulator.counters()["client_disconnects"] == 1,
            "the simulator sees the client go",
        )


def test_reading_after_close_gives_nothing_more_and_close_twice_is_harmless(simulator):
    with make("openai", simulator) as client:
        stream = client.chat(model_of(client), messages(TEXT), stream=True)
        first = next(stream)
        stream.close()
        stream.close()
        assert list(stream) == []
        assert stream.received == 1 and stream.text == first.text


def test_a_slow_reader_holds_the_stream_back_instead_of_buffering_it_all():
    """The feeder stops reading once HIGH_WATER chunks wait for the caller
    (the server is held back by TCP), and reads on when the caller catches up."""
    import json

    from ipfs_accelerate_py.api_backends import openai_api
    from ipfs_accelerate_py.engine.stream import HIGH_WATER
    from ipfs_accelerate_py.transport.base import StreamResponse

    total = 3 * HIGH_WATER
    produced = []

    async def lines():
        for i in range(total):
            produced.append(i)
            yield (
                b"data: "
                + json.dumps({"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}).encode()
            )
            yield b""
        yield b"data: [DONE]"
        yield b""

    async def close():
        pass

    make = ClientFactory(openai_api, "openai_api_base", "openai_api_key", defaults=FAST, key=KEY)
    client, _ = make.in_memory(
        lambda request: StreamResponse(200, {"content-type": "text/event-stream"}, lines(), close)
    )
    with client:
        stream = client.chat("gpt-4o-mini", messages("long"), stream=True)
        eventually(lambda: stream.channel._room is not None, "the feeder waits for room")
        assert len(produced) == len(stream.channel) == HIGH_WATER
        text = "".join(c.text for c in stream)
    assert text == "".join(f"w{i} " for i in range(total))
    assert len(produced) == total


# --------------------------------------------------------------- tool calls


def test_tool_call_pieces_assemble_into_the_call(simulator):
    """Anthropic's simulator streams a tool_use block when a tool is forced."""
    tools = [
        {
            "name": "lookup",
            "description": "d",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
    ]
    with make("claude", simulator) as client:
        stream = client.chat(
            model_of(client),
            messages("find it"),
            stream=True,
            tools=tools,
            tool_choice={"type": "tool", "name": "lookup"},
        )
        chunks = list(stream)
    assert any(c.tool_calls for c in chunks)
    (call,) = stream.tool_calls
    assert call["name"] == "lookup" and call["id"]
    import json

    assert isinstance(json.loads(call["arguments"]), dict)
    assert stream.finish_reason == "tool_calls"
