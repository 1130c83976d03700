"""Streams that stall, break or carry garbage: the iterator raises a typed
error saying how many chunks had arrived; nothing is silently truncated.

Stalled and cut streams run on a server of their own (``fresh_simulator``).
"""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.resilience.errors import (
    MalformedResponseError,
    NetworkError,
    StreamStalledError,
)

from ..helpers import REPLY_PREFIX, messages, reply_text
from ..helpers.openai_sim import CHAT_MODEL, chat_once, make_client

# ------------------------------------------------------------- stream faults


def _stream_until_error(client, error_type):
    chunks = []
    with (
        client.chat(
            CHAT_MODEL, messages("one two three four five six seven eight nine ten"), stream=True
        ) as stream,
        pytest.raises(error_type) as caught,
    ):
        for chunk in stream:
            chunks.append(chunk)
    return chunks, caught.value


def test_stalled_stream_raises_a_timeout_saying_how_many_chunks_arrived(fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(stream_stall_after=2, stall_seconds=10.0)
    with make_client(simulator, stream_stall_timeout=0.2, max_retries=3) as client:
        chunks, error = _stream_until_error(client, StreamStalledError)
        stats = client.get_stats()
    assert len(chunks) == 2
    assert "after 2 chunks" in str(error)
    assert simulator.counters()["requests_total"] == 1  # a started stream is not retried
    assert stats["failed_requests"] == 1


def test_cut_stream_raises_a_network_error_saying_how_many_chunks_arrived(fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(stream_cut_after=3)
    with make_client(simulator, max_retries=3) as client:
        chunks, error = _stream_until_error(client, NetworkError)
    assert len(chunks) == 3
    assert "after 3 chunks" in str(error)
    counted = simulator.counters()
    assert counted["faults"]["stream_cut"] == 1
    assert counted["requests_total"] == 1
    assert counted["streams"]["finished"] == 0


def test_a_stream_cut_just_before_its_end_marker_is_not_silently_complete(fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(stream_cut_after=1000)  # every chunk, then the connection closes: no [DONE]
    with make_client(simulator) as client:
        whole = reply_text(chat_once(client, "one two three four five six"))
        chunks, error = _stream_until_error(client, NetworkError)
    assert f"after {len(chunks)} chunks" in str(error)
    assert len(chunks) >= 3
    assert whole == REPLY_PREFIX + "one two three four five six"


def test_malformed_stream_chunk_raises_saying_how_many_chunks_arrived(simulator):
    simulator.configure(stream_malformed_after=2)
    with make_client(simulator, max_retries=3) as client:
        chunks, error = _stream_until_error(client, MalformedResponseError)
    assert len(chunks) == 2
    assert "after 2 chunks" in str(error)
    assert simulator.counters()["faults"]["stream_malformed"] == 1


def test_a_stream_that_fails_before_it_starts_is_retried(simulator):
    simulator.configure(fail_next=1)
    with make_client(simulator, max_retries=2) as client:
        with client.chat(CHAT_MODEL, messages("retried stream"), stream=True) as stream:
            text = "".join(c.text for c in stream)
    assert text == REPLY_PREFIX + "retried stream"
    assert simulator.counters()["requests_total"] == 2
