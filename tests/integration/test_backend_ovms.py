"""``ovms`` against the simulator's OVMS format (at its root) over real
loopback HTTP: KServe v2 infer/metadata/ready, TF-Serving predict, the model
config listing, OpenAI chat and streams under ``/v3``, OVMS's ``{"error"}``
bodies mapped and retried as the core decides, embeddings batched on ``/v3``.
Outputs are recomputed with the simulator's ``transform``.
"""

from __future__ import annotations

import json
import math

import pytest

from ipfs_accelerate_py.api_backends.ovms import ovms
from ipfs_accelerate_py.providers.ovms import OVMS
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
)
from ipfs_accelerate_py.simulator import embedding_for, key_fingerprint
from ipfs_accelerate_py.simulator.formats.ovms import transform

from ..helpers import (
    FAST,
    REPLY_PREFIX,
    WINDOW,
    ClientFactory,
    client_fixture,
    joined_deltas,
    messages,
    reply_text,
    together,
)

MODEL = "resnet"
CHAT_MODEL = OVMS.default_chat_model
EMBEDDER = "ovms-embedder"
KEY = "ovms-integration-key-0123456789"


make_ovms = ClientFactory(ovms, "ovms_api_base", "ovms_api_key", FAST)
client = client_fixture(make_ovms)


def test_kserve_infer_from_the_friendly_form(simulator, client):
    image = [[0.5, 1.5, 2.0], [3.0, 4.0, 5.5]]
    result = client.infer(MODEL, {"pixels": image, "mask": [True, False]})
    assert result["model_name"] == MODEL and result["model_version"] == "1"
    assert client.provider.outputs_from(result) == {
        "pixels_output": transform(image),
        "mask_output": [False, True],
    }
    assert [(o["shape"], o["datatype"]) for o in result["outputs"]] == [
        ([2, 3], "FP32"),
        ([2], "BOOL"),
    ]
    counted = simulator.counters()
    assert counted["by_path"] == {"/v2/models/resnet/infer": 1}
    assert counted["by_format"] == {"ovms": 1} and counted["by_model"] == {MODEL: 1}


def test_kserve_infer_with_version_and_chosen_outputs(simulator, client):
    result = client.infer(MODEL, {"a": [1, 2], "b": ["x"]}, outputs=["b_output"], version=1)
    assert client.provider.outputs_from(result) == {"b_output": ["X"]}
    with pytest.raises(NotFoundError, match="requested version is not found"):
        client.infer(MODEL, {"a": [1]}, version=2)
    assert simulator.counters()["by_path"] == {
        "/v2/models/resnet/versions/1/infer": 1,
        "/v2/models/resnet/versions/2/infer": 1,
    }


def test_tf_serving_predict_row_and_columnar(simulator, client):
    rows = [[1.0, 2.0], [3.0, 4.0]]
    assert client.predict(MODEL, rows) == {"predictions": transform(rows)}
    assert client.predict(MODEL, {"in": [[5, 6]]}, version=1) == {"outputs": {"in": [[10, 12]]}}
    assert simulator.counters()["by_path"] == {
        "/v1/models/resnet:predict": 1,
        "/v1/models/resnet/versions/1:predict": 1,
    }


def test_metadata_ready_and_model_list(simulator, client):
    meta = client.model_metadata(MODEL)
    assert (meta["name"], meta["versions"]) == (MODEL, ["1"])
    assert client.model_ready(MODEL) is True
    assert client.model_ready(MODEL, version=1) is True
    assert client.model_ready(MODEL, version=7) is False
    assert [m["name"] for m in client.list_models()] == list(simulator.scenario["models"])
    simulator.configure(strict_models=True)
    assert client.model_ready("not-served") is False
    counted = simulator.counters()
    assert counted["by_status"] == {"200": 4, "404": 2}


def test_chat_and_stream_on_v3(simulator, client):
    assert reply_text(client.chat(CHAT_MODEL, messages("ovms chat"))) == REPLY_PREFIX + "ovms chat"
    with client.chat(CHAT_MODEL, messages("ovms stream"), stream=True) as stream:
        chunks = list(stream)
    assert joined_deltas(chunks) == REPLY_PREFIX + "ovms stream"
    counted = simulator.counters()
    assert counted["by_path"] == {"/v3/chat/completions": 2}
    assert counted["streams"] == {"started": 1, "finished": 1}


def test_request_as_sent(recorder):
    base_url, seen = recorder
    root = base_url[: -len("/v1")]
    with make_ovms(root) as anonymous, make_ovms(root, key=KEY) as keyed:
        anonymous.infer(MODEL, {"x": [[1, 2]]})
        keyed.chat(CHAT_MODEL, messages("hi"))
        keyed.model_metadata(MODEL, version=3)
    (m1, p1, h1, b1), (m2, p2, h2, b2), (m3, p3, h3, b3) = seen
    assert (m1, p1) == ("POST", "/v2/models/resnet/infer")
    assert json.loads(b1) == {
        "inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]
    }
    assert "authorization" not in {k.lower() for k in h1}
    assert (m2, p2) == ("POST", "/v3/chat/completions")
    assert json.loads(b2) == {"model": CHAT_MODEL, "messages": messages("hi")}
    assert {k.lower(): v for k, v in h2.items()}["authorization"] == f"Bearer {KEY}"
    assert (m3, p3, b3) == ("GET", "/v2/models/resnet/versions/3", b"")


def test_keys_401_is_not_retried(simulator):
    simulator.configure(valid_keys=[KEY])
    with (
        make_ovms(simulator.url, key="wrong", max_retries=3) as bad,
        make_ovms(simulator.url, key=KEY) as good,
    ):
        with pytest.raises(AuthenticationError, match="invalid API key") as caught:
            bad.infer(MODEL, {"x": [1]})
        assert caught.value.status == 401 and bad.circuit_state == "CLOSED"
        good.infer(MODEL, {"x": [1]})
    assert simulator.counters()["by_key"] == {key_fingerprint("wrong"): 1, key_fingerprint(KEY): 1}


def test_busy_and_rate_limited_are_retried(simulator):
    path = "/v2/models/resnet/infer"
    simulator.script(
        [
            {"status": 503, "headers": {"retry-after": "0"}, "body": {"error": "busy"}},
            {
                "status": 429,
                "headers": {"retry-after": "0"},
                "body": {"error": "Too many requests"},
            },
            {"status": 500, "body": {"error": "Internal server error"}},
            {"status": 200},
        ],
        path=path,
    )
    with make_ovms(simulator.url, max_retries=3) as backend:
        result = backend.infer(MODEL, {"x": [1.5]})
        stats = backend.get_stats()
    assert backend.provider.outputs_from(result) == {"x_output": [3.0]}
    assert simulator.counters()["by_status"] == {"503": 1, "429": 1, "500": 1, "200": 1}
    assert stats["total_retries"] == 3 and stats["successful_requests"] == 1


def test_bad_input_and_unknown_model_are_not_retried(simulator, client):
    bad_tensor = [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.0]}]
    with pytest.raises(InvalidRequestError, match="Invalid content size") as caught:
        client.infer(MODEL, bad_tensor)
    assert caught.value.status == 400
    simulator.configure(strict_models=True)
    with pytest.raises(NotFoundError, match="Model with requested name is not found"):
        client.predict("no-such-model", [[1]])
    assert simulator.counters()["requests_total"] == 2
    assert client.circuit_state == "CLOSED"


def test_outage_opens_the_breaker(simulator):
    simulator.configure(outage=True)
    with make_ovms(simulator.url, max_retries=0, failure_threshold=2) as backend:
        for _ in range(2):
            with pytest.raises(ServerError, match="Simulated outage") as caught:
                backend.infer(MODEL, {"x": [1]})
            assert caught.value.status == 503
        assert backend.circuit_state == "OPEN"
    assert simulator.counters()["by_status"] == {"503": 2}


@pytest.mark.parametrize("n, max_batch_size", [(6, 3), (4, 10)])
def test_embeddings_on_v3_are_batched_and_each_caller_gets_its_vector(simulator, n, max_batch_size):
    texts = [f"ovms text {i}" for i in range(n)]
    with make_ovms(
        simulator.url,
        supported_batch_models=[EMBEDDER],
        max_batch_size=max_batch_size,
        batch_timeout=WINDOW,
    ) as backend:
        responses = together(n, lambda i: backend.embeddings(EMBEDDER, texts[i]))
        stats = backend.get_stats()
    for text, response in zip(texts, responses, strict=True):
        assert backend.provider.embedding_vectors(response) == [embedding_for(text)]
    counted = simulator.counters()
    assert counted["embedding_inputs"]["calls"] <= math.ceil(n / max_batch_size)
    assert counted["embedding_inputs"]["total"] == n
    assert set(counted["by_path"]) == {"/v3/embeddings"}
    assert stats["batches"]["count"] == counted["embedding_inputs"]["calls"]
