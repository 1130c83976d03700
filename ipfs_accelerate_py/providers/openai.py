"""The OpenAI wire format: chat, completions, embeddings, models, SSE.

OpenAI-compatible providers (Groq, vLLM, OPEA, TGI's and OVMS's chat) are
this class with their own :class:`ProviderSpec`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ..resilience.batching import OPENAI_EMBEDDING_LIMITS, BatchLimits, normalize_inputs
from ..resilience.errors import MalformedResponseError, classify_status, get_header
from ..transport.sse import SseEvent
from .base import Event, ProviderSpec, Wire, apportion

__all__ = ["OPENAI", "OpenAIWire", "STREAM_END", "openai_style_spec"]

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


class OpenAIWire(Wire):
    """Maps operations to OpenAI-style HTTP and back."""

    get_endpoints = frozenset({"models"})
    base_url_prefixes = ("v1/",)  # "/v1/chat/completions" and "chat/completions" are the same endpoint
    response_types = (dict,)

    # ------------------------------------------------------------- streams

    def sse_json(self, event: SseEvent) -> tuple[Any, bool]:
        """``(chunk, done)`` of one event: its JSON (None when it has no
        data), and whether it is the end marker ``data: [DONE]``."""
        data = event.data.strip()
        if not data or data == STREAM_END:
            return None, data == STREAM_END
        return self.stream_json(data), False

    def parse_stream_event(self, event: Event) -> tuple[Any, bool]:
        chunk, done = self.sse_json(event)
        if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
            raise classify_status(500, None, chunk, wall_now=0.0, provider=self.name)
        return chunk, done

    # ---------------------------------------------------------- operations

    def chat_request(self, model: str, messages: list, params: dict, stream: bool) -> tuple[str, dict]:
        data = {"model": model, "messages": messages, **params}
        if stream:
            data["stream"] = True
        return "chat/completions", data

    def completion_request(self, model: str, prompt: Any, params: dict, stream: bool) -> tuple[str, dict]:
        data = {"model": model, "prompt": prompt, **params}
        if stream:
            data["stream"] = True
        return "completions", data

    def embeddings_request(self, model: str, inputs: Any, params: dict) -> tuple[str, dict]:
        return "embeddings", {"model": model, "input": inputs, **params}

    def models_request(self) -> tuple[str, Optional[dict]]:
        return "models", None

    def reply_text(self, result: Any) -> str:
        choice = (result.get("choices") or [{}])[0]
        message = choice.get("message")
        return (message.get("content") or "") if isinstance(message, dict) else (choice.get("text") or "")

    def embedding_vectors(self, result: Any) -> list[list[float]]:
        items = sorted(result.get("data", []), key=lambda item: item.get("index", 0))
        return [item["embedding"] for item in items]

    def rate_limit_hints(self, headers: Mapping[str, str]) -> Optional[dict]:
        """``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` (``"1s"``, ``"6m0s"``, ``"20ms"``)."""
        hints = {}
        for kind in ("requests", "tokens"):
            remaining = get_header(headers, f"x-ratelimit-remaining-{kind}")
            if remaining is not None and remaining.strip().isdigit():
                hints[f"{kind}_remaining"] = int(remaining)
            reset = parse_duration(get_header(headers, f"x-ratelimit-reset-{kind}"))
            if reset is not None:
                hints[f"{kind}_reset"] = reset
        return hints or None

    # ------------------------------------------------------------ batching

    def batch_inputs(self, endpoint: str, data: Any) -> Optional[list]:
        if self.endpoint_path(endpoint) != "embeddings" or not isinstance(data, Mapping):
            return None
        return normalize_inputs(data.get("input"))

    def batch_limits(self, model: Optional[str]) -> BatchLimits:
        return OPENAI_EMBEDDING_LIMITS

    def split_batch_result(self, result: Any, counts: list[int], weights: Optional[list[int]] = None) -> list[dict]:
        """One response of OpenAI's shape per member, by ``index``; the
        batch's ``usage`` is shared out by ``weights`` (estimated tokens) so
        the members' figures add up to what the server reported."""
        if not isinstance(result, dict):
            raise MalformedResponseError("embeddings response is not a JSON object", provider=self.name)
        parts = self.split_indexed(result.get("data"), counts)
        members = [dict({k: v for k, v in result.items() if k not in ("data", "usage")}, data=part) for part in parts]
        usage = result.get("usage")
        if isinstance(usage, dict):
            shares = weights if weights is not None else counts
            split = {k: apportion(v, shares) for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
            for i, member in enumerate(members):
                member["usage"] = {k: (split[k][i] if k in split else v) for k, v in usage.items()}
        return members


_DURATION_UNITS = (("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0))


def parse_duration(text: Optional[str]) -> Optional[float]:
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
        rest = rest[len(unit[0]):]
    return total
