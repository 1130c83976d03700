"""``FailoverChain`` over real loopback HTTP: two simulators, the first down.

``fresh_simulator`` plays the first backend (an outage, bad keys, refused
models), ``simulator`` the second; their counters say what reached each.
The breaker's ``reset_timeout`` is long, so nothing here waits for it.
"""

from __future__ import annotations

import threading

import pytest

from ipfs_accelerate_py.api_backends.claude import claude
from ipfs_accelerate_py.api_backends.failover import FailoverChain, FailoverStep, fails_over
from ipfs_accelerate_py.api_backends.groq import groq
from ipfs_accelerate_py.api_backends.openai_api import openai_api
from ipfs_accelerate_py.resilience import errors as e

from ..helpers import FAST, REPLY_PREFIX, WAIT, ClientFactory, joined_deltas, messages

OPENAI_KEY = "sk-failover-openai-0123456789"
GROQ_KEY = "gsk-failover-groq-0123456789"
CLAUDE_KEY = "sk-ant-failover-0123456789"
MODEL = "gpt-4o-mini"
GROQ_MODEL = "llama-3.3-70b-versatile"
CLAUDE_MODEL = "claude-sonnet-4-5"
THRESHOLD = 2
LONG = 60.0  # reset_timeout: the first backend's breaker stays OPEN for the whole test

make_openai = ClientFactory(
    openai_api, "openai_api_base", "openai_api_key", FAST, key=OPENAI_KEY
).on
make_groq = ClientFactory(groq, "groq_api_base", "groq_api_key", FAST, key=GROQ_KEY).on
make_claude = ClientFactory(
    claude, "anthropic_api_base", "anthropic_api_key", FAST, key=CLAUDE_KEY
).on


def first(sim, **settings):
    """The first step's client: no retries unless asked, a breaker that opens after THRESHOLD failures."""
    return make_openai(
        sim, **{"max_retries": 0, "failure_threshold": THRESHOLD, "reset_timeout": LONG, **settings}
    )


# ----------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    "error, moves_on",
    [
        (e.CircuitOpenError("open"), True),
        (e.AuthenticationError("every key disabled", provider="openai"), True),
        (e.PermissionDeniedError("403"), True),
        (e.ShutdownError("closed"), True),
        (e.RateLimitError("429"), True),
        (e.ServerError("503"), True),
        (e.OverloadedError("529"), True),
        (e.RequestTimeoutError("timeout"), True),
        (e.DeadlineExceededError("deadline"), True),
        (e.NetworkError("reset"), True),
        (e.MalformedResponseError("bad json"), True),
        (e.QueueFullError("full"), True),
        (e.InvalidRequestError("400"), False),
        (e.InvalidInputError("bad messages"), False),
        (e.NotFoundError("404"), False),
        (e.CancelledRequestError("cancelled"), False),
        (e.SettingError("x", 1, "y"), False),
        (RuntimeError("a bug"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_which_errors_move_on(error, moves_on):
    assert fails_over(error) is moves_on


def test_a_step_may_move_on_after_more():
    step = FailoverStep(
        openai_api({}, {"openai_api_base": "http://127.0.0.1:9/v1"}),
        fail_over_on=(e.NotFoundError,),
    )
    try:
        assert fails_over(e.NotFoundError("404"), step) is True
        assert fails_over(e.InvalidRequestError("400"), step) is False
    finally:
        step.backend.close()


# ----------------------------------------------------------------- failover


def test_outage_fails_over_then_the_open_breaker_skips_the_first(fresh_simulator, simulator):
    fresh_simulator.configure(outage=True)
    with first(fresh_simulator) as down, make_groq(simulator) as up:
        chain = FailoverChain([down, (up, {MODEL: GROQ_MODEL})])
        for i in range(5):
            response = chain.chat(MODEL, messages(f"hello {i}"))
            assert chain.reply_text(response) == REPLY_PREFIX + f"hello {i}"
            assert chain.last_step.name == "groq"
        assert down.circuit_state == "OPEN"
        stats = chain.get_stats()
    first_saw, second_saw = fresh_simulator.counters(), simulator.counters()
    assert first_saw["requests_total"] == THRESHOLD  # after it opened, nothing more was sent there
    assert second_saw["requests_total"] == 5
    assert second_saw["by_model"] == {GROQ_MODEL: 5}  # the mapping applied
    assert stats["requests"] == stats["succeeded"] == 5 and stats["failed"] == 0
    assert stats["failovers"] == 5
    assert stats["served_by"] == {"openai_api": 0, "groq": 5}
    assert stats["steps"]["openai_api"]["attempts"] == 5
    assert stats["steps"]["openai_api"]["errors"] == {
        "server": THRESHOLD,
        "circuit_open": 5 - THRESHOLD,
    }


def test_the_first_backend_spends_its_retries_before_moving_on(fresh_simulator, simulator):
    fresh_simulator.configure(outage=True)
    with (
        first(fresh_simulator, max_retries=2, failure_threshold=10) as down,
        make_groq(simulator) as up,
    ):
        chain = FailoverChain([down, up])
        chain.chat(MODEL, messages("x"))
    assert fresh_simulator.counters()["requests_total"] == 3  # 1 attempt + 2 retries
    assert simulator.counters()["by_model"] == {MODEL: 1}  # no mapping: the model as asked


def test_rate_limited_after_retries_moves_on(fresh_simulator, simulator):
    fresh_simulator.script([{"status": 429, "headers": {"retry-after": "0"}}] * 2)
    with first(fresh_simulator, max_retries=1) as limited, make_groq(simulator) as up:
        chain = FailoverChain([limited, up])
        chain.chat(MODEL, messages("x"))
        assert chain.last_step.name == "groq"
    assert fresh_simulator.counters()["rate_limited"] == 2


def test_a_refused_key_moves_on(fresh_simulator, simulator):
    fresh_simulator.configure(valid_keys=["sk-the-right-one-0123456789"])
    with first(fresh_simulator) as refused, make_groq(simulator) as up:
        chain = FailoverChain([refused, up])
        chain.chat(MODEL, messages("x"))
        assert chain.get_stats()["steps"]["openai_api"]["errors"] == {"authentication": 1}
    assert fresh_simulator.counters()["by_status"] == {"401": 1}
    assert simulator.counters()["requests_total"] == 1


def test_default_model_replaces_an_unmapped_model(fresh_simulator, simulator):
    fresh_simulator.configure(outage=True)
    with first(fresh_simulator) as down, make_groq(simulator) as up:
        chain = FailoverChain(
            [down, FailoverStep(up, {"gpt-4o": "llama-big"}, default_model=GROQ_MODEL)]
        )
        chain.chat(MODEL, messages("x"))
        chain.chat("gpt-4o", messages("y"))
    assert simulator.counters()["by_model"] == {GROQ_MODEL: 1, "llama-big": 1}


def test_claude_after_openai_crosses_wire_formats(fresh_simulator, simulator):
    fresh_simulator.configure(outage=True)
    with first(fresh_simulator) as down, make_claude(simulator) as anthropic:
        chain = FailoverChain([down, (anthropic, {MODEL: CLAUDE_MODEL})])
        response = chain.chat(
            MODEL, [{"role": "system", "content": "be brief"}, *messages("cross")], max_tokens=64
        )
        assert chain.last_step.name == "claude"
        assert response["type"] == "message"  # Anthropic's own shape, unchanged
        assert chain.reply_text(response) == REPLY_PREFIX + "cross"
    saw = simulator.counters()
    assert saw["by_format"] == {"anthropic": 1} and saw["by_model"] == {CLAUDE_MODEL: 1}


def test_a_stream_fails_over_before_it_starts(fresh_simulator, simulator):
    fresh_simulator.configure(outage=True)
    with first(fresh_simulator) as down, make_groq(simulator) as up:
        chain = FailoverChain([down, up])
        chunks = list(chain.chat(MODEL, messages("streamed"), stream=True))
    assert joined_deltas(chunks) == REPLY_PREFIX + "streamed"


def test_make_request_and_embeddings_fail_over_within_one_wire_format(fresh_simulator, simulator):
    fresh_simulator.configure(outage=True)
    with first(fresh_simulator) as down, make_openai(simulator) as up:
        chain = FailoverChain([down, (up, {"text-embedding-3-small": "text-embedding-3-large"})])
        assert [s.name for s in chain.steps] == ["openai_api", "openai_api#2"]
        body = {"model": MODEL, "messages": messages("raw")}
        answer = chain.make_request("chat/completions", body)
        vectors = chain.embeddings("text-embedding-3-small", ["a", "b"])
    assert chain.reply_text(answer) == REPLY_PREFIX + "raw"
    assert len(vectors["data"]) == 2
    assert body == {"model": MODEL, "messages": messages("raw")}  # the caller's body is not changed
    assert simulator.counters()["by_model"] == {MODEL: 1, "text-embedding-3-large": 1}


# ----------------------------------------------------------------- no failover


def test_a_client_error_is_raised_without_failover(fresh_simulator, simulator):
    fresh_simulator.configure(strict_models=True)
    with first(fresh_simulator) as strict, make_groq(simulator) as up:
        chain = FailoverChain([strict, up])
        with pytest.raises(e.NotFoundError) as refused:
            chain.chat("no-such-model", messages("x"))
        with pytest.raises(e.InvalidInputError):
            chain.chat(MODEL, [])  # refused before sending: the caller's mistake
        stats = chain.get_stats()
    assert not hasattr(refused.value, "failures")  # raised as the first step raised it
    assert simulator.counters()["requests_total"] == 0
    assert stats["failed"] == 2 and stats["failovers"] == 0
    assert stats["steps"]["groq"]["attempts"] == 0


def test_a_step_that_says_so_moves_on_after_a_client_error(fresh_simulator, simulator):
    fresh_simulator.configure(strict_models=True)
    with first(fresh_simulator) as strict, make_groq(simulator) as up:
        chain = FailoverChain([FailoverStep(strict, fail_over_on=(e.NotFoundError,)), up])
        chain.chat("only-on-groq", messages("x"))
        assert chain.last_step.name == "groq"
    assert simulator.counters()["by_model"] == {"only-on-groq": 1}


def test_a_client_error_on_a_later_step_lists_the_earlier_failures(fresh_simulator, simulator):
    fresh_simulator.configure(outage=True)
    simulator.configure(strict_models=True)
    with first(fresh_simulator) as down, make_groq(simulator) as strict:
        chain = FailoverChain([down, strict])
        with pytest.raises(e.NotFoundError) as refused:
            chain.chat("no-such-model", messages("x"))
    assert [name for name, _ in refused.value.failures] == ["openai_api", "groq"]
    assert "openai_api: ServerError" in str(refused.value)


# ----------------------------------------------------------------- all down


def test_every_step_down_raises_one_error_listing_each(fresh_simulator, simulator):
    fresh_simulator.configure(outage=True)
    simulator.configure(outage=True)
    with first(fresh_simulator) as down, make_groq(simulator, max_retries=0) as also_down:
        chain = FailoverChain([down, (also_down, {MODEL: GROQ_MODEL})])
        with pytest.raises(e.ServerError) as caught:
            chain.chat(MODEL, messages("x"))
        stats = chain.get_stats()
    error = caught.value
    assert [(name, type(err)) for name, err in error.failures] == [
        ("openai_api", e.ServerError),
        ("groq", e.ServerError),
    ]
    assert error.status == 503 and error.provider == "groq"  # the last error's fields, kept
    assert error.__cause__ is error.failures[-1][1]
    text = str(error)
    assert (
        "every step of the failover chain failed" in text
        and "openai_api:" in text
        and "groq:" in text
    )
    assert OPENAI_KEY not in text and GROQ_KEY not in text
    assert OPENAI_KEY[:8] not in repr(error.failures)
    assert stats["failed"] == 1 and stats["failovers"] == 1
    assert chain.last_step is None


def test_every_circuit_open_fails_fast_without_sending(fresh_simulator, simulator):
    fresh_simulator.configure(outage=True)
    simulator.configure(outage=True)
    with first(fresh_simulator) as down, first(simulator) as also_down:
        chain = FailoverChain([down, also_down])
        for _ in range(THRESHOLD):
            with pytest.raises(e.ServerError):
                chain.chat(MODEL, messages("x"))
        with pytest.raises(e.CircuitOpenError) as caught:
            chain.chat(MODEL, messages("x"))
    assert len(caught.value.failures) == 2
    assert fresh_simulator.counters()["requests_total"] == THRESHOLD
    assert simulator.counters()["requests_total"] == THRESHOLD


# ----------------------------------------------------------------- the chain itself


def test_last_step_belongs_to_the_calling_thread(fresh_simulator, simulator):
    with make_openai(simulator) as up:
        chain = FailoverChain([up])
        chain.chat(MODEL, messages("x"))
        assert chain.last_step.name == "openai_api"
        seen = []
        thread = threading.Thread(target=lambda: seen.append(chain.last_step))
        thread.start()
        thread.join(WAIT)
    assert seen == [None]


@pytest.mark.parametrize(
    "steps",
    [[], "openai", [object()], [(None, {})], [("x", {}, None, None)]],
    ids=["empty", "a string", "not a backend", "no backend", "too long a tuple"],
)
def test_a_bad_chain_is_refused(steps):
    with pytest.raises(e.SettingError):
        FailoverChain(steps)


def test_bad_step_options_are_refused(simulator):
    with make_openai(simulator) as client:
        with pytest.raises(e.SettingError):
            FailoverStep(client, {"a": 1})
        with pytest.raises(e.SettingError):
            FailoverStep(client, fail_over_on=(ValueError,))
        with pytest.raises(e.SettingError):
            FailoverChain([FailoverStep(client, name="same"), FailoverStep(client, name="same")])
