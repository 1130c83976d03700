"""``hf_tei``: a Hugging Face text-embeddings-inference server.

Base URL: ``metadata["hf_tei_api_base"]`` (or ``tei_api_base``),
``HF_TEI_BASE_URL`` or ``TEI_BASE_URL``; default ``http://localhost:8080``
(``"simulator"`` starts the embedded one).  Key optional, as for ``hf_tgi``.

Operations: ``embeddings`` (TEI's ``/embed``: a list of vectors; the model
name is kept for statistics only, a TEI server serves one model), ``rerank``
(``/rerank``), ``info`` and ``list_models`` (from ``/info``).  Embeddings
requests from all callers are batched, at most ``max_client_batch_size``
inputs a call (``metadata["max_client_batch_size"]``, default 32 as TEI's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..providers.hf_tei import DEFAULT_MAX_CLIENT_BATCH_SIZE, TEI, TEIWire
from ..resilience.errors import InvalidInputError
from ..resilience.validation import require_int
from .base import BaseApiBackend

__all__ = ["hf_tei"]

CLIENT_BATCH_SIZE_KEY = "max_client_batch_size"


class hf_tei(BaseApiBackend):  # noqa: N801 - the seed's name
    provider = TEIWire(TEI)

    def __init__(
        self,
        resources: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        cap = _client_batch_size(metadata)
        if cap != self.provider.max_client_batch_size:
            self.provider = TEIWire(TEI, cap)  # this client's own cap
        super().__init__(resources, metadata, **kwargs)

    def rerank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        priority: int | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> list[Any]:
        """``[{"index", "score"}, ...]``: ``texts`` ranked against ``query``
        (``raw_scores``, ``return_text``, ``truncate`` as TEI takes them)."""
        if not isinstance(query, str) or not query:
            raise InvalidInputError(
                f"query must be a non-empty string, not {query!r:.80}", provider=self.provider.name
            )
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
            raise InvalidInputError(
                "texts must be a non-empty list of strings to rank", provider=self.provider.name
            )
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text:
                raise InvalidInputError(
                    f"texts[{i}] must be a non-empty string, not {text!r:.80}",
                    provider=self.provider.name,
                )
        endpoint, data = self.provider.rerank_request(query, texts, params)
        ranked: list[Any] = self._call(endpoint, data, priority=priority, request_id=request_id)
        return ranked

    def info(self) -> dict[str, Any]:
        """The server's ``/info``: ``model_id``, ``max_client_batch_size``, ``max_input_length``, ..."""
        endpoint, data = self.provider.info_request()
        return self._call_json(endpoint, data)


def _client_batch_size(metadata: Any) -> int:
    """``metadata["max_client_batch_size"]`` (a whole number >= 1, or its digits), else TEI's default."""
    value = metadata.get(CLIENT_BATCH_SIZE_KEY) if isinstance(metadata, Mapping) else None
    if value is None:
        return DEFAULT_MAX_CLIENT_BATCH_SIZE
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return require_int(CLIENT_BATCH_SIZE_KEY, value, 1)
