"""``ollama``: a local (or remote) Ollama server, through its native API.

Base URL: ``metadata["ollama_host"]`` (or ``"ollama_api_base"``) or
``OLLAMA_HOST``, read as Ollama reads it: ``"localhost:11434"``,
``"0.0.0.0"`` and ``"http://gpu-box:11434"`` all work (default
``http://localhost:11434``; ``"simulator"`` starts the embedded one).  No
key is needed; ``metadata["ollama_api_key"]`` or ``OLLAMA_API_KEY``, when
set, is sent as a bearer token (ollama.com, or a proxy in front of Ollama).
``client.base_url`` may be set to any of those spellings too.

Operations: ``chat`` (``stream=True`` for chunks), ``generate`` (and
``completions``, the same call), ``embeddings`` (alike calls are coalesced
into one ``/api/embed`` list, whatever the model), ``list_models``
(``/api/tags``).  Model parameters (``temperature``, ``top_p``,
``max_tokens``, ``seed``, ``stop``, ...) are sent in Ollama's ``options``;
``keep_alive``, ``format``, ``tools`` and the like as they are.
"""

from __future__ import annotations

from typing import Any

from ..engine.stream import ChunkStream
from ..providers.ollama import OLLAMA, OllamaWire
from ..resilience.errors import InvalidInputError
from .base import BaseApiBackend

__all__ = ["ollama"]


class ollama(BaseApiBackend):  # noqa: N801 - the seed's name
    provider = OllamaWire(OLLAMA)

    def generate(
        self,
        model_name: str,
        prompt: str,
        stream: bool = False,
        *,
        priority: int | None = None,
        request_id: str | None = None,
        **options: Any,
    ) -> dict[str, Any] | ChunkStream:
        """``/api/generate``: the response for ``prompt`` (``response``,
        ``done_reason``, counts), or with ``stream=True`` its chunks.
        ``options`` as for ``chat`` (``temperature=0.2``, ``system="..."``,
        ``format="json"``, ``keep_alive="10m"``, ...)."""
        if not isinstance(model_name, str) or not model_name.strip():
            raise InvalidInputError(
                f"model_name must be a non-empty string (e.g. 'llama3.2'), not {model_name!r}"
            )
        if not isinstance(prompt, str):
            raise InvalidInputError(f"prompt must be a string, not {type(prompt).__name__}")
        endpoint, data = self.provider.generate_request(model_name, prompt, options, stream)
        return self._call_maybe_stream(
            endpoint, data, priority=priority, request_id=request_id, stream=stream
        )
