"""Provider streams as the simulator writes them, decoded as the engine decodes them.

The stream tests of every provider share these: :func:`simulated_stream` (a
simulator format's stream and non-stream answer for one payload),
:func:`decoded`, :func:`stream_deltas`, :func:`joined_text`,
:func:`joined_calls` and :func:`check_simulated_chat_stream` (an
OpenAI-shaped chat stream read by a provider's wire).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from ipfs_accelerate_py.providers.base import StreamDelta, Wire
from ipfs_accelerate_py.simulator.formats import openai as openai_format
from ipfs_accelerate_py.simulator.wireformat import Params
from ipfs_accelerate_py.transport.sse import iter_ndjson, iter_sse

MODEL = "gpt-4o-mini"
RID, CREATED = "sim0001", 1_730_000_000


def simulated_stream(
    fmt: Any,
    pattern: str,
    payload: dict[str, Any],
    *,
    params: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
) -> tuple[list[Any], Any]:
    """``(events, body)``: the stream the simulator format ``fmt`` writes for
    ``payload`` at its route ``pattern``, framed as it frames it and decoded
    as the engine decodes it (SSE events or NDJSON lines); and the answer
    the same request gets without streaming."""
    route = next(r for r in fmt.routes if r.pattern == pattern)
    request = SimpleNamespace(headers=headers or {}, query=query or {})
    prepared = route.parse(payload, None, Params(params or {}, request))
    framing = prepared.framing or fmt.framing
    raw = b"".join(
        framing.encode(event, i) for i, event in enumerate(prepared.chunks(RID, CREATED))
    )
    raw += framing.terminator or b""
    return decoded(raw.split(b"\n"), framing.kind), prepared.body(RID, CREATED)


def decoded(lines: list[bytes], kind: str = "sse") -> list[Any]:
    """Raw lines (no line endings) as the engine decodes them: SSE events, or NDJSON lines for ``"ndjson"``."""
    decode = iter_ndjson if kind == "ndjson" else iter_sse

    async def produce() -> AsyncIterator[bytes]:
        for line in lines:
            yield line

    async def collect() -> list[Any]:
        return [event async for event in decode(produce())]

    return asyncio.run(collect())


def stream_deltas(wire: Wire, events: list[Any]) -> tuple[list[StreamDelta], bool]:
    """Each chunk ``parse_stream_event`` hands over, through ``stream_delta``; and whether the end came."""
    deltas = []
    for event in events:
        chunk, done = wire.parse_stream_event(event)
        if chunk is not None:
            deltas.append(wire.stream_delta(chunk))
        if done:
            return deltas, True
    return deltas, False


def joined_text(deltas: list[StreamDelta]) -> str:
    return "".join(d.text for d in deltas)


def joined_calls(deltas: list[StreamDelta]) -> dict[int, dict[str, Any]]:
    """Tool-call pieces put together by index: ``{index: {"id", "name", "arguments"}}``."""
    calls: dict[int, dict[str, Any]] = {}
    for piece in (p for d in deltas for p in d.tool_calls):
        call = calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
        call["id"] = call["id"] or piece.id
        call["name"] = call["name"] or piece.name
        call["arguments"] += piece.arguments
    return calls


def check_simulated_chat_stream(
    wire: Wire,
    fmt: Any = openai_format.FORMAT,
    path: str = "/v1/chat/completions",
    model: str = MODEL,
) -> None:
    """A chat stream the simulator writes (with ``include_usage``), read by
    ``wire``: its text joins to the non-stream reply, one ``"stop"``, the usage once."""
    payload = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France, please?"},
        ],
    }
    events, body = simulated_stream(fmt, path, payload)
    deltas, done = stream_deltas(wire, events)
    assert done and len(deltas) > 2
    assert joined_text(deltas) == wire.reply_text(body) == body["choices"][0]["message"]["content"]
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    usage = body["usage"]
    assert [d.usage for d in deltas if d.usage] == [
        (usage["prompt_tokens"], usage["completion_tokens"])
    ]
