"""The LLVM adapter and the ``llvm`` backend, both ways, over the in-memory
transport: exactly these requests are built (the original project's
endpoints and bodies), exactly these recorded answers are read, errors
become these typed values, and ``infer`` calls are batched into
``batch_infer`` and split back, each caller getting its own outputs.
"""

from __future__ import annotations

import json
import threading

import pytest

from ipfs_accelerate_py.api_backends.llvm import llvm
from ipfs_accelerate_py.providers.llvm import LLVM, LLVM_BATCH_MODELS, LLVMWire
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
from ipfs_accelerate_py.transport.memory import MemoryTransport

from ..helpers import QUICK_RETRIES, ClientFactory, answer, together

BASE = "http://llvm.test:8090"
KEY = "llvm-test-SECRET-0123456789"

INFER_ANSWER = {
    "model_id": "resnet50",
    "outputs": [0.1, 0.9],
    "status": "success",
    "metrics": {"inference_time": 0.0234, "throughput": 42.5},
}
MODELS_ANSWER = {
    "models": [
        {"model_id": "resnet50", "status": "loaded"},
        {"model_id": "bert-base", "status": "loaded"},
    ]
}
STATS_ANSWER = {"model_id": "resnet50", "requests": 12, "average_latency_ms": 3.5}


client_with = ClientFactory(
    llvm, "llvm_api_base", "llvm_api_key", QUICK_RETRIES, base_url=BASE, key=KEY
).in_memory


def echo_server(request):
    """Answers like an LLVM server: outputs are the input, upper-cased."""
    body = request.json()
    if request.url.endswith("/batch_infer"):
        results = [{"echo": str(x).upper()} for x in body["inputs"]]
        return answer(
            200,
            {
                "model_id": body["model"],
                "results": results,
                "status": "success",
                "metrics": {"batch_size": len(results)},
            },
        )
    return answer(
        200,
        {
            "model_id": body["model"],
            "outputs": {"echo": str(body["input"]).upper()},
            "status": "success",
        },
    )


# ------------------------------------------------------------------ requests


def test_infer_sends_the_originals_body_with_bearer_key():
    client, transport = client_with(lambda r: answer(200, INFER_ANSWER), batching_enabled=False)
    with client:
        result = client.infer("resnet50", "a cat", parameters={"precision": "fp16"}, batch_size=1)
    sent = transport.requests[0]
    assert (sent.method, sent.url) == ("POST", f"{BASE}/models/resnet50/infer")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == {
        "model": "resnet50",
        "input": "a cat",
        "parameters": {"precision": "fp16", "batch_size": 1},
    }
    assert result == INFER_ANSWER
    assert client.provider.outputs_of(result) == [0.1, 0.9]


def test_no_key_sends_no_authorization_and_is_not_refused():
    client, transport = client_with(lambda r: answer(200, MODELS_ANSWER), key=None)
    with client:
        assert client.list_models() == MODELS_ANSWER["models"]
    assert "Authorization" not in transport.requests[0].headers
    assert (transport.requests[0].method, transport.requests[0].url) == ("GET", f"{BASE}/models")
    assert transport.requests[0].body is None


@pytest.mark.parametrize(
    "call, method, path, body",
    [
        (lambda c: c.get_model_info("bert-base"), "GET", "/models/bert-base", None),
        (lambda c: c.get_statistics("resnet50"), "GET", "/models/resnet50/statistics", None),
        (lambda c: c.get_statistics(), "GET", "/status", None),
        (
            lambda c: c.optimize_model("resnet50", "speed"),
            "POST",
            "/models/resnet50/optimize",
            {"optimization_type": "speed"},
        ),
        (
            lambda c: c.batch_infer("bert-base", ["a", "b"], parameters={"precision": "int8"}),
            "POST",
            "/models/bert-base/batch_infer",
            {"model": "bert-base", "inputs": ["a", "b"], "parameters": {"precision": "int8"}},
        ),
        (
            lambda c: c.infer("odd/name", {"text": "x"}),
            "POST",
            "/models/odd%2Fname/infer",
            {"model": "odd/name", "input": {"text": "x"}},
        ),
        (
            lambda c: c.run_inference("resnet50", [1, 2], {"precision": "fp32"}),
            "POST",
            "/models/resnet50/infer",
            {"model": "resnet50", "input": [1, 2], "parameters": {"precision": "fp32"}},
        ),
    ],
)
def test_each_operation_builds_its_request(call, method, path, body):
    client, transport = client_with(lambda r: answer(200, STATS_ANSWER), batching_enabled=False)
    with client:
        call(client)
    sent = transport.requests[0]
    assert (sent.method, sent.url, sent.json()) == (method, BASE + path, body)


def test_get_statistics_is_the_servers_and_get_stats_stays_ours():
    client, _ = client_with(lambda r: answer(200, STATS_ANSWER))
    with client:
        assert client.get_statistics("resnet50") == STATS_ANSWER
        ours = client.get_stats()
    assert ours["total_requests"] == 1 and "average_latency_ms" not in ours


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"models": ["m1", "m2"]}, ["m1", "m2"]),
        ({"data": [{"id": "m1"}]}, [{"id": "m1"}]),
        (["m1"], ["m1"]),
    ],
)
def test_model_lists_in_either_shape_the_original_accepted(body, expected):
    client, _ = client_with(lambda r: answer(200, body))
    with client:
        assert client.list_models() == expected


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda c: c.infer("", "x"), "model_id"),
        (lambda c: c.infer("resnet50", None), "inputs"),
        (lambda c: c.infer("resnet50", "x", parameters=[1]), "parameters"),
        (lambda c: c.batch_infer("resnet50", []), "inputs_list"),
        (lambda c: c.batch_infer("resnet50", ["a", None]), "inputs_list[1]"),
        (lambda c: c.optimize_model("resnet50", "fastest"), "speed, memory, balanced"),
    ],
)
def test_bad_arguments_are_refused_before_sending(call, fragment):
    client, transport = client_with(lambda r: answer(200, {}))
    with (
        client,
        pytest.raises(InvalidInputError, match=fragment.replace("[", r"\[").replace("]", r"\]")),
    ):
        call(client)
    assert transport.requests == []


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LLVM_BASE_URL", "http://env-llvm:1234")
    monkeypatch.setenv("LLVM_API_KEY", "env-key")
    transport = MemoryTransport(lambda r: answer(200, MODELS_ANSWER))
    with llvm({}, {}, transport=transport) as client:
        client.list_models()
    assert transport.requests[0].url == "http://env-llvm:1234/models"
    assert transport.requests[0].headers["Authorization"] == "Bearer env-key"


def test_spec_defaults():
    assert LLVM.default_base_url == "http://localhost:8090"
    assert not LLVM.requires_key
    assert LLVM.key_metadata[0] == "llvm_api_key"
    assert LLVM.base_url_metadata[:2] == ("llvm_api_base", "llvm_endpoint_url")
    assert LLVM.base_url_env[0] == "LLVM_BASE_URL"
    assert LLVM.simulator_path == "/llvm"


def test_feature_probe_is_a_small_infer():
    client, _ = client_with(lambda r: answer(200, INFER_ANSWER))
    with client:
        endpoint, data = client.feature_probe("t1")
        assert (endpoint, data) == (
            "models/default/infer",
            {"model": "default", "input": {"text": "t1"}},
        )
        assert (
            client.provider.batch_inputs(endpoint, data) is None
        )  # never held back by the batch lane


# -------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "status, body, headers, error, message, retry_after",
    [
        (
            400,
            {"error": "Invalid input format"},
            {},
            InvalidRequestError,
            "Invalid input format",
            None,
        ),
        (401, {"error": "Invalid API key"}, {}, AuthenticationError, "Invalid API key", None),
        (403, {"error": "Forbidden"}, {}, PermissionDeniedError, "Forbidden", None),
        (
            404,
            {"error": "Model resnet99 not found"},
            {},
            NotFoundError,
            "Model resnet99 not found",
            None,
        ),
        (
            429,
            {"error": "Too many requests"},
            {"Retry-After": "7"},
            RateLimitError,
            "Too many requests",
            7.0,
        ),
        (500, {"error": "Inference failed"}, {}, ServerError, "Inference failed", None),
        (503, {"error": "Server busy"}, {"Retry-After": "2"}, ServerError, "Server busy", 2.0),
        (502, b"<html>bad gateway</html>", {}, ServerError, "<html>bad gateway</html>", None),
    ],
)
def test_error_mapping(status, body, headers, error, message, retry_after):
    wire = LLVMWire(LLVM)
    err = wire.error_for(answer(status, body, headers), wall_now=0.0, attempt=1)
    assert type(err) is error
    assert err.message == message and err.status == status and err.retry_after == retry_after


def test_a_404_is_not_retried_and_a_503_is():
    calls = []

    def handler(request):
        calls.append(request.url)
        if request.url.endswith("/missing/infer"):
            return answer(404, {"error": "Model missing not found"})
        return (
            answer(503, {"error": "Server busy"}) if len(calls) < 4 else answer(200, INFER_ANSWER)
        )

    client, _ = client_with(handler, batching_enabled=False, max_retries=3)
    with client:
        with pytest.raises(NotFoundError, match="missing not found"):
            client.infer("missing", "x")
        assert len(calls) == 1
        assert client.infer("resnet50", "x") == INFER_ANSWER
    assert len(calls) == 4


# ------------------------------------------------------------------ batching


def run_together(client, calls):
    return together(len(calls), lambda i: calls[i]())


def test_infer_calls_are_batched_into_batch_infer_and_split_back():
    client, transport = client_with(echo_server, max_batch_size=3, batch_timeout=30.0)
    with client:
        results = run_together(
            client, [lambda t=t: client.infer("resnet50", t) for t in ("a", "b", "c")]
        )
        stats = client.get_stats()
    assert [r["outputs"] for r in results] == [{"echo": "A"}, {"echo": "B"}, {"echo": "C"}]
    assert all(r["model_id"] == "resnet50" and r["metrics"] == {"batch_size": 3} for r in results)
    assert all("results" not in r for r in results)
    assert len(transport.requests) == 1
    sent = transport.requests[0]
    assert sent.url == f"{BASE}/models/resnet50/batch_infer"
    body = sent.json()
    assert (
        sorted(body["inputs"]) == ["a", "b", "c"]
        and body["model"] == "resnet50"
        and "input" not in body
    )
    assert stats["total_requests"] == 3
    assert (stats["batches"]["count"], stats["batches"]["members"]) == (1, 3)
    assert stats["models"]["resnet50"]["requests"] == 3


def test_batches_are_keyed_by_model_and_parameters():
    client, transport = client_with(echo_server, max_batch_size=2, batch_timeout=30.0)
    with client:
        calls = [
            lambda: client.infer("bert-base", "x", parameters={"precision": "fp16"}),
            lambda: client.infer("bert-base", "y", parameters={"precision": "fp16"}),
            lambda: client.infer("t5-small", "p"),
            lambda: client.infer("t5-small", "q"),
        ]
        results = run_together(client, calls)
    assert [r["outputs"]["echo"] for r in results] == ["X", "Y", "P", "Q"]
    bodies = sorted(
        (r.url, tuple(sorted(r.json()["inputs"])), json.dumps(r.json().get("parameters")))
        for r in transport.requests
    )
    assert bodies == [
        (f"{BASE}/models/bert-base/batch_infer", ("x", "y"), '{"precision": "fp16"}'),
        (f"{BASE}/models/t5-small/batch_infer", ("p", "q"), "null"),
    ]


@pytest.mark.parametrize(
    "model, inputs, metadata",
    [
        ("resnet50", {"image": [1, 2]}, {}),  # a dict is not weighed by the lane: sent alone
        ("resnet50", 42, {}),
        ("llama-7b", "x", {}),  # not batch-capable in the original's list
        ("resnet50", "x", {"batching_enabled": False}),
        ("resnet50", "x", {"supported_batch_models": ["bert-base"]}),
    ],
)
def test_unbatchable_infer_goes_straight_to_infer(model, inputs, metadata):
    client, transport = client_with(echo_server, batch_timeout=30.0, **metadata)
    with client:
        result = client.infer(model, inputs)
    assert result["outputs"] == {"echo": str(inputs).upper()}
    assert [r.url for r in transport.requests] == [f"{BASE}/models/{model}/infer"]


def test_a_batch_answer_with_the_wrong_count_fails_every_member():
    client, _ = client_with(
        lambda r: answer(200, {"results": [{"echo": "A"}]}), max_batch_size=2, batch_timeout=30.0
    )
    with client:
        outcomes = []
        lock = threading.Lock()

        def call(text):
            try:
                client.infer("resnet50", text)
            except MalformedResponseError as exc:
                with lock:
                    outcomes.append(str(exc))

        run_together(client, [lambda: call("a"), lambda: call("b")])
    assert len(outcomes) == 2 and all("expected 2 results, got 1" in o for o in outcomes)


def test_default_batch_models_are_the_originals_batch_capable_models():
    client, _ = client_with(echo_server)
    with client:
        assert sorted(client.supported_batch_models) == sorted(LLVM_BATCH_MODELS)
    assert "llama-7b" not in LLVM_BATCH_MODELS and "resnet50" in LLVM_BATCH_MODELS


def test_an_explicit_inputs_body_to_infer_is_a_batch_request():
    wire = LLVMWire(LLVM)
    request = wire.build_request(
        "models/m/infer", {"model": "m", "inputs": ["a"]}, api_key=None, base_url=BASE, timeout=1.0
    )
    assert request.url == f"{BASE}/models/m/batch_infer"
    single = wire.build_request(
        "models/m/infer", {"model": "m", "input": ["a"]}, api_key=None, base_url=BASE, timeout=1.0
    )
    assert single.url == f"{BASE}/models/m/infer"
