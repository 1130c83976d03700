"""``llvm`` against the simulator's LLVM format (``simulator_path="/llvm"``)
over real loopback HTTP: the original project's endpoints and bodies,
outputs recomputed with the simulator's ``outputs_for``, ``{"error"}``
bodies mapped and retried as the core decides, and ``infer`` calls batched
into ``batch_infer`` (the simulator saw at most ceil(N / max_batch_size)
calls, each caller got its own outputs).
"""

from __future__ import annotations

import json
import math

import pytest

from ipfs_accelerate_py.api_backends.llvm import llvm
from ipfs_accelerate_py.providers.llvm import LLVM
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
)
from ipfs_accelerate_py.simulator import key_fingerprint
from ipfs_accelerate_py.simulator.formats.llvm import outputs_for

from ..helpers import FAST, WINDOW, ClientFactory, client_fixture, together

BATCHED = "resnet50"  # batch-capable in the original's model list
SINGLE = "llama-7b"  # not batch-capable: every infer goes alone
KEY = "llvm-integration-key-0123456789"
P = LLVM.simulator_path


make_llvm = ClientFactory(llvm, "llvm_api_base", "llvm_api_key", FAST)
client = client_fixture(make_llvm)


def test_operations_and_their_paths(simulator, client):
    assert client.infer(SINGLE, "hello")["outputs"] == outputs_for("hello")
    assert client.infer(SINGLE, {"image": [1, 2]}, parameters={"precision": "fp16"})["outputs"] == {
        "image": [2, 4]
    }
    batch = client.batch_infer(BATCHED, ["a", "bb"])
    assert batch["results"] == [outputs_for("a"), outputs_for("bb")]
    assert [m["model_id"] for m in client.list_models()] == list(simulator.scenario["models"])
    assert client.get_model_info(BATCHED)["model_id"] == BATCHED
    assert client.get_statistics(BATCHED)["model_id"] == BATCHED
    assert client.get_statistics()["status"] == "ok"
    assert client.optimize_model(BATCHED, "memory")["optimization_type"] == "memory"
    counted = simulator.counters()
    assert counted["by_path"] == {
        f"{P}/models/{SINGLE}/infer": 2,
        f"{P}/models/{BATCHED}/batch_infer": 1,
        f"{P}/models": 1,
        f"{P}/models/{BATCHED}": 1,
        f"{P}/models/{BATCHED}/statistics": 1,
        f"{P}/status": 1,
        f"{P}/models/{BATCHED}/optimize": 1,
    }
    assert counted["by_format"] == {"llvm": 8}
    assert counted["by_key"] == {key_fingerprint(None): 8}


def test_request_as_sent(recorder):
    base_url, seen = recorder
    with make_llvm(base_url, key=KEY, batching_enabled=False) as backend:
        backend.infer(BATCHED, "x", precision="int8")
        backend.get_statistics(BATCHED)
    (method, path, headers, body), (get_method, get_path, _, get_body) = seen
    assert (method, path) == ("POST", "/v1/models/resnet50/infer")
    assert json.loads(body) == {"model": BATCHED, "input": "x", "parameters": {"precision": "int8"}}
    assert {k.lower(): v for k, v in headers.items()}["authorization"] == f"Bearer {KEY}"
    assert (get_method, get_path, get_body) == ("GET", "/v1/models/resnet50/statistics", b"")


@pytest.mark.parametrize("n, max_batch_size", [(7, 3), (4, 10)])
def test_infer_calls_are_batched_and_each_caller_gets_its_outputs(simulator, n, max_batch_size):
    texts = [f"llvm input {i}" for i in range(n)]
    with make_llvm(
        simulator.url + P, max_batch_size=max_batch_size, batch_timeout=WINDOW
    ) as backend:
        responses = together(n, lambda i: backend.infer(BATCHED, texts[i]))
        stats = backend.get_stats()
    for text, response in zip(texts, responses, strict=True):
        assert response["outputs"] == outputs_for(text) and response["model_id"] == BATCHED
    counted = simulator.counters()
    assert counted["embedding_inputs"]["calls"] <= math.ceil(n / max_batch_size)
    assert counted["embedding_inputs"]["total"] == n
    assert set(counted["by_path"]) == {f"{P}/models/{BATCHED}/batch_infer"}
    assert stats["total_requests"] == stats["successful_requests"] == n
    assert stats["batches"]["count"] == counted["embedding_inputs"]["calls"]


def test_a_batch_that_meets_a_503_is_retried_whole(simulator):
    simulator.script(
        [
            {"status": 503, "headers": {"retry-after": "0"}, "body": {"error": "Server busy"}},
            {"status": 200},
        ],
        path=f"{P}/models/{BATCHED}/batch_infer",
    )
    with make_llvm(
        simulator.url + P, max_batch_size=3, batch_timeout=WINDOW, max_retries=2
    ) as backend:
        responses = together(3, lambda i: backend.infer(BATCHED, f"t{i}"))
    assert [r["outputs"] for r in responses] == [outputs_for(f"t{i}") for i in range(3)]
    assert simulator.counters()["by_status"] == {"503": 1, "200": 1}


def test_rate_limit_and_server_errors_are_retried(simulator, client):
    simulator.script(
        [
            {
                "status": 429,
                "headers": {"retry-after": "0"},
                "body": {"error": "Too many requests"},
            },
            {"status": 500, "body": {"error": "Inference failed"}},
            {"status": 200},
        ],
        path=f"{P}/models/{SINGLE}/infer",
    )
    assert client.infer(SINGLE, "x")["outputs"] == outputs_for("x")
    assert simulator.counters()["by_status"] == {"429": 1, "500": 1, "200": 1}
    assert client.get_stats()["total_retries"] == 2


def test_client_errors_are_not_retried(simulator, client):
    with pytest.raises(InvalidRequestError, match="Missing 'input'") as caught:
        client.make_request(f"models/{SINGLE}/infer", {"model": SINGLE})
    assert caught.value.status == 400
    simulator.configure(strict_models=True)
    with pytest.raises(NotFoundError, match="Model unknown-model not found"):
        client.infer("unknown-model", "x")
    assert simulator.counters()["requests_total"] == 2
    assert client.circuit_state == "CLOSED"


def test_keys(simulator):
    simulator.configure(valid_keys=[KEY])
    with (
        make_llvm(simulator.url + P, key="wrong", max_retries=3) as bad,
        make_llvm(simulator.url + P, key=KEY) as good,
    ):
        with pytest.raises(AuthenticationError, match="Invalid API key"):
            bad.get_statistics()
        assert good.get_statistics()["status"] == "ok"
    assert simulator.counters()["by_key"] == {key_fingerprint("wrong"): 1, key_fingerprint(KEY): 1}
