"""``hf_tei`` against the simulator's TEI format (``simulator_path=""``) over
real loopback HTTP: ``/embed`` (a bare list of vectors, the shared
``embedding_for``), batching under TEI's 32-input cap with each caller
getting its own vectors, ``/rerank``, ``/info``; the request exactly as sent
(no model in the body); TEI's errors with retries as the core decides.
"""

from __future__ import annotations

import functools
import json
import math

import pytest

from ipfs_accelerate_py.api_backends.hf_tei import hf_tei
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidRequestError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
)
from ipfs_accelerate_py.simulator import DEFAULT_MODELS, embedding_for, key_fingerprint
from ipfs_accelerate_py.simulator.formats.tei import MAX_CLIENT_BATCH_SIZE

from ..helpers import FAST, WINDOW, ClientFactory, client_fixture, recording_server, together

MODEL = "BAAI/bge-small-en-v1.5"  # any name: a TEI server serves one model
TOKEN = "hf_integration_token_0123456789"


make_tei = ClientFactory(hf_tei, "hf_tei_api_base", "hf_api_key", FAST)
client = client_fixture(make_tei)


def cosine(a: list, b: list) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# ----------------------------------------------------------------- operations


def test_embeddings_without_a_key(simulator, client):
    assert client.embeddings(MODEL, ["first text", "second text"]) == [
        embedding_for("first text"),
        embedding_for("second text"),
    ]
    assert client.embeddings(MODEL, "alone") == [embedding_for("alone")]
    counted = simulator.counters()
    assert counted["by_path"] == {"/embed": 2} and counted["by_format"] == {"tei": 2}
    assert counted["by_key"] == {"anonymous": 2}
    assert client.get_stats()["models"][MODEL]["requests"] == 2


def test_rerank_ranks_best_first_with_the_simulated_scores(client):
    query, texts = "deep learning", ["cooking pasta", "neural networks", "deep learning basics"]
    ranks = client.rerank(query, texts, return_text=True)
    expected = sorted(
        (
            {
                "index": i,
                "score": (1 + cosine(embedding_for(query), embedding_for(t))) / 2,
                "text": t,
            }
            for i, t in enumerate(texts)
        ),
        key=lambda r: -r["score"],
    )
    assert [r["index"] for r in ranks] == [r["index"] for r in expected]
    for got, want in zip(ranks, expected, strict=True):
        assert got["text"] == want["text"] and got["score"] == pytest.approx(want["score"])
    raw = client.rerank(query, texts, raw_scores=True)
    assert max(r["score"] for r in raw) <= 1.0 and {r["index"] for r in raw} == {0, 1, 2}


def test_info_and_list_models(client):
    info = client.info()
    assert info["max_client_batch_size"] == MAX_CLIENT_BATCH_SIZE == 32
    assert info["model_id"] == DEFAULT_MODELS[0]
    assert client.list_models()[0]["id"] == DEFAULT_MODELS[0]


def test_a_token_is_sent_as_bearer_and_counted_by_fingerprint(simulator):
    simulator.configure(valid_keys=[TOKEN])
    with make_tei(simulator.url, key=TOKEN) as backend:
        backend.embeddings(MODEL, "x")
        backend.rerank("q", ["a"])
    assert simulator.counters()["by_key"] == {key_fingerprint(TOKEN): 2}


# ----------------------------------------------------------------- batching


@pytest.mark.parametrize("n, max_batch_size, cap", [(70, 100, None), (9, 4, None), (11, 100, 5)])
def test_callers_share_calls_under_the_cap_and_each_gets_its_own_vector(
    simulator, n, max_batch_size, cap
):
    settings = {"max_batch_size": max_batch_size, "batch_timeout": WINDOW}
    if cap is not None:
        settings["max_client_batch_size"] = cap
    texts = [f"tei text {i}" for i in range(n)]
    with make_tei(simulator.url, **settings) as backend:
        results = together(n, lambda i: backend.embeddings(MODEL, texts[i]))
        stats = backend.get_stats()
    assert results == [[embedding_for(t)] for t in texts]
    limit = min(max_batch_size, cap or MAX_CLIENT_BATCH_SIZE)
    counted = simulator.counters()["embedding_inputs"]
    assert counted["total"] == n
    assert counted["calls"] <= math.ceil(n / limit)
    assert max(int(size) for size in counted["by_size"]) <= limit
    assert simulator.counters()["by_status"] == {"200": counted["calls"]}
    assert stats["total_requests"] == stats["successful_requests"] == n


def test_lists_stay_whole_within_a_batch(simulator):
    lists = [[f"l{i}-{j}" for j in range(5)] for i in range(8)]  # 40 inputs, 5 per caller
    with make_tei(simulator.url, max_batch_size=100, batch_timeout=WINDOW) as backend:
        results = together(len(lists), lambda i: backend.embeddings(MODEL, lists[i]))
    assert results == [[embedding_for(t) for t in texts] for texts in lists]
    counted = simulator.counters()["embedding_inputs"]
    assert (
        2 <= counted["calls"] <= 3 and sum(int(k) * v for k, v in counted["by_size"].items()) == 40
    )
    assert all(int(size) % 5 == 0 and int(size) <= 32 for size in counted["by_size"])


def test_one_caller_over_the_cap_gets_tei_s_413_and_how_to_fix_it(simulator, client):
    with pytest.raises(InvalidRequestError, match="maximum allowed batch size 32") as info:
        client.embeddings(MODEL, [f"t{i}" for i in range(40)])
    assert info.value.status == 413 and "max_client_batch_size" in str(info.value)
    assert simulator.counters()["by_status"] == {"413": 1}


# ----------------------------------------------------------------- the request as sent


def tei_answer(method: str, path: str, body: bytes) -> list:
    inputs = json.loads(body).get("inputs", [])
    return [[1.0]] * (len(inputs) if isinstance(inputs, list) else 1)


recording = functools.partial(recording_server, tei_answer)


def test_request_as_sent_has_no_model():
    with recording() as (url, seen), make_tei(url, key=TOKEN, batch_timeout=0.0) as backend:
        assert backend.embeddings(MODEL, ["a", "b"], normalize=False, truncate=True) == [
            [1.0],
            [1.0],
        ]
    ((method, path, headers, body),) = seen
    assert (method, path) == ("POST", "/embed")
    assert (
        headers["authorization"] == f"Bearer {TOKEN}"
        and headers["content-type"] == "application/json"
    )
    assert json.loads(body) == {"inputs": ["a", "b"], "normalize": False, "truncate": True}


# ----------------------------------------------------------------- errors


def test_a_wrong_token_is_a_401_not_retried(simulator):
    simulator.configure(valid_keys=[TOKEN])
    with (
        make_tei(simulator.url, key="hf_wrong", max_retries=3) as backend,
        pytest.raises(AuthenticationError),
    ):
        backend.embeddings(MODEL, "x")
    assert simulator.counters()["requests_total"] == 1


def test_an_empty_rerank_is_refused_before_sending(simulator, client):
    with pytest.raises(InvalidRequestError, match="texts must be"):
        client.rerank("q", [])
    assert simulator.counters()["requests_total"] == 0


def test_model_overloaded_429_is_a_rate_limit_then_retried(simulator):
    simulator.configure(rate_limits={"rpm": 1}, rate_window=0.2)
    with make_tei(simulator.url, max_retries=0, batching_enabled=False) as strict:
        strict.embeddings(MODEL, "first")
        with pytest.raises(RateLimitError, match="Model is overloaded"):
            strict.embeddings(MODEL, "second")
    with make_tei(simulator.url, max_retries=3) as patient:
        assert patient.embeddings(MODEL, "third") == [embedding_for("third")]
        assert patient.get_stats()["total_retries"] >= 1


@pytest.mark.parametrize(
    "entry",
    [
        {"status": 424, "body": {"error": "Inference failed", "error_type": "backend"}},
        {"status": 503},
        {"status": 502},
    ],
)
def test_server_failures_are_retried(simulator, entry):
    simulator.script([entry, {"status": 200}], path="/embed")
    with make_tei(simulator.url, max_retries=2) as backend:
        assert backend.embeddings(MODEL, "later") == [embedding_for("later")]
    assert simulator.counters()["by_status"] == {str(entry["status"]): 1, "200": 1}


def test_a_wrong_model_kind_424_is_not_retried(simulator, client):
    simulator.script(
        [
            {
                "status": 424,
                "body": {"error": "model is not a re-ranker model", "error_type": "backend"},
            }
        ],
        path="/rerank",
    )
    with pytest.raises(InvalidRequestError, match="not a re-ranker"):
        client.rerank("q", ["a"])
    assert simulator.counters()["requests_total"] == 1


def test_a_malformed_batch_answer_is_retried(simulator, client):
    simulator.configure(malformed_next=1)
    assert client.embeddings(MODEL, ["a", "b"]) == [embedding_for("a"), embedding_for("b")]
    with make_tei(simulator.url, max_retries=0) as strict:
        simulator.configure(malformed_next=1)
        with pytest.raises(MalformedResponseError):
            strict.embeddings(MODEL, "x")


def test_outage_fails_every_member_of_a_batch(simulator):
    simulator.configure(outage=True)
    with make_tei(
        simulator.url, max_retries=0, batch_timeout=WINDOW, failure_threshold=100
    ) as backend:

        def call(i):
            try:
                backend.embeddings(MODEL, f"o{i}")
            except ServerError as exc:
                return exc.status

        assert together(4, call) == [503] * 4
    assert simulator.counters()["requests_total"] == 1
