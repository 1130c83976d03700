"""``ApiKeyMultiplexer`` over real loopback HTTP: several keys per provider on the simulator.

The simulator counts requests per key fingerprint (``by_key``), so each test
checks what reached the server under which key, beside what the
multiplexer reports.
"""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py.api_backends.failover import FailoverChain
from ipfs_accelerate_py.api_backends.multiplexer import MULTIPLEXED_PROVIDERS, ApiKeyMultiplexer
from ipfs_accelerate_py.resilience.errors import (
    InvalidInputError,
    RateLimitError,
    SettingError,
    ShutdownError,
)
from ipfs_accelerate_py.simulator import key_fingerprint

from ..helpers import FAST, REPLY_PREFIX, WAIT, messages, reply_text, together

KEYS = {
    "k1": "sk-mux-first-0123456789abcdef",
    "k2": "sk-mux-second-0123456789abcdef",
    "k3": "sk-mux-third-0123456789abcdef",
}
MODEL = "gpt-4o-mini"
MODELS = {
    "openai": MODEL,
    "groq": "llama-3.3-70b-versatile",
    "claude": "claude-sonnet-4-5",
    "gemini": "gemini-2.0-flash",
}


def mux_on(sim, **settings) -> ApiKeyMultiplexer:
    """A multiplexer whose four providers all talk to ``sim``, each at its wire format's path."""
    urls = {
        name: sim.url + cls.provider.spec.simulator_path
        for name, cls in MULTIPLEXED_PROVIDERS.items()
    }
    return ApiKeyMultiplexer({**FAST, **settings}, base_url=urls)


def add_keys(
    mux: ApiKeyMultiplexer, provider: str = "openai", names=("k1", "k2", "k3"), **options
) -> None:
    for name in names:
        getattr(mux, f"add_{provider}_key")(name, KEYS[name], **options)


def by_key(sim) -> dict:
    """Requests the simulator saw per key name (only the keys of KEYS, zeros left out)."""
    seen = sim.counters()["by_key"]
    return {
        name: seen[key_fingerprint(key)]
        for name, key in KEYS.items()
        if seen.get(key_fingerprint(key))
    }


# ----------------------------------------------------------------- the shared client


def test_one_client_spreads_its_requests_over_every_key(simulator):
    with mux_on(simulator) as mux:
        add_keys(mux)
        client = mux.get_openai_client()
        assert mux.get_openai_client(strategy="least-loaded") is client  # one backend per provider
        client = mux.get_openai_client(strategy="round-robin")
        for i in range(6):
            assert reply_text(client.chat(MODEL, messages(f"m{i}"))) == REPLY_PREFIX + f"m{i}"
        usage = mux.get_usage_stats()
    assert by_key(simulator) == {"k1": 2, "k2": 2, "k3": 2}
    assert set(usage) == {"openai", "groq", "claude", "gemini"}
    assert usage["groq"] == usage["claude"] == usage["gemini"] == {}
    for name in KEYS:
        figures = usage["openai"][name]
        assert figures["requests"] == figures["usage"] == figures["successes"] == 2
        assert figures["in_flight"] == figures["current_requests"] == 0
        assert figures["rate_limited"] == 0 and figures["disabled"] is None
        assert figures["tokens_in"] > 0 and figures["tokens_out"] > 0
    tokens = simulator.counters()["tokens"]
    assert sum(usage["openai"][n]["tokens_in"] for n in KEYS) == tokens["prompt"]
    assert sum(usage["openai"][n]["tokens_out"] for n in KEYS) == tokens["completion"]


def test_the_strategy_is_set_on_the_shared_backend(simulator):
    with mux_on(simulator) as mux:
        add_keys(mux, max_concurrent=3)
        for strategy in ("least-loaded", "weighted", "round-robin"):
            assert mux.get_openai_client(strategy=strategy).key_strategy == strategy
        client = mux.get_openai_client()
        assert client.max_concurrent_requests == 9  # room for every key's own cap
        assert client.api_key_names == ["k1", "k2", "k3"]


def test_least_loaded_keeps_each_key_under_its_cap(simulator):
    simulator.configure(latency=0.05)
    with mux_on(simulator) as mux:
        add_keys(mux, max_concurrent=2)
        client = mux.get_openai_client(strategy="least-loaded")
        together(12, lambda i: client.chat(MODEL, messages(str(i))))
        usage = mux.get_usage_stats()["openai"]
    seen = by_key(simulator)
    assert sum(seen.values()) == 12 and set(seen) == set(KEYS)  # every key took a share
    assert simulator.counters()["peak_concurrency"] <= 6
    assert all(usage[name]["in_flight"] == 0 for name in KEYS)


def test_weighted_favours_the_heavier_key(simulator):
    with mux_on(simulator) as mux:
        mux.add_openai_key("k1", KEYS["k1"], weight=9.0)
        mux.add_openai_key("k2", KEYS["k2"], weight=1.0)
        client = mux.get_openai_client(strategy="weighted")
        for i in range(40):
            client.chat(MODEL, messages(str(i)))
    seen = by_key(simulator)
    assert sum(seen.values()) == 40 and seen["k1"] > seen.get("k2", 0)


# ----------------------------------------------------------------- one key's client


def test_a_key_name_gives_a_client_bound_to_that_key(simulator):
    with mux_on(simulator) as mux:
        add_keys(mux)
        shared = mux.get_openai_client(strategy="round-robin")
        shared.chat(MODEL, messages("via the pool"))  # k1 first in the rotation
        only_k2 = mux.get_openai_client("k2")
        assert mux.get_openai_client(key_name="k2") is only_k2 and only_k2 is not shared
        assert only_k2.api_key_names == ["k2"]
        for i in range(3):
            only_k2.chat(MODEL, messages(str(i)))
        usage = mux.get_usage_stats()["openai"]
    assert by_key(simulator) == {"k1": 1, "k2": 3}
    assert (
        usage["k2"]["requests"] == 3 and usage["k1"]["requests"] == 1
    )  # both backends summed per key


def test_adding_a_key_again_replaces_it_everywhere(simulator):
    other = "sk-mux-replacement-0123456789"
    with mux_on(simulator) as mux:
        mux.add_openai_key("k1", KEYS["k1"])
        shared, bound = mux.get_openai_client(), mux.get_openai_client("k1")
        mux.add_openai_key("k1", other)
        shared.chat(MODEL, messages("a"))
        bound.chat(MODEL, messages("b"))
        assert mux.key_names("openai") == ["k1"]
    assert simulator.counters()["by_key"] == {key_fingerprint(other): 2}


def test_keys_in_the_environment_are_not_added(simulator, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment-0123")
    monkeypatch.setenv("OPENAI_API_KEY_1", "sk-numbered-environment-0123")
    with mux_on(simulator) as mux:
        mux.add_openai_key("k1", KEYS["k1"])
        assert mux.get_openai_client().api_key_names == ["k1"]
        assert mux.get_openai_client("k1").api_key_names == ["k1"]
        mux.get_openai_client().chat(MODEL, messages("x"))
    assert by_key(simulator) == {"k1": 1}


# ----------------------------------------------------------------- key health


def test_a_refused_key_is_disabled_and_the_others_serve(simulator):
    simulator.configure(valid_keys=[KEYS["k1"], KEYS["k2"]])
    with mux_on(simulator) as mux:
        add_keys(mux)
        client = mux.get_openai_client(strategy="round-robin")
        for i in range(6):
            client.chat(MODEL, messages(str(i)))
        usage = mux.get_usage_stats()["openai"]
    assert usage["k3"]["disabled"] and usage["k3"]["auth_failures"] == 1
    assert usage["k1"]["disabled"] is None and usage["k2"]["disabled"] is None
    assert usage["k1"]["successes"] + usage["k2"]["successes"] == 6
    assert simulator.counters()["by_status"] == {"200": 6, "401": 1}


def test_a_429_cools_that_key_and_the_retry_takes_another(simulator):
    simulator.script([{"status": 429, "headers": {"retry-after": "30"}}])
    with mux_on(simulator) as mux:
        add_keys(mux, names=("k1", "k2"))
        client = mux.get_openai_client(strategy="round-robin")
        client.request_deadline = WAIT  # waiting out the 30 s would fail at once
        for i in range(4):
            client.chat(MODEL, messages(str(i)))  # nobody waits: the other key is free
        usage = mux.get_usage_stats()["openai"]
    assert by_key(simulator) == {"k1": 1, "k2": 4}
    assert usage["k1"]["rate_limited"] == 1 and usage["k1"]["cooldowns"] == 1
    assert 20.0 < usage["k1"]["cooling_models"][MODEL] <= 30.0  # the (key, model) pair, not the key
    assert usage["k1"]["cooling_until"] == 0.0


def test_usage_names_a_key_whose_server_asked_for_a_rest_over_the_cap(simulator):
    simulator.script([{"status": 429, "headers": {"retry-after": "1000000000"}}])
    with mux_on(simulator) as mux:
        add_keys(mux, names=("k1", "k2"))
        client = mux.get_openai_client(strategy="round-robin")
        for i in range(4):
            client.chat(MODEL, messages(str(i)))
        usage = mux.get_usage_stats()["openai"]
    assert (
        usage["k1"]["retry_after_over_cap"] == 1 and usage["k1"]["longest_retry_after_asked"] > 60.0
    )
    assert usage["k1"]["cooling_models"].get(MODEL, 0.0) <= 60.0
    assert (
        usage["k2"]["retry_after_over_cap"] == 0
        and usage["k2"]["longest_retry_after_asked"] is None
    )


def test_a_key_at_its_limit_is_rested_before_it_is_refused(simulator):
    simulator.configure(rate_limits={"keys": {KEYS["k1"]: {"rpm": 1}}}, rate_window=30.0)
    with mux_on(simulator) as mux:
        add_keys(mux, names=("k1", "k2"))
        client = mux.get_openai_client(strategy="round-robin")
        for i in range(5):
            client.chat(MODEL, messages(str(i)))
        usage = mux.get_usage_stats()["openai"]
    assert by_key(simulator) == {"k1": 1, "k2": 4}  # its x-ratelimit-remaining said 0
    assert simulator.counters()["rate_limited"] == 0
    assert usage["k1"]["cooldowns"] == 1 and usage["k1"]["cooling_models"][MODEL] > 0


def test_every_key_refused_fails_over_to_the_next_backend(fresh_simulator, simulator):
    fresh_simulator.configure(valid_keys=["sk-none-of-ours-0123456789"])
    with mux_on(fresh_simulator, max_retries=0) as refused, mux_on(simulator) as working:
        add_keys(refused, names=("k1", "k2"))
        add_keys(working, "groq", names=("k3",))
        chain = FailoverChain(
            [refused.get_openai_client(), (working.get_groq_client(), {MODEL: MODELS["groq"]})]
        )
        for i in range(4):
            chain.chat(MODEL, messages(str(i)))
            assert chain.last_step.name == "groq"
        usage = refused.get_usage_stats()["openai"]
    assert fresh_simulator.counters()["by_status"] == {
        "401": 2
    }  # each key refused once, then never sent again
    assert usage["k1"]["disabled"] and usage["k2"]["disabled"]
    assert simulator.counters()["by_model"] == {MODELS["groq"]: 4}


# ----------------------------------------------------------------- the other providers


@pytest.mark.parametrize("provider", ["groq", "claude", "gemini"])
def test_each_provider_rotates_its_own_keys(simulator, provider):
    with mux_on(simulator) as mux:
        add_keys(mux, provider, names=("k1", "k2"))
        client = getattr(mux, f"get_{provider}_client")(strategy="round-robin")
        for i in range(4):
            response = client.chat(MODELS[provider], messages(f"hi {i}"))
            assert client.provider.reply_text(response) == REPLY_PREFIX + f"hi {i}"
        usage = mux.get_usage_stats()
    assert by_key(simulator) == {"k1": 2, "k2": 2}
    assert {name: figures["requests"] for name, figures in usage[provider].items()} == {
        "k1": 2,
        "k2": 2,
    }
    assert usage["openai"] == {}


# ----------------------------------------------------------------- secrets, errors, closing


def test_no_secret_in_stats_reports_or_reprs(simulator):
    with mux_on(simulator) as mux:
        add_keys(mux)
        client = mux.get_openai_client()
        client.chat(MODEL, messages("x"))
        shown = [
            json.dumps(mux.get_usage_stats()),
            repr(mux),
            repr(client),
            json.dumps(client.generate_report(True), default=str),
        ]
    for secret in KEYS.values():
        assert not any(secret in text or secret[:12] in text for text in shown)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda m: m.get_openai_client(), InvalidInputError),  # no key added yet
        (lambda m: m.get_claude_client("k1"), InvalidInputError),
        (lambda m: m.add_openai_key("", "sk-x"), SettingError),
        (lambda m: m.add_openai_key("k1", ""), SettingError),
        (lambda m: m.add_openai_key("k1", "sk-x", max_concurrent=0), SettingError),
        (lambda m: m.add_openai_key("k1", "sk-x", rpm=-1), SettingError),
        (lambda m: m.add_key("mistral", "k1", "sk-x"), SettingError),
    ],
    ids=[
        "no keys",
        "no keys for that provider",
        "empty name",
        "empty key",
        "zero concurrency",
        "negative rpm",
        "unknown provider",
    ],
)
def test_mistakes_are_refused_clearly(simulator, call, error):
    with mux_on(simulator) as mux, pytest.raises(error):
        call(mux)


def test_an_unknown_key_name_or_strategy_is_refused(simulator):
    with mux_on(simulator) as mux:
        add_keys(mux, names=("k1",))
        with pytest.raises(InvalidInputError, match="k1"):
            mux.get_openai_client("nope")
        with pytest.raises(SettingError):
            mux.get_openai_client(strategy="fastest")
        with pytest.raises(InvalidInputError):
            mux.get_openai_client(strategy="specific")
        assert mux.get_openai_client("k1", strategy="specific").api_key_names == ["k1"]
    assert issubclass(InvalidInputError, ValueError)  # the seed raised ValueError here


def test_closing_closes_every_backend_it_made(simulator):
    with mux_on(simulator) as mux:
        add_keys(mux, names=("k1",))
        shared, bound = mux.get_openai_client(), mux.get_openai_client("k1")
    for client in (shared, bound):
        with pytest.raises(ShutdownError):
            client.chat(MODEL, messages("x"))
    with pytest.raises(ShutdownError):
        mux.get_openai_client()
    assert simulator.counters()["requests_total"] == 0


def test_a_rate_limit_on_every_key_surfaces_once_retries_are_spent(simulator):
    simulator.script([{"status": 429, "headers": {"retry-after": "0"}}] * 2)
    with mux_on(simulator, max_retries=1) as mux:
        add_keys(mux, names=("k1", "k2"))
        with pytest.raises(RateLimitError):
            mux.get_openai_client(strategy="round-robin").chat(MODEL, messages("x"))
        usage = mux.get_usage_stats()["openai"]
    assert (
        usage["k1"]["rate_limited"] == 1 and usage["k2"]["rate_limited"] == 1
    )  # the retry took the other key
