"""OpenAI stream chunks in common terms (``OpenAIWire.stream_delta``).

Chunk shapes as the OpenAI API documents them (chat: ``choices[].delta``
with content, ``tool_calls`` pieces, the legacy ``function_call``,
``finish_reason``; text completions: ``choices[].text``; the usage chunk of
``stream_options.include_usage``), each mapped to exactly this
:class:`StreamDelta`.  Then whole streams as the simulator's OpenAI format
writes them, decoded as the engine decodes them (with the helpers every
provider's stream tests share, in ``tests/helpers/streams.py``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_accelerate_py.providers.anthropic import ANTHROPIC, AnthropicWire
from ipfs_accelerate_py.providers.base import EMPTY_DELTA, StreamDelta, ToolCallDelta
from ipfs_accelerate_py.providers.gemini import GEMINI, GeminiWire
from ipfs_accelerate_py.providers.hf_tgi import TGIWire
from ipfs_accelerate_py.providers.ollama import OLLAMA, OllamaWire
from ipfs_accelerate_py.providers.openai import OPENAI, OpenAIWire, openai_stream_delta
from ipfs_accelerate_py.providers.openai_compatible import GROQ_WIRE
from ipfs_accelerate_py.providers.ovms import OVMS, OVMSWire
from ipfs_accelerate_py.simulator.formats import openai as openai_format

from ..helpers import sse_event
from ..helpers.streams import (
    MODEL,
    check_simulated_chat_stream,
    joined_calls,
    joined_text,
    simulated_stream,
    stream_deltas,
)

WIRE = OpenAIWire(OPENAI)


# ------------------------------------------------------------ chunk shapes


def chat_chunk(delta: dict, finish: str | None = None, index: int = 0, **extra: Any) -> dict:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": MODEL,
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


def completion_chunk(text: str, finish: str | None = None) -> dict:
    return {
        "id": "cmpl-7",
        "object": "text_completion",
        "created": 1694268190,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
    }


USAGE = {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}

CASES = [
    (
        "role opening",
        chat_chunk({"role": "assistant", "content": "", "refusal": None}),
        EMPTY_DELTA,
    ),
    ("text", chat_chunk({"content": "Hello"}), StreamDelta(text="Hello")),
    ("finish stop", chat_chunk({}, "stop"), StreamDelta(finish_reason="stop")),
    ("finish length", chat_chunk({}, "length"), StreamDelta(finish_reason="length")),
    (
        "finish content_filter",
        chat_chunk({}, "content_filter"),
        StreamDelta(finish_reason="content_filter"),
    ),
    (
        "legacy finish function_call",
        chat_chunk({}, "function_call"),
        StreamDelta(finish_reason="tool_calls"),
    ),
    (
        "usage: null on every chunk",
        chat_chunk({"content": "Hi"}, usage=None),
        StreamDelta(text="Hi"),
    ),
    (
        "usage chunk",
        {
            "id": "chatcmpl-123",
            "object": "chat.completion.chunk",
            "model": MODEL,
            "choices": [],
            "usage": USAGE,
        },
        StreamDelta(usage=(19, 10)),
    ),
    (
        "vLLM continuous usage",
        chat_chunk(
            {"content": "a"}, usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        ),
        StreamDelta(text="a", usage=(5, 1)),
    ),
    (
        "tool call opening",
        chat_chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            }
        ),
        StreamDelta(
            tool_calls=(ToolCallDelta(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", ""),)
        ),
    ),
    (
        "tool call arguments piece",
        chat_chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"loc'}}]}),
        StreamDelta(tool_calls=(ToolCallDelta(1, None, None, '{"loc'),)),
    ),
    (
        "tool call without index: its position",
        chat_chunk(
            {
                "tool_calls": [
                    {"id": "a", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "b", "function": {"name": "g", "arguments": "{}"}},
                ]
            }
        ),
        StreamDelta(
            tool_calls=(ToolCallDelta(0, "a", "f", "{}"), ToolCallDelta(1, "b", "g", "{}"))
        ),
    ),
    (
        "tool call arguments sent as an object",
        chat_chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "c", "function": {"name": "f", "arguments": {"x": 1}}}
                ]
            }
        ),
        StreamDelta(tool_calls=(ToolCallDelta(0, "c", "f", '{"x": 1}'),)),
    ),
    ("finish tool_calls", chat_chunk({}, "tool_calls"), StreamDelta(finish_reason="tool_calls")),
    (
        "legacy function_call opening",
        chat_chunk(
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "get_weather", "arguments": ""},
            }
        ),
        StreamDelta(tool_calls=(ToolCallDelta(0, None, "get_weather", ""),)),
    ),
    (
        "legacy function_call piece",
        chat_chunk({"function_call": {"arguments": "{}"}}),
        StreamDelta(tool_calls=(ToolCallDelta(0, None, None, "{}"),)),
    ),
    ("reasoning is not reply text", chat_chunk({"reasoning_content": "thinking..."}), EMPTY_DELTA),
    (
        "second choice (n=2) is not the reply",
        chat_chunk({"content": "other"}, "stop", index=1),
        EMPTY_DELTA,
    ),
    ("text completion", completion_chunk("Once upon"), StreamDelta(text="Once upon")),
    ("text completion finish", completion_chunk("", "length"), StreamDelta(finish_reason="length")),
    (
        "unknown finish reason kept, lowercased",
        chat_chunk({}, "Abort"),
        StreamDelta(finish_reason="abort"),
    ),
]


@pytest.mark.parametrize("chunk, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_chunk_in_common_terms(chunk, expected):
    assert WIRE.stream_delta(chunk) == expected


@pytest.mark.parametrize(
    "chunk",
    [
        None,
        "text",
        42,
        [],
        [{"choices": []}],
        {},
        {"choices": None},
        {"choices": "x"},
        {"choices": [None, 3]},
        {"choices": [{"delta": "x"}]},
        {"choices": [{"delta": {"content": 5, "tool_calls": "x"}}]},
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            None,
                            1,
                            {"index": 0, "function": "x"},
                            {"function": {"arguments": ""}},
                        ]
                    }
                }
            ]
        },
        {"choices": [{"delta": {"function_call": {"name": 3, "arguments": None}}}]},
        {"choices": [{"finish_reason": 3}]},
        {"usage": "lots"},
        {"object": "something.new", "data": [1, 2]},
    ],
    ids=repr,
)
def test_unknown_shapes_add_nothing(chunk):
    assert WIRE.stream_delta(chunk) == EMPTY_DELTA


def test_tool_call_pieces_join_into_whole_calls_with_valid_json():
    """Two parallel calls streamed as OpenAI streams them: id and name first,
    then argument fragments; each call's fragments join into its JSON."""
    pieces = [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"location": '}},
        {"index": 0, "function": {"arguments": '"Paris, FR"}'}},
        {
            "index": 1,
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_time", "arguments": ""},
        },
        {"index": 1, "function": {"arguments": '{"tz": "CET"}'}},
    ]
    chunks = [chat_chunk({"role": "assistant", "content": None})]
    chunks += [chat_chunk({"tool_calls": [piece]}) for piece in pieces] + [
        chat_chunk({}, "tool_calls")
    ]
    deltas = [WIRE.stream_delta(c) for c in chunks]
    calls = joined_calls(deltas)
    assert calls[0]["id"] == "call_1" and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"location": "Paris, FR"}
    assert calls[1]["id"] == "call_2" and json.loads(calls[1]["arguments"]) == {"tz": "CET"}
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["tool_calls"]
    assert joined_text(deltas) == ""


def test_the_wire_and_the_shared_function_agree():
    chunk = chat_chunk({"content": "x"}, "stop")
    assert (
        WIRE.stream_delta(chunk)
        == openai_stream_delta(chunk)
        == StreamDelta(text="x", finish_reason="stop")
    )


# ------------------------------------------------------------ the simulator


def _chat_payload(**extra: Any) -> dict:
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France, please?"},
        ],
        "stream": True,
        **extra,
    }


def test_simulator_chat_stream_joins_to_its_reply_with_usage():
    check_simulated_chat_stream(WIRE)


def test_simulator_chat_stream_cut_by_max_tokens_finishes_with_length():
    events, body = simulated_stream(
        openai_format.FORMAT, "/v1/chat/completions", _chat_payload(max_tokens=3)
    )
    deltas, done = stream_deltas(WIRE, events)
    assert done and joined_text(deltas) == body["choices"][0]["message"]["content"]
    assert deltas[-1].finish_reason == "length"
    assert all(d.usage is None for d in deltas)  # no include_usage: no usage chunk


def test_simulator_completion_stream_joins_to_its_text():
    payload = {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "Say this is a test",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events, body = simulated_stream(openai_format.FORMAT, "/v1/completions", payload)
    deltas, done = stream_deltas(WIRE, events)
    assert done and joined_text(deltas) == body["choices"][0]["text"]
    assert deltas[-1].usage == (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])


def test_done_marker_is_not_a_chunk():
    assert WIRE.parse_stream_event(sse_event("[DONE]")) == (None, True)


# ------------------------------------------------------------ every provider


_KEYS = [
    "choices",
    "delta",
    "content",
    "text",
    "tool_calls",
    "function",
    "function_call",
    "arguments",
    "name",
    "id",
    "index",
    "finish_reason",
    "usage",
    "x_groq",
    "type",
    "message",
    "content_block",
    "partial_json",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "candidates",
    "parts",
    "functionCall",
    "args",
    "finishReason",
    "usageMetadata",
    "promptFeedback",
    "thought",
    "response",
    "done",
    "done_reason",
    "prompt_eval_count",
    "eval_count",
    "token",
    "special",
    "details",
    "generated_tokens",
    "input_length",
]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.text(max_size=4),
    st.sampled_from(
        [
            "text_delta",
            "input_json_delta",
            "tool_use",
            "message_delta",
            "message_start",
            "content_block_start",
            "content_block_delta",
            "STOP",
        ]
    ),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5)
    ),
    max_leaves=25,
)
WIRES = [
    WIRE,
    GROQ_WIRE,
    AnthropicWire(ANTHROPIC),
    GeminiWire(GEMINI),
    OllamaWire(OLLAMA),
    TGIWire(),
    OVMSWire(OVMS),
]


@settings(max_examples=300, deadline=None)
@given(chunk=_JSON)
def test_no_chunk_shape_makes_any_provider_raise(chunk):
    for wire in WIRES:
        delta = wire.stream_delta(chunk)
        assert isinstance(delta, StreamDelta)
        assert isinstance(delta.text, str)
        assert all(
            isinstance(p, ToolCallDelta) and isinstance(p.arguments, str) for p in delta.tool_calls
        )
        assert delta.usage is None or all(isinstance(n, int) and n >= 0 for n in delta.usage)
