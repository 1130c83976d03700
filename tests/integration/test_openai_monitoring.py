"""Monitoring and secrets of ``openai_api``: the client's figures against what
the simulator counted, and a key that never shows anywhere.
"""

from __future__ import annotations

import json
import logging
import traceback
from concurrent.futures import ThreadPoolExecutor

import pytest

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    AuthenticationError,
    InvalidRequestError,
    ServerError,
)
from ipfs_accelerate_py.simulator import Simulator, estimate_tokens, key_fingerprint

from ..helpers import messages
from ..helpers.openai_sim import CHAT_MODEL, EMBED_MODEL, make_client

# ---------------------------------------------------------------- monitoring


def _mixed_traffic(client: openai_api, sim: Simulator) -> None:
    client.chat(CHAT_MODEL, messages("one"))
    client.chat("gpt-4o", messages("two, a little longer"))
    client.completions("gpt-3.5-turbo-instruct", "three")
    client.embeddings(EMBED_MODEL, ["four", "five"])
    sim.configure(fail_next=2)
    client.chat(CHAT_MODEL, messages("retried twice"))  # 2 retries, then 200
    sim.script([{"status": 400}])
    with pytest.raises(InvalidRequestError):
        client.chat(CHAT_MODEL, messages("refused"))
    client.max_retries = 0
    sim.configure(fail_next=1)
    with pytest.raises(ServerError):
        client.chat(CHAT_MODEL, messages("failed"))


def test_stats_and_report_agree_with_what_the_simulator_counted(simulator):
    with make_client(simulator, max_retries=3, failure_threshold=10) as client:
        _mixed_traffic(client, simulator)
        stats = client.get_stats()
        report = client.generate_report(include_details=True)
    counted = simulator.counters()
    assert stats["total_requests"] == 7
    assert stats["successful_requests"] == 5
    assert stats["failed_requests"] == 2
    assert stats["http_attempts"] == counted["requests_total"] == 9
    by_status = {str(status): n for status, n in stats["attempt_status_counts"].items()}
    assert by_status == counted["by_status"] == {"200": 5, "500": 3, "400": 1}
    assert stats["retried_requests"] == 1 and stats["total_retries"] == 2
    assert 0 <= stats["retry_rate"] <= 100
    assert stats["retry_rate"] == pytest.approx(100 / 7)
    assert stats["tokens"] == {
        "input": counted["tokens"]["prompt"],
        "output": counted["tokens"]["completion"],
        "total": counted["tokens"]["total"],
    }
    assert stats["errors_by_type"] == {"invalid_request": 1, "server": 1}
    row = stats["models"][CHAT_MODEL]
    assert (row["requests"], row["successes"], row["failures"]) == (4, 2, 2)
    assert stats["models"]["gpt-4o"]["tokens_in"] == estimate_tokens("two, a little longer")
    assert stats["average_response_time"] > 0
    summary = report["summary"]
    assert summary["total_requests"] == 7 and summary["successful_requests"] == 5
    assert summary["success_rate"] == pytest.approx(500 / 7)
    assert summary["retry_rate"] == stats["retry_rate"]
    assert report["errors"] == stats["errors_by_type"]
    assert report["circuit_breaker"]["state"] == "CLOSED"
    assert set(report["models"]) == {CHAT_MODEL, "gpt-4o", "gpt-3.5-turbo-instruct", EMBED_MODEL}
    assert report["details"]["settings"]["max_retries"] == 0
    json.dumps(report)  # a report is JSON-ready


def test_retry_rate_never_exceeds_100_percent(simulator):
    simulator.configure(fail_next=3)
    with make_client(simulator, max_retries=5, failure_threshold=10) as client:
        client.chat(CHAT_MODEL, messages("x"))
        stats = client.get_stats()
    assert stats["total_retries"] == 3 and stats["retried_requests"] == 1
    assert stats["retry_rate"] == 100.0
    assert simulator.counters()["requests_total"] == 4


def test_reset_stats_zeroes_the_figures(simulator):
    with make_client(simulator) as client:
        client.chat(CHAT_MODEL, messages("x"))
        client.reset_stats()
        stats = client.get_stats()
        assert (
            stats["total_requests"],
            stats["successful_requests"],
            stats["failed_requests"],
        ) == (0, 0, 0)
        assert stats["tokens"]["total"] == 0 and stats["models"] == {}
        client.chat(CHAT_MODEL, messages("y"))
        assert client.get_stats()["total_requests"] == 1


def test_a_closed_client_keeps_its_figures_and_lets_go_of_their_buffers(simulator):
    client = make_client(simulator, max_concurrent_requests=4)
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: client.chat(CHAT_MODEL, messages(f"c{i}")), range(20)))
        stats = client._engine.stats
        # 20 durations each, waiting for a read (fewer than PENDING_MAX: none bucketed yet)
        assert len(stats.latency._pending) == len(stats.queue_wait._pending) == 20
    finally:
        client.close()
    assert not stats.latency._pending and not stats.queue_wait._pending
    after = client.get_stats()
    assert after["total_requests"] == after["successful_requests"] == 20
    assert after["http_attempts"] == simulator.counters()["requests_total"] == 20
    assert after["average_response_time"] > 0
    assert after["tokens"]["total"] == simulator.counters()["tokens"]["total"]


def test_stats_under_concurrent_callers_match_the_server(simulator):
    with make_client(simulator, max_concurrent_requests=4) as client:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: client.chat(CHAT_MODEL, messages(f"thread {i}")), range(40)))
        stats = client.get_stats()
    counted = simulator.counters()
    assert (
        stats["total_requests"] == stats["successful_requests"] == counted["requests_total"] == 40
    )
    assert stats["tokens"]["input"] == counted["tokens"]["prompt"]
    assert stats["tokens"]["output"] == counted["tokens"]["completion"]
    assert counted["peak_concurrency"] <= 4


# ------------------------------------------------------------------- secrets

SECRET = "sk-DISTINCTIVE-zq9x8w7v6u5t4s3r2p1o"


def _secret_fragments() -> list[str]:
    return [SECRET, SECRET[3:], "DISTINCTIVE-zq9x8w7v6u5t4s3r2p1o"]


def test_the_key_never_appears_in_errors_reprs_stats_reports_or_logs(fresh_simulator, caplog):
    simulator = fresh_simulator
    caplog.set_level(logging.DEBUG)
    echo = {
        "error": {
            "message": f"Incorrect API key provided: {SECRET}",
            "type": "invalid_request_error",
        }
    }
    errors: list[BaseException] = []
    with make_client(simulator, key=SECRET, max_retries=1, failure_threshold=10) as client:
        # succeeding
        client.chat(CHAT_MODEL, messages("fine"))
        with client.chat(CHAT_MODEL, messages("streamed"), stream=True) as stream:
            list(stream)
        client.embeddings(EMBED_MODEL, "e")
        # failing: a server that echoes the key, a retried 500 that echoes it, an auth refusal
        simulator.script(
            [
                {"status": 401, "body": echo},
                {"status": 500, "body": echo},
                {"status": 500, "body": echo},
            ]
        )
        for _ in range(2):
            with pytest.raises(ApiError) as caught:
                client.chat(CHAT_MODEL, messages("refused"))
            errors.append(caught.value)
        client.max_retries = 0
        client.timeout = 0.2
        for fault in (
            {"drop_next": 1},
            {"hang_next": 1, "hang_seconds": 5.0},
            {"malformed_next": 1},
        ):
            simulator.configure(**fault)
            with pytest.raises(ApiError) as caught:
                client.chat(CHAT_MODEL, messages("fault"))
            errors.append(caught.value)
        simulator.configure(stream_cut_after=2)
        with pytest.raises(ApiError) as caught:
            with client.chat(CHAT_MODEL, messages("cut stream"), stream=True) as stream:
                list(stream)
        errors.append(caught.value)
        simulator.configure(stream_cut_after=None, valid_keys=["sk-some-other-key"])
        with pytest.raises(AuthenticationError) as caught:
            client.chat(CHAT_MODEL, messages("unknown key"))
        errors.append(caught.value)
        texts = [
            repr(client),
            json.dumps(client.get_stats()),
            json.dumps(client.generate_report(include_details=True)),
        ]
    assert [type(e).__name__ for e in errors] == [
        "AuthenticationError",
        "ServerError",
        "NetworkError",
        "RequestTimeoutError",
        "MalformedResponseError",
        "NetworkError",
        "AuthenticationError",
    ]
    for error in errors:
        texts += [
            str(error),
            repr(error),
            "".join(traceback.format_exception(error)),
            repr(vars(error)),
        ]
    texts.append(caplog.text)
    texts += [record.getMessage() for record in caplog.records]
    assert caplog.records, "expected some log lines at DEBUG"
    for text in texts:
        for fragment in _secret_fragments():
            assert fragment not in text
    assert key_fingerprint(SECRET) in texts[0]  # the repr names the key by fingerprint only
