"""Hugging Face text-embeddings-inference (TEI).

Routes, at the server's root::

    POST /embed    {"inputs": str | [str], "normalize"?, "truncate"?, ...}
                   -> a bare JSON list of vectors, one per input, in input order
    POST /rerank   {"query": str, "texts": [str], "raw_scores"?, "return_text"?, ...}
                   -> [{"index", "score", "text"?}, ...] (best first)
    GET  /info     {"model_id", "max_client_batch_size", "max_batch_tokens", ...}

A TEI server serves one model and takes at most ``max_client_batch_size``
inputs per call (32 unless started otherwise), answering more with 413.  So
every ``/embed`` request is batchable whatever model name the caller gave
(``batch_any_model``), a batch holds at most that many inputs, and the model
name travels with the request only for the client's statistics: it is left
out of the body sent.

Errors, keys and ``/info`` are those of :mod:`.huggingface`: 413 too many
inputs or too large, 422 tokenizer, 424 the model failed (or is not of the
kind the route needs: not retried), 429 overloaded, 503 unhealthy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..resilience.batching import BatchLimits, normalize_inputs
from ..resilience.errors import ApiError, InvalidRequestError, MalformedResponseError
from ..resilience.validation import require_int
from ..transport.base import HttpResponse
from .base import ProviderSpec, retyped
from .huggingface import FAILED_DEPENDENCY, HuggingFaceWire, hf_error_for, hf_spec

__all__ = ["DEFAULT_MAX_CLIENT_BATCH_SIZE", "TEI", "TEIWire"]

DEFAULT_MAX_CLIENT_BATCH_SIZE = 32
"""TEI's ``--max-client-batch-size`` default: inputs one ``/embed`` call may carry."""

TEI = hf_spec(
    "hf_tei",
    "tei",
    batch_any_model=True,
    default_embedding_model="tei",  # TEI serves one model; the name is for stats only
)

EMBED = "embed"
RERANK = "rerank"
LOCAL_FIELDS = ("model",)
"""Request fields kept for the client's own use (statistics, batch keys), never sent."""

PAYLOAD_TOO_LARGE = 413
WRONG_MODEL_KIND = (
    "is not a"  # TEI's 424 when the route does not fit the model: "model is not a re-ranker model"
)


class TEIWire(HuggingFaceWire):
    """TEI's routes; ``max_client_batch_size`` is the server's input cap per call."""

    server = "text-embeddings-inference"
    batch_input_field = "inputs"
    body_params = {
        "embeddings": frozenset(
            {"dimensions", "normalize", "prompt_name", "truncate", "truncation_direction"}
        )
    }
    """``POST /embed``'s fields beside ``inputs``."""

    def __init__(
        self, spec: ProviderSpec = TEI, max_client_batch_size: int = DEFAULT_MAX_CLIENT_BATCH_SIZE
    ) -> None:
        super().__init__(spec)
        self.max_client_batch_size = require_int("max_client_batch_size", max_client_batch_size, 1)
        self._limits = BatchLimits(max_inputs=self.max_client_batch_size)

    # ------------------------------------------------------------ requests

    def prepare(self, endpoint: str, data: Any, stream: bool) -> tuple[str, Any]:
        """The data without the fields only the client uses."""
        if isinstance(data, Mapping) and any(f in data for f in LOCAL_FIELDS):
            data = {k: v for k, v in data.items() if k not in LOCAL_FIELDS}
        return endpoint, data

    # ----------------------------------------------------------- responses

    def error_for(self, response: HttpResponse, *, wall_now: float, attempt: int) -> ApiError:
        hint = None
        if response.status == PAYLOAD_TOO_LARGE:
            hint = (
                f"this client sends at most {self.max_client_batch_size} inputs per call; "
                "if the server was started with a lower --max-client-batch-size, set metadata['max_client_batch_size']"
            )
        error = hf_error_for(self.name, response, wall_now=wall_now, attempt=attempt, hint=hint)
        if response.status == FAILED_DEPENDENCY and WRONG_MODEL_KIND in error.message.lower():
            error = retyped(
                error, InvalidRequestError, should_retry=False
            )  # 424 is retried, this one cannot help
        return error

    # ---------------------------------------------------------- operations

    def embeddings_request(
        self, model: str, inputs: Any, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """``/embed``; ``model`` is kept for statistics and not sent."""
        return EMBED, {"model": model, "inputs": inputs, **params}

    def rerank_request(
        self, query: str, texts: Sequence[Any], params: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return RERANK, {"query": query, "texts": list(texts), **params}

    def embedding_vectors(self, result: Any) -> list[list[float]]:
        if not isinstance(result, list) or not all(isinstance(v, list) for v in result):
            raise MalformedResponseError(
                "TEI /embed answered something other than a list of vectors", provider=self.name
            )
        return result

    # ------------------------------------------------------------ batching

    def batch_inputs(self, endpoint: str, data: Any) -> list[Any] | None:
        if self.endpoint_path(endpoint) != EMBED or not isinstance(data, Mapping):
            return None
        return normalize_inputs(data.get(self.batch_input_field))

    def batch_limits(self, model: str | None) -> BatchLimits:
        return self._limits

    def split_batch_result(
        self, result: Any, counts: list[int], weights: list[int] | None = None
    ) -> list[Any]:
        """Each member's own vectors, in its own order: TEI answers in input order."""
        return self.split_positional(self.embedding_vectors(result), counts, "embeddings")
