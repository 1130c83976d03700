"""``gemini`` against the simulator's Gemini format over real loopback HTTP:
the request as Gemini documents it (path, ``x-goog-api-key``, body), response
and stream parsing, Google's error bodies (RetryInfo, API_KEY_INVALID) with
retries as the core decides, and ``batchEmbedContents`` batching.

Nothing here sleeps to wait: tests wait on futures or on the client's own
retry waits, which the server's figures keep short.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from ipfs_accelerate_py.api_backends.gemini import gemini, image_part
from ipfs_accelerate_py.providers.gemini import GEMINI
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidRequestError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from ipfs_accelerate_py.simulator import Simulator, embedding_for, estimate_tokens, key_fingerprint

from ..helpers import (
    FAST,
    REPLY_PREFIX,
    WAIT,
    ClientFactory,
    key_cooling_logged,
    post_json,
    recorder_fixture,
)

KEY = "AIzaSy-integration-0123456789"
MODEL = "gemini-2.5-flash"
EMBED = "gemini-embedding-001"
IMAGE_TOKENS = 258
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


make_client = ClientFactory(gemini, "gemini_api_base", "gemini_api_key", FAST, key=KEY).on


def user(text: str) -> list:
    return [{"role": "user", "content": text}]


def reply_text(response: dict) -> str:
    return "".join(part["text"] for part in response["candidates"][0]["content"]["parts"])


def path(method: str, model: str = MODEL) -> str:
    return f"/v1beta/models/{model}:{method}"


def google_error(code: int, status: str, message: str, *details: dict) -> dict:
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


# --------------------------------------------------------------- operations


def test_chat_returns_the_simulators_reply_and_usage(simulator):
    with make_client(simulator) as client:
        response = client.chat(MODEL, user("Hello there"))
        stats = client.get_stats()
    assert reply_text(response) == REPLY_PREFIX + "Hello there"
    assert response["candidates"][0]["finishReason"] == "STOP"
    usage = response["usageMetadata"]
    assert usage["promptTokenCount"] == estimate_tokens("Hello there")
    assert usage["candidatesTokenCount"] == estimate_tokens(REPLY_PREFIX + "Hello there")
    counted = simulator.counters()
    assert counted["by_path"] == {path("generateContent"): 1}
    assert counted["by_format"] == {"gemini": 1}
    assert counted["by_model"] == {MODEL: 1}
    assert counted["by_key"] == {key_fingerprint(KEY): 1}
    assert (stats["tokens"]["input"], stats["tokens"]["output"]) == (
        counted["tokens"]["prompt"],
        counted["tokens"]["completion"],
    )


def test_system_instruction_and_an_inline_image_are_sent_and_counted(simulator):
    messages = [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, PNG]},
    ]
    with make_client(simulator) as client:
        response = client.chat(MODEL, messages)
    expected = (
        estimate_tokens("Answer in one word.") + estimate_tokens("What is this?") + IMAGE_TOKENS
    )
    assert response["usageMetadata"]["promptTokenCount"] == expected
    assert reply_text(response) == REPLY_PREFIX + "What is this?"


def test_max_tokens_becomes_max_output_tokens(simulator):
    with make_client(simulator) as client:
        response = client.chat(MODEL, user("a fairly long prompt to be cut"), max_tokens=2)
    assert reply_text(response) == (REPLY_PREFIX + "a fairly long prompt")[:8]
    assert response["candidates"][0]["finishReason"] == "MAX_TOKENS"


@pytest.mark.parametrize("dimensions", [None, 8, 40])
def test_embeddings_equal_the_simulators_vectors(simulator, dimensions):
    params = {} if dimensions is None else {"output_dimensionality": dimensions}
    texts = ["alpha", "beta", "gamma"]
    dims = dimensions or simulator.scenario["embedding_dimensions"]
    with make_client(simulator) as client:
        one = client.embeddings(EMBED, "the quick brown fox", **params)
        many = client.embeddings(EMBED, texts, task_type="RETRIEVAL_DOCUMENT", **params)
    assert one == {"embeddings": [{"values": embedding_for("the quick brown fox", dims)}]}
    assert client.provider.embedding_vectors(many) == [embedding_for(t, dims) for t in texts]
    counted = simulator.counters()
    assert counted["by_path"] == {path("batchEmbedContents", EMBED): 2}
    assert counted["embedding_inputs"]["by_size"] == {"1": 1, "3": 1}


def test_embed_content_count_tokens_get_model_and_list_models(simulator):
    simulator.configure(models=[MODEL, EMBED])
    with make_client(simulator) as client:
        embedded = client.embed_content(EMBED, "solo", output_dimensionality=4)
        counted = client.count_tokens(
            MODEL, [{"role": "system", "content": "S"}, *user("count me")]
        )
        model = client.get_model(EMBED)
        models = client.list_models()
    assert embedded == {"embedding": {"values": embedding_for("solo", 4)}}
    assert counted["totalTokens"] == estimate_tokens("S") + estimate_tokens("count me")
    assert (
        model["name"] == f"models/{EMBED}"
        and "batchEmbedContents" in model["supportedGenerationMethods"]
    )
    assert [m["name"] for m in models] == [f"models/{MODEL}", f"models/{EMBED}"]
    assert simulator.counters()["by_path"] == {
        path("embedContent", EMBED): 1,
        path("countTokens"): 1,
        f"/v1beta/models/{EMBED}": 1,
        "/v1beta/models": 1,
    }


def test_list_models_follows_pages(simulator):
    names = [f"model-{i:04d}" for i in range(1001)]
    simulator.configure(models=names)
    with make_client(simulator) as client:
        models = client.list_models()
    assert [m["name"] for m in models] == [f"models/{n}" for n in names]
    assert simulator.counters()["by_path"] == {"/v1beta/models": 2}


# ---------------------------------------------------------------- streaming


def test_stream_chunks_join_to_the_non_stream_reply(simulator):
    text = "stream me a reply with several words in it please"
    with make_client(simulator) as client:
        whole = client.chat(MODEL, user(text))
        with client.chat(MODEL, user(text), stream=True) as stream:
            chunks = list(stream)
        stats = client.get_stats()
    assert len(chunks) > 2
    assert "".join(c.text for c in chunks) == stream.text == reply_text(whole)
    assert "".join(reply_text(c.raw) for c in chunks) == reply_text(whole)
    assert [c.raw["candidates"][0].get("finishReason") for c in chunks] == [None] * (
        len(chunks) - 1
    ) + ["STOP"]
    assert [c.finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert chunks[-1].raw["usageMetadata"] == whole["usageMetadata"]
    assert stream.usage == {
        "input_tokens": whole["usageMetadata"]["promptTokenCount"],
        "output_tokens": whole["usageMetadata"]["candidatesTokenCount"],
    }
    counted = simulator.counters()
    assert counted["by_path"] == {path("generateContent"): 1, path("streamGenerateContent"): 1}
    assert counted["streams"] == {"started": 1, "finished": 1}
    assert stats["tokens"]["input"] == counted["tokens"]["prompt"]
    assert stats["tokens"]["output"] == counted["tokens"]["completion"]


def test_a_stream_cut_before_its_finish_reason_is_an_error_not_a_short_reply(simulator):
    simulator.configure(stream_cut_after=2)
    with make_client(simulator) as client:
        stream = client.chat(
            MODEL, user("one two three four five six seven eight nine"), stream=True
        )
        got = []
        with pytest.raises(NetworkError, match="after 2 chunks"):
            for chunk in stream:
                got.append(chunk)
    assert len(got) == 2


def test_a_malformed_stream_event_is_a_typed_error(simulator):
    simulator.configure(stream_malformed_after=1)
    with make_client(simulator) as client:
        stream = client.chat(
            MODEL, user("one two three four five six seven eight nine"), stream=True
        )
        assert next(stream).text.startswith("Simulated")
        with pytest.raises(MalformedResponseError, match="after 1 chunks") as info:
            next(stream)
    assert info.value.chunks_received == 1 and info.value.partial_text.startswith("Simulated")


def test_without_alt_sse_the_stream_is_one_json_array_and_a_query_key_is_accepted(simulator):
    simulator.configure(valid_keys=[KEY])
    request = urllib.request.Request(
        f"{simulator.url}{path('streamGenerateContent')}?key={KEY}",
        method="POST",
        data=json.dumps({"contents": [{"parts": [{"text": "as an array"}]}]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        chunks = json.loads(response.read())
    assert "".join(reply_text(c) for c in chunks) == REPLY_PREFIX + "as an array"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert simulator.counters()["by_key"] == {key_fingerprint(KEY): 1}


# ---------------------------------------------------------- request as sent


recorder = recorder_fixture(
    {
        "candidates": [
            {"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP"}
        ],
        "models": [],
    },
    "/v1beta",
)


def test_request_as_sent_method_path_headers_and_json_body(recorder):
    base_url, seen = recorder
    with gemini({}, {"google_api_key": KEY, "gemini_api_base": base_url}) as client:
        client.chat(
            MODEL,
            [{"role": "system", "content": "Be brief."}, *user("hi")],
            temperature=0.5,
            max_tokens=10,
        )
        client.list_models()
    (method, raw_path, headers, body), (get_method, get_path, get_headers, get_body) = seen
    assert (method, raw_path) == ("POST", path("generateContent"))
    assert headers["x-goog-api-key"] == KEY and "authorization" not in headers
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 10},
    }
    assert (get_method, get_path, get_body) == ("GET", "/v1beta/models?pageSize=1000", b"")
    assert get_headers["x-goog-api-key"] == KEY
    assert all(KEY not in p and "key=" not in p for _, p, _, _ in seen)


def test_an_image_goes_inline_as_base64(recorder):
    base_url, seen = recorder
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    with gemini({}, {"gemini_api_key": KEY, "gemini_api_base": base_url}) as client:
        client.chat(
            MODEL, [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
        )
    parts = json.loads(seen[0][3])["contents"][0]["parts"]
    assert (
        parts
        == [image_part(PNG)]
        == [{"inline_data": {"mime_type": "image/png", "data": url.split(",", 1)[1]}}]
    )


# ------------------------------------------------------------------- errors


def test_a_key_google_does_not_know_is_an_authentication_error_and_not_retried(simulator):
    simulator.configure(valid_keys=["AIzaSy-the-right-key"])
    with make_client(simulator, key="AIzaSy-wrong", max_retries=3) as client:
        with pytest.raises(AuthenticationError, match="API key not valid") as caught:
            client.chat(MODEL, user("x"))
        assert client.circuit_state == "CLOSED"
    assert (
        caught.value.status == 400
    )  # Gemini answers a bad key with 400 INVALID_ARGUMENT, API_KEY_INVALID
    assert simulator.counters()["requests_total"] == 1


def test_a_missing_key_is_permission_denied(simulator):
    simulator.configure(valid_keys=["AIzaSy-the-right-key"])
    client = gemini({}, {"gemini_api_base": simulator.url + GEMINI.simulator_path, **FAST})
    with client, pytest.raises(PermissionDeniedError, match="PERMISSION_DENIED") as caught:
        client.chat(MODEL, user("x"))
    assert caught.value.status == 403


@pytest.mark.parametrize(
    "status, cls, state",
    [
        (401, AuthenticationError, "UNAUTHENTICATED"),
        (400, InvalidRequestError, "INVALID_ARGUMENT"),
        (404, NotFoundError, "NOT_FOUND"),
        (500, ServerError, "INTERNAL"),
        (503, ServerError, "UNAVAILABLE"),
    ],
)
def test_each_status_comes_as_its_typed_error_with_googles_status(simulator, status, cls, state):
    simulator.script([{"status": status}], path=path("generateContent"))
    with make_client(simulator, max_retries=0) as client, pytest.raises(cls) as caught:
        client.chat(MODEL, user("x"))
    assert caught.value.status == status
    assert caught.value.message.startswith(f"{state}: ")


def test_an_unknown_model_is_not_found(simulator):
    simulator.configure(strict_models=True, models=[MODEL])
    with make_client(simulator) as client:
        with pytest.raises(NotFoundError, match="models/gemini-0-nope is not found"):
            client.chat("gemini-0-nope", user("x"))
        with pytest.raises(NotFoundError):
            client.get_model("gemini-0-nope")
    assert simulator.counters()["by_status"] == {"404": 2}


def test_a_field_gemini_does_not_know_is_refused_by_the_server(simulator):
    data = {
        "model": MODEL,
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        "max_tokens": 5,
    }
    with (
        make_client(simulator) as client,
        pytest.raises(InvalidRequestError, match='Unknown name "max_tokens"'),
    ):
        client.make_request("generateContent", data)


def test_more_than_100_requests_in_one_call_are_refused_by_the_server(simulator):
    _, data = gemini.provider.embeddings_request(
        "unbatched-embedder", [f"t{i}" for i in range(101)], {}
    )
    with (
        make_client(simulator) as client,
        pytest.raises(InvalidRequestError, match="at most 100 requests"),
    ):
        client.make_request("batchEmbedContents", data)


def test_429_retry_info_alone_sets_the_wait(simulator, caplog):
    body = google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded.",
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.25s"},
    )
    simulator.script(
        [{"status": 429, "body": body}, {"status": 429, "body": body}, {"status": 200}]
    )
    with make_client(simulator, max_retries=0) as client:
        with pytest.raises(RateLimitError) as caught:
            client.chat(MODEL, user("x"))
        assert caught.value.retry_after == 0.25
    caplog.set_level(logging.INFO, logger="ipfs_accelerate_py")
    with make_client(simulator, max_retries=2, initial_retry_delay=0.001) as client:
        assert reply_text(client.chat(MODEL, user("y"))) == REPLY_PREFIX + "y"
    (cooled,) = key_cooling_logged(caplog.records)  # the RetryInfo wait, not the 1 ms backoff
    assert "cooling 0.25s after HTTP 429 (Retry-After)" in cooled
    assert simulator.counters()["by_status"] == {"429": 2, "200": 1}


def test_the_rate_limiter_answers_resource_exhausted_with_retry_info_and_is_survived(simulator):
    simulator.configure(rate_limits={"rpm": 1}, rate_window=0.3)
    with make_client(simulator, max_retries=5, initial_retry_delay=5.0) as client:
        first = client.chat(MODEL, user("one"))
        second = client.chat(MODEL, user("two"))
        stats = client.get_stats()
        assert client.circuit_state == "CLOSED"
    assert reply_text(first) == REPLY_PREFIX + "one" and reply_text(second) == REPLY_PREFIX + "two"
    counted = simulator.counters()
    assert counted["rate_limited"] >= 1 and counted["by_status"]["200"] == 2
    assert stats["retried_requests"] == 1


def test_the_rate_limiter_answers_with_googles_quota_details(simulator):
    simulator.configure(rate_limits={"rpm": 1}, rate_window=30.0)
    with make_client(simulator, max_retries=0) as client:
        client.chat(MODEL, user("one"))
        with pytest.raises(RateLimitError, match="RESOURCE_EXHAUSTED") as caught:
            client.chat(MODEL, user("two"))
    assert 29.0 < caught.value.retry_after <= 30.0
    status, body = raw_post(
        simulator, path("generateContent"), {"contents": [{"parts": [{"text": "three"}]}]}
    )
    assert (
        status == 429
        and body["error"]["status"] == "RESOURCE_EXHAUSTED"
        and body["error"]["code"] == 429
    )
    details = {d["@type"].rsplit(".", 1)[1]: d for d in body["error"]["details"]}
    assert (
        details["RetryInfo"]["retryDelay"].endswith("s")
        and 29.0 < float(details["RetryInfo"]["retryDelay"][:-1]) <= 30.0
    )
    assert details["QuotaFailure"]["violations"]


def raw_post(sim: Simulator, raw_path: str, body: dict) -> tuple[int, dict]:
    """One request by hand, to read the answer the client does not keep."""
    answer = post_json(
        sim.url + raw_path, body, {"x-goog-api-key": KEY, "Content-Type": "application/json"}
    )
    return answer.status, answer.json()


@pytest.mark.parametrize(
    "fault",
    [
        {"fail_next": 1, "error_status": 503},
        {"fail_next": 1, "error_status": 500},
        {"malformed_next": 1},
        {"drop_next": 1},
    ],
    ids=["503", "500", "malformed", "dropped"],
)
def test_server_faults_are_retried(simulator, fault):
    simulator.configure(**fault)
    with make_client(simulator, max_retries=2) as client:
        assert reply_text(client.chat(MODEL, user("again"))) == REPLY_PREFIX + "again"
        assert client.get_stats()["retried_requests"] == 1
    assert simulator.counters()["requests_total"] == 2


# ----------------------------------------------------------------- batching


@pytest.mark.parametrize("n, max_batch_size", [(20, 8), (12, 100)])
def test_concurrent_single_texts_share_batch_embed_contents_calls(simulator, n, max_batch_size):
    texts = [f"batched text {i}" for i in range(n)]
    start = threading.Barrier(n)
    with make_client(simulator, max_batch_size=max_batch_size, batch_timeout=0.25) as client:

        def embed(text: str) -> list:
            start.wait()
            return client.provider.embedding_vectors(client.embeddings(EMBED, text))

        with ThreadPoolExecutor(n) as pool:
            vectors = list(pool.map(embed, texts))
    dims = simulator.scenario["embedding_dimensions"]
    assert vectors == [[embedding_for(t, dims)] for t in texts]
    seen = simulator.counters()["embedding_inputs"]
    assert seen["total"] == n
    assert 1 <= seen["calls"] <= -(-n // max_batch_size)
    assert simulator.counters()["by_path"] == {path("batchEmbedContents", EMBED): seen["calls"]}


def test_no_call_carries_more_than_gemini_allows(simulator):
    texts = [f"t{i}" for i in range(230)]
    with make_client(simulator, max_batch_size=1000, batch_timeout=60.0, queue_size=1000) as client:
        futures = [client.add_to_batch(EMBED, t) for t in texts]
        client._process_batch()
        vectors = [client.provider.embedding_vectors(f.result(WAIT))[0] for f in futures]
    dims = simulator.scenario["embedding_dimensions"]
    assert vectors == [embedding_for(t, dims) for t in texts]
    assert sorted(simulator.counters()["embedding_inputs"]["recent"]) == [30, 100, 100]


def test_a_callers_list_stays_whole_beside_single_texts(simulator):
    with make_client(simulator, batch_timeout=60.0) as client:
        listed = client.add_to_batch(EMBED, ["x", "y", "z"])
        single = client.add_to_batch(EMBED, "w")
        client._process_batch()
        dims = simulator.scenario["embedding_dimensions"]
        assert client.provider.embedding_vectors(listed.result(WAIT)) == [
            embedding_for(t, dims) for t in "xyz"
        ]
        assert client.provider.embedding_vectors(single.result(WAIT)) == [embedding_for("w", dims)]
    assert simulator.counters()["embedding_inputs"]["by_size"] == {"4": 1}


def test_a_batch_failing_with_a_server_error_is_retried_for_every_member(simulator):
    simulator.configure(fail_next=1, error_status=503)
    with make_client(simulator, batch_timeout=60.0) as client:
        futures = [client.add_to_batch(EMBED, t) for t in ("p", "q")]
        client._process_batch()
        assert [len(f.result(WAIT)["embeddings"]) for f in futures] == [1, 1]
    assert simulator.counters()["by_status"] == {"503": 1, "200": 1}
