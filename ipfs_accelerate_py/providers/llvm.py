"""The LLVM model server's REST API, as the seed project's ``llvm`` backend spoke it.

Endpoints (below the base URL, default ``http://localhost:8090``)::

    GET  /models                          {"models": [{"model_id", "status", ...}, ...]}
    GET  /models/{model_id}               {"model_id", "status", ...}
    POST /models/{model_id}/infer         {"model", "input", "parameters"?}
                                          -> {"model_id", "outputs", "status", "metrics"}
    POST /models/{model_id}/batch_infer   {"model", "inputs": [...], "parameters"?}
                                          -> {"model_id", "results": [...], "status", "metrics"}
    GET  /models/{model_id}/statistics    the model's statistics, as the server keeps them
    GET  /status                          the server's status and statistics
    POST /models/{model_id}/optimize      {"optimization_type": "speed" | "memory" | "balanced"}

Errors are ``{"error": "..."}`` (404 unknown model, 400 bad input, 503 busy,
with ``Retry-After`` when the server says when to come back).  A key, when
the server wants one, goes as ``Authorization: Bearer``.

The request body also names the model (``"model"``, as the original's
documented ``/infer`` example did): it is what the core keys batches and
per-model statistics by.

Batching: an ``infer`` whose input is a string or a list (a token array, a
feature vector) may go through the core's batch lane; alike requests (same
model, same parameters, same key) are sent as one ``batch_infer`` and each
caller gets an ``infer``-shaped response with its own ``outputs``.  The
batch is the carrier's request to ``/models/{id}/infer`` with ``inputs`` in
place of ``input``: :meth:`LLVMWire.prepare` sends such a body to
``/models/{id}/batch_infer``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ..resilience.errors import InvalidInputError, MalformedResponseError
from .base import ProviderSpec, Wire

__all__ = ["LLVM", "LLVMWire", "LLVM_BATCH_MODELS", "OPTIMIZATION_TYPES"]

LLVM_BATCH_MODELS = (
    "resnet50",
    "bert-base",
    "mobilenet",
    "t5-small",
    "yolov5",
    "whisper-small",
    "wav2vec2",
    "vit-base",
    "default",
    "test-model",
)
"""Models the original's model list marks ``batch_support``: the default ``supported_batch_models``."""

OPTIMIZATION_TYPES = ("speed", "memory", "balanced")
DEFAULT_MODEL = "default"

LLVM = ProviderSpec(
    name="llvm",
    default_base_url="http://localhost:8090",
    key_metadata=("llvm_api_key",),
    key_env=("LLVM_API_KEY",),
    base_url_metadata=("llvm_api_base", "llvm_endpoint_url", "llvm_api_url", "llvm_endpoint"),
    base_url_env=("LLVM_BASE_URL", "LLVM_API_URL", "LLVM_API_ENDPOINT"),
    requires_key=False,
    embedding_models=LLVM_BATCH_MODELS,
    simulator_path="/llvm",  # the simulator serves this API below /llvm, claiming nothing at its root
)

_INFER_PATH = re.compile(r"^models/(?P<model>[^/]+)/infer$")
_BATCH_SUFFIX = "batch_infer"


def model_path(model_id: str, *rest: str) -> str:
    """``models/{model_id}/...`` with the id escaped as one path segment."""
    return "/".join(("models", quote(model_id, safe=""), *rest))


class LLVMWire(Wire):
    """Maps the LLVM server's operations to HTTP and back."""

    get_endpoints = frozenset({"models", "status"})

    # ------------------------------------------------------------ requests

    def prepare(self, endpoint: str, data: Any, stream: bool) -> tuple[str, Any]:
        """A body carrying ``inputs`` (a list) and no ``input`` to a model's
        ``infer`` goes to its ``batch_infer``: that is how a batch assembled
        by the core leaves."""
        match = _INFER_PATH.match(self.endpoint_path(endpoint))
        if (
            match
            and isinstance(data, Mapping)
            and "input" not in data
            and isinstance(data.get("inputs"), list)
        ):
            endpoint = f"models/{match.group('model')}/{_BATCH_SUFFIX}"
        return endpoint, data

    # ---------------------------------------------------------- operations

    def models_request(self) -> tuple[str, dict[str, Any] | None]:
        return "models", None

    def models_from(self, result: Any) -> list[Any]:
        """The original accepted ``{"models": [...]}`` or ``{"data": [...]}``."""
        if isinstance(result, dict):
            for key in ("models", "data"):
                models = result.get(key)
                if isinstance(models, list):
                    return models
            raise MalformedResponseError(
                "model list has neither 'models' nor 'data'", provider=self.name
            )
        return list(result)

    def model_info_request(self, model_id: str) -> tuple[str, None]:
        return model_path(model_id), None

    def infer_request(
        self, model_id: str, inputs: Any, parameters: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        data: dict[str, Any] = {"model": model_id, "input": inputs}
        if parameters:
            data["parameters"] = dict(parameters)
        return model_path(model_id, "infer"), data

    def batch_infer_request(
        self, model_id: str, inputs_list: list[Any], parameters: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        data: dict[str, Any] = {"model": model_id, "inputs": list(inputs_list)}
        if parameters:
            data["parameters"] = dict(parameters)
        return model_path(model_id, _BATCH_SUFFIX), data

    def statistics_request(self, model_id: str | None) -> tuple[str, None]:
        """A model's statistics, or (no model) the server's ``/status``."""
        return (model_path(model_id, "statistics") if model_id else "status"), None

    def optimize_request(self, model_id: str, optimization_type: str) -> tuple[str, dict[str, Any]]:
        if optimization_type not in OPTIMIZATION_TYPES:
            raise InvalidInputError(
                f"optimization_type must be one of {', '.join(OPTIMIZATION_TYPES)}, not {optimization_type!r}",
                provider=self.name,
            )
        return model_path(model_id, "optimize"), {"optimization_type": optimization_type}

    def outputs_of(self, result: Any) -> Any:
        """The ``outputs`` of an ``infer`` response."""
        if not isinstance(result, dict) or "outputs" not in result:
            raise MalformedResponseError("infer response has no 'outputs'", provider=self.name)
        return result["outputs"]

    def results_of(self, result: Any) -> list[Any]:
        """The ``results`` of a ``batch_infer`` response, in input order."""
        results = result.get("results") if isinstance(result, dict) else None
        if not isinstance(results, list):
            raise MalformedResponseError(
                "batch_infer response has no list of 'results'", provider=self.name
            )
        return results

    # ------------------------------------------------------------ batching

    def batch_inputs(self, endpoint: str, data: Any) -> list[Any] | None:
        """One input per ``infer`` call, when it is one the lane can weigh
        (a string or a list); anything else is sent on its own."""
        if not isinstance(data, Mapping) or not _INFER_PATH.match(self.endpoint_path(endpoint)):
            return None
        if "input" not in data:
            return None
        value = data["input"]
        return [value] if isinstance(value, (str, list)) else None

    def batch_payload(self, template: Mapping[str, Any], inputs: list[Any]) -> dict[str, Any]:
        """The carrier's ``infer`` body with ``inputs`` for ``input``: see :meth:`prepare`."""
        return {**template, "inputs": inputs}

    def split_batch_result(
        self, result: Any, counts: list[int], weights: list[int] | None = None
    ) -> list[dict[str, Any]]:
        """Each member gets ``{"model_id", "outputs", "status", "metrics"}``:
        the batch response with its own result as ``outputs``."""
        runs = self.split_positional(self.results_of(result), counts, "batch_infer results")
        shared = {k: v for k, v in result.items() if k != "results"}
        members = []
        for run in runs:
            if len(run) != 1:
                raise MalformedResponseError(
                    "an infer call carries exactly one input", provider=self.name
                )
            members.append(dict(shared, outputs=run[0]))
        return members
