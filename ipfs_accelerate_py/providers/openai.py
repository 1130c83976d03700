"""The OpenAI wire format, as pure mapping: request building, response and
stream parsing, error classification, usage, and embeddings batching.

OpenAI-compatible providers (Groq, vLLM, OPEA, TGI's /v1, ...) use this
class with their own :class:`ProviderSpec`; nothing here queues, retries or
counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ..resilience.batching import OPENAI_EMBEDDING_LIMITS, BatchLimits, split_by_index
from ..resilience.errors import ApiError, InvalidInputError, MalformedResponseError, classify_status
from ..transport.base import HttpRequest, HttpResponse
from ..transport.sse import STREAM_DONE, SseEvent

__all__ = ["OpenAIWire", "ProviderSpec", "STREAM_DONE", "OPENAI"]

_GET_ENDPOINTS = frozenset({"models"})
_JSON = "application/json"


@dataclass(frozen=True)
class ProviderSpec:
    """Who a provider is: its name, where it lives, where its key comes from."""

    name: str
    default_base_url: str
    key_metadata: tuple[str, ...] = ()
    key_env: tuple[str, ...] = ()
    base_url_metadata: tuple[str, ...] = ()
    base_url_env: tuple[str, ...] = ()
    requires_key: bool = True
    embedding_models: tuple[str, ...] = ()
    extra_headers: Mapping[str, str] = field(default_factory=dict)


OPENAI = ProviderSpec(
    name="openai",
    default_base_url="https://api.openai.com/v1",
    key_metadata=("openai_api_key", "api_key"),
    key_env=("OPENAI_API_KEY",),
    base_url_metadata=("openai_api_base", "openai_base_url", "base_url", "api_base"),
    base_url_env=("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    embedding_models=("text-embedding-ada-002", "text-embedding-3-small", "text-embedding-3-large"),
)


def normalize_endpoint(endpoint: str) -> str:
    """``"/v1/chat/completions"`` and ``"chat/completions"`` are the same endpoint."""
    ep = endpoint.strip().strip("/")
    if ep.startswith("v1/"):
        ep = ep[3:]
    return ep


class OpenAIWire:
    """Maps operations to OpenAI-style HTTP and back."""

    stream_format = "sse"

    def __init__(self, spec: ProviderSpec = OPENAI) -> None:
        self.spec = spec
        self.name = spec.name

    # ------------------------------------------------------------ requests

    def build_request(
        self,
        endpoint: str,
        data: Optional[Mapping[str, Any]],
        *,
        api_key: Optional[str],
        base_url: str,
        timeout: Optional[float],
        stream: bool = False,
        request_id: Optional[str] = None,
    ) -> HttpRequest:
        ep = normalize_endpoint(endpoint)
        method = "GET" if ep.split("/", 1)[0] in _GET_ENDPOINTS and not data else "POST"
        headers = {"Accept": "text/event-stream" if stream else _JSON}
        headers.update(self.spec.extra_headers)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if request_id:
            headers["X-Client-Request-Id"] = request_id
        body = None
        if method == "POST":
            headers["Content-Type"] = _JSON
            try:
                body = json.dumps(data or {}, separators=(",", ":")).encode()
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"request data cannot be sent as JSON: {exc}", provider=self.name) from exc
        url = endpoint if endpoint.startswith(("http://", "https://")) else f"{base_url.rstrip('/')}/{ep}"
        return HttpRequest(method, url, headers, body, timeout, stream)

    # ----------------------------------------------------------- responses

    def parse_response(self, endpoint: str, response: HttpResponse) -> Any:
        result = response.json()
        if not isinstance(result, dict):
            raise MalformedResponseError(
                f"expected a JSON object from {normalize_endpoint(endpoint)}, got {type(result).__name__}",
                provider=self.name,
                status=response.status,
            )
        return result

    def error_for(self, response: HttpResponse, *, wall_now: float, attempt: int) -> ApiError:
        return classify_status(
            response.status,
            response.headers,
            response.body,
            wall_now=wall_now,
            provider=self.name,
            attempt=attempt,
        )

    @staticmethod
    def usage(result: Any) -> tuple[int, int]:
        """(input tokens, output tokens) as the provider reported them."""
        usage = result.get("usage") if isinstance(result, dict) else None
        if not isinstance(usage, dict):
            return 0, 0
        tokens_in = usage.get("prompt_tokens") or usage.get("input_tokens") or 0
        tokens_out = usage.get("completion_tokens") or usage.get("output_tokens") or 0
        return int(tokens_in), int(tokens_out)

    # ------------------------------------------------------------- streams

    def parse_stream_event(self, event: SseEvent) -> Any:
        """A chunk dict, ``STREAM_DONE``, or None for an event to skip."""
        data = event.data.strip()
        if not data:
            return None
        if data == "[DONE]":
            return STREAM_DONE
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise MalformedResponseError(
                f"stream sent a chunk that is not JSON: {data[:80]!r}", provider=self.name
            ) from exc
        if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
            raise classify_status(500, None, chunk, wall_now=0.0, provider=self.name)
        return chunk

    # ------------------------------------------------------------ batching

    @staticmethod
    def batchable(endpoint: str) -> bool:
        return normalize_endpoint(endpoint) == "embeddings"

    @staticmethod
    def batch_limits(model: str) -> BatchLimits:
        return OPENAI_EMBEDDING_LIMITS

    @staticmethod
    def batch_payload(template: Mapping[str, Any], inputs: list) -> dict:
        payload = dict(template)
        payload["input"] = inputs
        return payload

    def split_batch_result(self, result: dict, counts: list[int], weights: Optional[list[int]] = None) -> list[dict]:
        """One response of the provider's own shape per member, by ``index``.

        The batch's ``usage`` is shared out in proportion to ``weights`` (the
        members' estimated tokens; their input counts when not given) so that
        the members' figures add up exactly to what the server reported.
        """
        data = result.get("data")
        if not isinstance(data, list):
            raise MalformedResponseError("embeddings response has no 'data' list", provider=self.name)
        parts = split_by_index(data, counts)
        usage = result.get("usage")
        shares = weights if weights is not None else counts
        out = []
        for i, (part, count) in enumerate(zip(parts, counts)):
            member = {k: v for k, v in result.items() if k not in ("data", "usage")}
            member["data"] = part
            out.append(member)
        if isinstance(usage, dict):
            split = {k: apportion(v, shares) for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
            for i, member in enumerate(out):
                member["usage"] = {k: (split[k][i] if k in split else v) for k, v in usage.items()}
        return out


def apportion(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder): the
    parts are whole numbers and add up to ``total`` exactly."""
    weight_sum = sum(weights)
    if weight_sum <= 0:
        weights, weight_sum = [1] * len(weights), len(weights)
    exact = [total * w / weight_sum for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts
