"""``llvm``: an LLVM model server's REST API (see :mod:`..providers.llvm`).

Key (optional): ``metadata["llvm_api_key"]`` or ``LLVM_API_KEY``, sent as
``Authorization: Bearer``.  Base URL: ``metadata["llvm_api_base"]`` (or
``llvm_endpoint_url``, the original's ``llvm_api_url``) or ``LLVM_BASE_URL``
(``LLVM_API_URL``); default ``http://localhost:8090``.

``infer`` calls to ``supported_batch_models`` (by default the models the
original marked batch-capable) whose input is a string or a list are
coalesced into ``batch_infer`` calls, like embeddings elsewhere; each caller
still receives its own ``infer`` response.

``get_statistics()`` is what the *server* reports; ``get_stats()`` remains
this client's own statistics.
"""

from __future__ import annotations

from typing import Any

from ..providers.llvm import DEFAULT_MODEL, LLVM, LLVMWire
from ..resilience.errors import InvalidInputError
from .base import BaseApiBackend

__all__ = ["llvm"]


class llvm(BaseApiBackend):  # noqa: N801 - the seed's name
    provider = LLVMWire(LLVM)

    def get_model_info(self, model_id: str, *, priority: int | None = None) -> dict[str, Any]:
        """``GET /models/{model_id}``: what the server says of one model."""
        endpoint, data = self.provider.model_info_request(_model(model_id))
        return self._call_json(endpoint, data, priority=priority)

    def infer(
        self,
        model_id: str,
        inputs: Any,
        *,
        parameters: dict[str, Any] | None = None,
        priority: int | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """``POST /models/{model_id}/infer`` with ``{"input": inputs, "parameters"}``;
        ``parameters`` and any extra keyword (``precision="fp16"``) are merged
        into ``parameters``.  Returns ``{"model_id", "outputs", ...}``."""
        endpoint, data = self.provider.infer_request(
            _model(model_id), _input(inputs), _parameters(parameters, params)
        )
        return self._call_json(endpoint, data, priority=priority, request_id=request_id)

    def run_inference(
        self,
        model_id: str,
        inputs: Any,
        parameters: dict[str, Any] | None = None,
        priority: int | None = None,
    ) -> dict[str, Any]:
        """The original's name and argument order for :meth:`infer`."""
        return self.infer(model_id, inputs, parameters=parameters, priority=priority)

    def batch_infer(
        self,
        model_id: str,
        inputs_list: list[Any],
        *,
        parameters: dict[str, Any] | None = None,
        priority: int | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """``POST /models/{model_id}/batch_infer`` with several inputs at once;
        returns ``{"results": [...], ...}`` in input order."""
        if not isinstance(inputs_list, (list, tuple)) or not inputs_list:
            raise InvalidInputError(
                "inputs_list must be a non-empty list of inputs, one per result"
            )
        for position, item in enumerate(inputs_list):
            _input(item, f"inputs_list[{position}]")
        endpoint, data = self.provider.batch_infer_request(
            _model(model_id), list(inputs_list), _parameters(parameters, params)
        )
        return self._call_json(endpoint, data, priority=priority)

    def get_statistics(
        self, model_id: str | None = None, *, priority: int | None = None
    ) -> dict[str, Any]:
        """The server's own statistics: a model's (``/models/{id}/statistics``)
        or, without ``model_id``, the server's (``/status``)."""
        endpoint, data = self.provider.statistics_request(
            None if model_id is None else _model(model_id)
        )
        return self._call_json(endpoint, data, priority=priority)

    def optimize_model(
        self, model_id: str, optimization_type: str = "balanced", *, priority: int | None = None
    ) -> dict[str, Any]:
        """``POST /models/{model_id}/optimize`` (``speed``, ``memory`` or ``balanced``)."""
        endpoint, data = self.provider.optimize_request(_model(model_id), optimization_type)
        return self._call_json(endpoint, data, priority=priority)

    def feature_probe(self, tag: str) -> tuple[str, Any]:
        """The feature checks send a small ``infer`` to the default model; its
        input is a dict, which the batch lane never holds back, so each probe
        is one request on the wire."""
        return self.provider.infer_request(DEFAULT_MODEL, {"text": tag}, None)


def _model(model_id: Any) -> str:
    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidInputError(
            f"model_id must be a non-empty string (e.g. 'resnet50'), not {model_id!r}"
        )
    return model_id


def _input(value: Any, what: str = "inputs") -> Any:
    if value is None:
        raise InvalidInputError(
            f"{what} must be the model's input (text, a list, a dict), not None"
        )
    return value


def _parameters(parameters: Any, extra: dict[str, Any]) -> dict[str, Any]:
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInputError(
            f"parameters must be a dict like {{'precision': 'fp16'}}, not {type(parameters).__name__}"
        )
    return {**(parameters or {}), **extra}
