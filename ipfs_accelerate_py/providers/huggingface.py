"""What Hugging Face's inference servers (TGI, TEI) share: keys, errors, ``/info``.

Both serve one model at the server's root (``http://localhost:8080`` by
default) and need no key there; a Hugging Face token (Inference Endpoints) is
sent as a bearer token.  ``GET /info`` describes the served model.
``GET /health`` answers in its status: 200 is ``{"ready": True, "status":
200}``, 503 (unhealthy, or still loading) ``{"ready": False, "status": 503}``,
an answer rather than a failure (not retried, not counted by the breaker).

Errors are ``{"error": str, "error_type": str}``: 413 too large, 422
validation or tokenizer, 424 the model failed while running (a server-side
failure: retried, counts against the breaker), 429 "Model is overloaded"
(the router's queue is full: retried), 500, 503 not ready.  Hosted Inference
Endpoints answer 503 with ``estimated_time`` while the model loads; that
figure becomes the error's ``retry_after``.  The same body arrives as an SSE
event when a stream fails midway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..resilience.errors import ApiError, ServerError, classify_status
from ..transport.base import HttpResponse
from .base import ProviderSpec, Wire, body_json, retyped

__all__ = [
    "HF_KEY_ENV",
    "HF_KEY_METADATA",
    "HuggingFaceWire",
    "hf_error_for",
    "hf_spec",
    "hf_stream_error",
]

DEFAULT_HF_BASE_URL = "http://localhost:8080"
HF_KEY_METADATA = ("hf_api_key", "hf_api_token", "hf_token")
HF_KEY_ENV = ("HF_API_TOKEN", "HF_TOKEN")
FAILED_DEPENDENCY = 424
"""The model failed while running: a server-side failure, retried."""

HEALTH = "health"
UNHEALTHY = 503
"""What ``/health`` answers when the server cannot serve (yet)."""

_ERROR_TYPE_STATUS = {
    "overloaded": 429,
    "validation": 422,
    "tokenizer": 422,
    "generation": FAILED_DEPENDENCY,
    "backend": FAILED_DEPENDENCY,
    "incomplete_generation": 500,
    "unhealthy": 503,
}
"""A Hugging Face ``error_type`` and the status its route answers with."""


def hf_spec(name: str, short: str, **fields: Any) -> ProviderSpec:
    """A Hugging Face server's spec: base URL from ``metadata["{name}_api_base"]``
    (or ``"{short}_api_base"``), ``{NAME}_BASE_URL`` or ``{SHORT}_BASE_URL``;
    the Hugging Face token optional; 424 retried."""
    return ProviderSpec(
        name=name,
        default_base_url=DEFAULT_HF_BASE_URL,
        key_metadata=HF_KEY_METADATA,
        key_env=HF_KEY_ENV,
        base_url_metadata=(f"{name}_api_base", f"{short}_api_base", "api_base", "base_url"),
        base_url_env=(f"{name.upper()}_BASE_URL", f"{short.upper()}_BASE_URL"),
        requires_key=False,
        simulator_path="",
        extra_retryable_statuses=frozenset({FAILED_DEPENDENCY}),
        **fields,
    )


def hf_error_for(
    provider: str, response: HttpResponse, *, wall_now: float, attempt: int, hint: str | None = None
) -> ApiError:
    """The typed error of a TGI/TEI answer: the status table, except that 424
    is a :class:`ServerError`; a 503's ``estimated_time`` (a hosted model
    still loading) is its Retry-After.  ``hint`` is appended to the server's message."""
    body = body_json(response.body)
    error = classify_status(
        response.status,
        response.headers,
        body,
        wall_now=wall_now,
        provider=provider,
        attempt=attempt,
    )
    if response.status == FAILED_DEPENDENCY:
        error = retyped(error, ServerError)
    if error.retry_after is None and isinstance(body, dict):
        estimated = body.get("estimated_time")
        if (
            isinstance(estimated, (int, float))
            and not isinstance(estimated, bool)
            and estimated >= 0
        ):
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
    return retyped(error, ServerError) if status == FAILED_DEPENDENCY else error


class HuggingFaceWire(Wire):
    """A Hugging Face server: its errors, its ``GET`` routes, its one model from ``/info``."""

    get_paths: frozenset[str] = frozenset({"info", HEALTH, "metrics"})
    server = ""  # the ``owned_by`` of the served model's entry

    def method_for(self, path: str, data: Any) -> str:
        return "GET" if data is None and path in self.get_paths else "POST"

    def parse_response(self, endpoint: str, response: HttpResponse) -> Any:
        """``/health`` answers in its status (its 200 has an empty body)."""
        if self.endpoint_path(endpoint) == HEALTH:
            return {"ready": True, "status": response.status}
        return super().parse_response(endpoint, response)

    def answer_for_status(self, endpoint: str, response: HttpResponse) -> Any:
        """``/health``'s 503: not ready, which is an answer."""
        if response.status == UNHEALTHY and self.endpoint_path(endpoint) == HEALTH:
            return {"ready": False, "status": response.status}
        return None

    def error_for(self, response: HttpResponse, *, wall_now: float, attempt: int) -> ApiError:
        return hf_error_for(self.name, response, wall_now=wall_now, attempt=attempt)

    def info_request(self) -> tuple[str, None]:
        return "info", None

    def models_request(self) -> tuple[str, None]:
        return self.info_request()

    def models_from(self, result: Any) -> list[Any]:
        """The one model the server serves, as an OpenAI-style model entry."""
        if not isinstance(result, dict) or not result.get("model_id"):
            return []
        return [{"id": result["model_id"], "object": "model", "owned_by": self.server}]
