"""How much of an answer the client reads, over real HTTP (a loopback
aiohttp server): a body past ``max_response_bytes`` and a stream line (or
SSE event) past ``max_stream_line_bytes`` end the request with
ResponseTooLargeError, which says how much was read: reading stops at the
limit (memory stays bounded by it), however much the server would send.
And no exception of the HTTP library reaches the caller untranslated.
"""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
from aiohttp import web

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.engine.settings import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_STREAM_LINE_BYTES,
)
from ipfs_accelerate_py.resilience.errors import ApiError, ResponseTooLargeError, SettingError

from ..helpers import FAST, WAIT, ClientFactory, aiohttp_server, messages

KIB, MIB = 1024, 1024 * 1024
READ_CHUNK = 64 * KIB
make = ClientFactory(
    openai_api,
    "openai_api_base",
    "openai_api_key",
    {**FAST, "max_retries": 2},
    key="sk-limits-0123456789",
)


def chunk_line(text: str) -> bytes:
    return (
        b"data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode()
        + b"\n\n"
    )


def chat(client, **data):
    future = client.queue_with_priority(
        {"endpoint": "chat/completions", "data": {"model": "m", "messages": messages("hi"), **data}}
    )
    return future.exception(WAIT) or future.result(0)


def read_stream(client):
    """``(texts, error)``: the stream's chunks until it ended, and how."""
    future = client.queue_with_priority(
        {
            "endpoint": "chat/completions",
            "data": {"model": "m", "messages": messages("hi")},
            "stream": True,
        }
    )
    if future.exception(WAIT) is not None:
        return [], future.exception(0)
    texts = []
    try:
        for chunk in future.result(0):
            texts.append(chunk.text)
    except Exception as exc:
        return texts, exc
    return texts, None


def counting(respond):
    """``(handler, seen)``: ``respond`` as a handler, and the requests it saw."""
    seen: list = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        return await respond(request)

    return handler, seen


def assert_too_large(error, setting: str, limit: int) -> None:
    assert isinstance(error, ResponseTooLargeError), repr(error)
    assert setting in str(error) and str(limit) in str(error)
    assert error.limit == limit
    assert (
        error.received <= limit + READ_CHUNK
    )  # what it held when it stopped: bounded by the limit, not the body


def test_the_defaults_are_generous_and_the_settings_are_checked():
    assert DEFAULT_MAX_RESPONSE_BYTES == 64 * MIB and DEFAULT_MAX_STREAM_LINE_BYTES == 1 * MIB
    with make("http://127.0.0.1:9/v1") as client:
        assert client.max_response_bytes == 64 * MIB
        client.max_stream_line_bytes = 4096
        for bad in (0, -1, 1.5, "lots", None):
            with pytest.raises(SettingError, match="max_response_bytes"):
                client.max_response_bytes = bad


def test_a_body_past_max_response_bytes_is_refused_from_its_content_length():
    huge = b"x" * (4 * MIB)

    async def respond(request):
        return web.Response(body=huge, content_type="application/json")

    handler, seen = counting(respond)
    with aiohttp_server(handler) as url, make(url + "/v1", max_response_bytes=MIB) as client:
        error = chat(client)
        assert_too_large(error, "max_response_bytes", MIB)
        assert error.received == 0  # refused on its Content-Length, before reading any
        assert len(seen) == 1  # not retried: the same request would get the same answer
        assert client.get_stats()["in_flight"] == 0


def test_a_body_of_exactly_max_response_bytes_is_read_whole():
    answer = {"id": "c", "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}]}
    content = "y" * (64 * KIB - len(json.dumps(answer)))
    answer["choices"][0]["message"]["content"] = content
    body = json.dumps(answer).encode()
    assert len(body) == 64 * KIB

    async def respond(request):
        return web.Response(body=body, content_type="application/json")

    handler, seen = counting(respond)
    with aiohttp_server(handler) as url, make(url + "/v1", max_response_bytes=64 * KIB) as client:
        result = chat(client)
        assert result["choices"][0]["message"]["content"] == content
        assert len(seen) == 1


def test_a_small_gzip_body_that_inflates_past_the_limit_is_refused():
    inflated = json.dumps({"choices": [], "pad": " " * (4 * MIB)}).encode()
    packed = gzip.compress(inflated)
    assert len(packed) < 64 * KIB  # its Content-Length is well within the limit

    async def respond(request):
        return web.Response(
            body=packed, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    handler, seen = counting(respond)
    with aiohttp_server(handler) as url, make(url + "/v1", max_response_bytes=MIB) as client:
        error = chat(client)
        assert_too_large(error, "max_response_bytes", MIB)
        assert MIB < error.received < 2 * MIB  # what was inflated, read a chunk at a time
        assert len(seen) == 1


def test_an_endless_chunked_body_stops_at_the_limit():
    async def respond(request):
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        block = b" " * (256 * KIB)
        try:
            while True:  # until the client hangs up
                await response.write(block)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    with (
        aiohttp_server(respond) as url,
        make(url + "/v1", max_response_bytes=2 * MIB, timeout=30.0) as client,
    ):
        error = chat(client)  # within WAIT, well before the 30 s timeout: the limit ends it
        assert_too_large(error, "max_response_bytes", 2 * MIB)
        assert error.received > 2 * MIB


def test_a_huge_stream_line_ends_the_stream_with_a_typed_error():
    async def respond(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk_line("first "))
        await response.write(
            b'data: {"choices":[{"index":0,"delta":{"content":"' + b"y" * (4 * MIB) + b'"}}]}\n\n'
        )
        await response.write(b"data: [DONE]\n\n")
        return response

    with aiohttp_server(respond) as url, make(url + "/v1") as client:  # the default limit, 1 MiB
        texts, error = read_stream(client)
        assert texts == ["first "]
        assert_too_large(error, "max_stream_line_bytes", DEFAULT_MAX_STREAM_LINE_BYTES)
        assert error.chunks_received == 1
        assert client.get_stats()["in_flight"] == 0
        assert all(row["in_flight"] == 0 for row in client.get_stats()["key_pool"].values())


def test_a_stream_line_under_the_limit_but_past_aiohttps_own_passes():
    big = "z" * (512 * KIB)  # aiohttp's readline alone refuses lines past 128 KiB

    async def respond(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk_line(big))
        await response.write(b"data: [DONE]\n\n")
        return response

    with aiohttp_server(respond) as url, make(url + "/v1") as client:
        texts, error = read_stream(client)
        assert error is None and texts == [big]


def test_an_sse_event_of_endless_short_data_lines_is_bounded_too():
    async def respond(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk_line("first "))
        try:
            while True:  # one event that never ends
                await response.write(b"data: " + b"w" * 1000 + b"\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    with (
        aiohttp_server(respond) as url,
        make(url + "/v1", max_stream_line_bytes=64 * KIB) as client,
    ):
        texts, error = read_stream(client)
        assert texts == ["first "]
        assert_too_large(error, "max_stream_line_bytes", 64 * KIB)


def test_a_broken_http_answer_is_a_typed_error():
    """A server whose status line or headers do not parse: aiohttp's own exceptions stay inside."""

    async def respond(request):
        transport = request.transport
        transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Bad: "
            + b"h" * (64 * KIB)
            + b"\r\n\r\n{}"
        )
        transport.close()
        await asyncio.sleep(0.1)
        return web.Response()

    with aiohttp_server(respond) as url, make(url + "/v1", max_retries=0) as client:
        error = chat(client)
        assert isinstance(error, ApiError), repr(error)
