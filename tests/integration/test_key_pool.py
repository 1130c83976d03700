"""Several keys on one backend, over real HTTP: how requests spread, what a
429 or a 401 does to a key, and waiting for the earliest recovery.  Every
assertion on spreading is on what the simulator saw per key."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidInputError,
    RateLimitError,
    ServerError,
    SettingError,
)
from ipfs_accelerate_py.simulator import key_fingerprint

from ..helpers import FAST, WAIT, eventually, messages, together

KEYS = {"a": "sk-key-a-0123456789", "b": "sk-key-b-0123456789", "c": "sk-key-c-0123456789"}


def multi_key_client(simulator, strategy="round-robin", keys=KEYS, **settings):
    metadata = {
        "openai_api_base": simulator.base_url,
        "api_keys": [{"name": name, "key": key} for name, key in keys.items()],
        "key_strategy": strategy,
        **FAST,
        **settings,
    }
    return openai_api({}, metadata)


def seen_by_key(simulator) -> dict:
    by_key = simulator.counters()["by_key"]
    return {
        name: by_key.get(key_fingerprint(key), {}).get("requests", 0)
        if isinstance(by_key.get(key_fingerprint(key)), dict)
        else by_key.get(key_fingerprint(key), 0)
        for name, key in KEYS.items()
    }


def test_round_robin_spreads_requests_evenly_over_the_keys(simulator):
    with multi_key_client(simulator, "round-robin") as client:
        for i in range(30):
            client.chat("gpt-4o-mini", messages(f"rr {i}"))
        assert seen_by_key(simulator) == {"a": 10, "b": 10, "c": 10}
        pool = client.get_stats()["key_pool"]
        assert {name: pool[name]["successes"] for name in KEYS} == {"a": 10, "b": 10, "c": 10}
        assert all(pool[name]["in_flight"] == 0 for name in KEYS)


@pytest.mark.parametrize("strategy", ["least-loaded", "weighted"])
def test_the_other_strategies_use_every_key(simulator, strategy):
    simulator.configure(latency=0.01)
    with multi_key_client(simulator, strategy, max_concurrent_requests=6) as client:
        together(30, lambda i: client.chat("gpt-4o-mini", messages(f"{strategy} {i}")))
        seen = seen_by_key(simulator)
        assert sum(seen.values()) == 30
        assert all(count >= 3 for count in seen.values()), seen


def test_a_429_cools_its_key_down_and_the_retry_goes_to_another_key_at_once(simulator):
    simulator.script([{"status": 429, "headers": {"retry-after": "30"}}])
    # a deadline of WAIT: waiting out the 30 s of the cooled key would fail at once
    with multi_key_client(simulator, "round-robin", max_retries=2, request_deadline=WAIT) as client:
        client.chat("gpt-4o-mini", messages("first"))
        pool = client.get_stats()["key_pool"]
        cooled = [
            name
            for name, state in pool.items()
            if state["cooling_models"].get("gpt-4o-mini", 0) > 20
        ]
        assert len(cooled) == 1 and pool[cooled[0]]["rate_limited"] == 1
        for i in range(6):  # while it cools, the others serve
            client.chat("gpt-4o-mini", messages(f"after {i}"))
        seen = seen_by_key(simulator)
        assert seen[cooled[0]] == 1  # only the 429 it answered
        assert client.get_stats()["retried_requests"] == 1


def test_when_every_key_cools_a_request_waits_for_the_earliest_recovery(simulator):
    keys = {"a": KEYS["a"], "b": KEYS["b"]}
    simulator.script(
        [
            {"status": 429, "headers": {"retry-after": "30"}},  # key a
            {"status": 429, "headers": {"retry-after": "0.3"}},  # key b
        ]
    )
    # a deadline of WAIT: waiting for the later recovery (30 s) would fail at once
    with multi_key_client(
        simulator, "round-robin", keys=keys, max_retries=3, request_deadline=WAIT
    ) as client:
        client.chat("gpt-4o-mini", messages("patient"))  # not a failure
        counters = simulator.counters()
        assert counters["by_status"] == {"429": 2, "200": 1}
        assert seen_by_key(simulator) == {"a": 1, "b": 2, "c": 0}  # b: the sooner recovery


def test_a_401_disables_its_key_and_the_request_moves_on(simulator):
    simulator.configure(valid_keys=[KEYS["b"], KEYS["c"]])
    with multi_key_client(simulator, "round-robin") as client:
        for i in range(6):
            client.chat("gpt-4o-mini", messages(f"auth {i}"))
        pool = client.get_stats()["key_pool"]
        assert pool["a"]["disabled"] and "401" in pool["a"]["disabled"]
        assert seen_by_key(simulator)["a"] == 1
        assert client.get_stats()["failed_requests"] == 0


def test_every_key_disabled_fails_with_a_report_naming_each(simulator):
    simulator.configure(valid_keys=["sk-nobody"])
    keys = {"a": KEYS["a"], "b": KEYS["b"]}
    with multi_key_client(simulator, "round-robin", keys=keys) as client:
        with pytest.raises(AuthenticationError):
            client.chat("gpt-4o-mini", messages("doomed"))
        with pytest.raises(AuthenticationError) as caught:
            client.chat("gpt-4o-mini", messages("doomed again"))
        assert (
            "every key" in str(caught.value)
            and "a:" in str(caught.value)
            and "b:" in str(caught.value)
        )
        assert simulator.counters()["requests_total"] == 2  # nothing more was sent


def test_per_key_concurrency_caps_hold(simulator):
    simulator.configure(latency=0.05)
    metadata_keys = [
        {"name": "a", "key": KEYS["a"], "max_concurrent": 1},
        {"name": "b", "key": KEYS["b"], "max_concurrent": 1},
    ]
    client = openai_api(
        {},
        {
            "openai_api_base": simulator.base_url,
            "api_keys": metadata_keys,
            "max_concurrent_requests": 8,
            **FAST,
        },
    )
    with client:
        together(8, lambda i: client.chat("gpt-4o-mini", messages(f"cap {i}")))
        assert simulator.counters()["peak_concurrency"] <= 2


def test_client_side_rpm_keeps_a_key_under_its_limit(simulator):
    keys = [{"name": "a", "key": KEYS["a"], "rpm": 2}]  # a burst of 2, then one per 30 s
    client = openai_api(
        {},
        {"openai_api_base": simulator.base_url, "api_keys": keys, "request_deadline": 0.5, **FAST},
    )
    with client:
        client.chat("gpt-4o-mini", messages("one"))
        client.chat("gpt-4o-mini", messages("two"))
        future = client.queue_with_priority(
            {
                "endpoint": "chat/completions",
                "data": {"model": "gpt-4o-mini", "messages": messages("three")},
            }
        )
        assert future.wait(WAIT)
        assert (
            future["error"] is not None
        )  # it waited for the key within its deadline, then gave up
        assert simulator.counters()["requests_total"] == 2  # the third was never sent to be refused


def test_keys_are_added_and_removed_at_run_time_and_never_shown(simulator):
    with openai_api({}, {"openai_api_base": simulator.base_url, **FAST}) as client:
        client.add_api_key("a", KEYS["a"], rpm=100)
        client.add_api_key("b", KEYS["b"])
        assert client.api_key_names == ["a", "b"]
        together(4, lambda i: client.chat("gpt-4o-mini", messages(f"rt {i}")))
        client.remove_api_key("a")
        client.chat("gpt-4o-mini", messages("after removal"))
        assert client.api_key_names == ["b"]
        text = (
            json.dumps(client.get_stats(), default=str)
            + json.dumps(client.generate_report(True), default=str)
            + repr(client)
        )
        assert not any(key in text for key in KEYS.values())
        with pytest.raises(SettingError):
            client.remove_api_key("nope")
        with pytest.raises(SettingError):
            client.add_api_key("b", "dup")


def test_numbered_environment_variables_add_keys(simulator, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY_1", KEYS["a"])
    monkeypatch.setenv("OPENAI_API_KEY_2", KEYS["b"])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with openai_api(
        {}, {"openai_api_base": simulator.base_url, "key_strategy": "round-robin", **FAST}
    ) as client:
        assert client.api_key_names == ["key1", "key2"]
        for i in range(4):
            client.chat("gpt-4o-mini", messages(f"env {i}"))
        seen = seen_by_key(simulator)
        assert seen["a"] == seen["b"] == 2


@pytest.mark.parametrize(
    "bad",
    [
        [{"key": "x"}],
        [{"name": "a", "key": "x", "rpm": -1}],
        [{"name": "a", "key": "x", "color": "red"}],
        "sk-a,sk-b",
    ],
)
def test_bad_key_lists_are_refused_with_a_typed_error(simulator, bad):
    with pytest.raises((InvalidInputError, SettingError, TypeError)):
        openai_api({}, {"openai_api_base": simulator.base_url, "api_keys": bad})


def test_in_flight_counts_return_to_zero_on_every_path(simulator):
    """Success, server error, 429, cancellation while in flight, a stream read
    whole and a stream closed early: each key's in-flight count ends at 0."""
    simulator.configure(latency=0.02)
    with multi_key_client(simulator, "round-robin", max_retries=1, failure_threshold=100) as client:
        client.chat("gpt-4o-mini", messages("ok"))
        simulator.script([{"status": 500}, {"status": 500}])
        with pytest.raises(ServerError):
            client.chat("gpt-4o-mini", messages("server error"))
        simulator.script(
            [
                {"status": 429, "headers": {"retry-after-ms": "10"}},
                {"status": 429, "headers": {"retry-after-ms": "10"}},
            ]
        )
        with pytest.raises(RateLimitError):
            client.chat("gpt-4o-mini", messages("rate limited"))
        simulator.configure(latency=0.5)
        future = client.queue_with_priority(
            {
                "endpoint": "chat/completions",
                "data": {"model": "gpt-4o-mini", "messages": messages("cancel me")},
            }
        )
        eventually(lambda: client.current_requests > 0, "the request is in flight")
        future.cancel()
        assert future.wait(WAIT)
        simulator.configure(latency=0.0, stream_chunk_delay=0.01)
        for _ in client.chat("gpt-4o-mini", messages("a whole stream"), stream=True):
            pass
        stream = client.chat("gpt-4o-mini", messages("a stream closed early please"), stream=True)
        next(stream)
        stream.close()
        client.chat("gpt-4o-mini", messages("after"))  # goes through: nothing leaked
        eventually(
            lambda: not any(s["in_flight"] for s in client.get_stats()["key_pool"].values()),
            "every key's in-flight count is back to 0",
        )
        pool = client.get_stats()["key_pool"]
        assert {name: state["in_flight"] for name, state in pool.items()} == {
            name: 0 for name in KEYS
        }
        assert client.current_requests == 0
