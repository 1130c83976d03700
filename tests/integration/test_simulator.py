"""The simulator over real HTTP: wire shapes, faults, script, admin, counters."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import struct
import subprocess
import sys

import aiohttp
import pytest

from ipfs_accelerate_py.simulator import (
    Scenario,
    ScenarioError,
    Simulator,
    add_arguments,
    embedding_for,
    estimate_tokens,
    key_fingerprint,
    scenario_from_args,
)
from ipfs_accelerate_py.simulator import openai_wire as wire

CHAT = "/chat/completions"
EMBED = "/embeddings"


@pytest.fixture
async def client():
    async with aiohttp.ClientSession() as session:
        yield session


async def call(session, sim, path, body=None, *, key=None, method=None, raw=None, timeout=5.0):
    """One request; returns (status, headers, parsed JSON or text)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    method = method or ("GET" if body is None and raw is None else "POST")
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        headers["Content-Type"] = "application/json"
    async with session.request(
        method,
        sim.base_url + path,
        data=data,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:
        text = await response.text()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return response.status, response.headers, parsed


def chat_body(text="Hello there, simulator", **extra):
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        **extra,
    }


async def stream_events(session, sim, body):
    """The ``data:`` payloads of a stream, in order, with its content type."""
    async with session.post(sim.base_url + CHAT, json=body) as response:
        assert response.status == 200
        text = await response.text()
        kind = response.headers["Content-Type"]
    blocks = [b for b in text.split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks)
    return kind, [b[len("data: ") :] for b in blocks]


async def eventually(predicate, timeout=2.0):
    """Wait (at most ``timeout``: else TimeoutError) until the server-side counters catch up
    with what the client saw."""

    async def reached() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(reached(), timeout)


def assert_error_shape(body, status_type=None):
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if status_type:
        assert body["error"]["type"] == status_type


# -- endpoints and wire shapes ------------------------------------------------------------


async def test_chat_completion_shape(simulator, client):
    text = "Tell me about the deterministic simulator and its many useful features please"
    status, headers, body = await call(client, simulator, CHAT, chat_body(text))
    assert status == 200
    assert headers["x-request-id"].startswith("req_")
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini"
    assert body["id"].startswith("chatcmpl-") and isinstance(body["created"], int)
    choice = body["choices"][0]
    reply = "Simulated reply to: " + text[:60]
    assert choice["message"] == {"role": "assistant", "content": reply}
    assert choice["finish_reason"] == "stop"
    prompt = estimate_tokens("Be brief.") + estimate_tokens(text)
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": estimate_tokens(reply),
        "total_tokens": prompt + estimate_tokens(reply),
    }


async def test_chat_max_tokens_truncates_with_length(simulator, client):
    status, _, body = await call(client, simulator, CHAT, chat_body("abc", max_tokens=2))
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "Simulated reply to: abc"[:8]
    assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream_shape(simulator, client, include_usage):
    text = "one two three four five six seven eight"
    body = chat_body(text, stream=True, stream_options={"include_usage": include_usage})
    kind, events = await stream_events(client, simulator, body)
    assert kind.startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    if include_usage:
        usage_chunk = chunks.pop()
        assert usage_chunk["choices"] == []
        assert usage_chunk["usage"]["completion_tokens"] == estimate_tokens(
            "Simulated reply to: " + text
        )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1]]
    assert len(deltas) >= 3
    assert "".join(deltas) == "Simulated reply to: " + text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert all("usage" not in c for c in chunks)
    assert simulator.counters()["streams"] == {"started": 1, "finished": 1}


async def test_text_completion_shape(simulator, client):
    status, _, body = await call(
        client, simulator, "/completions", {"model": "gpt-3.5-turbo", "prompt": "Once upon a time"}
    )
    assert status == 200
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "Simulated reply to: Once upon a time"
    assert body["usage"]["prompt_tokens"] == estimate_tokens("Once upon a time")


@pytest.mark.parametrize("dimensions", [None, 3, 40])
async def test_embeddings_are_each_texts_own_vector(simulator, client, dimensions):
    texts = ["alpha", "beta", "a longer sentence to embed", "alpha"]
    body = {"model": "text-embedding-3-small", "input": texts}
    if dimensions:
        body["dimensions"] = dimensions
    status, _, out = await call(client, simulator, EMBED, body)
    assert status == 200
    assert out["object"] == "list" and out["model"] == "text-embedding-3-small"
    assert [d["index"] for d in out["data"]] == [0, 1, 2, 3]
    for item, text in zip(out["data"], texts, strict=True):
        assert item["object"] == "embedding"
        assert item["embedding"] == embedding_for(text, dimensions or 16)
    assert out["data"][0]["embedding"] == out["data"][3]["embedding"]
    assert out["data"][0]["embedding"] != out["data"][1]["embedding"]
    tokens = sum(estimate_tokens(t) for t in texts)
    assert out["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


async def test_embeddings_string_input_and_base64(simulator, client):
    body = {"model": "text-embedding-3-small", "input": "just one", "encoding_format": "base64"}
    status, _, out = await call(client, simulator, EMBED, body)
    assert status == 200 and len(out["data"]) == 1
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert list(struct.unpack("<16f", raw)) == embedding_for("just one")


def test_embedding_for_is_deterministic_unit_length():
    first = embedding_for("x", 100)
    assert first == embedding_for("x", 100) and len(first) == 100
    assert abs(sum(v * v for v in first) - 1.0) < 1e-5
    assert embedding_for("x", 8) != embedding_for("y", 8)
    with pytest.raises(ValueError):
        embedding_for("x", 0)


def test_embedding_for_follows_its_documented_recipe():
    text, dimensions = "héllo", 10
    words = []
    for block in range(2):
        digest = hashlib.sha256(block.to_bytes(4, "little") + text.encode()).digest()
        words.extend(struct.unpack("<8I", digest))
    raw = [(word >> 8) / 2**23 - 1 for word in words[:dimensions]]
    norm = math.sqrt(sum(v * v for v in raw))
    packed = struct.pack("<10f", *(v / norm for v in raw))
    assert embedding_for(text, dimensions) == list(struct.unpack("<10f", packed))


@pytest.mark.parametrize(
    "parse, body",
    [
        (
            wire.parse_chat,
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": 'quote " back\\slash \u00e9\u4e2d\n' * 5}],
            },
        ),
        (
            wire.parse_chat,
            {
                "model": "m\u00e9",
                "max_tokens": 3,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
            },
        ),
        (wire.parse_embeddings, {"model": "e", "input": ["a", 'b"\u00e9', ""], "dimensions": 5}),
        (wire.parse_embeddings, {"model": "e", "input": "z", "encoding_format": "base64"}),
    ],
)
def test_fast_encoders_match_the_json_bodies(parse, body):
    prepared = parse(body)
    assert prepared.encode is not None
    encoded = prepared.encode("sim9", 1_700_000_123)
    assert json.loads(encoded) == prepared.body("sim9", 1_700_000_123)
    assert encoded == wire.dumps(prepared.body("sim9", 1_700_000_123))


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "m", "input": [[1, 2, 3]]}, "input"),
        ({"model": "m", "input": [1, 2]}, "input"),
        ({"model": "m", "input": ["x"] * 2049}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "x"}, "model"),
    ],
)
async def test_embeddings_refusals(simulator, client, body, param):
    status, _, out = await call(client, simulator, EMBED, body)
    assert status == 400
    assert_error_shape(out, "invalid_request_error")
    assert out["error"]["param"] == param


async def test_embeddings_accepts_2048_inputs(simulator, client):
    status, _, out = await call(client, simulator, EMBED, {"model": "m", "input": ["x"] * 2048})
    assert status == 200 and len(out["data"]) == 2048


async def test_models_list_and_get(simulator, client):
    status, _, out = await call(client, simulator, "/models")
    assert status == 200 and out["object"] == "list"
    ids = {m["id"] for m in out["data"]}
    assert {
        "gpt-4o-mini",
        "gpt-3.5-turbo",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
    } <= ids
    status, _, one = await call(client, simulator, "/models/text-embedding-3-large")
    assert status == 200 and one["id"] == "text-embedding-3-large" and one["object"] == "model"
    status, _, missing = await call(client, simulator, "/models/no-such-model")
    assert status == 404 and missing["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    "path, kwargs, status, param",
    [
        (CHAT, {"raw": b"{not json"}, 400, None),
        (CHAT, {"body": {"messages": [{"role": "user", "content": "x"}]}}, 400, "model"),
        (CHAT, {"body": {"model": "m", "messages": "hello"}}, 400, "messages"),
        (CHAT, {"body": {"model": "m", "messages": []}}, 400, "messages"),
        ("/completions", {"body": {"model": "m"}}, 400, "prompt"),
        ("/no/such/path", {"body": {"model": "m"}}, 404, None),
        (CHAT, {"method": "GET"}, 405, None),
    ],
)
async def test_bad_requests_get_openai_errors(simulator, client, path, kwargs, status, param):
    got, _, body = await call(client, simulator, path, **kwargs)
    assert got == status
    assert_error_shape(body)
    assert body["error"]["param"] == param


async def test_strict_models_refuses_unknown_model(simulator, client):
    simulator.configure(strict_models=True)
    status, _, body = await call(client, simulator, CHAT, {**chat_body(), "model": "gpt-9"})
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert (await call(client, simulator, CHAT, chat_body()))[0] == 200


# -- keys and rate limits -------------------------------------------------------------------


async def test_valid_keys(simulator, client):
    simulator.configure(valid_keys=["sk-good", "sk-other"])
    missing = await call(client, simulator, CHAT, chat_body())
    wrong = await call(client, simulator, CHAT, chat_body(), key="sk-bad")
    good = await call(client, simulator, CHAT, chat_body(), key="sk-good")
    models = await call(client, simulator, "/models")
    assert [missing[0], wrong[0], good[0], models[0]] == [401, 401, 200, 401]
    assert_error_shape(wrong[2], "invalid_request_error")
    assert wrong[2]["error"]["code"] == "invalid_api_key"
    assert "sk-bad" not in json.dumps(wrong[2])
    by_key = simulator.counters()["by_key"]
    assert by_key == {"anonymous": 2, key_fingerprint("sk-bad"): 1, key_fingerprint("sk-good"): 1}


async def test_any_key_accepted_without_valid_keys(simulator, client):
    assert (await call(client, simulator, CHAT, chat_body(), key="anything"))[0] == 200
    assert (await call(client, simulator, CHAT, chat_body()))[0] == 200


async def test_rpm_limit_per_key_with_headers(simulator, client):
    simulator.configure(rate_limits={"rpm": 2})
    results = [await call(client, simulator, CHAT, chat_body(), key="sk-a") for _ in range(3)]
    assert [r[0] for r in results] == [200, 200, 429]
    assert [r[1]["x-ratelimit-remaining-requests"] for r in results] == ["1", "0", "0"]
    for _, headers, _ in results:
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert headers["x-ratelimit-reset-requests"].endswith("s")
    status, headers, body = results[2]
    assert 55 <= int(headers["retry-after"]) <= 60
    assert 55_000 <= int(headers["retry-after-ms"]) <= 60_000
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert (await call(client, simulator, CHAT, chat_body(), key="sk-b"))[0] == 200
    counters = simulator.counters()
    assert counters["rate_limited"] == 1 and counters["by_status"] == {"200": 3, "429": 1}


async def test_retry_after_override_and_per_key_limits(simulator, client):
    simulator.configure(rate_limits={"keys": {"sk-slow": {"rpm": 1}}}, retry_after=0.2)
    assert (await call(client, simulator, CHAT, chat_body(), key="sk-slow"))[0] == 200
    status, headers, _ = await call(client, simulator, CHAT, chat_body(), key="sk-slow")
    assert status == 429
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("0.2", "200")
    fast = [await call(client, simulator, CHAT, chat_body(), key="sk-fast") for _ in range(3)]
    assert [f[0] for f in fast] == [200, 200, 200]
    assert "x-ratelimit-limit-requests" not in fast[0][1]


async def test_tpm_limit_and_window_reopening(simulator, client):
    cost = (await call(client, simulator, CHAT, chat_body()))[2]["usage"]["total_tokens"]
    simulator.configure(rate_limits={"tpm": cost + 1}, rate_window=0.5)
    first = await call(client, simulator, CHAT, chat_body())
    second = await call(client, simulator, CHAT, chat_body())
    assert (first[0], second[0]) == (200, 429)
    assert second[2]["error"]["type"] == "tokens"
    assert first[1]["x-ratelimit-remaining-tokens"] == "1"
    await asyncio.sleep(0.55)
    assert (await call(client, simulator, CHAT, chat_body()))[0] == 200


# -- faults -------------------------------------------------------------------------------------


async def test_error_rate_follows_the_seed(simulator, client):
    simulator.configure(error_rate=0.5, seed=7)
    rng = random.Random(7)
    expected = [500 if rng.random() < 0.5 else 200 for _ in range(20)]
    statuses = [(await call(client, simulator, CHAT, chat_body()))[0] for _ in range(20)]
    assert statuses == expected and 0 < statuses.count(500) < 20
    simulator.reset()
    simulator.configure(error_rate=0.5, seed=7)
    again = [(await call(client, simulator, CHAT, chat_body()))[0] for _ in range(20)]
    assert again == statuses
    assert simulator.counters()["faults"]["error"] == statuses.count(500)


async def test_fail_next_with_status(simulator, client):
    simulator.configure(fail_next=2, error_status=503)
    statuses = [(await call(client, simulator, CHAT, chat_body()))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert simulator.counters()["faults"]["error"] == 2
    assert simulator.pending()["fail_next"] == 0


async def test_outage_until_turned_off(simulator, client):
    simulator.configure(outage=True)
    status, _, body = await call(client, simulator, EMBED, {"model": "m", "input": "x"})
    assert status == 503 and body["error"]["type"] == "server_error"
    assert (await call(client, simulator, "/models"))[0] == 200  # GETs are not targeted
    simulator.configure(outage=False)
    assert (await call(client, simulator, EMBED, {"model": "m", "input": "x"}))[0] == 200
    assert simulator.counters()["faults"]["outage"] == 1


async def test_fault_paths_can_target_models(simulator, client):
    simulator.configure(fault_paths=["/v1/models"], fail_next=1)
    assert (await call(client, simulator, CHAT, chat_body()))[0] == 200
    assert (await call(client, simulator, "/models"))[0] == 500


async def test_hang_then_answer(simulator, client):
    # that a hang holds the answer back: test_hang_ends_when_client_leaves (30 s, cut at 0.1 s)
    simulator.configure(hang_next=1, hang_seconds=0.15)
    status, _, _ = await call(client, simulator, CHAT, chat_body())
    assert status == 200
    assert simulator.counters()["faults"]["hang"] == 1


async def test_hang_ends_when_client_leaves(simulator, client):
    simulator.configure(hang_next=1, hang_seconds=30)
    with pytest.raises(asyncio.TimeoutError):
        await call(client, simulator, CHAT, chat_body(), timeout=0.1)
    await eventually(lambda: simulator.counters()["client_disconnects"] == 1)
    assert simulator.counters()["in_flight"] == 0


async def test_latency_and_disconnect_counted(simulator, client):
    simulator.configure(latency=0.05)
    assert (await call(client, simulator, CHAT, chat_body()))[0] == 200
    simulator.configure(latency=5)  # held back: the client's 0.1 s runs out first
    with pytest.raises(asyncio.TimeoutError):
        await call(client, simulator, CHAT, chat_body(), timeout=0.1)
    await eventually(lambda: simulator.counters()["client_disconnects"] == 1)


async def test_drop_closes_without_response(simulator, client):
    simulator.configure(drop_next=1)
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(client, simulator, CHAT, chat_body())
    assert (await call(client, simulator, CHAT, chat_body()))[0] == 200
    counters = simulator.counters()
    assert counters["faults"]["drop"] == 1
    assert counters["requests_total"] == 2 and counters["by_status"] == {"200": 1}


async def test_malformed_body(simulator, client):
    simulator.configure(malformed_next=1)
    status, headers, body = await call(client, simulator, CHAT, chat_body())
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert isinstance(body, str)  # not parseable JSON
    assert isinstance((await call(client, simulator, CHAT, chat_body()))[2], dict)


async def test_stream_stall(simulator, client):
    # that the stall holds the stream back: test_streams (a client's stall timeout runs out)
    simulator.configure(stream_stall_after=2, stall_seconds=0.15)
    _, events = await stream_events(client, simulator, chat_body(stream=True))
    assert events[-1] == "[DONE]"
    assert simulator.counters()["faults"]["stream_stall"] == 1


async def test_stream_cut_without_done(simulator, client):
    simulator.configure(stream_cut_after=2)
    received = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.post(simulator.base_url + CHAT, json=chat_body(stream=True)) as response:
            async for line in response.content:
                if line.startswith(b"data: "):
                    received.append(line[6:].strip())
    assert len(received) == 2 and b"[DONE]" not in received
    await eventually(lambda: simulator.counters()["in_flight"] == 0)
    counters = simulator.counters()
    assert counters["streams"] == {"started": 1, "finished": 0}
    assert counters["faults"]["stream_cut"] == 1


async def test_stream_malformed_line(simulator, client):
    simulator.configure(stream_malformed_after=1)
    _, events = await stream_events(client, simulator, chat_body(stream=True))
    json.loads(events[0])
    with pytest.raises(ValueError):
        json.loads(events[1])
    assert events[-1] == "[DONE]"
    assert all(json.loads(e) for e in events[2:-1])


# -- script -------------------------------------------------------------------------------------


async def test_script_exact_sequence_then_normal(simulator, client):
    simulator.script(
        [
            {"status": 429, "headers": {"retry-after": "0.2"}},
            {"status": 429, "headers": {"retry-after-ms": "50"}},
            {"status": 200},
        ]
    )
    results = [await call(client, simulator, CHAT, chat_body()) for _ in range(4)]
    assert [r[0] for r in results] == [429, 429, 200, 200]
    assert results[0][1]["retry-after"] == "0.2" and "retry-after-ms" not in results[0][1]
    assert results[1][1]["retry-after-ms"] == "50" and "retry-after" not in results[1][1]
    assert_error_shape(results[0][2], "rate_limit_error")
    assert results[2][2]["object"] == "chat.completion"
    counters = simulator.counters()
    assert counters["faults"]["scripted"] == 3 and counters["rate_limited"] == 2
    assert simulator.pending()["script"] == 0


async def test_script_body_delay_fault_and_per_path(simulator, client):
    simulator.script([{"status": 200, "body": {"custom": True}, "delay": 0.05}, {"fault": "drop"}])
    simulator.script([{"status": 500, "body": "plain failure"}], path="embeddings")
    status, _, body = await call(client, simulator, CHAT, chat_body())
    assert (status, body) == (200, {"custom": True})
    assert simulator.pending()["script"] == 1  # the delayed answer played, the drop is next
    status, _, body = await call(client, simulator, EMBED, {"model": "m", "input": "x"})
    assert (status, body) == (500, "plain failure")
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(client, simulator, EMBED, {"model": "m", "input": "x"})
    assert (await call(client, simulator, EMBED, {"model": "m", "input": "x"}))[0] == 200


async def test_script_body_is_sent_exactly(simulator, client):
    simulator.script(
        [
            {"status": 201, "body": {"custom": [1, 2]}, "headers": {"x-a": "b"}},
            {"status": 503, "body": "<html>busy</html>", "headers": {"content-type": "text/html"}},
        ]
    )
    status, headers, body = await call(client, simulator, CHAT, chat_body())
    assert (status, body, headers["x-a"]) == (201, {"custom": [1, 2]}, "b")
    status, headers, body = await call(client, simulator, CHAT, chat_body())
    assert (status, body) == (503, "<html>busy</html>")
    assert headers.getall("Content-Type") == ["text/html"]


async def test_script_through_admin_endpoint(simulator, client):
    async with client.post(
        simulator.admin_url + "/script",
        headers=simulator.admin_headers,
        json={"responses": [{"status": 502}], "path": "/v1/chat/completions", "append": False},
    ) as response:
        assert response.status == 200 and (await response.json()) == {"pending": 1}
    assert (await call(client, simulator, CHAT, chat_body()))[0] == 502
    async with client.post(
        simulator.admin_url + "/script", json=[{"status": 99}], headers=simulator.admin_headers
    ) as response:
        assert response.status == 400


# -- admin ----------------------------------------------------------------------------------------


async def test_admin_config_validation(simulator, client):
    url = simulator.admin_url + "/config"
    async with client.post(
        url, json={"latency": -1, "bogus": 1, "error_rate": 2}, headers=simulator.admin_headers
    ) as response:
        assert response.status == 400
        body = await response.json()
    assert body["fields"]["unknown"] == ["bogus"]
    assert set(body["fields"]["invalid"]) == {"latency", "error_rate"}
    assert "bogus" in body["error"]["message"] and "latency" in body["error"]["message"]
    async with client.post(
        url, json={"latency": 0.01, "valid_keys": ["sk-secret"]}, headers=simulator.admin_headers
    ) as response:
        assert response.status == 200
        config = await response.json()
    assert config["scenario"]["latency"] == 0.01
    assert config["scenario"]["valid_keys"] == [key_fingerprint("sk-secret")]
    async with client.get(url, headers=simulator.admin_headers) as response:
        assert "sk-secret" not in await response.text()
    with pytest.raises(ScenarioError) as refused:
        simulator.configure(nope=1, fail_next=-1)
    assert refused.value.fields == ("nope", "fail_next")


async def test_admin_reset_and_counters(simulator, client):
    simulator.configure(fail_next=5)
    assert (await call(client, simulator, CHAT, chat_body()))[0] == 500
    async with client.get(
        simulator.admin_url + "/counters", headers=simulator.admin_headers
    ) as response:
        assert (await response.json())["requests_total"] == 1
    async with client.post(
        simulator.admin_url + "/reset", json={"scenario": False}, headers=simulator.admin_headers
    ) as response:
        assert response.status == 200
    assert simulator.counters()["requests_total"] == 0
    assert (await call(client, simulator, CHAT, chat_body()))[0] == 500
    async with client.post(
        simulator.admin_url + "/reset", headers=simulator.admin_headers
    ) as response:
        assert response.status == 200
    assert (await call(client, simulator, CHAT, chat_body()))[0] == 200
    assert simulator.counters()["requests_total"] == 1  # admin calls are not counted


# -- counters ---------------------------------------------------------------------------------------


async def test_counters_per_key_path_and_embedding_sizes(simulator, client):
    for size, key in ((3, "sk-one"), (1, "sk-two"), (3, "sk-one")):
        body = {"model": "text-embedding-3-small", "input": [f"t{i}" for i in range(size)]}
        assert (await call(client, simulator, EMBED, body, key=key))[0] == 200
    await call(client, simulator, CHAT, chat_body())
    counters = simulator.counters()
    fingerprint = hashlib.sha256(b"sk-one").hexdigest()[:8]
    assert counters["by_key"] == {fingerprint: 2, key_fingerprint("sk-two"): 1, "anonymous": 1}
    assert counters["by_path"] == {"/v1/embeddings": 3, "/v1/chat/completions": 1}
    inputs = counters["embedding_inputs"]
    assert inputs == {"calls": 3, "total": 7, "by_size": {"3": 2, "1": 1}, "recent": [3, 1, 3]}
    assert counters["by_model"] == {"text-embedding-3-small": 3, "gpt-4o-mini": 1}
    assert counters["tokens"]["total"] > 0
    assert "sk-one" not in json.dumps(counters)


async def test_peak_concurrency(simulator, client):
    simulator.configure(latency=0.3)
    statuses = await asyncio.gather(*(call(client, simulator, CHAT, chat_body()) for _ in range(6)))
    assert [s[0] for s in statuses] == [200] * 6
    counters = simulator.counters()
    assert counters["peak_concurrency"] == 6 and counters["in_flight"] == 0


def test_counters_maps_are_bounded():
    from ipfs_accelerate_py.simulator.counters import MAX_MAP_ENTRIES, Counters

    counters = Counters()
    for i in range(MAX_MAP_ENTRIES + 50):
        ticket = counters.begin(f"/v1/p{i}", key_fingerprint(f"k{i}"))
        ticket.status = 200
        ticket.embedding_inputs = 1
        counters.finish(ticket)
    snapshot = counters.snapshot()
    assert len(snapshot["by_key"]) == MAX_MAP_ENTRIES + 1
    assert snapshot["by_key"]["other"] == 50
    assert len(snapshot["embedding_inputs"]["recent"]) == 1000


# -- running it -----------------------------------------------------------------------------------


async def test_fresh_simulator_is_separate(fresh_simulator, simulator, client):
    assert fresh_simulator.port != simulator.port
    assert (await call(client, fresh_simulator, CHAT, chat_body()))[0] == 200
    assert simulator.counters()["requests_total"] == 0
    assert fresh_simulator.counters()["requests_total"] == 1


async def test_start_async_on_the_running_loop(client):
    async with Simulator({"fail_next": 1}) as sim:
        assert sim.base_url == f"http://127.0.0.1:{sim.port}/v1"
        assert (await call(client, sim, CHAT, chat_body()))[0] == 500
        assert (await call(client, sim, CHAT, chat_body()))[0] == 200


def test_scenario_from_flags_and_yaml_file(tmp_path):
    import argparse

    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text("latency: 0.5\nerror_rate: 0.1\nrate_limits: {tpm: 1000}\n")
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(
        [
            "--scenario",
            str(scenario_file),
            "--latency",
            "0.25",
            "--rpm",
            "30",
            "--valid-key",
            "a",
            "--valid-key",
            "b",
            "--outage",
        ]
    )
    scenario = scenario_from_args(args)
    assert scenario == Scenario.from_mapping(
        {
            "latency": 0.25,
            "error_rate": 0.1,
            "rate_limits": {"tpm": 1000, "rpm": 30},
            "valid_keys": ["a", "b"],
            "outage": True,
        }
    )
    assert "hang_seconds" in parser.format_help()


def test_cli_serves_and_announces_its_url():
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipfs_accelerate_py.simulator", "--port", "0", "--fail-next", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")

        async def two_calls():
            async with aiohttp.ClientSession() as session:
                statuses = []
                for _ in range(2):
                    async with session.post(url + CHAT, json=chat_body()) as response:
                        statuses.append(response.status)
                return statuses

        assert asyncio.run(two_calls()) == [500, 200]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
