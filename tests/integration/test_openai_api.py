"""``openai_api`` against the simulator over real loopback HTTP: operations,
streaming, the request as sent, closing (the client factory and helpers the
``test_openai_*`` modules share are in ``tests/helpers/openai_sim.py``).

Nothing here sleeps to wait for something: tests wait on futures (with a
timeout) or hold the client's only slot with an open, stalled stream
(:func:`held_slot`), which makes saturation deterministic.

Tests that leave server handlers winding down after they end (a held or
stalled stream, a hang) run on a server of their own (``fresh_simulator``):
the shared one is reset between tests, but a handler that finishes late would
still count into the next test's counters.
"""

from __future__ import annotations

import gc
import json

import pytest

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.resilience.errors import ShutdownError
from ipfs_accelerate_py.simulator import embedding_for, estimate_tokens, key_fingerprint

from ..helpers import REPLY_PREFIX, WAIT, joined_deltas, messages, reply_text
from ..helpers.openai_sim import CHAT_MODEL, EMBED_MODEL, KEY, chat_data, make_client

# --------------------------------------------------------------- operations


def test_chat_returns_the_simulators_reply_and_usage(simulator):
    with make_client(simulator) as client:
        response = client.chat(CHAT_MODEL, messages("Hello there"))
    assert reply_text(response) == REPLY_PREFIX + "Hello there"
    usage = response["usage"]
    assert usage["prompt_tokens"] == estimate_tokens("Hello there")
    assert usage["completion_tokens"] == estimate_tokens(REPLY_PREFIX + "Hello there")
    counted = simulator.counters()
    assert counted["by_path"] == {"/v1/chat/completions": 1}
    assert counted["by_model"] == {CHAT_MODEL: 1}
    assert counted["by_status"] == {"200": 1}


def test_chat_passes_extra_parameters_in_the_body(simulator):
    with make_client(simulator) as client:
        response = client.chat(CHAT_MODEL, messages("a fairly long prompt to be cut"), max_tokens=2)
    # the simulator cuts the reply to 4 * max_tokens characters: max_tokens reached it
    assert reply_text(response) == (REPLY_PREFIX + "a fairly long prompt")[:8]
    assert response["choices"][0]["finish_reason"] == "length"


def test_completions(simulator):
    with make_client(simulator) as client:
        response = client.completions("gpt-3.5-turbo-instruct", "Once upon a time")
    assert response["object"] == "text_completion"
    assert response["choices"][0]["text"] == REPLY_PREFIX + "Once upon a time"
    assert simulator.counters()["by_path"] == {"/v1/completions": 1}


@pytest.mark.parametrize("dimensions", [None, 8, 40])
def test_embeddings_single_input_equal_the_simulators_vector(simulator, dimensions):
    params = {} if dimensions is None else {"dimensions": dimensions}
    with make_client(simulator) as client:
        response = client.embeddings(EMBED_MODEL, "the quick brown fox", **params)
    [item] = response["data"]
    assert item["index"] == 0
    assert item["embedding"] == embedding_for("the quick brown fox", dimensions or 16)
    assert simulator.counters()["embedding_inputs"]["calls"] == 1


def test_embeddings_list_input_keeps_order(simulator):
    texts = ["alpha", "beta", "gamma"]
    with make_client(simulator) as client:
        response = client.embeddings(EMBED_MODEL, texts, dimensions=12)
    assert [d["index"] for d in response["data"]] == [0, 1, 2]
    assert [d["embedding"] for d in response["data"]] == [embedding_for(t, 12) for t in texts]
    assert simulator.counters()["embedding_inputs"]["by_size"] == {"3": 1}


def test_embeddings_of_a_model_not_batched_go_straight_out(simulator):
    with make_client(simulator, batch_timeout=5.0) as client:
        response = client.embeddings("my-own-embedder", "x")  # not in supported_batch_models
    assert response["data"][0]["embedding"] == embedding_for("x")


def test_list_models(simulator):
    with make_client(simulator) as client:
        models = client.list_models()
    assert [m["id"] for m in models] == list(simulator.scenario["models"])
    assert simulator.counters()["by_path"] == {"/v1/models": 1}


@pytest.mark.parametrize(
    "endpoint, data, path, check",
    [
        (
            "chat/completions",
            chat_data("via make_request"),
            "/v1/chat/completions",
            lambda r: reply_text(r) == REPLY_PREFIX + "via make_request",
        ),
        (
            "/v1/chat/completions",
            chat_data("leading slash"),
            "/v1/chat/completions",
            lambda r: reply_text(r) == REPLY_PREFIX + "leading slash",
        ),
        (
            "completions",
            {"model": "m", "prompt": "p"},
            "/v1/completions",
            lambda r: r["choices"][0]["text"] == REPLY_PREFIX + "p",
        ),
        (
            "embeddings",
            {"model": EMBED_MODEL, "input": "e"},
            "/v1/embeddings",
            lambda r: r["data"][0]["embedding"] == embedding_for("e"),
        ),
        (
            "embeddings",
            {"model": "unbatched-model", "input": ["e", "f"], "dimensions": 4},
            "/v1/embeddings",
            lambda r: (
                [d["embedding"] for d in r["data"]]
                == [embedding_for("e", 4), embedding_for("f", 4)]
            ),
        ),
        ("models", None, "/v1/models", lambda r: r["object"] == "list" and r["data"]),
        ("models/gpt-4o", None, "/v1/models/gpt-4o", lambda r: r["id"] == "gpt-4o"),
    ],
)
def test_make_request_for_each_endpoint(simulator, endpoint, data, path, check):
    with make_client(simulator) as client:
        response = client.make_request(endpoint, data)
    assert check(response), response
    counted = simulator.counters()
    assert counted["by_path"] == {path: 1}
    assert counted["by_status"] == {"200": 1}


# ---------------------------------------------------------------- streaming


def test_stream_deltas_join_to_the_non_stream_content(simulator):
    text = "stream me a reply with several words in it please"
    with make_client(simulator) as client:
        whole = client.chat(CHAT_MODEL, messages(text))
        with client.chat(CHAT_MODEL, messages(text), stream=True) as stream:
            chunks = list(stream)
    assert len(chunks) > 3
    assert all(
        isinstance(c.raw, dict) and c.raw["object"] == "chat.completion.chunk" for c in chunks
    )
    assert joined_deltas(chunks) == stream.text == reply_text(whole)
    # the last chunk is the usage one the client asked for (empty choices), after the finish
    assert chunks[-1].raw["choices"] == [] and chunks[-1].usage is not None
    assert chunks[-2].raw["choices"][0]["finish_reason"] == "stop"
    assert [c.finish_reason for c in chunks] == [None] * (len(chunks) - 2) + ["stop", None]
    assert stream.finish_reason == "stop" and stream.tool_calls == []
    assert simulator.counters()["streams"] == {"started": 1, "finished": 1}


def test_a_stream_asks_for_its_usage_so_its_tokens_and_cost_count(simulator):
    prices = {"gpt-4o-mini": {"input": 1.0, "output": 2.0}}
    with make_client(simulator, prices=prices) as client:
        with client.chat(CHAT_MODEL, messages("count my tokens"), stream=True) as stream:
            list(stream)
        stats = client.get_stats()
        counted = simulator.counters()["tokens"]  # what the server counted for it
        # the caller's own stream_options win: asked not to include usage, none is asked for
        with client.chat(
            CHAT_MODEL, messages("x"), stream=True, stream_options={"include_usage": False}
        ) as quiet:
            assert all(c.usage is None for c in quiet)
    assert counted["prompt"] > 0 and counted["completion"] > 0
    assert stats["tokens"]["input"] == counted["prompt"]
    assert stats["tokens"]["output"] == counted["completion"]
    expected = (counted["prompt"] * 1.0 + counted["completion"] * 2.0) / 1_000_000
    assert stats["cost"]["total"] == pytest.approx(expected)
    assert stats["models"][CHAT_MODEL]["cost"] == pytest.approx(expected)


def test_stream_with_usage_reports_tokens(simulator):
    with make_client(simulator) as client:
        with client.chat(
            CHAT_MODEL, messages("count me"), stream=True, stream_options={"include_usage": True}
        ) as stream:
            chunks = list(stream)
        stats = client.get_stats()
    counted = simulator.counters()["tokens"]
    assert chunks[-1].raw["usage"]["prompt_tokens"] == counted["prompt"]
    assert (
        stream.usage
        == chunks[-1].usage
        == {"input_tokens": counted["prompt"], "output_tokens": counted["completion"]}
    )
    assert all(c.usage is None for c in chunks[:-1])  # only the last chunk reports usage
    assert stats["tokens"] == {
        "input": counted["prompt"],
        "output": counted["completion"],
        "total": counted["total"],
    }


@pytest.mark.parametrize("how", ["close", "with"])
def test_closing_a_stream_early_frees_the_slot(fresh_simulator, how):
    simulator = fresh_simulator
    simulator.configure(stream_chunk_delay=0.05)  # a long stream: 20 chunks, ~1 s
    long_text = " ".join(f"word{i}" for i in range(40))
    with make_client(simulator, max_concurrent_requests=1) as client:
        stream = client.chat(CHAT_MODEL, messages(long_text), stream=True)
        if how == "close":
            first = next(stream)
            stream.close()
        else:
            with stream:
                first = next(stream)
        assert first.raw["choices"][0]["delta"]["role"] == "assistant"
        assert list(stream) == []  # closed: nothing more comes
        # the only slot is free again: the next request goes through
        future = client.queue_with_priority(
            {"endpoint": "chat/completions", "data": chat_data("next")}
        )
        assert reply_text(future.result(timeout=WAIT)) == REPLY_PREFIX + "next"
    counted = simulator.counters()
    assert counted["streams"]["started"] == 1
    assert counted["streams"]["finished"] == 0


def test_a_stream_dropped_after_break_frees_the_slot_when_collected(fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(stream_stall_after=2, stall_seconds=30.0)
    # stream_stall_timeout bounds the damage when the bug is there: the stalled read gives up after 1 s
    with make_client(simulator, max_concurrent_requests=1, stream_stall_timeout=1.0) as client:
        stream = client.chat(
            CHAT_MODEL, messages("one two three four five six seven eight"), stream=True
        )
        for _chunk in stream:
            break
        del stream, _chunk
        gc.collect()
        simulator.configure(stream_stall_after=None)
        future = client.queue_with_priority(
            {"endpoint": "chat/completions", "data": chat_data("next")}
        )
        assert future.wait(0.5), "the dropped stream still holds the only slot"


# ----------------------------------------------------- the request as sent


def test_request_reaches_the_simulator_under_the_keys_fingerprint(simulator):
    with (
        make_client(simulator, key="sk-first-key") as first,
        make_client(simulator, key="sk-second-key") as second,
    ):
        first.chat(CHAT_MODEL, messages("a"))
        first.make_request("completions", {"model": "m", "prompt": "b"})
        second.chat("gpt-4o", messages("c"))
    counted = simulator.counters()
    assert counted["by_key"] == {
        key_fingerprint("sk-first-key"): 2,
        key_fingerprint("sk-second-key"): 1,
    }
    assert counted["by_path"] == {"/v1/chat/completions": 2, "/v1/completions": 1}
    assert counted["by_model"] == {CHAT_MODEL: 1, "m": 1, "gpt-4o": 1}


def test_per_request_api_key_overrides_the_clients(simulator):
    with make_client(simulator) as client:
        future = client.queue_with_priority(
            {"endpoint": "chat/completions", "data": chat_data("x"), "api_key": "sk-per-request"}
        )
        future.result(timeout=WAIT)
    assert simulator.counters()["by_key"] == {key_fingerprint("sk-per-request"): 1}


def test_request_as_sent_method_path_headers_and_json_body(recorder):
    base_url, seen = recorder
    client = openai_api({}, {"openai_api_key": KEY, "openai_api_base": base_url})
    with client:
        client.chat(CHAT_MODEL, messages("hi"), temperature=0.5, request_id="req-77")
        client.list_models()
    (method, path, headers, body), (get_method, get_path, get_headers, get_body) = seen
    headers = {k.lower(): v for k, v in headers.items()}
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["content-type"] == "application/json"
    assert headers["x-client-request-id"] == "req-77"
    assert json.loads(body) == {"model": CHAT_MODEL, "messages": messages("hi"), "temperature": 0.5}
    assert (get_method, get_path, get_body) == ("GET", "/v1/models", b"")
    assert {k.lower(): v for k, v in get_headers.items()}["authorization"] == f"Bearer {KEY}"


# ------------------------------------------------------------------ closing


def test_close_fails_what_is_queued_and_lets_the_attempt_in_flight_finish(simulator):
    simulator.configure(hang_next=1, hang_seconds=0.2)  # the first request is slow, then answered
    client = make_client(simulator, max_concurrent_requests=1)
    in_flight = client.queue_with_priority(
        {"endpoint": "chat/completions", "data": chat_data("slow")}
    )
    queued = [
        client.queue_with_priority({"endpoint": "chat/completions", "data": chat_data(f"q{i}")})
        for i in range(2)
    ]
    client.close()
    assert reply_text(in_flight.result(timeout=0)) == REPLY_PREFIX + "slow"
    assert all(isinstance(f.exception(timeout=0), ShutdownError) for f in queued)
    with pytest.raises(ShutdownError):
        client.chat(CHAT_MODEL, messages("after close"))
    assert simulator.counters()["requests_total"] == 1


def test_closing_one_client_leaves_another_working(simulator):
    with make_client(simulator) as survivor:
        with make_client(simulator) as doomed:
            doomed.chat(CHAT_MODEL, messages("a"))
        assert reply_text(survivor.chat(CHAT_MODEL, messages("b"))) == REPLY_PREFIX + "b"
