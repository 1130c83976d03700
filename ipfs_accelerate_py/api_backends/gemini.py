"""``gemini``: Google's Gemini API (Generative Language API, ``v1beta``).

Key: ``metadata["google_api_key"]`` or ``metadata["gemini_api_key"]``, else
``GOOGLE_API_KEY`` or ``GEMINI_API_KEY``; it is sent in the
``x-goog-api-key`` header.  Base URL: ``metadata["gemini_api_base"]`` or
``GEMINI_BASE_URL`` (default
``https://generativelanguage.googleapis.com/v1beta``; ``"simulator"``
starts the embedded one).

``chat`` takes OpenAI-style messages (images as ``data:`` URLs or
:func:`image_part` of raw bytes) and returns Gemini's
``GenerateContentResponse``; ``embeddings`` returns
``{"embeddings": [{"values": [...]}, ...]}`` and is batched with other
callers' through ``batchEmbedContents``.
"""

from __future__ import annotations

from typing import Any

from ..engine.stream import ChunkStream
from ..providers.gemini import GEMINI, GeminiWire, image_part
from ..resilience.errors import InvalidInputError
from .base import BaseApiBackend
from .operations import check_messages, check_model

__all__ = ["gemini", "image_part"]

MAX_MODEL_PAGES = 20
"""``list_models`` follows ``nextPageToken`` at most this many times."""


class gemini(BaseApiBackend):  # noqa: N801 - the seed's name
    provider = GeminiWire(GEMINI)

    def generate_content(
        self,
        model_name: str,
        contents: list[Any],
        *,
        stream: bool = False,
        priority: int | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any] | ChunkStream:
        """``models/{model}:generateContent`` with Gemini's own ``contents``
        (``[{"role": "user", "parts": [{"text": ...}]}]``) and request fields
        (``systemInstruction``, ``generationConfig``, ``safetySettings``, ...)."""
        check_model(model_name)
        if (
            not isinstance(contents, list)
            or not contents
            or not all(isinstance(c, dict) and "parts" in c for c in contents)
        ):
            raise InvalidInputError(
                "contents must be a non-empty list like [{'role': 'user', 'parts': [{'text': 'Hello'}]}]"
            )
        method = "streamGenerateContent" if stream else "generateContent"
        data = {"model": model_name, "contents": contents, **fields}
        return self._call_maybe_stream(
            method, data, priority=priority, request_id=request_id, stream=stream
        )

    def embed_content(
        self, model_name: str, text: str, *, priority: int | None = None, **params: Any
    ) -> dict[str, Any]:
        """One text through ``embedContent``: ``{"embedding": {"values": [...]}}``
        (never batched; ``embeddings`` is).  ``params``: task_type, title,
        output_dimensionality."""
        check_model(model_name)
        if not isinstance(text, str) or not text:
            raise InvalidInputError(
                "embed_content takes one non-empty string; use embeddings() for a list"
            )
        endpoint, data = self.provider.embed_content_request(model_name, text, params)
        return self._call_json(endpoint, data, priority=priority)

    def count_tokens(
        self, model_name: str, messages: list[Any], *, priority: int | None = None
    ) -> dict[str, Any]:
        """``countTokens`` for OpenAI-style ``messages``: ``{"totalTokens": n, ...}``."""
        check_model(model_name)
        check_messages(messages)
        endpoint, data = self.provider.count_tokens_request(model_name, messages)
        return self._call_json(endpoint, data, priority=priority)

    def get_model(self, model_name: str) -> dict[str, Any]:
        """``GET models/{model}``: its limits and supported methods."""
        check_model(model_name)
        endpoint, data = self.provider.model_request(model_name)
        return self._call_json(endpoint, data)

    def list_models(self) -> list[Any]:
        """Every model (``models.list``, following ``nextPageToken``)."""
        models: list[Any] = []
        token = None
        for _ in range(MAX_MODEL_PAGES):
            endpoint, data = self.provider.models_request(token)
            result = self._call(endpoint, data)
            models.extend(self.provider.models_from(result))
            token = result.get("nextPageToken") if isinstance(result, dict) else None
            if not token:
                break
        return models
