"""Embeddings batching through ``make_request("embeddings", ...)`` from many
threads, against the simulator: how many calls reached it, how big they were,
and that every caller got its own vectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from ipfs_accelerate_py.resilience.errors import InvalidRequestError, MalformedResponseError
from ipfs_accelerate_py.simulator import embedding_for, key_fingerprint

from ..helpers import WAIT, WINDOW, together
from ..helpers.openai_sim import EMBED_MODEL, make_client


def embed(client, text: Any, **params: Any) -> dict:
    return client.make_request("embeddings", {"model": EMBED_MODEL, "input": text, **params})


def vectors(response: dict) -> list:
    assert [d["index"] for d in response["data"]] == list(range(len(response["data"])))
    return [d["embedding"] for d in response["data"]]


@pytest.mark.parametrize("n, max_batch_size", [(8, 4), (7, 3), (5, 10)])
def test_threads_share_calls_and_each_gets_its_own_vector(simulator, n, max_batch_size):
    texts = [f"text number {i}" for i in range(n)]
    with make_client(simulator, max_batch_size=max_batch_size, batch_timeout=WINDOW) as client:
        responses = together(n, lambda i: embed(client, texts[i]))
        stats = client.get_stats()
    for text, response in zip(texts, responses, strict=True):
        assert vectors(response) == [embedding_for(text)]
        assert response["model"] == EMBED_MODEL
    counted = simulator.counters()["embedding_inputs"]
    assert counted["calls"] <= math.ceil(n / max_batch_size)
    assert counted["total"] == n
    assert max(int(size) for size in counted["by_size"]) <= max_batch_size
    assert simulator.counters()["requests_total"] == counted["calls"]
    assert stats["total_requests"] == stats["successful_requests"] == n
    assert stats["batches"]["count"] == counted["calls"]


def test_different_dimensions_are_never_mixed_in_one_call(simulator):
    dims = [8, 12, 8, 12, 8, 12]
    with make_client(simulator, max_batch_size=10, batch_timeout=WINDOW) as client:
        responses = together(len(dims), lambda i: embed(client, f"t{i}", dimensions=dims[i]))
    for i, (d, response) in enumerate(zip(dims, responses, strict=True)):
        assert vectors(response) == [embedding_for(f"t{i}", d)]
    counted = simulator.counters()["embedding_inputs"]
    assert counted["calls"] == 2 and counted["by_size"] == {"3": 2}


def test_different_keys_are_never_mixed_in_one_call(simulator):
    keys = ["sk-key-one", "sk-key-two"] * 2
    with make_client(simulator, max_batch_size=10, batch_timeout=WINDOW) as client:
        responses = together(
            4,
            lambda i: client.make_request(
                "embeddings", {"model": EMBED_MODEL, "input": f"k{i}"}, api_key=keys[i]
            ),
        )
    assert [vectors(r) for r in responses] == [[embedding_for(f"k{i}")] for i in range(4)]
    counted = simulator.counters()
    assert counted["by_key"] == {key_fingerprint("sk-key-one"): 1, key_fingerprint("sk-key-two"): 1}
    assert counted["embedding_inputs"]["by_size"] == {"2": 2}


def test_a_list_input_stays_whole_and_in_order(simulator):
    inputs = [["a0", "a1", "a2"], "b", "c"]
    with make_client(simulator, max_batch_size=10, batch_timeout=WINDOW) as client:
        responses = together(3, lambda i: embed(client, inputs[i]))
    assert vectors(responses[0]) == [embedding_for(t) for t in inputs[0]]
    assert vectors(responses[1]) == [embedding_for("b")]
    assert vectors(responses[2]) == [embedding_for("c")]
    assert simulator.counters()["embedding_inputs"]["by_size"] == {"5": 1}


def test_a_list_longer_than_max_batch_size_goes_whole_on_its_own(simulator):
    texts = ["x0", "x1", "x2", "x3"]
    with make_client(simulator, max_batch_size=2, batch_timeout=WINDOW) as client:
        response = embed(client, texts)
    assert vectors(response) == [embedding_for(t) for t in texts]
    assert simulator.counters()["embedding_inputs"]["by_size"] == {"4": 1}


def test_a_batch_failing_with_a_retryable_error_is_retried_for_every_member(simulator):
    simulator.configure(fail_next=1)
    with make_client(simulator, max_batch_size=4, batch_timeout=WINDOW, max_retries=2) as client:
        responses = together(4, lambda i: embed(client, f"m{i}"))
        stats = client.get_stats()
    assert [vectors(r) for r in responses] == [[embedding_for(f"m{i}")] for i in range(4)]
    counted = simulator.counters()
    assert counted["requests_total"] == 2 and counted["faults"]["error"] == 1
    assert counted["embedding_inputs"]["by_size"] == {"4": 1}
    assert stats["http_attempts"] == counted["requests_total"]
    assert stats["successful_requests"] == 4 and stats["failed_requests"] == 0


def test_a_batch_failing_with_a_client_error_fails_every_member(simulator):
    simulator.script([{"status": 400}])
    with make_client(simulator, max_batch_size=3, batch_timeout=WINDOW, max_retries=2) as client:
        outcomes = together(3, lambda i: _outcome(lambda: embed(client, f"f{i}")))
    assert all(isinstance(o, InvalidRequestError) for o in outcomes), outcomes
    assert simulator.counters()["requests_total"] == 1


def test_a_response_with_too_few_items_is_an_error_for_every_member(simulator):
    short = {
        "object": "list",
        "model": EMBED_MODEL,
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }
    simulator.script([{"status": 200, "body": short}])
    with make_client(simulator, max_batch_size=2, batch_timeout=WINDOW, max_retries=0) as client:
        outcomes = together(2, lambda i: _outcome(lambda: embed(client, f"s{i}")))
    assert all(isinstance(o, MalformedResponseError) for o in outcomes), outcomes


def test_batched_members_token_usage_adds_up_to_what_the_server_counted(simulator):
    texts = ["a", "b", "abcde"]  # 1 + 1 + 2 tokens by the simulator's ceil(len / 4)
    with make_client(simulator, max_batch_size=3, batch_timeout=WINDOW) as client:
        responses = together(3, lambda i: embed(client, texts[i]))
        stats = client.get_stats()
    counted = simulator.counters()
    assert counted["embedding_inputs"]["by_size"] == {"3": 1}
    assert counted["tokens"]["prompt"] == 4
    assert sum(r["usage"]["prompt_tokens"] for r in responses) == counted["tokens"]["prompt"]
    assert stats["tokens"]["input"] == counted["tokens"]["prompt"]


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # returned for the test to inspect
        return exc


# ------------------------------------------------------------- live settings


def test_batching_disabled_after_construction_sends_each_request_alone(simulator):
    with make_client(simulator, batch_timeout=WINDOW) as client:
        client.batching_enabled = False
        responses = together(3, lambda i: embed(client, f"d{i}"))
    assert [vectors(r) for r in responses] == [[embedding_for(f"d{i}")] for i in range(3)]
    assert simulator.counters()["embedding_inputs"]["by_size"] == {"1": 3}


def test_max_batch_size_lowered_after_construction(simulator):
    with make_client(simulator, max_batch_size=10, batch_timeout=WINDOW) as client:
        client.max_batch_size = 2
        together(4, lambda i: embed(client, f"s{i}"))
    assert simulator.counters()["embedding_inputs"]["by_size"] == {"2": 2}


def test_supported_batch_models_decides_what_is_batched(simulator):
    with make_client(simulator, max_batch_size=10, batch_timeout=WINDOW) as client:
        client.supported_batch_models = ["my-embedder"]
        together(
            2,
            lambda i: client.make_request("embeddings", {"model": "my-embedder", "input": f"y{i}"}),
        )
        together(2, lambda i: embed(client, f"z{i}"))  # EMBED_MODEL is no longer batched
    assert simulator.counters()["embedding_inputs"]["by_size"] == {"2": 1, "1": 2}


def test_add_to_batch_and_process_batch_send_without_waiting_for_the_timeout(simulator):
    with make_client(simulator, max_batch_size=10, batch_timeout=30.0) as client:
        filled: dict = {}
        first = client.add_to_batch(EMBED_MODEL, "p0", future=filled)
        second = client.add_to_batch(EMBED_MODEL, ["p1", "p2"])
        assert client._process_batch() == 1
        assert vectors(first.result(timeout=WAIT)) == [embedding_for("p0")]
        assert vectors(second.result(timeout=WAIT)) == [embedding_for("p1"), embedding_for("p2")]
    assert filled["completed"] is True and vectors(filled["result"]) == [embedding_for("p0")]
    assert simulator.counters()["embedding_inputs"]["by_size"] == {"3": 1}
