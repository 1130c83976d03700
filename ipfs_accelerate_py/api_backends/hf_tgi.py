"""``hf_tgi``: a Hugging Face text-generation-inference server.

Base URL: ``metadata["hf_tgi_api_base"]`` (or ``tgi_api_base``),
``HF_TGI_BASE_URL`` or ``TGI_BASE_URL``; default ``http://localhost:8080``
(``"simulator"`` starts the embedded one).  No key is needed for a server of
one's own; for Inference Endpoints, ``metadata["hf_api_key"]``,
``HF_API_TOKEN`` or ``HF_TOKEN`` is sent as a bearer token.

Operations: ``generate`` (TGI's own ``/generate`` and ``/generate_stream``),
``chat`` and ``completions`` (its OpenAI-compatible routes; a TGI server
serves one model, so the model name may be left out: ``"tgi"`` is sent),
``info`` and ``list_models`` (from ``/info``).
"""

from __future__ import annotations

from typing import Any, Literal, overload

from ..engine.stream import ChunkStream
from ..providers.hf_tgi import TGI, TGI_MODEL, TGIWire
from ..resilience.errors import InvalidInputError
from .base import BaseApiBackend

__all__ = ["hf_tgi"]


class hf_tgi(BaseApiBackend):  # noqa: N801 - the seed's name
    provider = TGIWire(TGI)
    _unnamed_chat_model = TGI_MODEL  # a TGI server serves one model: "tgi" names it

    @overload
    def generate(
        self, prompt: str, *, stream: Literal[False] = False, **parameters: Any
    ) -> dict[str, Any]: ...
    @overload
    def generate(self, prompt: str, *, stream: Literal[True], **parameters: Any) -> ChunkStream: ...
    @overload
    def generate(
        self, prompt: str, *, stream: bool, **parameters: Any
    ) -> dict[str, Any] | ChunkStream: ...
    def generate(
        self,
        prompt: str,
        *,
        stream: bool = False,
        priority: int | None = None,
        request_id: str | None = None,
        **parameters: Any,
    ) -> dict[str, Any] | ChunkStream:
        """Text from ``prompt`` with TGI's generation ``parameters``
        (``max_new_tokens``, ``temperature``, ``stop``, ``details``, ...):
        ``{"generated_text", "details"?}``, or with ``stream=True`` an
        iterator of TGI's stream events (the last carries ``generated_text``)."""
        if not isinstance(prompt, str) or not prompt:
            raise InvalidInputError(
                f"prompt must be a non-empty string, not {prompt!r:.80}",
                provider=self.provider.name,
            )
        endpoint, data = self.provider.generate_request(prompt, parameters, stream)
        return self._call_maybe_stream(
            endpoint, data, priority=priority, request_id=request_id, stream=stream
        )

    def generate_stream(self, prompt: str, **kwargs: Any) -> ChunkStream:
        """``generate(prompt, stream=True, ...)``: TGI's ``/generate_stream``."""
        return self.generate(prompt, stream=True, **kwargs)

    def info(self) -> dict[str, Any]:
        """The server's ``/info``: ``model_id``, ``max_input_tokens``, ``max_total_tokens``, ..."""
        endpoint, data = self.provider.info_request()
        return self._call_json(endpoint, data)
