"""Hugging Face text-generation-inference (TGI): its own wire and its OpenAI one.

Native routes, at the server's root::

    POST /generate          {"inputs": str, "parameters": {...}}
                            -> {"generated_text": str, "details"?: {...}}
    POST /generate_stream   SSE ``data:`` events {"index", "token": {...},
                            "generated_text": null | str, "details": null | {...}};
                            the last event carries the whole ``generated_text``
    GET  /info              {"model_id", "max_input_tokens", "max_client_batch_size", ...}

and the OpenAI-compatible ``POST /v1/chat/completions`` (and ``/v1/completions``),
streamed as OpenAI chunks ending with ``data: [DONE]``: those are mapped by
:class:`~.openai.OpenAIWire` itself (this adapter holds one and delegates).

Errors are ``{"error": str, "error_type": str}``: 422 validation, 424 a
failure during generation (a server-side failure: retried, counts against the
breaker), 429 "Model is overloaded" (the router's queue is full: retried),
500 incomplete generation, 503 not ready.  Hosted Inference Endpoints answer
503 with ``estimated_time`` while the model loads; that figure becomes the
error's ``retry_after``.  The same body arrives as an SSE event when a stream
fails midway.

No key is needed for a server of one's own; a Hugging Face token (Inference
Endpoints) is sent as a bearer token.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from ..resilience.errors import ApiError, ServerError, classify_status
from ..transport.base import HttpResponse
from .base import Event, ProviderSpec, Wire
from .openai import OpenAIWire

__all__ = ["HF_KEY_ENV", "HF_KEY_METADATA", "TGI", "TGIWire", "hf_error_for", "hf_stream_error"]

DEFAULT_TGI_BASE_URL = "http://localhost:8080"
TGI_MODEL = "tgi"
"""What TGI's OpenAI routes accept as the model of the one model it serves."""

HF_KEY_METADATA = ("hf_api_key", "hf_api_token", "hf_token")
HF_KEY_ENV = ("HF_API_TOKEN", "HF_TOKEN")

TGI = ProviderSpec(
    name="hf_tgi",
    default_base_url=DEFAULT_TGI_BASE_URL,
    key_metadata=HF_KEY_METADATA,
    key_env=HF_KEY_ENV,
    base_url_metadata=("hf_tgi_api_base", "tgi_api_base", "api_base", "base_url"),
    base_url_env=("HF_TGI_BASE_URL", "TGI_BASE_URL"),
    requires_key=False,
    simulator_path="",
    default_chat_model=TGI_MODEL,
)

OPENAI_PREFIX = "v1/"
GET_PATHS = frozenset({"info", "health", "metrics", "v1/models"})

GENERATE = "generate"
GENERATE_STREAM = "generate_stream"

# ------------------------------------------------------------------ errors

_ERROR_TYPE_STATUS = {
    "overloaded": 429,
    "validation": 422,
    "tokenizer": 422,
    "generation": 424,
    "backend": 424,
    "incomplete_generation": 500,
    "unhealthy": 503,
}
"""A Hugging Face ``error_type`` (TGI, TEI) and the status its route answers with."""

FAILED_DEPENDENCY = 424


def hf_error_for(
    provider: str, response: HttpResponse, *, wall_now: float, attempt: int, hint: Optional[str] = None
) -> ApiError:
    """The typed error of a TGI/TEI answer: the status table, except that 424
    (the model failed while running) is a server-side failure, retried; a 503's
    ``estimated_time`` (a hosted model still loading) is its Retry-After.
    ``hint`` is appended to the server's message."""
    body = _json_or_raw(response.body)
    error = classify_status(response.status, response.headers, body, wall_now=wall_now, provider=provider, attempt=attempt)
    if response.status == FAILED_DEPENDENCY:
        error = _as(ServerError, error)
        if error.should_retry is None:  # the retry policy judges by status; 424 is not in its table
            error.should_retry = True
    if error.retry_after is None and isinstance(body, dict):
        estimated = body.get("estimated_time")
        if isinstance(estimated, (int, float)) and not isinstance(estimated, bool) and estimated >= 0:
            error.retry_after = float(estimated)
    if hint:
        error.message = f"{error.message} ({hint})"
    return error


def hf_stream_error(provider: str, chunk: Mapping[str, Any]) -> ApiError:
    """A ``{"error", "error_type"}`` event sent inside a stream, typed as the
    same failure would be on a plain answer."""
    status = _ERROR_TYPE_STATUS.get(str(chunk.get("error_type", "")).lower(), 500)
    error = classify_status(status, None, dict(chunk), wall_now=0.0, provider=provider)
    error.status = None  # the stream itself was a 200; the status is only the error's kind
    return _as(ServerError, error) if status == FAILED_DEPENDENCY else error


def _as(cls: type, error: ApiError) -> ApiError:
    """``error`` re-typed as ``cls``, every field kept."""
    return cls(
        error.message,
        provider=error.provider,
        status=error.status,
        request_id=error.request_id,
        retry_after=error.retry_after,
        attempt=error.attempt,
        should_retry=error.should_retry,
        body=error.body,
    )


def _json_or_raw(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body


# ------------------------------------------------------------------- wire


class TGIWire(Wire):
    """TGI's native routes, and its OpenAI routes through an :class:`OpenAIWire`."""

    def __init__(self, spec: ProviderSpec = TGI) -> None:
        super().__init__(spec)
        self.openai = OpenAIWire(spec)

    # ------------------------------------------------------------ requests

    def method_for(self, path: str, data: Any) -> str:
        return "GET" if data is None and path in GET_PATHS else "POST"

    # ----------------------------------------------------------- responses

    def parse_response(self, endpoint: str, response: HttpResponse) -> Any:
        if self.endpoint_path(endpoint).startswith(OPENAI_PREFIX):
            return self.openai.parse_response(endpoint, response)
        return super().parse_response(endpoint, response)

    def error_for(self, response: HttpResponse, *, wall_now: float, attempt: int) -> ApiError:
        return hf_error_for(self.name, response, wall_now=wall_now, attempt=attempt)

    def usage(self, result: Any) -> tuple[int, int]:
        """OpenAI routes: ``usage``.  Native routes: ``details.generated_tokens``
        out, and in ``details.input_length`` (streams) or the prefill tokens
        (when ``decoder_input_details`` was asked for)."""
        if isinstance(result, dict) and isinstance(result.get("usage"), dict):
            return super().usage(result)
        details = result.get("details") if isinstance(result, dict) else None
        if not isinstance(details, dict):
            return 0, 0
        tokens_in = details.get("input_length")
        if not isinstance(tokens_in, int):
            prefill = details.get("prefill")
            tokens_in = len(prefill) if isinstance(prefill, list) else 0
        tokens_out = details.get("generated_tokens")
        return tokens_in, tokens_out if isinstance(tokens_out, int) else 0

    # ------------------------------------------------------------- streams

    def parse_stream_event(self, event: Event) -> tuple[Any, bool]:
        """Native events end with the one whose ``generated_text`` is set;
        OpenAI chunks end with ``[DONE]`` (told apart by their content, as
        the engine does not say which route a stream came from)."""
        data = event.data.strip()
        if not data:
            return None, False
        if data == "[DONE]":
            return None, True
        chunk = self.stream_json(data)
        if not isinstance(chunk, dict):
            return chunk, False
        if "error" in chunk and "token" not in chunk and "choices" not in chunk:
            raise hf_stream_error(self.name, chunk)
        if "token" in chunk:
            return chunk, chunk.get("generated_text") is not None
        return self.openai.parse_stream_event(event)

    def reply_text(self, result: Any) -> str:
        """``generated_text`` of /generate, or the chat message of /v1."""
        if isinstance(result, dict) and "generated_text" in result:
            return result.get("generated_text") or ""
        return self.openai.reply_text(result)

    # ---------------------------------------------------------- operations

    def generate_request(self, prompt: str, params: Mapping[str, Any], stream: bool) -> tuple[str, dict]:
        """``/generate`` (or ``/generate_stream``) for ``prompt`` with TGI's ``parameters``."""
        data: dict = {"inputs": prompt}
        if params:
            data["parameters"] = dict(params)
        return (GENERATE_STREAM if stream else GENERATE), data

    def chat_request(self, model: str, messages: list, params: dict, stream: bool) -> tuple[str, dict]:
        endpoint, data = self.openai.chat_request(model, messages, params, stream)
        return OPENAI_PREFIX + endpoint, data

    def completion_request(self, model: str, prompt: Any, params: dict, stream: bool) -> tuple[str, dict]:
        endpoint, data = self.openai.completion_request(model, prompt, params, stream)
        return OPENAI_PREFIX + endpoint, data

    def info_request(self) -> tuple[str, None]:
        return "info", None

    def models_request(self) -> tuple[str, None]:
        return self.info_request()

    def models_from(self, result: Any) -> list:
        """The one model the server serves, as an OpenAI-style model entry."""
        if not isinstance(result, dict) or not result.get("model_id"):
            return []
        return [{"id": result["model_id"], "object": "model", "owned_by": "text-generation-inference"}]
