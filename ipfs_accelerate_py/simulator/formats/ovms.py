"""OpenVINO Model Server: KServe v2 REST, TF-Serving REST, OpenAI under ``/v3``.

Routes (at the simulator's root)::

    GET  /v2                                        server metadata
    GET  /v2/health/live, /v2/health/ready          200, empty body
    GET  /v2/models/{m}[/versions/{v}]              KServe model metadata
    GET  /v2/models/{m}[/versions/{v}]/ready        200 with an empty body
    POST /v2/models/{m}[/versions/{v}]/infer        KServe inference
    POST /v1/models/{m}[/versions/{v}]:predict      TF-Serving predict (row or columnar)
    GET  /v1/config                                 every model's version status
    POST /v3/chat/completions, /v3/completions, /v3/embeddings; GET /v3/models[/{id}]
                                                    the OpenAI format's own parsers

Every model (``scenario.models``; with ``strict_models`` only those) has one
version, ``1``: another version is a 404 ``"Model with requested version is
not found"``.  Errors are OVMS's ``{"error": "..."}``.

Deterministic outputs, for tests to recompute with :func:`transform`:
numbers are doubled, booleans negated, strings upper-cased, structure kept.
A KServe infer answers, for each input tensor ``x``, an output ``x_output``
with the same shape and datatype and ``transform`` of its data (only the
outputs named in ``outputs`` when the request names some).  TF predict
answers ``{"predictions": transform(instances)}`` or ``{"outputs":
transform(inputs)}``.  KServe ``data`` must be flat (row-major), as OVMS
reads it.
"""

from __future__ import annotations

import math
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
from .openai import routes as openai_routes

__all__ = ["FORMAT", "MODEL_VERSION", "transform"]

MODEL_VERSION = "1"
SERVER_NAME = "OpenVINO Model Server"
SERVER_VERSION = "2025.1.simulated"
KSERVE_DATATYPES = frozenset(
    {
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    }
)
MALFORMED_BODY = b'{"model_name": "resnet", "outputs": [{"name": "output", "shape": [1, 2], "da'
NOT_FOUND = "Model with requested name is not found"
VERSION_NOT_FOUND = "Model with requested version is not found"


def transform(value: Any) -> Any:
    """The simulated model: numbers x2, booleans negated, strings upper-cased, lists and dicts kept."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list):
        return [transform(v) for v in value]
    if isinstance(value, dict):
        return {k: transform(v) for k, v in value.items()}
    return value


def _check_version(params: Params) -> str:
    version = params.get("version")
    if version is not None and version != MODEL_VERSION:
        raise WireError(404, VERSION_NOT_FOUND)
    return MODEL_VERSION


# -- KServe v2 ----------------------------------------------------------------------


def _tensor_error(position: int, message: str) -> WireError:
    return WireError(400, f"Invalid input {position}: {message}")


def _check_tensor(position: int, item: Any) -> JsonObject:
    if not isinstance(item, dict) or not all(
        k in item for k in ("name", "shape", "datatype", "data")
    ):
        raise _tensor_error(position, "a tensor needs name, shape, datatype and data")
    shape, data = item["shape"], item["data"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _tensor_error(position, "Invalid input shape")
    if item["datatype"] not in KSERVE_DATATYPES:
        raise _tensor_error(position, "Invalid input precision")
    if not isinstance(data, list) or any(isinstance(x, (list, dict)) for x in data):
        raise _tensor_error(
            position, "Invalid input format: data must be a flat list in row-major order"
        )
    if math.prod(shape) != len(data):
        raise _tensor_error(
            position, f"Invalid content size: expected {math.prod(shape)} values, got {len(data)}"
        )
    return item


def _infer(payload: Any, scenario: Any, params: Params) -> Prepared:
    model, version = params["model"], _check_version(params)
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("inputs"), list)
        or not payload["inputs"]
    ):
        raise WireError(
            400, "Invalid number of inputs: 'inputs' must be a non-empty list of tensors"
        )
    tensors = [_check_tensor(i, item) for i, item in enumerate(payload["inputs"])]
    outputs = [dict(t, name=t["name"] + "_output", data=transform(t["data"])) for t in tensors]
    wanted = payload.get("outputs")
    if wanted is not None:
        names = (
            [o.get("name") for o in wanted]
            if isinstance(wanted, list) and all(isinstance(o, dict) for o in wanted)
            else None
        )
        known = {o["name"] for o in outputs}
        if names is None or not set(names) <= known:
            raise WireError(400, f"Invalid output name: this model's outputs are {sorted(known)}")
        outputs = [o for o in outputs if o["name"] in names]
    values = sum(len(t["data"]) for t in tensors)

    def body(rid: str, created: int) -> JsonObject:
        answer = {
            "model_name": model,
            "model_version": version,
            "id": payload.get("id", rid),
            "outputs": outputs,
        }
        if isinstance(payload.get("parameters"), dict):
            answer["parameters"] = payload["parameters"]
        return answer

    return Prepared(model=model, cost=values, body=body)


def _metadata(payload: Any, scenario: Any, params: Params) -> Prepared:
    model = params["model"]
    _check_version(params)
    tensor = {"name": "input", "datatype": "FP32", "shape": [-1, -1]}
    return fixed_answer(
        model,
        {
            "name": model,
            "versions": [MODEL_VERSION],
            "platform": "OpenVINO",
            "inputs": [tensor],
            "outputs": [dict(tensor, name="input_output")],
        },
    )


def _ready(payload: Any, scenario: Any, params: Params) -> Prepared:
    _check_version(params)
    return fixed_answer(params["model"], b"")


def _server_metadata(payload: Any, scenario: Any, params: Params) -> Prepared:
    return fixed_answer(None, {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []})


def _health(payload: Any, scenario: Any, params: Params) -> Prepared:
    return fixed_answer(None, b"")


# -- TF-Serving ---------------------------------------------------------------------


def _predict(payload: Any, scenario: Any, params: Params) -> Prepared:
    model = params["model"]
    _check_version(params)
    if not isinstance(payload, dict) or ("instances" in payload) == ("inputs" in payload):
        raise WireError(
            400, "Missing 'instances' or 'inputs' key: a request has exactly one of them"
        )
    if "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise WireError(400, "'instances' must be a non-empty array")
        return fixed_answer(model, {"predictions": transform(instances)}, cost=len(instances))
    return fixed_answer(model, {"outputs": transform(payload["inputs"])}, cost=1)


def _config(payload: Any, scenario: Any, params: Params) -> Prepared:
    status = {
        "version": MODEL_VERSION,
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    return fixed_answer(None, {m: {"model_version_status": [status]} for m in scenario.models})


# -- the format ---------------------------------------------------------------------


def _kserve_routes() -> tuple[Route, ...]:
    out: list[Route] = []
    for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        out += [
            Route("GET", base, _metadata),
            Route("GET", base + "/ready", _ready),
            Route("POST", base + "/infer", _infer),
        ]
    return tuple(out)


def _not_found(model: str) -> WireError:
    return WireError(404, NOT_FOUND)


def _rate_limited(exceeded: str, retry_after: str) -> WireError:
    return WireError(429, f"Too many requests: {exceeded} limit reached, retry in {retry_after}s")


def _auth(key: Any) -> WireError:
    return WireError(
        401, "Unauthorized: missing API key" if key is None else "Unauthorized: invalid API key"
    )


FORMAT = WireFormat(
    name="ovms",
    routes=(
        Route("GET", "/v2", _server_metadata),
        Route("GET", "/v2/health/live", _health),
        Route("GET", "/v2/health/ready", _health),
        *_kserve_routes(),
        Route("POST", "/v1/models/{model}:predict", _predict),
        Route("POST", "/v1/models/{model}/versions/{version}:predict", _predict),
        Route("GET", "/v1/config", _config),
        *openai_routes("/v3"),
    ),
    error_body=simple_error_body,  # {"error": "..."}
    auth_error=_auth,
    rate_limit_error=_rate_limited,
    model_not_found=_not_found,
    malformed_body=MALFORMED_BODY,
)
