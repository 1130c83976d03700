"""``ollama`` against the simulator's Ollama format (``/api/*`` at its root)
over real loopback HTTP: the request as Ollama documents it, chat, generate
and their NDJSON streams, embeddings batched into one ``/api/embed`` list,
``/api/tags``, ``OLLAMA_HOST`` given as ``host:port``, and Ollama's errors
(``{"error": "..."}``) with retries as the core decides.
"""

from __future__ import annotations

import json
import logging
import math

import pytest

from ipfs_accelerate_py.api_backends.ollama import ollama
from ipfs_accelerate_py.providers.ollama import OLLAMA
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ipfs_accelerate_py.simulator import embedding_for, estimate_tokens, key_fingerprint
from ipfs_accelerate_py.simulator.formats.ollama import tagged

from ..helpers import (
    FAST,
    REPLY_PREFIX,
    WAIT,
    ClientFactory,
    client_fixture,
    key_cooling_logged,
    messages,
)

MODEL = OLLAMA.default_chat_model
EMBED_MODEL = OLLAMA.default_embedding_model
KEY = "olk-integration-0123456789"


make_ollama = ClientFactory(ollama, "ollama_host", defaults=FAST)
client = client_fixture(make_ollama)


# --------------------------------------------------------------- operations


def test_chat_reply_and_usage(simulator, client):
    text = "Hello Ollama"
    reply = client.chat(MODEL, messages(text))
    stats = client.get_stats()
    assert reply["message"] == {"role": "assistant", "content": REPLY_PREFIX + text}
    assert (reply["done"], reply["done_reason"]) == (True, "stop")
    assert reply["prompt_eval_count"] == estimate_tokens(text)
    assert reply["eval_count"] == estimate_tokens(REPLY_PREFIX + text)
    counted = simulator.counters()
    assert counted["by_path"] == {"/api/chat": 1}
    assert counted["by_format"] == {"ollama": 1}
    assert counted["by_key"] == {"anonymous": 1}  # no key needed, none sent
    assert counted["by_model"] == {MODEL: 1}
    assert stats["tokens"] == {
        "input": counted["tokens"]["prompt"],
        "output": counted["tokens"]["completion"],
        "total": counted["tokens"]["total"],
    }


def test_generate_with_options_reaches_the_server(simulator, client):
    reply = client.generate(MODEL, "a fairly long prompt to be cut", max_tokens=2, temperature=0.0)
    assert (
        reply["response"] == (REPLY_PREFIX + "a fairly long prompt")[:8]
    )  # num_predict reached it
    assert reply["done_reason"] == "length"
    assert client.completions(MODEL, "same path")["response"] == REPLY_PREFIX + "same path"
    assert simulator.counters()["by_path"] == {"/api/generate": 2}


def test_list_models_reads_api_tags(simulator, client):
    names = [m["name"] for m in client.list_models()]
    assert names == [tagged(m) for m in simulator.scenario["models"]]
    assert simulator.counters()["by_path"] == {"/api/tags": 1}


@pytest.mark.parametrize("dimensions", [None, 8])
def test_embeddings_equal_the_simulators_vectors(simulator, client, dimensions):
    params = {} if dimensions is None else {"dimensions": dimensions}
    texts = ["alpha", "beta", "gamma"]
    one = client.embeddings(EMBED_MODEL, "the quick brown fox", **params)
    many = client.embeddings(EMBED_MODEL, texts, **params)
    size = dimensions or simulator.scenario["embedding_dimensions"]
    assert one["embeddings"] == [embedding_for("the quick brown fox", size)]
    assert many["embeddings"] == [embedding_for(t, size) for t in texts]
    assert many["prompt_eval_count"] == sum(estimate_tokens(t) for t in texts)
    assert simulator.counters()["by_path"] == {"/api/embed": 2}


def test_ollama_host_as_host_port_without_a_scheme(simulator, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", f"{simulator.host}:{simulator.port}")
    with ollama({}, dict(FAST)) as backend:
        assert backend.base_url == simulator.url
        assert (
            backend.chat(MODEL, messages("via env"))["message"]["content"]
            == REPLY_PREFIX + "via env"
        )
    assert simulator.counters()["by_path"] == {"/api/chat": 1}


def test_a_key_when_given_reaches_the_server_under_its_fingerprint(simulator):
    simulator.configure(valid_keys=[KEY])
    with make_ollama(simulator.url, ollama_api_key=KEY) as backend:
        backend.chat(MODEL, messages("with a key"))
    assert simulator.counters()["by_key"] == {key_fingerprint(KEY): 1}


# ---------------------------------------------------------------- streaming


def test_chat_stream_pieces_join_to_the_reply_and_end_on_done(simulator, client):
    text = "stream me a reply with several words in it please"
    whole = client.chat(MODEL, messages(text))
    with client.chat(MODEL, messages(text), stream=True) as stream:
        chunks = list(stream)
    stats = client.get_stats()
    assert len(chunks) > 3
    assert "".join(c.raw["message"]["content"] for c in chunks) == whole["message"]["content"]
    assert "".join(c.text for c in chunks) == stream.text == whole["message"]["content"]
    assert [c.raw["done"] for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert [c.finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert chunks[-1].raw["eval_count"] == whole["eval_count"]
    assert stream.usage == {
        "input_tokens": whole["prompt_eval_count"],
        "output_tokens": whole["eval_count"],
    }
    assert simulator.counters()["streams"] == {"started": 1, "finished": 1}
    assert (
        stats["tokens"]["input"] == 2 * whole["prompt_eval_count"]
    )  # the stream's last line counted too


def test_generate_stream(client):
    with client.generate(MODEL, "tell me a story", stream=True) as stream:
        chunks = list(stream)
    assert "".join(c.text for c in chunks) == REPLY_PREFIX + "tell me a story"
    assert chunks[-1].raw["done_reason"] == "stop" == stream.finish_reason


@pytest.mark.parametrize(
    "fault, error, message",
    [
        ({"stream_cut_after": 2}, NetworkError, ""),  # the connection closed before the "done" line
        ({"stream_malformed_after": 2}, MalformedResponseError, "not JSON"),
    ],
)
def test_a_faulty_stream_is_an_error_after_its_chunks(fresh_simulator, fault, error, message):
    fresh_simulator.configure(**fault)
    with make_ollama(fresh_simulator.url) as backend:
        stream = backend.chat(
            MODEL, messages("one two three four five six seven eight nine"), stream=True
        )
        got = [next(stream), next(stream)]
        with pytest.raises(error) as caught:
            next(stream)
    assert all(c.raw["done"] is False and c.finish_reason is None for c in got)
    assert message in str(caught.value) and "after 2 chunks" in str(caught.value)
    assert caught.value.chunks_received == 2 and caught.value.partial_text == "".join(
        c.text for c in got
    )


# ----------------------------------------------------------- request as sent


def test_request_as_sent_method_path_headers_and_json_body(recorder):
    base_url, seen = recorder
    root = base_url[: -len("/v1")]
    with make_ollama(root, ollama_api_key=KEY) as backend:
        backend.chat(MODEL, messages("hi"), temperature=0.5, max_tokens=7, keep_alive="1m")
        backend.list_models()
    (method, path, headers, body), (get_method, get_path, get_headers, get_body) = seen
    headers = {k.lower(): v for k, v in headers.items()}
    assert (method, path) == ("POST", "/api/chat")
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(body) == {
        "model": MODEL,
        "messages": messages("hi"),
        "stream": False,
        "keep_alive": "1m",
        "options": {"temperature": 0.5, "num_predict": 7},
    }
    assert (get_method, get_path, get_body) == ("GET", "/api/tags", b"")
    assert {k.lower(): v for k, v in get_headers.items()}["authorization"] == f"Bearer {KEY}"


# ------------------------------------------------------------------ batching


def test_embeddings_from_many_callers_go_out_in_few_embed_calls(simulator):
    texts = [f"text number {i}" for i in range(7)]
    with make_ollama(simulator.url, max_batch_size=3, batch_timeout=0.05) as backend:
        futures = [backend.add_to_batch("any-local-embedder", t) for t in texts]
        results = [f.result(timeout=WAIT) for f in futures]
        stats = backend.get_stats()
    size = simulator.scenario["embedding_dimensions"]
    for text, result in zip(texts, results, strict=True):
        assert result["embeddings"] == [embedding_for(text, size)]
        assert result["model"] == "any-local-embedder"
    counted = simulator.counters()
    assert counted["embedding_inputs"]["calls"] <= math.ceil(len(texts) / 3)
    assert sum(r["prompt_eval_count"] for r in results) == counted["tokens"]["prompt"]
    assert stats["batches"]["count"] == counted["embedding_inputs"]["calls"]


# -------------------------------------------------------------------- errors


def test_401_for_a_key_the_server_does_not_know_is_not_retried(simulator):
    simulator.configure(valid_keys=["the-right-key"])
    with make_ollama(simulator.url, ollama_api_key="a-wrong-key", max_retries=3) as backend:
        with pytest.raises(AuthenticationError) as caught:
            backend.chat(MODEL, messages("x"))
    assert (caught.value.status, caught.value.message) == (401, "unauthorized")
    assert simulator.counters()["requests_total"] == 1


def test_404_for_a_model_not_pulled_is_not_retried(simulator):
    simulator.configure(strict_models=True)
    with make_ollama(simulator.url, max_retries=3) as backend:
        with pytest.raises(NotFoundError) as caught:
            backend.chat("llama9", messages("x"))
    assert caught.value.message == 'model "llama9" not found, try pulling it first'
    assert simulator.counters()["requests_total"] == 1
    assert backend.circuit_state == "CLOSED"


def test_429_from_the_limiter_carries_ollamas_message_and_retry_after(simulator):
    simulator.configure(rate_limits={"rpm": 1}, retry_after=3)
    with make_ollama(simulator.url, max_retries=0) as backend:
        backend.chat(MODEL, messages("first"))
        with pytest.raises(RateLimitError) as caught:
            backend.chat(MODEL, messages("second"))
    assert caught.value.retry_after == 3.0
    assert caught.value.message.startswith("too many requests")
    assert simulator.counters()["rate_limited"] == 1


def test_429_is_retried_after_the_servers_wait(simulator, caplog):
    caplog.set_level(logging.INFO, logger="ipfs_accelerate_py")
    simulator.script([{"status": 429, "headers": {"retry-after": "0"}}, {"status": 200}])
    # the backoff (an hour) would pass the deadline and fail at once: the server's 0 s it is
    with make_ollama(
        simulator.url, max_retries=2, initial_retry_delay=3600.0, request_deadline=WAIT
    ) as backend:
        reply = backend.chat(MODEL, messages("patient"))
        stats = backend.get_stats()
    assert reply["message"]["content"] == REPLY_PREFIX + "patient"
    (cooled,) = key_cooling_logged(caplog.records)
    assert "cooling 0s after HTTP 429 (Retry-After)" in cooled
    assert simulator.counters()["by_status"] == {"429": 1, "200": 1}
    assert stats["retried_requests"] == 1


def test_5xx_is_retried_then_succeeds(simulator):
    simulator.configure(fail_next=2, error_status=500)
    with make_ollama(simulator.url, max_retries=3) as backend:
        assert backend.generate(MODEL, "again")["response"] == REPLY_PREFIX + "again"
    assert simulator.counters()["by_status"] == {"500": 2, "200": 1}


def test_an_outage_fails_with_ollamas_503_after_the_retries_and_opens_the_breaker(simulator):
    simulator.configure(outage=True, retry_after=0)
    with make_ollama(simulator.url, max_retries=1, failure_threshold=2) as backend:
        with pytest.raises(ServerError) as caught:
            backend.chat(MODEL, messages("x"))
        state = backend.circuit_state
    assert caught.value.status == 503
    assert "Simulated outage" in caught.value.message
    assert simulator.counters()["by_status"] == {"503": 2}
    assert state == "OPEN"


def test_a_malformed_body_is_retried(simulator):
    simulator.configure(malformed_next=1)
    with make_ollama(simulator.url, max_retries=2) as backend:
        assert backend.chat(MODEL, messages("fine"))["message"]["content"] == REPLY_PREFIX + "fine"
    assert simulator.counters()["faults"]["malformed"] == 1
