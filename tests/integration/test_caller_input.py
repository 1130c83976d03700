"""What a caller hands the seed's surface, checked before it acts: stats
fields, model lists, a batch's future dict, a batch_timeout as long as
forever, a reset_timeout lowered while keys' circuits are OPEN, and a client
carried across ``os.fork()``.
"""

from __future__ import annotations

import os
import select
import socket

import pytest

from ipfs_accelerate_py.resilience.errors import InvalidInputError, SettingError

from ..helpers import LOOPBACK, REPLY_PREFIX, WAIT, messages, reply_text
from ..helpers.openai_sim import CHAT_MODEL, EMBED_MODEL, chat_once, make_client, wait_real

# ----------------------------------------------------------------- update_stats


@pytest.mark.parametrize(
    "args, kwargs, named",
    [
        (("x",), {}, "dict of fields"),
        ((5,), {}, "dict of fields"),
        ((), {"response_time": "abc", "success": True}, "'response_time'"),
        ((), {"response_time": -1.0, "success": True}, "'response_time'"),
        ((), {"response_time": float("nan"), "success": True}, "'response_time'"),
        ((), {"queue_wait": "soon", "success": False}, "'queue_wait'"),
        ((), {"tokens_in": 1.5, "success": True}, "'tokens_in'"),
        ((), {"tokens_out": -3, "success": True}, "'tokens_out'"),
        ((), {"attempts": 0, "success": True}, "'attempts'"),
        ((), {"model": 5, "success": True}, "'model'"),
        ((), {"success": "yes"}, "'success'"),
        ((), {"response_time": 0.1}, "success required"),
        (({"success": True, "colour": "red"},), {}, "success required"),
    ],
)
def test_update_stats_refuses_bad_fields_by_name_and_records_nothing(
    simulator, args, kwargs, named
):
    with make_client(simulator) as client:
        with pytest.raises(InvalidInputError) as caught:
            client.update_stats(*args, **kwargs)
        assert client.get_stats()["total_requests"] == 0
    assert named in str(caught.value)
    assert isinstance(caught.value, ValueError)  # still what plain Python code would catch


def test_update_stats_records_good_fields(simulator):
    with make_client(simulator) as client:
        client.update_stats(
            {"success": True, "response_time": 0.25, "model": CHAT_MODEL}, tokens_in=3, tokens_out=4
        )
        client.update_stats(success=False, error_type="timeout", attempts=2)
        stats = client.get_stats()
    assert (stats["total_requests"], stats["successful_requests"], stats["failed_requests"]) == (
        2,
        1,
        1,
    )


# ----------------------------------------------------------------- model lists


@pytest.mark.parametrize("value", [5, "text-embedding-3-small", [EMBED_MODEL, 7], None, {"a": 1}])
@pytest.mark.parametrize("setting", ["supported_batch_models", "embedding_models"])
def test_a_model_list_that_is_not_one_is_a_setting_error(simulator, setting, value):
    with make_client(simulator) as client:
        before = getattr(client, setting)
        with pytest.raises(SettingError) as caught:
            setattr(client, setting, value)
        assert getattr(client, setting) == before  # nothing changed
    assert caught.value.setting == setting


def test_a_model_list_in_metadata_is_checked_too(simulator):
    with pytest.raises(SettingError) as caught:
        make_client(simulator, supported_batch_models=5)
    assert caught.value.setting == "supported_batch_models"


def test_any_iterable_of_names_is_a_model_list(simulator):
    with make_client(simulator) as client:
        client.supported_batch_models = (name for name in [EMBED_MODEL])
        assert client.supported_batch_models == [EMBED_MODEL]


# ----------------------------------------------------------------- batching


@pytest.mark.parametrize("future", [[], "x", 5])
def test_add_to_batch_refuses_a_future_that_is_no_dict_and_sends_nothing(simulator, future):
    with make_client(simulator, batch_timeout=0.0) as client:
        client.supported_batch_models = [EMBED_MODEL]
        with pytest.raises(InvalidInputError, match="future must be a dict"):
            client.add_to_batch(EMBED_MODEL, "text", future=future)
        client._process_batch()
        assert client.get_stats()["current_queue_size"] == 0
        good = client.add_to_batch(EMBED_MODEL, "text", future={})
        assert good.result(WAIT)["data"]  # the client still works
    assert simulator.counters()["requests_total"] == 1  # the good one only


@pytest.mark.parametrize("batch_timeout", [1e300, 3600.0])
def test_a_huge_batch_timeout_does_not_hold_a_request_past_its_deadline(simulator, batch_timeout):
    with make_client(simulator, batch_timeout=batch_timeout, request_deadline=1.0) as client:
        client.supported_batch_models = [EMBED_MODEL]
        # held by the batch timeout, it would fail with DeadlineExceededError at 1 s
        response = client.make_request("embeddings", {"model": EMBED_MODEL, "input": "alone"})
        stats = client.get_stats()
    assert response["data"]
    assert stats["errors_by_type"] == {} and stats["successful_requests"] == 1
    assert simulator.counters()["embedding_inputs"]["by_size"] == {"1": 1}  # it went alone


# ----------------------------------------------------------------- circuit


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def test_lowering_reset_timeout_reaches_an_open_key_circuit(simulator):
    with make_client(
        simulator,
        max_retries=1,
        failure_threshold=2,
        reset_timeout=60.0,
        key_strategy="round-robin",
    ) as client:
        client.add_api_key(
            "dead", "sk-dead-0123456789abcdef", base_url=f"http://{LOOPBACK}:{_closed_port()}/v1"
        )
        for n in range(
            6
        ):  # round robin: every other attempt meets the dead endpoint, and is retried
            assert reply_text(chat_once(client, f"n{n}")) == REPLY_PREFIX + f"n{n}"
        pool = client.get_stats()["key_pool"]
        assert pool["dead"]["breaker"] == "OPEN" and client.circuit_state == "CLOSED"
        client.reset_timeout = 0.1
        wait_real(0.15)
        assert client.get_stats()["key_pool"]["dead"]["breaker"] == "HALF_OPEN"


# ----------------------------------------------------------------- fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_client_made_before_fork_answers_in_the_child(simulator):
    with make_client(simulator) as client:
        assert (
            reply_text(chat_once(client, "parent")) == REPLY_PREFIX + "parent"
        )  # the engine loop runs
        read_end, write_end = os.pipe()
        pid = os.fork()
        if (
            pid == 0
        ):  # the child: one request, its answer down the pipe, and out (never back into pytest)
            try:
                os.close(read_end)
                try:
                    said = reply_text(client.chat(CHAT_MODEL, messages("child")))
                except BaseException as exc:  # noqa: BLE001 - reported to the parent
                    said = f"{type(exc).__name__}: {exc}"
                os.write(write_end, said.encode()[:4000])
            finally:
                os._exit(0)
        os.close(write_end)
        try:
            ready, _, _ = select.select([read_end], [], [], WAIT)
            said = os.read(read_end, 4096).decode() if ready else None
        finally:
            os.close(read_end)
            if not ready:
                os.kill(pid, 9)
            os.waitpid(pid, 0)
        assert said == REPLY_PREFIX + "child", said or f"no answer from the child within {WAIT}s"
        assert reply_text(chat_once(client, "parent again")) == REPLY_PREFIX + "parent again"
    assert simulator.counters()["requests_total"] == 3
