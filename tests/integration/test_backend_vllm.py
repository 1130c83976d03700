"""``vllm`` against the simulator's OpenAI format (``simulator_path="/v1"``)
over real loopback HTTP: no key unless one is set, the four operations,
streams, errors with retries as the core decides, and embeddings batched for
any model the server serves.  The OpenAI tests cover the core in depth; this
file checks the vLLM binding of it.
"""

from __future__ import annotations

import math

import pytest

from ipfs_accelerate_py.api_backends.vllm import vllm
from ipfs_accelerate_py.providers.openai_compatible import VLLM
from ipfs_accelerate_py.resilience.errors import AuthenticationError
from ipfs_accelerate_py.simulator import embedding_for, key_fingerprint

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

MODEL = VLLM.default_chat_model
EMBEDDER = "served-embedder"  # any name: the server decides what it serves
KEY = "vllm-integration-token-0123456789"


make_vllm = ClientFactory(vllm, "vllm_api_base", "vllm_api_key", FAST)
client = client_fixture(make_vllm)


def test_the_four_operations_without_a_key(simulator, client):
    assert reply_text(client.chat(MODEL, messages("chat"))) == REPLY_PREFIX + "chat"
    assert client.completions(MODEL, "complete")["choices"][0]["text"] == REPLY_PREFIX + "complete"
    assert [d["embedding"] for d in client.embeddings(EMBEDDER, ["a", "b"])["data"]] == [
        embedding_for("a"),
        embedding_for("b"),
    ]
    assert [m["id"] for m in client.list_models()] == list(simulator.scenario["models"])
    counted = simulator.counters()
    assert counted["by_path"] == {
        "/v1/chat/completions": 1,
        "/v1/completions": 1,
        "/v1/embeddings": 1,
        "/v1/models": 1,
    }
    assert counted["by_key"] == {key_fingerprint(None): 4}


def test_authorization_only_when_a_key_is_set(recorder):
    base_url, seen = recorder
    with make_vllm(base_url) as anonymous, make_vllm(base_url, key=KEY) as keyed:
        anonymous.chat(MODEL, messages("a"))
        keyed.chat(MODEL, messages("b"))
    (_, path, plain, _), (_, _, with_key, _) = seen
    assert path == "/v1/chat/completions"
    assert "authorization" not in {k.lower() for k in plain}
    assert {k.lower(): v for k, v in with_key.items()}["authorization"] == f"Bearer {KEY}"


def test_chat_stream(simulator, client):
    with client.chat(MODEL, messages("stream from vllm"), stream=True) as stream:
        chunks = list(stream)
    assert joined_deltas(chunks) == REPLY_PREFIX + "stream from vllm"
    assert simulator.counters()["streams"] == {"started": 1, "finished": 1}


def test_401_with_the_wrong_key_is_not_retried(simulator):
    simulator.configure(valid_keys=[KEY])
    with make_vllm(
        simulator.url + VLLM.simulator_path, key="not-the-token", max_retries=3
    ) as backend:
        with pytest.raises(AuthenticationError) as caught:
            backend.completions(MODEL, "x")
        assert backend.circuit_state == "CLOSED"
    assert caught.value.status == 401
    assert simulator.counters()["requests_total"] == 1


def test_429_with_rate_limit_headers_and_5xx_are_retried(simulator):
    simulator.script(
        [
            {"status": 429, "headers": {"retry-after": "0", "x-ratelimit-remaining-requests": "0"}},
            {"status": 502},
            {"status": 200},
        ]
    )
    with make_vllm(simulator.url + VLLM.simulator_path, max_retries=3) as backend:
        reply = backend.completions(MODEL, "eventually")
        stats = backend.get_stats()
    assert reply["choices"][0]["text"] == REPLY_PREFIX + "eventually"
    assert simulator.counters()["by_status"] == {"429": 1, "502": 1, "200": 1}
    assert stats["total_retries"] == 2


@pytest.mark.parametrize("n, max_batch_size", [(8, 4), (5, 10)])
def test_embeddings_of_any_model_are_batched_and_each_caller_gets_its_vector(
    simulator, n, max_batch_size
):
    texts = [f"vllm text {i}" for i in range(n)]
    with make_vllm(
        simulator.url + VLLM.simulator_path, max_batch_size=max_batch_size, batch_timeout=WINDOW
    ) as backend:
        responses = together(n, lambda i: backend.embeddings(EMBEDDER, texts[i]))
        stats = backend.get_stats()
    for text, response in zip(texts, responses, strict=True):
        assert [d["embedding"] for d in response["data"]] == [embedding_for(text)]
    counted = simulator.counters()["embedding_inputs"]
    assert counted["calls"] <= math.ceil(n / max_batch_size)
    assert counted["total"] == n
    assert stats["batches"]["count"] == counted["calls"]
