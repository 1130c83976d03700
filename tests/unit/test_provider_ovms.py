"""The OVMS adapter and the ``ovms`` backend, both ways, over the in-memory
transport: KServe v2 and TF-Serving requests exactly as OpenVINO Model
Server documents them (flat row-major tensor data), the recorded answers
read back, the OpenAI chat under ``/v3`` (reply and SSE transcript), OVMS's
``{"error": ...}`` bodies mapped to typed errors, embeddings batching.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from ipfs_accelerate_py.api_backends.ovms import ovms
from ipfs_accelerate_py.providers.base import StreamDelta
from ipfs_accelerate_py.providers.openai import OpenAIWire
from ipfs_accelerate_py.providers.ovms import OVMS, OVMSWire, kserve_inputs, reshape, tensor
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidInputError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from ipfs_accelerate_py.simulator.formats import ovms as ovms_format
from ipfs_accelerate_py.transport.memory import MemoryTransport

from ..helpers import QUICK_RETRIES, ClientFactory, answer, stream_answer
from ..helpers.streams import check_simulated_chat_stream, decoded, stream_deltas

BASE = "http://ovms.test:9000"
KEY = "ovms-test-SECRET-0123456789"
CHAT_MODEL = "OpenVINO/Phi-3.5-mini-instruct-int4-ov"

INFER_ANSWER = {  # as OVMS answers a KServe REST infer
    "model_name": "resnet",
    "model_version": "2",
    "outputs": [
        {
            "name": "prob",
            "shape": [2, 3],
            "datatype": "FP32",
            "data": [0.1, 0.2, 0.7, 0.5, 0.25, 0.25],
        }
    ],
}
METADATA_ANSWER = {
    "name": "resnet",
    "versions": ["1", "2"],
    "platform": "OpenVINO",
    "inputs": [{"name": "0", "datatype": "FP32", "shape": [1, 3, 224, 224]}],
    "outputs": [{"name": "1463", "datatype": "FP32", "shape": [1, 1000]}],
}
CONFIG_ANSWER = {
    "resnet": {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    },
    "bert": {
        "model_version_status": [
            {
                "version": "3",
                "state": "LOADING",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    },
}
CHAT_ANSWER = {
    "choices": [
        {
            "finish_reason": "stop",
            "index": 0,
            "logprobs": None,
            "message": {"content": "Paris.", "role": "assistant"},
        }
    ],
    "created": 1718607923,
    "model": CHAT_MODEL,
    "object": "chat.completion",
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}


def _chunk(content, finish=None):
    return {
        "choices": [
            {
                "index": 0,
                "delta": {"content": content} if content else {},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "created": 1718607923,
        "model": CHAT_MODEL,
        "object": "chat.completion.chunk",
    }


STREAM = [_chunk("Par"), _chunk("is."), _chunk(None, "stop")]
TRANSCRIPT = [line for c in STREAM for line in (b"data: " + json.dumps(c).encode(), b"")] + [
    b"data: [DONE]",
    b"",
]


client_with = ClientFactory(
    ovms, "ovms_api_base", "ovms_api_key", QUICK_RETRIES, base_url=BASE
).in_memory


# ------------------------------------------------------------------- tensors


class FakeArray:
    """What ``tensor`` reads of a numpy array: ``tolist()`` and ``dtype``."""

    def __init__(self, value, dtype):
        self.value, self.dtype = value, dtype

    def tolist(self):
        return self.value


@pytest.mark.parametrize(
    "value, shape, datatype, data",
    [
        ([[1.0, 2.0], [3.0, 4.0]], [2, 2], "FP32", [1.0, 2.0, 3.0, 4.0]),
        ([[1, 2, 3]], [1, 3], "INT64", [1, 2, 3]),
        ([1, 2.5], [2], "FP32", [1, 2.5]),
        ([True, False], [2], "BOOL", [True, False]),
        (["hello", "world"], [2], "BYTES", ["hello", "world"]),
        (7, [1], "INT64", [7]),
        ([[[1], [2]], [[3], [4]]], [2, 2, 1], "INT64", [1, 2, 3, 4]),
        (FakeArray([[1, 2]], "uint8"), [1, 2], "UINT8", [1, 2]),
        (FakeArray([0.5], "float16"), [1], "FP16", [0.5]),
        ({"data": [1, 2, 3, 4], "shape": [2, 2], "datatype": "FP32"}, [2, 2], "FP32", [1, 2, 3, 4]),
        ({"data": [[1, 2], [3, 4]]}, [2, 2], "INT64", [1, 2, 3, 4]),
    ],
)
def test_tensor_from_the_friendly_form(value, shape, datatype, data):
    assert tensor("x", value) == {"name": "x", "shape": shape, "datatype": datatype, "data": data}


@pytest.mark.parametrize(
    "value, fragment",
    [
        ([[1, 2], [3]], "not rectangular"),
        ([[1, 2], 3], "not rectangular"),
        ([1, "a"], "mixes types"),
        ([1, None], "mixes types"),
        ([], "is empty"),
        ({"data": [1, 2, 3], "shape": [2, 2]}, "holds 4 values, data has 3"),
        ({"shape": [1]}, "needs 'data'"),
    ],
)
def test_tensor_refuses_what_it_cannot_describe(value, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        tensor("x", value)


def test_kserve_inputs_passes_tensors_and_refuses_incomplete_ones():
    given = [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1.0]}]
    assert kserve_inputs(given) == given
    with pytest.raises(
        InvalidInputError, match=r"inputs\[0\] is not a KServe tensor: it lacks datatype"
    ):
        kserve_inputs([{"name": "a", "shape": [1], "data": [1]}])
    with pytest.raises(InvalidInputError, match="must be a dict"):
        kserve_inputs("raw")


@pytest.mark.parametrize(
    "flat, shape, nested",
    [
        ([1, 2, 3, 4, 5, 6], [2, 3], [[1, 2, 3], [4, 5, 6]]),
        ([1, 2], [2], [1, 2]),
        ([1, 2, 3, 4], [2, 1, 2], [[[1, 2]], [[3, 4]]]),
        ([[1, 2]], [1, 2], [[1, 2]]),  # already nested: as it is
    ],
)
def test_reshape(flat, shape, nested):
    assert reshape(flat, shape) == nested


# ------------------------------------------------------------------ requests


def test_infer_builds_the_kserve_request_and_reads_its_answer():
    client, transport = client_with(lambda r: answer(200, INFER_ANSWER), key=KEY)
    with client:
        result = client.infer(
            "resnet",
            {"0": [[0.5, 0.25, 1.0]]},
            outputs=["prob"],
            version=2,
            parameters={"priority": 1},
        )
    sent = transport.requests[0]
    assert (sent.method, sent.url) == ("POST", f"{BASE}/v2/models/resnet/versions/2/infer")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.json() == {
        "inputs": [{"name": "0", "shape": [1, 3], "datatype": "FP32", "data": [0.5, 0.25, 1.0]}],
        "outputs": [{"name": "prob"}],
        "parameters": {"priority": 1},
    }
    assert result == INFER_ANSWER
    assert client.provider.outputs_from(result) == {"prob": [[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]}


@pytest.mark.parametrize(
    "call, method, path, body",
    [
        (
            lambda c: c.infer(
                "resnet", [{"name": "0", "shape": [1], "datatype": "INT64", "data": [3]}]
            ),
            "POST",
            "/v2/models/resnet/infer",
            {"inputs": [{"name": "0", "shape": [1], "datatype": "INT64", "data": [3]}]},
        ),
        (
            lambda c: c.predict("resnet", [[1.0, 2.0], [3.0, 4.0]]),
            "POST",
            "/v1/models/resnet:predict",
            {"instances": [[1.0, 2.0], [3.0, 4.0]]},
        ),
        (
            lambda c: c.predict(
                "resnet", {"in": [[1, 2]]}, version=3, signature_name="serving_default"
            ),
            "POST",
            "/v1/models/resnet/versions/3:predict",
            {"inputs": {"in": [[1, 2]]}, "signature_name": "serving_default"},
        ),
        (lambda c: c.model_metadata("resnet"), "GET", "/v2/models/resnet", None),
        (lambda c: c.model_metadata("resnet", 1), "GET", "/v2/models/resnet/versions/1", None),
        (lambda c: c.list_models(), "GET", "/v1/config", None),
        (
            lambda c: c.chat(
                CHAT_MODEL, [{"role": "user", "content": "Capital of France?"}], max_tokens=5
            ),
            "POST",
            "/v3/chat/completions",
            {
                "model": CHAT_MODEL,
                "messages": [{"role": "user", "content": "Capital of France?"}],
                "max_tokens": 5,
            },
        ),
        (
            lambda c: c.completions(CHAT_MODEL, "Say hi"),
            "POST",
            "/v3/completions",
            {"model": CHAT_MODEL, "prompt": "Say hi"},
        ),
    ],
)
def test_each_operation_builds_its_request(call, method, path, body):
    replies = {"/v1/config": CONFIG_ANSWER, "/v3/chat/completions": CHAT_ANSWER}
    client, transport = client_with(
        lambda r: answer(200, replies.get(r.url[len(BASE) :], METADATA_ANSWER))
    )
    with client:
        call(client)
    sent = transport.requests[0]
    assert (sent.method, sent.url, sent.json()) == (method, BASE + path, body)
    assert "Authorization" not in sent.headers


def test_list_models_reads_the_config_status():
    client, _ = client_with(lambda r: answer(200, CONFIG_ANSWER))
    with client:
        models = client.list_models()
    assert [(m["name"], m["model_version_status"][0]["state"]) for m in models] == [
        ("resnet", "AVAILABLE"),
        ("bert", "LOADING"),
    ]


@pytest.mark.parametrize(
    "status, body, ready",
    [
        (200, b"", True),
        (200, b"{}", True),
        (404, {"error": "Model with requested name is not found"}, False),
        (503, {"error": "Model with requested version is not loaded yet"}, False),
        (400, {"error": "Request for unknown model"}, False),
    ],
)
def test_model_ready_reads_the_status(status, body, ready):
    client, transport = client_with(lambda r: answer(status, body))
    with client:
        assert client.model_ready("resnet", 1) is ready
    assert (transport.requests[0].method, transport.requests[0].url) == (
        "GET",
        f"{BASE}/v2/models/resnet/versions/1/ready",
    )
    assert len(transport.requests) == 1


@pytest.mark.parametrize(
    "endpoint, status, answer_",
    [
        ("v2/models/m/ready", 503, {"ready": False, "status": 503}),
        ("/v2/models/m/versions/3/ready", 404, {"ready": False, "status": 404}),
        ("v2/models/m/ready", 400, {"ready": False, "status": 400}),
        ("v2/health/ready", 503, {"ready": False, "status": 503}),
        ("v2/health/live", 503, {"live": False, "status": 503}),
        ("v2/models/m/ready", 500, None),  # a failure, not "no"
        ("v2/models/m/ready", 429, None),
        ("v2/models/m/ready", 401, None),
        ("v2/models/m/infer", 503, None),  # not a probe
        ("v2/models/m", 404, None),
        ("v3/chat/completions", 400, None),
    ],
)
def test_a_probes_no_is_an_answer_and_nothing_else_is(endpoint, status, answer_):
    assert OVMSWire(OVMS).answer_for_status(endpoint, answer(status, {"error": "x"})) == answer_


def test_model_ready_raises_when_the_server_fails():
    client, transport = client_with(
        lambda r: answer(500, {"error": "Internal server error"}), max_retries=1
    )
    with client, pytest.raises(ServerError, match="Internal server error"):
        client.model_ready("resnet")
    assert len(transport.requests) == 2


def test_chat_answer_and_stream_transcript_through_the_backend():
    def handler(request):
        return (
            stream_answer(TRANSCRIPT) if request.json().get("stream") else answer(200, CHAT_ANSWER)
        )

    client, transport = client_with(handler)
    with client:
        reply = client.chat(CHAT_MODEL, [{"role": "user", "content": "Capital of France?"}])
        chunks = list(
            client.chat(
                CHAT_MODEL, [{"role": "user", "content": "Capital of France?"}], stream=True
            )
        )
        stats = client.get_stats()
    assert client.provider.reply_text(reply) == "Paris."
    assert [c.raw for c in chunks] == STREAM
    assert [(c.text, c.finish_reason) for c in chunks] == [
        ("Par", None),
        ("is.", None),
        ("", "stop"),
    ]
    assert transport.requests[1].json()["stream"] is True
    assert transport.requests[1].headers["Accept"] == "text/event-stream"
    assert stats["models"][CHAT_MODEL]["tokens_in"] == 12


def test_stream_events_are_the_openai_wires():
    wire, reference = OVMSWire(OVMS), OpenAIWire(OVMS)
    from ipfs_accelerate_py.transport.sse import SseEvent

    for data in (json.dumps(STREAM[0]), "[DONE]", ""):
        assert wire.parse_stream_event(SseEvent("message", data)) == reference.parse_stream_event(
            SseEvent("message", data)
        )
    assert wire.openai is not None and not isinstance(wire, OpenAIWire)


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda c: c.infer("", {"a": [1]}), "model must be a non-empty string"),
        (lambda c: c.infer("m", {"a": [1]}, version=0), "version must be a positive integer"),
        (
            lambda c: c.infer("m", {"a": [1]}, version="latest"),
            "version must be a positive integer",
        ),
        (lambda c: c.infer("m", {"a": [1]}, outputs=[3]), "outputs must name output tensors"),
        (lambda c: c.infer("m", {}), "inputs must be a dict"),
        (lambda c: c.predict("m", []), "instances must be a non-empty list"),
        (lambda c: c.model_ready("m", -1), "version must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused_before_sending(call, fragment):
    client, transport = client_with(lambda r: answer(200, {}))
    with client, pytest.raises(InvalidInputError, match=fragment):
        call(client)
    assert transport.requests == []


def test_spec_and_environment(monkeypatch):
    assert (OVMS.default_base_url, OVMS.requires_key, OVMS.simulator_path) == (
        "http://localhost:9000",
        False,
        "",
    )
    assert OVMS.key_metadata == ("ovms_api_key",) and OVMS.base_url_metadata[:2] == (
        "ovms_api_base",
        "ovms_url",
    )
    assert OVMS.default_embedding_model in OVMS.embedding_models
    monkeypatch.setenv("OVMS_BASE_URL", "http://env-ovms:8001")
    transport = MemoryTransport(lambda r: answer(200, METADATA_ANSWER))
    with ovms({}, {}, transport=transport) as client:
        client.model_metadata("resnet")
    assert transport.requests[0].url == "http://env-ovms:8001/v2/models/resnet"


# -------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "status, body, headers, error, message, retry_after",
    [
        (
            400,
            {"error": "Invalid input shape"},
            {},
            InvalidRequestError,
            "Invalid input shape",
            None,
        ),
        (401, {"error": "Unauthorized"}, {}, AuthenticationError, "Unauthorized", None),
        (403, {"error": "Forbidden"}, {}, PermissionDeniedError, "Forbidden", None),
        (
            404,
            {"error": "Model with requested name is not found"},
            {},
            NotFoundError,
            "Model with requested name is not found",
            None,
        ),
        (
            412,
            {"error": "The file is not valid json"},
            {},
            InvalidRequestError,
            "The file is not valid json",
            None,
        ),
        (
            429,
            {"error": "Too many requests"},
            {"Retry-After": "3"},
            RateLimitError,
            "Too many requests",
            3.0,
        ),
        (500, {"error": "Internal server error"}, {}, ServerError, "Internal server error", None),
        (
            503,
            {"error": "Max sequence number reached"},
            {"Retry-After": "1"},
            ServerError,
            "Max sequence number reached",
            1.0,
        ),
    ],
)
def test_error_mapping(status, body, headers, error, message, retry_after):
    err = OVMSWire(OVMS).error_for(answer(status, body, headers), wall_now=0.0, attempt=1)
    assert type(err) is error
    assert (err.message, err.status, err.retry_after) == (message, status, retry_after)


def test_not_found_is_not_retried_and_busy_is():
    seen = []

    def handler(request):
        seen.append(request.url)
        if "/missing/" in request.url:
            return answer(404, {"error": "Model with requested name is not found"})
        return answer(503, {"error": "busy"}) if len(seen) < 3 else answer(200, INFER_ANSWER)

    client, _ = client_with(handler, max_retries=3)
    with client:
        with pytest.raises(NotFoundError):
            client.infer("missing", {"a": [1]})
        assert client.infer("resnet", {"a": [1]}) == INFER_ANSWER
    assert len(seen) == 3


def test_malformed_infer_answer_is_reported():
    with pytest.raises(MalformedResponseError, match="no list of 'outputs'"):
        OVMSWire(OVMS).outputs_from({"model_name": "m"})


# ------------------------------------------------------------------ batching


def test_embeddings_are_batched_on_v3():
    def handler(request):
        inputs = request.json()["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t))]}
            for i, t in enumerate(inputs)
        ]
        return answer(
            200,
            {
                "object": "list",
                "data": data,
                "model": "emb",
                "usage": {"prompt_tokens": 6, "total_tokens": 6},
            },
        )

    client, transport = client_with(
        handler, supported_batch_models=["emb"], max_batch_size=3, batch_timeout=30.0
    )
    with client, ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(client.embeddings, "emb", text) for text in ("a", "bb", "ccc")]
        results = [f.result(5) for f in futures]
    assert len(transport.requests) == 1 and transport.requests[0].url == f"{BASE}/v3/embeddings"
    assert [client.provider.embedding_vectors(r) for r in results] == [[[1.0]], [[2.0]], [[3.0]]]
    assert sum(r["usage"]["prompt_tokens"] for r in results) == 6


def test_kserve_infer_is_never_batched():
    wire = OVMSWire(OVMS)
    assert wire.batch_inputs("v2/models/m/infer", {"inputs": [{"name": "a"}]}) is None
    assert wire.batch_inputs("v3/embeddings", {"model": "e", "input": ["x", "y"]}) == ["x", "y"]


# ------------------------------------------------------ stream chunks in common terms


def test_stream_transcript_in_common_terms():
    deltas, done = stream_deltas(OVMSWire(OVMS), decoded(TRANSCRIPT))
    assert done
    assert deltas == [
        StreamDelta(text="Par"),
        StreamDelta(text="is."),
        StreamDelta(finish_reason="stop"),
    ]


@pytest.mark.parametrize(
    "chunk",
    [
        _chunk("x", "length"),
        {"choices": [], "usage": CHAT_ANSWER["usage"]},
        {"unknown": True},
        None,
    ],
    ids=["text-finish", "usage", "unknown", "none"],
)
def test_stream_delta_is_the_openai_mapping(chunk):
    assert OVMSWire(OVMS).stream_delta(chunk) == OpenAIWire(OVMS).stream_delta(chunk)


def test_simulator_chat_stream_on_v3_joins_to_its_reply():
    check_simulated_chat_stream(
        OVMSWire(OVMS), ovms_format.FORMAT, "/v3/chat/completions", model=CHAT_MODEL
    )
