"""The OpenAI wire format: chat, completions, embeddings, models, SSE.

OpenAI-compatible providers (Groq, vLLM, OPEA, TGI's and OVMS's chat) are
this class with their own :class:`ProviderSpec`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..resilience.batching import OPENAI_EMBEDDING_LIMITS, BatchLimits, normalize_inputs
from ..resilience.errors import MalformedResponseError, classify_status, get_header
from ..transport.sse import SseEvent
from .base import (
    EMPTY_DELTA,
    Event,
    ProviderSpec,
    StreamDelta,
    ToolCallDelta,
    Wire,
    apportion,
    finish_reason,
    sse_event,
    token_count,
)

__all__ = [
    "OPENAI",
    "OPENAI_CHAT_PARAMS",
    "OPENAI_COMPLETION_PARAMS",
    "OPENAI_EMBEDDING_PARAMS",
    "OPENAI_PARAMS",
    "OpenAIWire",
    "STREAM_END",
    "arguments_text",
    "openai_stream_delta",
    "openai_style_spec",
    "openai_usage",
    "params_with",
]

STREAM_END = "[DONE]"
"""The data of the event that ends an OpenAI stream."""


def openai_style_spec(
    name: str, default_base_url: str, *, base_url_env: tuple[str, ...] = (), **fields: Any
) -> ProviderSpec:
    """A spec configured the way OpenAI's is: ``metadata["{name}_api_key"]``
    (or ``"api_key"``) or ``{NAME}_API_KEY``; ``metadata["{name}_api_base"]``
    (or ``"{name}_base_url"``, ``"base_url"``, ``"api_base"``) or
    ``base_url_env`` (default ``{NAME}_BASE_URL``); served by the simulator
    under ``/v1``.  ``fields``: the rest of the :class:`ProviderSpec`."""
    upper = name.upper()
    return ProviderSpec(
        name=name,
        default_base_url=default_base_url,
        key_metadata=(f"{name}_api_key", "api_key"),
        key_env=(f"{upper}_API_KEY",),
        base_url_metadata=(f"{name}_api_base", f"{name}_base_url", "base_url", "api_base"),
        base_url_env=base_url_env or (f"{upper}_BASE_URL",),
        simulator_path="/v1",
        **fields,
    )


OPENAI = openai_style_spec(
    "openai",
    "https://api.openai.com/v1",
    base_url_env=("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    embedding_models=("text-embedding-ada-002", "text-embedding-3-small", "text-embedding-3-large"),
    default_chat_model="gpt-4o-mini",
    default_embedding_model="text-embedding-3-small",
)


OPENAI_CHAT_PARAMS = frozenset(
    {
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
"""The body parameters of ``POST /v1/chat/completions`` beside ``model``, ``messages`` and ``stream``."""
OPENAI_COMPLETION_PARAMS = frozenset(
    {
        "best_of",
        "echo",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "max_tokens",
        "n",
        "presence_penalty",
        "seed",
        "stop",
        "stream_options",
        "suffix",
        "temperature",
        "top_p",
        "user",
    }
)
"""The body parameters of ``POST /v1/completions`` beside ``model``, ``prompt`` and ``stream``."""
OPENAI_EMBEDDING_PARAMS = frozenset({"dimensions", "encoding_format", "user"})
"""The body parameters of ``POST /v1/embeddings`` beside ``model`` and ``input``."""
OPENAI_PARAMS = {
    "chat": OPENAI_CHAT_PARAMS,
    "completion": OPENAI_COMPLETION_PARAMS,
    "embeddings": OPENAI_EMBEDDING_PARAMS,
}


def params_with(
    base: Mapping[str, frozenset[Any]], extra: Mapping[str, Any]
) -> dict[str, frozenset[Any]]:
    """``base``'s parameters by operation, with ``extra``'s added (a server's own)."""
    return {op: names | frozenset(extra.get(op, ())) for op, names in base.items()}


class OpenAIWire(Wire):
    """Maps operations to OpenAI-style HTTP and back."""

    body_params = OPENAI_PARAMS
    get_endpoints = frozenset({"models"})
    base_url_prefixes = (
        "v1/",
    )  # "/v1/chat/completions" and "chat/completions" are the same endpoint
    response_types = (dict,)
    stream_usage = True
    """A stream asks for its usage (``stream_options.include_usage``) unless
    the caller gave ``stream_options``: a last chunk, with empty ``choices``,
    tells the tokens the statistics, the cost and the budgets count."""

    # ------------------------------------------------------------- streams

    def sse_json(self, event: SseEvent) -> tuple[Any, bool]:
        """``(chunk, done)`` of one event: its JSON (None when it has no
        data), and whether it is the end marker ``data: [DONE]``."""
        data = event.data.strip()
        if not data or data == STREAM_END:
            return None, data == STREAM_END
        return self.stream_json(data), False

    def parse_stream_event(self, event: Event) -> tuple[Any, bool]:
        chunk, done = self.sse_json(sse_event(event))
        if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
            raise classify_status(500, None, chunk, wall_now=0.0, provider=self.name)
        return chunk, done

    def stream_delta(self, chunk: Any) -> StreamDelta:
        return openai_stream_delta(chunk)

    # ---------------------------------------------------------- operations

    def chat_request(
        self, model: str, messages: list[Any], params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        data = {"model": model, "messages": messages, **params}
        if stream:
            self._stream_flags(data)
        return "chat/completions", data

    def completion_request(
        self, model: str, prompt: Any, params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        data = {"model": model, "prompt": prompt, **params}
        if stream:
            self._stream_flags(data)
        return "completions", data

    def _stream_flags(self, data: dict[str, Any]) -> None:
        data["stream"] = True
        if self.stream_usage and "stream_options" not in data:
            data["stream_options"] = {"include_usage": True}

    def embeddings_request(
        self, model: str, inputs: Any, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return "embeddings", {"model": model, "input": inputs, **params}

    def models_request(self) -> tuple[str, dict[str, Any] | None]:
        return "models", None

    def reply_text(self, result: Any) -> str:
        choice = (result.get("choices") or [{}])[0]
        message = choice.get("message")
        return (
            (message.get("content") or "")
            if isinstance(message, dict)
            else (choice.get("text") or "")
        )

    def embedding_vectors(self, result: Any) -> list[list[float]]:
        items = sorted(result.get("data", []), key=lambda item: item.get("index", 0))
        return [item["embedding"] for item in items]

    def rate_limit_hints(self, headers: Mapping[str, str]) -> dict[str, Any] | None:
        """``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` (``"1s"``, ``"6m0s"``, ``"20ms"``)."""
        hints: dict[str, float] = {}
        for kind in ("requests", "tokens"):
            remaining = get_header(headers, f"x-ratelimit-remaining-{kind}")
            if remaining is not None and remaining.strip().isdigit():
                hints[f"{kind}_remaining"] = int(remaining)
            reset = parse_duration(get_header(headers, f"x-ratelimit-reset-{kind}"))
            if reset is not None:
                hints[f"{kind}_reset"] = reset
        return hints or None

    # ------------------------------------------------------------ batching

    def batch_inputs(self, endpoint: str, data: Any) -> list[Any] | None:
        if self.endpoint_path(endpoint) != "embeddings" or not isinstance(data, Mapping):
            return None
        return normalize_inputs(data.get("input"))

    def batch_limits(self, model: str | None) -> BatchLimits:
        return OPENAI_EMBEDDING_LIMITS

    def split_batch_result(
        self, result: Any, counts: list[int], weights: list[int] | None = None
    ) -> list[dict[str, Any]]:
        """One response of OpenAI's shape per member, by ``index``; the
        batch's ``usage`` is shared out by ``weights`` (estimated tokens) so
        the members' figures add up to what the server reported."""
        if not isinstance(result, dict):
            raise MalformedResponseError(
                "embeddings response is not a JSON object", provider=self.name
            )
        parts = self.split_indexed(result.get("data"), counts)
        members = [
            dict({k: v for k, v in result.items() if k not in ("data", "usage")}, data=part)
            for part in parts
        ]
        usage = result.get("usage")
        if isinstance(usage, dict):
            shares = weights if weights is not None else counts
            split = {
                k: apportion(v, shares)
                for k, v in usage.items()
                if isinstance(v, int) and not isinstance(v, bool)
            }
            for i, member in enumerate(members):
                member["usage"] = {k: (split[k][i] if k in split else v) for k, v in usage.items()}
        return members


_DURATION_UNITS = (("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0))


def parse_duration(text: str | None) -> float | None:
    """OpenAI's reset durations: ``"1s"``, ``"6m0s"``, ``"1h2m3.5s"``, ``"20ms"``; seconds, or None."""
    if not text:
        return None
    rest, total = text.strip(), 0.0
    while rest:
        number = ""
        while rest and (rest[0].isdigit() or rest[0] == "."):
            number, rest = number + rest[0], rest[1:]
        unit = next(((u, f) for u, f in _DURATION_UNITS if rest.startswith(u)), None)
        if not number or unit is None:
            return None
        try:
            total += float(number) * unit[1]
        except ValueError:
            return None
        rest = rest[len(unit[0]) :]
    return total


# ------------------------------------------------------------------ streams

REPLY_CHOICE = 0
"""The choice a stream's reply is (with ``n > 1`` the others are left to the raw chunk)."""


def openai_stream_delta(chunk: Any) -> StreamDelta:
    """What one OpenAI stream chunk adds, in common terms.

    Chat chunks: ``choices[i].delta.content`` (text), ``delta.tool_calls``
    (``[{index, id?, type?, function: {name?, arguments?}}]``) or the legacy
    ``delta.function_call`` (one call, index 0), and ``finish_reason``;
    text-completion chunks: ``choices[i].text``.  Only the choice of index 0
    counts (the first choice when none says its index).  ``usage``
    (``stream_options.include_usage``'s last chunk, whose ``choices`` is
    empty; vLLM's continuous usage on every chunk) -> ``(prompt_tokens,
    completion_tokens)``.  Reasoning and refusal text are not reply text.
    Any other shape adds nothing (:data:`EMPTY_DELTA`)."""
    if not isinstance(chunk, dict):
        return EMPTY_DELTA
    choice = _reply_choice(chunk.get("choices"))
    delta = _mapping(choice.get("delta"))
    text = delta.get("content") if delta else choice.get("text")
    return StreamDelta(
        text=text if isinstance(text, str) else "",
        tool_calls=_tool_call_pieces(delta),
        finish_reason=finish_reason(choice.get("finish_reason")),
        usage=openai_usage(chunk.get("usage")),
    )


def openai_usage(usage: Any) -> tuple[int, int] | None:
    """``{"prompt_tokens", "completion_tokens", ...}`` -> ``(in, out)``; None when not a usage object."""
    if not isinstance(usage, dict):
        return None
    return token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens"))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _reply_choice(choices: Any) -> dict[str, Any]:
    """The choice of index :data:`REPLY_CHOICE` (or without an index) among ``choices``; ``{}`` if none."""
    if not isinstance(choices, list):
        return {}
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", REPLY_CHOICE) == REPLY_CHOICE:
            return choice
    return {}


def _tool_call_pieces(delta: dict[str, Any]) -> tuple[ToolCallDelta, ...]:
    """The tool-call pieces of a chat delta; a piece that carries nothing (no
    id, name or arguments) is left out."""
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        pieces = [
            _tool_call_piece(call, _mapping(call.get("function")), position)
            for position, call in enumerate(calls)
            if isinstance(call, dict)
        ]
    else:
        legacy = delta.get("function_call")
        pieces = [_tool_call_piece({}, legacy, 0)] if isinstance(legacy, dict) else []
    return tuple(p for p in pieces if p.id or p.name or p.arguments)


def _tool_call_piece(
    call: dict[str, Any], function: dict[str, Any], position: int
) -> ToolCallDelta:
    index = call.get("index")
    return ToolCallDelta(
        index=index if isinstance(index, int) and not isinstance(index, bool) else position,
        id=_text_or_none(call.get("id")),
        name=_text_or_none(function.get("name")),
        arguments=arguments_text(function.get("arguments")),
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def arguments_text(arguments: Any) -> str:
    """A tool call's arguments as JSON text: text as it came (a fragment),
    an object (some servers send one whole) as its JSON, nothing as ``""``."""
    if isinstance(arguments, str):
        return arguments
    if arguments is None:
        return ""
    try:
        return json.dumps(arguments)
    except (TypeError, ValueError):
        return ""
