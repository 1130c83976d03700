"""Every error says where it came from: provider, model, endpoint host, key
label, attempts made, this client's request id and the server's when it
sent one.  Over real HTTP to the simulator, one fault at a time."""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    DeadlineExceededError,
    InvalidRequestError,
    MalformedResponseError,
    NetworkError,
    RequestTimeoutError,
    ServerError,
    StreamStalledError,
)
from ipfs_accelerate_py.simulator import key_fingerprint

from ..helpers import WAIT, WINDOW, Reply, messages, recording_server
from ..helpers.openai_sim import CHAT_MODEL, EMBED_MODEL, KEY, make_client

FAULTS = {
    "server": ({"fail_next": 2}, {}, ServerError),
    "network": ({"drop_next": 2}, {}, NetworkError),
    "timeout": ({"hang_next": 2, "hang_seconds": 5.0}, {"timeout": 0.2}, RequestTimeoutError),
    "malformed": ({"malformed_next": 2}, {}, MalformedResponseError),
}


def assert_says_where(error: ApiError, simulator, attempts: int, request_id: str) -> None:
    assert error.provider == "openai"
    assert error.model == CHAT_MODEL
    assert error.host == f"127.0.0.1:{simulator.port}"
    assert error.key_name == key_fingerprint(KEY)
    assert error.attempts == attempts
    assert error.client_request_id == request_id
    text = str(error)
    assert (
        f"model {CHAT_MODEL}" in text
        and f"key {key_fingerprint(KEY)}" in text
        and error.host in text
    )
    assert KEY not in text and KEY not in repr(error)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_failed_request_says_where_it_came_from(simulator, fault):
    scenario, settings, error_type = FAULTS[fault]
    simulator.configure(**scenario)
    with make_client(simulator, max_retries=1, **settings) as client:
        with pytest.raises(error_type) as caught:
            client.chat(CHAT_MODEL, messages(fault), request_id=f"mine-{fault}")
    assert_says_where(caught.value, simulator, attempts=2, request_id=f"mine-{fault}")
    assert simulator.counters()["requests_total"] == 2


def test_the_server_request_id_is_kept_beside_the_clients(simulator):
    simulator.configure(fail_next=1, error_status=500)
    with make_client(simulator, max_retries=0) as client, pytest.raises(ServerError) as caught:
        client.chat(CHAT_MODEL, messages("x"), request_id="mine-1")
    error = caught.value
    assert error.request_id.startswith("req_")  # the simulator's x-request-id
    assert error.client_request_id == "mine-1"
    assert f"request {error.request_id}" in str(error) and "client request mine-1" in str(error)


def test_a_stalled_stream_says_where_it_came_from(fresh_simulator):
    fresh_simulator.configure(stream_stall_after=2, stall_seconds=5.0)
    with make_client(fresh_simulator, stream_stall_timeout=0.2) as client:
        stream = client.chat(CHAT_MODEL, messages("s"), stream=True, request_id="mine-stream")
        with pytest.raises(StreamStalledError) as caught:
            for _ in stream:
                pass
    assert_says_where(caught.value, fresh_simulator, attempts=1, request_id="mine-stream")


def test_a_deadline_in_the_queue_says_where_it_came_from(simulator):
    simulator.configure(latency=1.0)
    with make_client(simulator, max_concurrent_requests=1) as client:
        held = client.queue_with_priority(
            {
                "endpoint": "chat/completions",
                "data": {"model": CHAT_MODEL, "messages": messages("a")},
            }
        )  # no deadline: it holds the one slot for the simulator's whole second
        client.request_deadline = 0.3  # the next request's, read as it is queued
        waiting = client.queue_with_priority(
            {
                "endpoint": "chat/completions",
                "data": {"model": CHAT_MODEL, "messages": messages("b")},
                "request_id": "mine-queued",
            }
        )
        with pytest.raises(DeadlineExceededError) as caught:
            waiting.result(WAIT)
        assert held.result(WAIT)["choices"]
    error = caught.value
    assert error.model == CHAT_MODEL and error.host == f"127.0.0.1:{simulator.port}"
    assert error.attempts == 0 and error.client_request_id == "mine-queued"
    assert (
        "passed while it waited in the queue behind 1 attempt in flight (max_concurrent_requests 1)"
        in str(error)
    )


def test_batched_embeddings_report_each_callers_own_request(simulator):
    simulator.script([{"status": 400, "body": {"error": {"message": "bad input"}}}])
    with make_client(simulator, max_batch_size=3, batch_timeout=WINDOW, max_retries=0) as client:
        futures = [
            client.queue_with_priority(
                {
                    "endpoint": "embeddings",
                    "data": {"model": EMBED_MODEL, "input": f"e{i}"},
                    "request_id": f"mine-{i}",
                }
            )
            for i in range(3)
        ]
        errors = []
        for future in futures:
            with pytest.raises(InvalidRequestError) as caught:
                future.result(WAIT)
            errors.append(caught.value)
    assert simulator.counters()["requests_total"] == 1  # one batch
    assert [e.client_request_id for e in errors] == ["mine-0", "mine-1", "mine-2"]
    assert not any(str(e.request_id).startswith("batch-") for e in errors)
    assert all(e.model == EMBED_MODEL and e.attempts == 1 and "bad input" in str(e) for e in errors)


def test_an_attempt_cut_short_by_the_deadline_is_a_deadline_error_naming_it(simulator):
    simulator.configure(latency=3.0)
    with make_client(simulator, timeout=60, request_deadline=0.5, max_retries=3) as client:
        with pytest.raises(DeadlineExceededError) as caught:
            client.chat(CHAT_MODEL, messages("slow"))
    error = caught.value
    assert (
        "request deadline of 0.50s passed during attempt 1 (no answer by then); raise client.request_deadline"
        in str(error)
    )
    assert isinstance(error.__cause__, RequestTimeoutError)
    assert simulator.counters()["requests_total"] == 1  # not retried: the deadline is spent


def test_a_servers_request_id_is_redacted_like_its_words():
    key = "sk-proj-" + "Q" * 42

    def reply(method, path, body):
        return Reply(401, {"error": {"message": "bad key"}}, {"x-request-id": f"rid-{key}"})

    with (
        recording_server(reply, "/v1") as (url, seen),
        openai_api(
            metadata={"openai_api_key": key, "openai_base_url": url, "max_retries": 0}
        ) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.chat(CHAT_MODEL, messages("x"))
    assert key not in str(caught.value) and key not in repr(vars(caught.value))
    assert caught.value.request_id == "rid-***"


def test_host_always_has_its_port():
    with (
        openai_api(
            metadata={
                "openai_api_key": KEY,
                "openai_base_url": "http://127.0.0.1/v1",
                "max_retries": 0,
            }
        ) as client,
        pytest.raises(NetworkError) as caught,
    ):
        client.chat(CHAT_MODEL, messages("x"))
    assert caught.value.host == "127.0.0.1:80"
