"""The LLVM model server REST API of the seed project's ``llvm`` backend, under ``/llvm``.

Routes (the server's own paths, below ``/llvm`` so that they claim nothing
at the simulator's root)::

    GET  /llvm/models                        {"models": [{"model_id", "status"}]} (scenario.models)
    GET  /llvm/models/{m}                    {"model_id", "status", "batch_support", "precision_modes"}
    POST /llvm/models/{m}/infer              {"input", "parameters"?} -> {"model_id", "outputs", "status", "metrics"}
    POST /llvm/models/{m}/batch_infer        {"inputs": [...]} -> {"model_id", "results", "status", "metrics"}
    GET  /llvm/models/{m}/statistics         {"model_id", "statistics": {...}}
    GET  /llvm/status                        {"status": "ok", "server", "models_loaded"}
    POST /llvm/models/{m}/optimize           {"optimization_type"} -> {"model_id", "optimization_type", "status"}

Errors are ``{"error": "..."}``.  Outputs are :func:`outputs_for` of the
input (deterministic, for tests to recompute); ``batch_infer`` counts its
inputs in the ``embedding_inputs`` counters (an ``infer`` counts one), so
tests can see what was batched.  The parsers are pure: statistics are the
simulated model's fixed figures, not the simulator's counters.
"""

from __future__ import annotations

from typing import Any

from ..wireformat import (
    JsonObject,
    Params,
    Prepared,
    Route,
    WireError,
    WireFormat,
    fixed_answer,
    simple_error_body,
)

__all__ = ["FORMAT", "PREFIX", "outputs_for"]

PREFIX = "/llvm"
OPTIMIZATION_TYPES = ("speed", "memory", "balanced")
PRECISION_MODES = ("fp32", "fp16", "int8")
MALFORMED_BODY = b'{"model_id": "resnet50", "outputs": {"echo": "cut sh'


def outputs_for(value: Any) -> Any:
    """The simulated model: a string -> ``{"echo", "length"}``, a number doubled,
    a bool negated, lists and dicts mapped item by item."""
    if isinstance(value, str):
        return {"echo": value, "length": len(value)}
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2
    if isinstance(value, list):
        return [outputs_for(v) for v in value]
    if isinstance(value, dict):
        return {k: outputs_for(v) for k, v in value.items()}
    return value


def _cost(value: Any) -> int:
    return max(1, len(value) // 4) if isinstance(value, str) else 1


def _body(payload: Any) -> JsonObject:
    if not isinstance(payload, dict):
        raise WireError(400, "The request body must be a JSON object")
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise WireError(400, "'parameters' must be an object")
    return payload


def _infer(payload: Any, scenario: Any, params: Params) -> Prepared:
    model, body = params["model"], _body(payload)
    if "input" not in body:
        raise WireError(400, "Missing 'input' in request body")
    value = body["input"]
    answer = {
        "model_id": model,
        "outputs": outputs_for(value),
        "status": "success",
        "metrics": {"inference_time": 0.001, "batch_size": 1},
    }
    return fixed_answer(model, answer, cost=_cost(value), embedding_inputs=1)


def _batch_infer(payload: Any, scenario: Any, params: Params) -> Prepared:
    model, body = params["model"], _body(payload)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise WireError(400, "'inputs' must be a non-empty array")
    answer = {
        "model_id": model,
        "results": [outputs_for(x) for x in inputs],
        "status": "success",
        "metrics": {"inference_time": 0.001 * len(inputs), "batch_size": len(inputs)},
    }
    return fixed_answer(
        model, answer, cost=sum(_cost(x) for x in inputs), embedding_inputs=len(inputs)
    )


def _models(payload: Any, scenario: Any, params: Params) -> Prepared:
    return fixed_answer(
        None, {"models": [{"model_id": m, "status": "loaded"} for m in scenario.models]}
    )


def _model(payload: Any, scenario: Any, params: Params) -> Prepared:
    model = params["model"]
    return fixed_answer(
        model,
        {
            "model_id": model,
            "status": "loaded",
            "batch_support": True,
            "precision_modes": list(PRECISION_MODES),
        },
    )


def _statistics(payload: Any, scenario: Any, params: Params) -> Prepared:
    model = params["model"]
    return fixed_answer(
        model,
        {
            "model_id": model,
            "statistics": {"average_latency_ms": 1.0, "throughput": 1000.0, "precision": "fp32"},
        },
    )


def _status(payload: Any, scenario: Any, params: Params) -> Prepared:
    return fixed_answer(
        None,
        {
            "status": "ok",
            "server": "LLVM model server (simulated)",
            "models_loaded": len(scenario.models),
        },
    )


def _optimize(payload: Any, scenario: Any, params: Params) -> Prepared:
    model, body = params["model"], _body(payload)
    kind = body.get("optimization_type")
    if kind not in OPTIMIZATION_TYPES:
        raise WireError(
            400, f"Invalid optimization type. Must be one of: {list(OPTIMIZATION_TYPES)}"
        )
    return fixed_answer(
        model, {"model_id": model, "optimization_type": kind, "status": "success"}, cost=1
    )


def _auth(key: Any) -> WireError:
    return WireError(401, "Missing API key" if key is None else "Invalid API key")


def _rate_limited(exceeded: str, retry_after: str) -> WireError:
    return WireError(429, f"Rate limit exceeded for {exceeded}; retry in {retry_after}s")


def _not_found(model: str) -> WireError:
    return WireError(404, f"Model {model} not found")


FORMAT = WireFormat(
    name="llvm",
    routes=(
        Route("GET", PREFIX + "/models", _models),
        Route("GET", PREFIX + "/models/{model}", _model),
        Route("POST", PREFIX + "/models/{model}/infer", _infer),
        Route("POST", PREFIX + "/models/{model}/batch_infer", _batch_infer),
        Route("GET", PREFIX + "/models/{model}/statistics", _statistics),
        Route("POST", PREFIX + "/models/{model}/optimize", _optimize),
        Route("GET", PREFIX + "/status", _status),
    ),
    error_body=simple_error_body,  # {"error": "..."}
    auth_error=_auth,
    rate_limit_error=_rate_limited,
    model_not_found=_not_found,
    malformed_body=MALFORMED_BODY,
)
