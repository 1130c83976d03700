"""429s with Retry-After, the simulator's rate limits, deadlines, and the
client errors that are never retried, against ``openai_api``.
"""

from __future__ import annotations

import email.utils
import logging
import time

import pytest

from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    DeadlineExceededError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
)

from ..helpers import REPLY_PREFIX, WAIT, key_cooling_logged, messages, reply_text
from ..helpers.openai_sim import CHAT_MODEL, chat_data, chat_once, chat_soon, make_client

# ----------------------------------------------------------------- 429s


def test_each_attempt_honours_its_own_retry_after(simulator, caplog):
    caplog.set_level(logging.INFO, logger="ipfs_accelerate_py")
    simulator.script(
        [
            {"status": 429, "headers": {"retry-after": "0.2"}},
            {"status": 429, "headers": {"retry-after-ms": "50"}},
            {"status": 200},
        ]
    )
    # a backoff of an hour and a deadline of WAIT: a retry paced by the backoff, not by the
    # server's figure, would fail at once with DeadlineExceededError
    with make_client(
        simulator, max_retries=3, initial_retry_delay=3600.0, request_deadline=WAIT
    ) as client:
        response = chat_once(client, "patient")
        stats = client.get_stats()
        assert client.circuit_state == "CLOSED"
    assert reply_text(response) == REPLY_PREFIX + "patient"
    cooled = key_cooling_logged(caplog.records)  # 0.2 s, then 0.05 s: each answer's own figure
    assert len(cooled) == 2, cooled
    assert "cooling 0.2s after HTTP 429 (Retry-After)" in cooled[0]
    assert "cooling 0.05s after HTTP 429 (Retry-After)" in cooled[1]
    counted = simulator.counters()
    assert counted["by_status"] == {"429": 2, "200": 1}
    assert counted["rate_limited"] == 2
    assert stats["total_retries"] == 2


def test_retry_after_as_an_http_date_in_the_past_means_retry_now(simulator, caplog):
    caplog.set_level(logging.INFO, logger="ipfs_accelerate_py")
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    simulator.script([{"status": 429, "headers": {"retry-after": past}}])
    # the backoff (an hour) would pass the deadline: only "retry now" lets the call succeed
    with make_client(
        simulator, max_retries=1, initial_retry_delay=3600.0, request_deadline=WAIT
    ) as client:
        chat_once(client)
    (cooled,) = key_cooling_logged(caplog.records)
    assert "cooling 0s after HTTP 429 (Retry-After)" in cooled
    assert simulator.counters()["requests_total"] == 2


@pytest.mark.parametrize("limits", [{"rpm": 2}, {"tpm": 25}], ids=["rpm", "tpm"])
def test_rate_limit_is_survived_with_retries(simulator, limits):
    simulator.configure(rate_limits=limits, rate_window=0.3)
    with make_client(
        simulator,
        max_retries=10,
        max_concurrent_requests=2,
        failure_threshold=2,
        initial_retry_delay=5.0,
    ) as client:
        futures = [
            client.queue_with_priority({"endpoint": "chat/completions", "data": chat_data(f"l{i}")})
            for i in range(5)
        ]
        replies = [reply_text(f.result(timeout=WAIT)) for f in futures]
        stats = client.get_stats()
        assert client.circuit_state == "CLOSED"  # 429s are not an outage
    assert replies == [REPLY_PREFIX + f"l{i}" for i in range(5)]
    counted = simulator.counters()
    assert counted["rate_limited"] > 0
    assert counted["by_status"]["200"] == 5
    assert counted["requests_total"] == stats["http_attempts"] == 5 + counted["rate_limited"]
    assert stats["successful_requests"] == 5 and stats["retried_requests"] >= 1
    assert stats["keys"][next(iter(stats["keys"]))]["rate_limited"] == counted["rate_limited"]


def test_rate_limit_without_retries_raises_with_the_servers_wait(simulator):
    simulator.configure(rate_limits={"rpm": 1}, rate_window=30.0)
    with make_client(simulator, max_retries=0) as client:
        chat_once(client)
        with pytest.raises(RateLimitError) as caught:
            chat_once(client)
    error = caught.value
    assert error.status == 429
    assert 29.0 < error.retry_after <= 30.0  # from retry-after-ms, more precise than retry-after
    assert "Rate limit reached" in str(error)


def test_retry_after_beyond_the_deadline_fails_fast_naming_the_figure(simulator):
    simulator.script([{"status": 429, "headers": {"retry-after": "50"}}])
    # a deadline of 40 s: waiting for the Retry-After or for the deadline would outlast the
    # test's WAIT (chat_soon raises TimeoutError); failing at once is the only way to pass
    with make_client(simulator, max_retries=3, request_deadline=40.0) as client:
        with pytest.raises(DeadlineExceededError) as caught:
            chat_soon(client)
    assert "50.0s" in str(caught.value) and "Retry-After" in str(caught.value)
    assert 40.0 < caught.value.retry_after <= 50.0  # seconds from when it failed
    assert isinstance(caught.value, RateLimitError)  # a RateLimitDeadlineError: both at once
    assert isinstance(caught.value.__cause__, RateLimitError)
    assert simulator.counters()["requests_total"] == 1


ABSURD_WAITS = [
    {"retry-after": "1000000000"},
    {"retry-after-ms": "1e300"},
    {"retry-after": email.utils.formatdate(time.time() + 10 * 365 * 86400, usegmt=True)},
    {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
]


@pytest.mark.parametrize("headers", ABSURD_WAITS, ids=["1e9", "ms-1e300", "ten-years", "year-9999"])
@pytest.mark.parametrize("deadline", [5.0, None], ids=["deadline", "no-deadline"])
def test_an_absurd_retry_after_is_backed_off_from_and_the_key_is_not_frozen(
    simulator, caplog, headers, deadline
):
    """A Retry-After over max_retry_after (60 s) is not believed: the request
    backs off and succeeds, later requests on the same client go at once,
    and the key is reported as one the server wanted cooled for longer."""
    simulator.script([{"status": 429, "headers": headers}])
    with make_client(simulator, max_retries=2, request_deadline=deadline) as client:
        # each answer within WAIT (else TimeoutError): the backoff (0.01 s), not the server's
        # figure nor a 60 s cooldown
        first = chat_soon(client, "first")
        later = [chat_soon(client, f"later {n}") for n in range(3)]
        pool = client.get_stats()["key_pool"]
    assert reply_text(first) == REPLY_PREFIX + "first"
    assert [reply_text(r) for r in later] == [REPLY_PREFIX + f"later {n}" for n in range(3)]
    (key,) = pool.values()
    assert key["retry_after_over_cap"] == 1
    assert key["longest_retry_after_asked"] > 60.0
    assert key["cooling_until"] == 0.0
    assert simulator.counters()["by_status"] == {"429": 1, "200": 4}
    assert any("over max_retry_after" in r.getMessage() for r in caplog.records)


def test_max_retry_after_can_be_raised_to_believe_longer_waits(simulator):
    simulator.script([{"status": 429, "headers": {"retry-after": "90"}}])
    with (
        make_client(
            simulator, max_retries=2, request_deadline=1.0, max_retry_after=120.0
        ) as client,
        pytest.raises(DeadlineExceededError) as caught,
    ):
        chat_once(client)
    assert "90.0s" in str(caught.value)  # believed: fails fast, as any wait past the deadline does


def test_backoff_beyond_the_deadline_fails_fast_too(simulator):
    simulator.configure(fail_next=1)
    with (
        make_client(
            simulator, max_retries=3, request_deadline=0.5, initial_retry_delay=2.0
        ) as client,
        pytest.raises(DeadlineExceededError) as caught,
    ):
        chat_once(client)
    assert "2.0s" in str(caught.value) and "backoff" in str(caught.value)
    assert simulator.counters()["requests_total"] == 1


# --------------------------------------------------- authentication, 4xx


def test_401_is_not_retried_and_leaves_the_breaker_closed(simulator):
    simulator.configure(valid_keys=["sk-the-right-key"])
    with make_client(
        simulator, key="sk-the-wrong-key", max_retries=3, failure_threshold=1
    ) as client:
        for _ in range(3):
            with pytest.raises(AuthenticationError) as caught:
                chat_once(client)
        assert client.circuit_state == "CLOSED"
        stats = client.get_stats()
    assert caught.value.status == 401
    assert simulator.counters()["requests_total"] == 3  # one attempt each
    assert stats["errors_by_type"] == {"authentication": 3}
    assert stats["total_retries"] == 0


def test_valid_key_passes_when_valid_keys_is_set(simulator):
    simulator.configure(valid_keys=["sk-the-right-key"])
    with make_client(simulator, key="sk-the-right-key") as client:
        assert reply_text(chat_once(client, "welcome")) == REPLY_PREFIX + "welcome"


def test_x_should_retry_false_overrides_a_retryable_status(simulator):
    simulator.script([{"status": 503, "headers": {"x-should-retry": "false"}}])
    with make_client(simulator, max_retries=3) as client, pytest.raises(ServerError):
        chat_once(client)
    assert simulator.counters()["requests_total"] == 1


def test_400_is_not_retried(simulator):
    with make_client(simulator, max_retries=3) as client:
        with pytest.raises(InvalidRequestError) as caught:
            client.make_request("chat/completions", {"model": CHAT_MODEL})  # no messages
    assert caught.value.status == 400
    assert "messages" in str(caught.value)
    assert simulator.counters()["requests_total"] == 1


def test_404_is_not_retried(simulator):
    simulator.configure(strict_models=True)
    with make_client(simulator, max_retries=3) as client:
        with pytest.raises(NotFoundError) as caught:
            client.chat("no-such-model", messages("x"))
        assert client.circuit_state == "CLOSED"
    assert caught.value.status == 404
    assert simulator.counters()["requests_total"] == 1
