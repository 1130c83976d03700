"""The TEI adapter and the ``hf_tei`` backend, both ways, over the in-memory
transport: exactly these requests are built (the model name never sent),
exactly these recorded answers are read (a bare list of vectors, a list of
ranks), batches respect the server's input cap and each caller gets its own
vectors, and TEI's error bodies become these typed errors."""

from __future__ import annotations

import threading

import pytest

from ipfs_accelerate_py.api_backends.hf_tei import hf_tei
from ipfs_accelerate_py.providers.hf_tei import DEFAULT_MAX_CLIENT_BATCH_SIZE, TEI, TEIWire
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    AuthenticationError,
    InvalidInputError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    SettingError,
)
from ipfs_accelerate_py.transport.memory import MemoryTransport

from ..helpers import QUICK_RETRIES, WAIT, ClientFactory, answer, env_cleared

BASE = "http://tei.test"
TOKEN = "hf_test_SECRET_0123456789"
MODEL = "BAAI/bge-small-en-v1.5"

RERANK_ANSWER = [{"index": 1, "score": 0.9988}, {"index": 0, "score": 0.0213}]
INFO = {
    "model_id": MODEL,
    "model_sha": None,
    "model_dtype": "float16",
    "model_type": {"embedding": {"pooling": "cls"}},
    "max_concurrent_requests": 512,
    "max_input_length": 512,
    "max_batch_tokens": 16384,
    "max_client_batch_size": 32,
    "auto_truncate": False,
    "tokenization_workers": 4,
    "version": "1.6.0",
}


no_hf_env = env_cleared("HF_API_TOKEN", "HF_TOKEN", "HF_TEI_BASE_URL", "TEI_BASE_URL")


def vector_of(text: str) -> list:
    return [float(len(text)), float(sum(map(ord, text)) % 97)]


def embed_server(request):
    """A TEI ``/embed`` that refuses more than 32 inputs as the real one does."""
    body = request.json()
    inputs = body["inputs"] if isinstance(body["inputs"], list) else [body["inputs"]]
    if len(inputs) > DEFAULT_MAX_CLIENT_BATCH_SIZE:
        return answer(
            413,
            {
                "error": f"batch size {len(inputs)} > maximum allowed batch size 32",
                "error_type": "validation",
            },
        )
    return answer(200, [vector_of(t) for t in inputs])


client_with = ClientFactory(
    hf_tei, "hf_tei_api_base", base_url=BASE, defaults={**QUICK_RETRIES, "batch_timeout": 0.01}
).in_memory


# ---------------------------------------------------------------- requests


def test_embed_request_is_tei_s_body_without_the_model():
    client, transport = client_with(embed_server, batching_enabled=False)
    with client:
        result = client.embeddings(
            MODEL, ["What is Deep Learning?", "Hi"], normalize=True, truncate=False
        )
        assert client.get_stats()["models"][MODEL]["requests"] == 1
    sent = transport.requests[0]
    assert (sent.method, sent.url) == ("POST", f"{BASE}/embed")
    assert (
        "Authorization" not in sent.headers and sent.headers["Content-Type"] == "application/json"
    )
    assert sent.json() == {
        "inputs": ["What is Deep Learning?", "Hi"],
        "normalize": True,
        "truncate": False,
    }
    assert result == [vector_of("What is Deep Learning?"), vector_of("Hi")]


def test_one_string_gives_a_list_of_one_vector_as_tei_answers():
    client, transport = client_with(embed_server)
    with client:
        assert client.embeddings(MODEL, "Hi") == [vector_of("Hi")]
    assert transport.requests[0].json() == {"inputs": ["Hi"]}


@pytest.mark.parametrize(
    "metadata, env",
    [({"hf_api_key": TOKEN}, {}), ({}, {"HF_TOKEN": TOKEN}), ({}, {"HF_API_TOKEN": TOKEN})],
)
def test_a_hugging_face_token_is_sent_as_bearer(monkeypatch, metadata, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client, transport = client_with(embed_server, **metadata)
    with client:
        client.embeddings(MODEL, "x")
    assert transport.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "metadata, env, expected",
    [
        ({}, {}, "http://localhost:8080"),
        ({"tei_api_base": "http://a:1"}, {}, "http://a:1"),
        ({}, {"HF_TEI_BASE_URL": "http://b:2"}, "http://b:2"),
        ({}, {"TEI_BASE_URL": "http://c:3"}, "http://c:3"),
    ],
)
def test_base_url_sources(monkeypatch, metadata, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with hf_tei({}, metadata, transport=MemoryTransport(embed_server)) as client:
        assert client.base_url == expected


def test_rerank_request_and_response():
    client, transport = client_with(lambda r: answer(200, RERANK_ANSWER))
    with client:
        ranks = client.rerank(
            "What is Deep Learning?",
            ["Deep Learning is not...", "Deep learning is..."],
            return_text=False,
        )
    assert ranks == RERANK_ANSWER
    sent = transport.requests[0]
    assert (sent.method, sent.url) == ("POST", f"{BASE}/rerank")
    assert sent.json() == {
        "query": "What is Deep Learning?",
        "texts": ["Deep Learning is not...", "Deep learning is..."],
        "return_text": False,
    }


@pytest.mark.parametrize(
    "query, texts, says",
    [
        ("", ["a"], "query must be"),
        (None, ["a"], "query must be"),
        ("q", [], "texts must be"),
        ("q", "a", "texts must be"),
        ("q", ["a", ""], r"texts\[1\]"),
    ],
)
def test_rerank_refuses_bad_arguments_before_sending(query, texts, says):
    client, transport = client_with(lambda r: answer(200, RERANK_ANSWER))
    with client, pytest.raises(InvalidInputError, match=says):
        client.rerank(query, texts)
    assert transport.requests == []


def test_info_and_list_models():
    client, transport = client_with(lambda r: answer(200, INFO))
    with client:
        assert client.info() == INFO
        assert client.list_models() == [
            {"id": MODEL, "object": "model", "owned_by": "text-embeddings-inference"}
        ]
    assert [(r.method, r.url, r.body) for r in transport.requests] == [
        ("GET", f"{BASE}/info", None)
    ] * 2


def test_chat_is_refused_with_a_clear_error():
    client, transport = client_with(embed_server)
    with client, pytest.raises(InvalidInputError, match="hf_tei backend has no chat"):
        client.chat(MODEL, [{"role": "user", "content": "hi"}])
    assert transport.requests == []


# ---------------------------------------------------------------- batching


def concurrent_embeddings(client, inputs_per_caller):
    results: list = [None] * len(inputs_per_caller)

    def call(i, inputs):
        results[i] = client.embeddings(MODEL, inputs)

    threads = [threading.Thread(target=call, args=(i, x)) for i, x in enumerate(inputs_per_caller)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    return results


def test_callers_are_batched_and_each_gets_its_own_vectors():
    client, transport = client_with(embed_server, max_batch_size=100, batch_timeout=0.2)
    callers = [[f"text {i}-{j}" for j in range(3)] for i in range(20)]  # 60 inputs
    with client:
        results = concurrent_embeddings(client, callers)
        stats = client.get_stats()
    for inputs, result in zip(callers, results, strict=True):
        assert result == [vector_of(t) for t in inputs]
    sizes = [len(r.json()["inputs"]) for r in transport.requests]
    assert max(sizes) <= DEFAULT_MAX_CLIENT_BATCH_SIZE and sum(sizes) == 60
    assert len(transport.requests) <= 3  # 60 inputs in lists of 3: at most 30 + 30, or a remainder
    assert stats["successful_requests"] == 20


def test_the_cap_can_be_lowered_to_the_server_s():
    client, transport = client_with(
        embed_server, max_batch_size=100, batch_timeout=0.2, max_client_batch_size="4"
    )
    with client:
        results = concurrent_embeddings(client, [[f"t{i}"] for i in range(10)])
    assert results == [[vector_of(f"t{i}")] for i in range(10)]
    assert max(len(r.json()["inputs"]) for r in transport.requests) <= 4


@pytest.mark.parametrize("value", [0, -1, "many", 2.5, True])
def test_a_bad_cap_is_refused_naming_the_setting(value):
    with pytest.raises(SettingError, match="max_client_batch_size"):
        hf_tei({}, {"max_client_batch_size": value}, transport=MemoryTransport(embed_server))


def test_split_batch_result_hands_out_vectors_in_input_order():
    wire = TEIWire(TEI)
    assert wire.split_batch_result([[1.0], [2.0], [3.0]], [2, 1]) == [[[1.0], [2.0]], [[3.0]]]
    with pytest.raises(MalformedResponseError, match="expected 3 results, got 2"):
        wire.split_batch_result([[1.0], [2.0]], [2, 1])
    with pytest.raises(MalformedResponseError):
        wire.split_batch_result({"data": []}, [1])


def test_batch_hooks():
    wire = TEIWire(TEI, 8)
    data = {"model": MODEL, "inputs": ["a", "b"], "normalize": False}
    assert wire.batch_inputs("embed", data) == ["a", "b"]
    assert wire.batch_inputs("/embed", {"inputs": "a"}) == ["a"]
    assert wire.batch_inputs("rerank", {"query": "q", "texts": ["a"]}) is None
    assert wire.batch_template("embed", data) == {"model": MODEL, "normalize": False}
    assert wire.batch_payload({"model": MODEL, "normalize": False}, ["x"]) == {
        "model": MODEL,
        "normalize": False,
        "inputs": ["x"],
    }
    assert wire.batch_limits(MODEL).max_inputs == 8
    assert TEI.batch_any_model


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "status, body, cls, retried",
    [
        (401, {"error": "Invalid credentials"}, AuthenticationError, False),
        (404, {"error": "Not Found"}, NotFoundError, False),
        (
            413,
            {"error": "batch size 40 > maximum allowed batch size 32", "error_type": "validation"},
            InvalidRequestError,
            False,
        ),
        (
            422,
            {
                "error": "Input validation error: `inputs` must have less than 512 tokens",
                "error_type": "tokenizer",
            },
            InvalidRequestError,
            False,
        ),
        (424, {"error": "Inference failed", "error_type": "backend"}, ServerError, True),
        (
            424,
            {"error": "model is not an embedding model", "error_type": "backend"},
            InvalidRequestError,
            False,
        ),
        (429, {"error": "Model is overloaded", "error_type": "overloaded"}, RateLimitError, True),
        (503, {"error": "unhealthy", "error_type": "unhealthy"}, ServerError, True),
    ],
)
def test_error_table(status, body, cls, retried):
    calls = []

    def handler(request):
        calls.append(request)
        return answer(status, body)

    client, _ = client_with(handler, max_retries=1, failure_threshold=100, batching_enabled=False)
    with client, pytest.raises(ApiError) as info:
        client.embeddings(MODEL, "x")
    error = info.value
    assert type(error) is cls and error.status == status
    assert error.message.startswith(body["error"])
    assert len(calls) == (2 if retried else 1)


def test_413_says_how_to_match_the_server_s_cap():
    error = TEIWire(TEI).error_for(
        answer(413, {"error": "batch size 40 > 32", "error_type": "validation"}),
        wall_now=0.0,
        attempt=1,
    )
    assert "max_client_batch_size" in error.message and "at most 32 inputs" in error.message


def test_a_single_caller_over_the_cap_gets_the_server_s_413_alone():
    client, transport = client_with(embed_server, max_batch_size=100)
    with client, pytest.raises(InvalidRequestError, match="maximum allowed batch size 32"):
        client.embeddings(MODEL, [f"t{i}" for i in range(40)])
    assert len(transport.requests) == 1
