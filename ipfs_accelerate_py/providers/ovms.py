"""OpenVINO Model Server: KServe v2 and TF-Serving REST, OpenAI chat on ``/v3``.

Endpoints (below the base URL, default ``http://localhost:9000``)::

    POST /v2/models/{m}[/versions/{v}]/infer   KServe v2 inference
         {"inputs": [{"name", "shape", "datatype", "data"}], "outputs"?: [{"name"}], "parameters"?}
         -> {"model_name", "model_version", "id", "outputs": [{"name", "shape", "datatype", "data"}]}
    GET  /v2/models/{m}[/versions/{v}]         KServe model metadata {"name", "versions", "platform", "inputs", "outputs"}
    GET  /v2/models/{m}[/versions/{v}]/ready   200 when ready (no body to speak of); 503 while
                                               loading, 404 unknown (other KServe servers: 400)
    GET  /v2/health/ready, /v2/health/live     the server's own readiness and liveness, alike
    POST /v1/models/{m}[/versions/{v}]:predict TF-Serving {"instances": [...]} -> {"predictions": [...]},
                                               or {"inputs": {...}} -> {"outputs": ...}
    GET  /v1/config                            every served model's version status
    POST /v3/chat/completions                  OpenAI chat (+ SSE ending ``data: [DONE]``)
    POST /v3/completions, /v3/embeddings       OpenAI completions and embeddings

Errors are ``{"error": "..."}``: 404 unknown model or version (or one not
loaded yet), 400 bad input, 412 unreadable JSON, 500, 503 busy.  A key, when
the server was started with one, goes as ``Authorization: Bearer``.

A probe (the ready and live paths) answers in its status, and "no" is an
answer, not a failure: 200 is ``{"ready": True, "status": 200}``, a 400, 404
or 503 is ``{"ready": False, "status": ...}`` (``"live"`` for the live path),
neither retried nor counted against the breaker.  Any other status is the
error it would be anywhere.

The OpenAI endpoints are the shared :class:`OpenAIWire` (held, not
inherited): its requests, stream events, reply text and embeddings batching,
placed under ``/v3``.

KServe tensor data goes flat, in row-major order (OVMS reads ``data`` as one
array); :func:`tensor` builds a tensor from a nested list, a scalar or an
array-like with ``tolist()`` (numpy), inferring ``shape`` and ``datatype``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ..resilience.errors import InvalidInputError, MalformedResponseError
from ..transport.base import HttpResponse
from .base import Event, ProviderSpec, StreamDelta, Wire
from .openai import OPENAI_PARAMS, OpenAIWire, params_with

__all__ = ["NOT_READY_STATUSES", "OVMS", "OVMSWire", "kserve_inputs", "reshape", "tensor"]

OPENAI_PREFIX = "v3"

OVMS = ProviderSpec(
    name="ovms",
    default_base_url="http://localhost:9000",
    key_metadata=("ovms_api_key",),
    key_env=("OVMS_API_KEY",),
    base_url_metadata=("ovms_api_base", "ovms_url", "ovms_api_url"),
    base_url_env=("OVMS_BASE_URL", "OVMS_API_URL"),
    requires_key=False,
    simulator_path="",
    embedding_models=("BAAI/bge-large-en-v1.5",),
    default_chat_model="OpenVINO/Phi-3.5-mini-instruct-int4-ov",
    default_embedding_model="BAAI/bge-large-en-v1.5",
)
"""Model names from OVMS's own demos; a server serves what its config names."""

NOT_READY_STATUSES = frozenset({400, 404, 503})
"""A probe's "no": 503 while a model loads (OVMS, KServe), 404 for a model or
version not served (OVMS), 400 where a KServe server answers so (Triton)."""
_HEALTH_PROBES = {"v2/health/ready": "ready", "v2/health/live": "live"}

_DTYPE_NAMES = {
    "bool": "BOOL", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "object": "BYTES", "str": "BYTES",
}  # fmt: skip
"""numpy dtype names -> KServe datatypes (read from ``.dtype``; numpy is never imported)."""


# ------------------------------------------------------------------ tensors


def tensor(name: str, value: Any) -> dict[str, Any]:
    """A KServe request tensor named ``name``.

    ``value``: a nested list (rectangular), a scalar (shape ``[1]``), an
    array-like with ``tolist()`` (its ``dtype`` names the datatype), or a
    dict ``{"data", "shape"?, "datatype"?}`` (missing fields inferred).
    Datatype when inferred: all bools ``BOOL``, all ints ``INT64``, numbers
    with a float ``FP32``, strings ``BYTES``.
    """
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"a tensor name must be a non-empty string, not {name!r}")
    given: Mapping[str, Any] = value if isinstance(value, Mapping) else {"data": value}
    if "data" not in given:
        raise InvalidInputError(
            f"input {name!r}: a dict value needs 'data' (and may give 'shape', 'datatype')"
        )
    data, dtype = _as_list(given["data"])
    shape = list(given["shape"]) if given.get("shape") is not None else _shape(data, name)
    flat = _flatten(data)
    if math.prod(shape) != len(flat):
        raise InvalidInputError(
            f"input {name!r}: shape {shape} holds {math.prod(shape)} values, data has {len(flat)}"
        )
    datatype = given.get("datatype") or dtype or _datatype(flat, name)
    return {"name": name, "shape": shape, "datatype": datatype, "data": flat}


def kserve_inputs(inputs: Any) -> list[dict[str, Any]]:
    """``inputs`` as KServe request tensors: a dict ``name -> value`` (see
    :func:`tensor`) or a list of tensors ``{"name", "shape", "datatype", "data"}``."""
    if isinstance(inputs, Mapping) and inputs:
        return [tensor(name, value) for name, value in inputs.items()]
    if isinstance(inputs, (list, tuple)) and inputs:
        for position, item in enumerate(inputs):
            missing = [
                k
                for k in ("name", "shape", "datatype", "data")
                if not isinstance(item, Mapping) or k not in item
            ]
            if missing:
                raise InvalidInputError(
                    f"inputs[{position}] is not a KServe tensor: it lacks {', '.join(missing)}"
                )
        return [dict(item) for item in inputs]
    raise InvalidInputError(
        "inputs must be a dict like {'input_1': [[1.0, 2.0]]} or a non-empty list of "
        "{'name', 'shape', 'datatype', 'data'} tensors"
    )


def reshape(flat: list[Any], shape: list[Any]) -> Any:
    """Row-major ``flat`` data as nested lists of ``shape`` (nested data is returned as it is)."""
    if not shape or any(isinstance(x, list) for x in flat[:1]):
        return flat
    if math.prod(shape) != len(flat):
        raise MalformedResponseError(f"output shape {shape} does not match {len(flat)} values")
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0] if shape[0] else 0
    return [reshape(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _as_list(value: Any) -> tuple[Any, str | None]:
    dtype = getattr(value, "dtype", None)
    if hasattr(value, "tolist"):
        value = value.tolist()
    return value, _DTYPE_NAMES.get(str(dtype)) if dtype is not None else None


def _shape(data: Any, name: str) -> list[int]:
    if not isinstance(data, (list, tuple)):
        return [1]
    shape: list[int] = []
    level: Any = data
    while isinstance(level, (list, tuple)):
        shape.append(len(level))
        level = level[0] if level else None
    _check_rectangular(data, shape, name)
    return shape


def _check_rectangular(data: Any, shape: list[int], name: str) -> None:
    if not shape:
        if isinstance(data, (list, tuple)):
            raise InvalidInputError(f"input {name!r} is not rectangular (nested deeper in places)")
        return
    if not isinstance(data, (list, tuple)) or len(data) != shape[0]:
        raise InvalidInputError(
            f"input {name!r} is not rectangular: expected {shape[0]} items at a level of shape {shape}"
        )
    for item in data:
        _check_rectangular(item, shape[1:], name)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, (list, tuple)):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item))
    return out


def _datatype(flat: list[Any], name: str) -> str:
    if not flat:
        raise InvalidInputError(
            f"input {name!r} is empty: give {{'data': [], 'shape': [...], 'datatype': ...}}"
        )
    if all(isinstance(x, bool) for x in flat):
        return "BOOL"
    if all(isinstance(x, str) for x in flat):
        return "BYTES"
    if any(isinstance(x, (bool, str)) or not isinstance(x, (int, float)) for x in flat):
        raise InvalidInputError(
            f"input {name!r} mixes types; give all numbers, all bools or all strings"
        )
    return "INT64" if all(isinstance(x, int) for x in flat) else "FP32"


# --------------------------------------------------------------------- wire


OVMS_GENERATION_PARAMS = frozenset(
    {
        "assistant_confidence_threshold",
        "best_of",
        "ignore_eos",
        "include_stop_str_in_output",
        "length_penalty",
        "max_ngram_size",
        "num_assistant_tokens",
        "repetition_penalty",
        "top_k",
    }
)
"""OVMS's ``/v3`` chat and completions parameters beyond OpenAI's (its LLM calculator)."""


class OVMSWire(Wire):
    """KServe v2 and TF-Serving REST; the OpenAI endpoints through a held :class:`OpenAIWire`."""

    body_params = params_with(
        OPENAI_PARAMS,
        {
            "chat": OVMS_GENERATION_PARAMS | {"chat_template_kwargs"},
            "completion": OVMS_GENERATION_PARAMS,
        },
    )

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self.openai = OpenAIWire(spec)

    def method_for(self, path: str, data: Any) -> str:
        """Reads (metadata, ready, config) carry no body; everything else is a POST."""
        return "GET" if data is None else "POST"

    def parse_response(self, endpoint: str, response: HttpResponse) -> Any:
        """A probe answers in its status (2xx here): ``{"ready": True, "status": 200}``."""
        probe = _probe(self.endpoint_path(endpoint))
        if probe is not None:
            return {probe: True, "status": response.status}
        return super().parse_response(endpoint, response)

    def answer_for_status(self, endpoint: str, response: HttpResponse) -> Any:
        """A probe's "no" (400, 404, 503): ``{"ready": False, "status": 503}``."""
        if response.status not in NOT_READY_STATUSES:
            return None
        probe = _probe(self.endpoint_path(endpoint))
        return None if probe is None else {probe: False, "status": response.status}

    def parse_stream_event(self, event: Event) -> tuple[Any, bool]:
        return self.openai.parse_stream_event(event)

    def stream_delta(self, chunk: Any) -> StreamDelta:
        """Streams come from the OpenAI endpoints (``/v3``): OpenAI's mapping."""
        return self.openai.stream_delta(chunk)

    # ---------------------------------------------------------- KServe / TFS

    def infer_request(
        self,
        model: str,
        inputs: Any,
        outputs: Any = None,
        version: Any = None,
        parameters: dict[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        data: dict[str, Any] = {"inputs": kserve_inputs(inputs)}
        if outputs is not None:
            data["outputs"] = _requested_outputs(outputs)
        if parameters:
            data["parameters"] = dict(parameters)
        return _kserve_path(model, version, "infer"), data

    def metadata_request(self, model: str, version: Any = None) -> tuple[str, None]:
        return _kserve_path(model, version), None

    def ready_request(self, model: str, version: Any = None) -> tuple[str, None]:
        return _kserve_path(model, version, "ready"), None

    def predict_request(
        self, model: str, instances: Any, version: Any = None, signature_name: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Row format (a list: ``instances``) or columnar (a dict: ``inputs``)."""
        if isinstance(instances, Mapping) and instances:
            data: dict[str, Any] = {"inputs": dict(instances)}
        elif isinstance(instances, (list, tuple)) and instances:
            data = {"instances": list(instances)}
        else:
            raise InvalidInputError(
                "instances must be a non-empty list (row format) or a dict of named inputs (columnar)"
            )
        if signature_name:
            data["signature_name"] = signature_name
        path = f"v1/models/{_segment(model)}" + (
            f"/versions/{_version(version)}" if version is not None else ""
        )
        return f"{path}:predict", data

    def outputs_from(self, result: Any) -> dict[str, Any]:
        """A KServe response's outputs as ``{name: nested list of its shape}``."""
        outputs = result.get("outputs") if isinstance(result, dict) else None
        if not isinstance(outputs, list):
            raise MalformedResponseError(
                "infer response has no list of 'outputs'", provider=self.name
            )
        return {
            out["name"]: reshape(out.get("data", []), list(out.get("shape") or []))
            for out in outputs
        }

    def models_request(self) -> tuple[str, None]:
        return "v1/config", None

    def models_from(self, result: Any) -> list[Any]:
        """``/v1/config``: ``[{"name", "model_version_status": [...]}, ...]``."""
        if not isinstance(result, dict):
            raise MalformedResponseError(
                "model status list is not a JSON object", provider=self.name
            )
        return [
            dict(status, name=name) for name, status in result.items() if isinstance(status, dict)
        ]

    # ---------------------------------------------------------- OpenAI (/v3)

    def chat_request(
        self, model: str, messages: list[Any], params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        return _v3(*self.openai.chat_request(model, messages, params, stream))

    def completion_request(
        self, model: str, prompt: Any, params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        return _v3(*self.openai.completion_request(model, prompt, params, stream))

    def embeddings_request(
        self, model: str, inputs: Any, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return _v3(*self.openai.embeddings_request(model, inputs, params))

    def reply_text(self, result: Any) -> str:
        return self.openai.reply_text(result)

    def embedding_vectors(self, result: Any) -> list[list[float]]:
        return self.openai.embedding_vectors(result)

    def batch_inputs(self, endpoint: str, data: Any) -> list[Any] | None:
        path = self.endpoint_path(endpoint)
        if path != f"{OPENAI_PREFIX}/embeddings":
            return None
        return self.openai.batch_inputs("embeddings", data)

    def split_batch_result(
        self, result: Any, counts: list[int], weights: list[int] | None = None
    ) -> list[dict[str, Any]]:
        return self.openai.split_batch_result(result, counts, weights)


def _v3(endpoint: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return f"{OPENAI_PREFIX}/{endpoint}", data


def _segment(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise InvalidInputError(f"model must be a non-empty string (e.g. 'resnet'), not {model!r}")
    return quote(model, safe="")


def _version(version: Any) -> str:
    text = str(version)
    if isinstance(version, bool) or not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"version must be a positive integer (e.g. 1), not {version!r}")
    return text


def _kserve_path(model: Any, version: Any, suffix: str | None = None) -> str:
    path = f"v2/models/{_segment(model)}"
    if version is not None:
        path += f"/versions/{_version(version)}"
    return f"{path}/{suffix}" if suffix else path


def _probe(path: str) -> str | None:
    """What a probe path asks (``"ready"``, ``"live"``), None for any other path."""
    if path.startswith("v2/models/") and path.endswith("/ready"):
        return "ready"
    return _HEALTH_PROBES.get(path)


def _requested_outputs(outputs: Any) -> list[dict[str, Any]]:
    names: list[Any] = [outputs] if isinstance(outputs, (str, Mapping)) else list(outputs)
    result = []
    for item in names:
        if isinstance(item, str) and item:
            result.append({"name": item})
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            result.append(dict(item))
        else:
            raise InvalidInputError(
                f"outputs must name output tensors (strings or {{'name': ...}}), got {item!r:.60}"
            )
    return result
