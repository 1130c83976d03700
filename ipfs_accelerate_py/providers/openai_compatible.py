"""OpenAI-compatible providers: Groq, vLLM and OPEA.

Each is the OpenAI wire (:class:`~.openai.OpenAIWire`) with its own
:class:`ProviderSpec`; what differs is data given to
:class:`OpenAICompatibleWire`: which operations the server offers, the caps
on one embeddings call, statuses the provider gives a meaning of its own,
and the field where it puts its own extensions in a response.

Groq (``https://api.groq.com/openai/v1``)
    Chat (streams included) and models.  No embeddings and no text
    completions: both are refused before anything is sent.
    Rate limits: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` on
    every response, as OpenAI's, except that the request figures are per DAY
    (RPD) and the token figures per minute; resets are Go durations
    (``"2m59.56s"``, ``"7.66s"``).  ``retry-after`` (whole seconds) comes on
    a 429 only, never ``retry-after-ms``; the 429's message also says
    "Please try again in 7.66s", read when the header is missing.
    Errors: OpenAI's body ``{"error": {"message", "type", "code"}}``.  498
    (flex tier capacity exceeded) is an overload the docs say to retry.
    Streams: the last chunk carries the usage in ``x_groq.usage`` (read into
    the chunk's :class:`StreamDelta` like OpenAI's ``usage``); a chunk's
    ``x_groq.error`` says why the stream stopped early (raised).

vLLM (``http://localhost:8000/v1``)
    Completions, chat, embeddings and models; a key only when the server was
    started with ``--api-key`` (401 ``{"error": "Unauthorized"}`` otherwise).
    Errors: ``{"error": {"message", "type", "code"}}`` (older servers:
    ``{"object": "error", "message", ...}``).  Embeddings are batched for any
    model the server serves, with no caps beyond ``max_batch_size``.

OPEA (``http://localhost:9000/v1``)
    The GenAIComps LLM text-generation microservice: chat (streams included)
    at ``/v1/chat/completions``; a key only behind a gateway that wants one.
    Errors: OPEA's ``{"object": "error", "message", "code"}`` or FastAPI's
    ``{"detail": ...}``, whose 422 is a list of ``{"loc", "msg"}`` entries
    (joined into the message).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..resilience.batching import NO_LIMITS, OPENAI_EMBEDDING_LIMITS, BatchLimits
from ..resilience.errors import ApiError, OverloadedError, RateLimitError, ServerError
from ..transport.base import HttpResponse
from .base import Event, ProviderSpec, StreamDelta, body_json, retyped
from .openai import (
    OPENAI_PARAMS,
    OpenAIWire,
    openai_style_spec,
    openai_usage,
    params_with,
    parse_duration,
)

__all__ = [
    "ALL_OPERATIONS",
    "GROQ",
    "GROQ_CHAT_PARAMS",
    "GROQ_FLEX_CAPACITY_EXCEEDED",
    "GROQ_MODELS",
    "GROQ_WIRE",
    "GroqModel",
    "OPEA",
    "OPEA_WIRE",
    "OpenAICompatibleWire",
    "VLLM",
    "VLLM_SAMPLING_PARAMS",
    "VLLM_WIRE",
    "retry_hint",
    "validation_message",
]

ALL_OPERATIONS = frozenset({"chat", "completions", "embeddings", "models"})
"""OpenAI's operations, as :meth:`OpenAICompatibleWire.supports` names them."""

_TRY_AGAIN = re.compile(r"try again in ((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", re.IGNORECASE)


class OpenAICompatibleWire(OpenAIWire):
    """The OpenAI wire for a server that differs from OpenAI only in data.

    ``operations``: what the server offers (a subset of
    :data:`ALL_OPERATIONS`); the others are refused with
    :class:`InvalidInputError` before anything is sent.
    ``embedding_limits``: the caps on one embeddings call.
    ``status_errors``: statuses the provider gives a meaning of its own, and
    the error class each becomes; a retryable class makes the status retried
    unless the server's ``x-should-retry`` says otherwise.
    ``extension``: the response field holding the provider's own usage and
    stream error (Groq's ``x_groq``).
    ``extra_params``: body parameters the server documents beyond OpenAI's,
    by operation (``"chat"``, ``"completion"``, ``"embeddings"``).
    """

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        operations: Iterable[str] = ALL_OPERATIONS,
        embedding_limits: BatchLimits = OPENAI_EMBEDDING_LIMITS,
        status_errors: Mapping[int, type[ApiError]] | None = None,
        extension: str | None = None,
        extra_params: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        operations = frozenset(operations)
        unknown = operations - ALL_OPERATIONS
        if unknown:
            raise ValueError(
                f"unknown operations {sorted(unknown)}: expected some of {sorted(ALL_OPERATIONS)}"
            )
        super().__init__(spec)
        self.operations = operations
        self.embedding_limits = embedding_limits
        self.status_errors = MappingProxyType(dict(status_errors or {}))
        self.extension = extension
        self.body_params = params_with(OPENAI_PARAMS, extra_params or {})

    def supports(self, operation: str) -> bool:
        return operation in self.operations

    def _require(self, operation: str) -> None:
        if operation not in self.operations:
            raise self.unsupported(operation)

    # ---------------------------------------------------------- operations

    def chat_request(
        self, model: str, messages: list[Any], params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        self._require("chat")
        return super().chat_request(model, messages, params, stream)

    def completion_request(
        self, model: str, prompt: Any, params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        self._require("completions")
        return super().completion_request(model, prompt, params, stream)

    def embeddings_request(
        self, model: str, inputs: Any, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        self._require("embeddings")
        return super().embeddings_request(model, inputs, params)

    def models_request(self) -> tuple[str, dict[str, Any] | None]:
        self._require("models")
        return super().models_request()

    def embedding_vectors(self, result: Any) -> list[list[float]]:
        self._require("embeddings")
        return super().embedding_vectors(result)

    # ------------------------------------------------------------ batching

    def batch_inputs(self, endpoint: str, data: Any) -> list[Any] | None:
        return super().batch_inputs(endpoint, data) if "embeddings" in self.operations else None

    def batch_limits(self, model: str | None) -> BatchLimits:
        return self.embedding_limits

    # ----------------------------------------------------------- responses

    def error_for(self, response: HttpResponse, *, wall_now: float, attempt: int) -> ApiError:
        """OpenAI's mapping, then: the provider's own statuses, FastAPI's
        validation messages, and a 429's wait read from its message when the
        headers gave none."""
        error = super().error_for(response, wall_now=wall_now, attempt=attempt)
        cls = self.status_errors.get(response.status)
        if cls is not None and type(error) is not cls:
            error = retyped(
                error, cls
            )  # whether it is retried: the spec's extra_retryable_statuses
        if error.message == f"HTTP {response.status}":
            error.message = validation_message(response.body) or error.message
        if isinstance(error, RateLimitError) and error.retry_after is None:
            error.retry_after = retry_hint(error.message)
        return error

    def usage(self, result: Any) -> tuple[int, int]:
        tokens = super().usage(result)
        if any(tokens) or self.extension is None or not isinstance(result, dict):
            return tokens
        extension = result.get(self.extension)
        return super().usage(extension) if isinstance(extension, dict) else tokens

    # ------------------------------------------------------------- streams

    def parse_stream_event(self, event: Event) -> tuple[Any, bool]:
        chunk, done = super().parse_stream_event(event)
        if self.extension is not None and isinstance(chunk, dict):
            extension = chunk.get(self.extension)
            if isinstance(extension, dict) and extension.get("error"):
                raise ServerError(
                    f"the stream stopped early: {extension['error']}",
                    provider=self.name,
                    body=chunk,
                )
        return chunk, done

    def stream_delta(self, chunk: Any) -> StreamDelta:
        """OpenAI's mapping; a chunk without ``usage`` of its own takes the
        one in its extension (Groq's last chunk: ``x_groq.usage``)."""
        delta = super().stream_delta(chunk)
        if delta.usage is not None or self.extension is None or not isinstance(chunk, dict):
            return delta
        extension = chunk.get(self.extension)
        usage = openai_usage(extension.get("usage")) if isinstance(extension, dict) else None
        return delta if usage is None else delta._replace(usage=usage)


def validation_message(body: Any) -> str | None:
    """FastAPI's 422 body ``{"detail": [{"loc": [...], "msg": ...}, ...]}``
    as ``"body.messages: Field required; ..."``, or None."""
    body = body_json(body)
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, list):
        return None
    parts = []
    for entry in detail:
        if isinstance(entry, dict) and isinstance(entry.get("msg"), str):
            where = ".".join(str(p) for p in entry.get("loc") or ())
            parts.append(f"{where}: {entry['msg']}" if where else entry["msg"])
    return "; ".join(parts) or None


def retry_hint(message: str) -> float | None:
    """The wait in "... Please try again in 1m26.4s ..." (seconds), or None."""
    found = _TRY_AGAIN.search(message or "")
    return parse_duration(found.group(1)) if found else None


# ------------------------------------------------------------------- Groq


@dataclass(frozen=True)
class GroqModel:
    """One of Groq's production models: its kind and token limits (None
    where Groq gives none, e.g. for speech-to-text)."""

    kind: str  # "chat", "speech-to-text" or "system" (a model with built-in tools)
    context_window: int | None
    max_completion_tokens: int | None


GROQ_MODELS: Mapping[str, GroqModel] = MappingProxyType(
    {
        "llama-3.1-8b-instant": GroqModel("chat", 131_072, 131_072),
        "llama-3.3-70b-versatile": GroqModel("chat", 131_072, 32_768),
        "openai/gpt-oss-120b": GroqModel("chat", 131_072, 65_536),
        "openai/gpt-oss-20b": GroqModel("chat", 131_072, 65_536),
        "whisper-large-v3": GroqModel("speech-to-text", None, None),
        "whisper-large-v3-turbo": GroqModel("speech-to-text", None, None),
        "groq/compound": GroqModel("system", 131_072, 8_192),
        "groq/compound-mini": GroqModel("system", 131_072, 8_192),
    }
)
"""Groq's production models and systems (console.groq.com/docs/models):
model id -> kind, context window and completion cap in tokens.  Groq changes
the list often; ``groq.list_models()`` asks the server."""

GROQ_FLEX_CAPACITY_EXCEEDED = 498
"""Groq's own status: the flex service tier is at capacity; retry later."""

GROQ = openai_style_spec(
    "groq",
    "https://api.groq.com/openai/v1",
    default_chat_model="llama-3.3-70b-versatile",
    extra_retryable_statuses=frozenset({GROQ_FLEX_CAPACITY_EXCEEDED}),
)

GROQ_CHAT_PARAMS = frozenset(
    {
        "citation_options",
        "compound_custom",
        "disable_tool_validation",
        "documents",
        "exclude_domains",
        "include_domains",
        "include_reasoning",
        "reasoning_format",
        "search_settings",
    }
)
"""Groq's chat parameters beyond OpenAI's (console.groq.com/docs/api-reference)."""

GROQ_WIRE = OpenAICompatibleWire(
    GROQ,
    operations={"chat", "models"},
    status_errors={GROQ_FLEX_CAPACITY_EXCEEDED: OverloadedError},
    extension="x_groq",
    extra_params={"chat": GROQ_CHAT_PARAMS},
)

# ------------------------------------------------------------------- vLLM

VLLM = openai_style_spec(
    "vllm",
    "http://localhost:8000/v1",
    requires_key=False,
    batch_any_model=True,  # the server embeds with the model it serves
    default_chat_model="Qwen/Qwen2.5-1.5B-Instruct",  # vLLM's quickstart model
    default_embedding_model="intfloat/e5-mistral-7b-instruct",  # vLLM's embeddings example
)

VLLM_SAMPLING_PARAMS = frozenset(
    {
        "allowed_token_ids",
        "bad_words",
        "best_of",
        "ignore_eos",
        "include_stop_str_in_output",
        "length_penalty",
        "logits_processors",
        "min_p",
        "min_tokens",
        "prompt_logprobs",
        "repetition_penalty",
        "return_tokens_as_token_ids",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "stop_token_ids",
        "structured_outputs",
        "top_k",
        "truncate_prompt_tokens",
        "use_beam_search",
        "vllm_xargs",
        "guided_choice",
        "guided_decoding_backend",
        "guided_grammar",
        "guided_json",
        "guided_regex",
        "guided_whitespace_pattern",
        "kv_transfer_params",
        "cache_salt",
    }
)
"""vLLM's extra parameters of chat and completions (its OpenAI server's ``protocol.py``).
Its ``priority`` and ``request_id`` fields share their names with this
client's own keywords: send them in ``extra_body``."""
VLLM_WIRE = OpenAICompatibleWire(
    VLLM,
    embedding_limits=NO_LIMITS,
    extra_params={
        "chat": VLLM_SAMPLING_PARAMS
        | {
            "add_generation_prompt",
            "add_special_tokens",
            "chat_template",
            "chat_template_kwargs",
            "continue_final_message",
            "documents",
            "echo",
            "mm_processor_kwargs",
        },
        "completion": VLLM_SAMPLING_PARAMS | {"add_special_tokens", "response_format"},
        "embeddings": {
            "add_special_tokens",
            "additional_data",
            "normalize",
            "truncate_prompt_tokens",
        },
    },
)

# ------------------------------------------------------------------- OPEA

OPEA = openai_style_spec(
    "opea",
    "http://localhost:9000/v1",
    base_url_env=("OPEA_API_BASE", "OPEA_BASE_URL"),
    requires_key=False,
    default_chat_model="Intel/neural-chat-7b-v3-3",  # the microservice's default LLM_MODEL_ID
)

OPEA_WIRE = OpenAICompatibleWire(
    OPEA,
    operations={"chat"},
    extra_params={  # GenAIComps' ChatCompletionRequest (comps/cores/proto/api_protocol.py)
        "chat": {
            "add_generation_prompt",
            "add_special_tokens",
            "best_of",
            "chat_template",
            "chat_template_kwargs",
            "documents",
            "echo",
            "repetition_penalty",
            "suffix",
            "top_k",
            "typical_p",
        },
    },
)
