"""The chaos soak (``benchmarks/chaos.py``): its quick run holds, and its audit can fail.

The quick run (5,000 requests of every kind against the simulator's whole
weather) runs in the default suite, in a subprocess of its own so its socket,
task and memory figures are its own.  The audit's checks are then fed
synthetic outcomes that break each promise (a request completed twice, a lost
one, an untyped failure, a success the server never served cleanly, ...) and
must reject each one, naming it: a soak that cannot fail proves nothing.
The simulator's request log, which the audit reads, is tested here too.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import chaos
from ipfs_accelerate_py.simulator import Simulator
from ipfs_accelerate_py.simulator.request_log import read_log

from ..helpers import LOOPBACK, post_json, quick_benchmark

RUN_TIMEOUT = 90  # seconds; the quick run takes a few on an idle machine
FAULTS_INJECTED = (
    "error",
    "outage",
    "drop",
    "hang",
    "malformed",
    "stream_stall",
    "stream_cut",
    "stream_malformed",
    "scripted",
)


def kind_index(name: str) -> int:
    return next(i for i, kind in enumerate(chaos.KINDS) if kind.name == name)


SYNC_CHAT = kind_index("sync chat")
SYNC_STREAM = kind_index("sync stream")
FUTURE = kind_index("future waited")
TASK_CANCELLED = kind_index("task cancelled")
FUTURE_CANCELLED = kind_index("future cancelled")
EMBEDDINGS = kind_index("sync embeddings")


def outcomes(*kinds: int) -> chaos.OutcomeLog:
    """A log of ``len(kinds)`` requests of those kinds, nothing recorded yet."""
    log = chaos.OutcomeLog(len(kinds))
    for i, kind in enumerate(kinds):
        log.kind[i] = kind
    return log


def failed(assertions: list[chaos.Assertion]) -> dict[str, str]:
    return {a.name: a.detail for a in assertions if not a.ok}


# ------------------------------------------------------------------ the quick run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: Any) -> tuple[Any, dict[str, Any]]:
    proc, out = quick_benchmark(tmp_path_factory, "chaos.py", RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc, json.loads(out.read_text())


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_quick_run_holds_every_assertion(quick_run: tuple[Any, dict[str, Any]]) -> None:
    proc, document = quick_run
    assert document["ok"] is True
    assert document["settings"]["requests"] == chaos.QUICK_REQUESTS
    names = [a["name"] for a in document["assertions"]]
    assert all(a["ok"] for a in document["assertions"]), proc.stdout
    for promise in (
        "no future lost",
        "none completed twice",
        "every failure is a typed error",
        "engine counted each request once",
        "no queue slot, permit, probe or lease held",
        "engine loop tasks back to baseline",
        "sockets back to baseline after close",
        "every completed stream was finished by the server",
    ):
        assert promise in names
    assert "PASS no future lost" in proc.stdout


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_quick_run_accounts_for_every_request(quick_run: tuple[Any, dict[str, Any]]) -> None:
    _, document = quick_run
    table = document["tables"][0]
    columns, rows = table["columns"], table["rows"]
    total = dict(zip(columns, rows[-1], strict=True))
    assert total["kind"] == "all" and total["requests"] == chaos.QUICK_REQUESTS
    assert total["lost"] == total["untyped"] == total["wrong"] == 0
    assert total["ok"] > chaos.QUICK_REQUESTS // 5  # the weather is bad, not a total outage
    assert {row[0] for row in rows[:-1]} == {kind.name for kind in chaos.KINDS}
    by_kind = {row[0]: dict(zip(columns, row, strict=True)) for row in rows[:-1]}
    for kind in chaos.KINDS:  # each kind of call got through at times (or was ended by its caller)
        done = by_kind[kind.name]["ok"] + by_kind[kind.name]["closed early"]
        assert done > 0 or kind.caller_cancels, (kind.name, by_kind[kind.name])
    stats = document["figures"]["client_stats"]
    assert stats["total_requests"] == chaos.QUICK_REQUESTS


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_quick_run_was_chaotic(quick_run: tuple[Any, dict[str, Any]]) -> None:
    """Every fault of the weather fired, and the callers met several kinds of typed error:
    the assertions held under fire, not in calm weather."""
    _, document = quick_run
    faults = document["figures"]["simulator"]["faults"]
    assert all(faults.get(kind, 0) > 0 for kind in FAULTS_INJECTED), faults
    errors = document["errors_by_type"]
    for expected in ("RateLimitError", "NetworkError", "MalformedResponseError"):
        assert errors.get(expected, 0) > 0, errors
    assert document["figures"]["circuit_opened"] > 0
    assert document["figures"]["simulator"]["client_disconnects"] > 0


# ------------------------------------------------------------------ the audit can fail


def test_checker_rejects_a_request_completed_twice() -> None:
    log = outcomes(SYNC_CHAT, SYNC_CHAT, SYNC_CHAT)
    log.record(0, chaos.OK)
    log.record(1, chaos.OK)
    log.record(1, chaos.API_ERROR, _error("ServerError"))
    log.record(2, chaos.OK)
    found = failed(chaos.check_outcomes(log))
    assert list(found) == ["none completed twice"]
    assert "request 1)" in found["none completed twice"]
    assert log.outcome[1] == chaos.OK  # the first outcome stands


def test_checker_rejects_a_future_whose_callbacks_ran_twice() -> None:
    log = outcomes(FUTURE, FUTURE)
    for i in range(2):
        log.uses_future[i] = 1
        log.future_done(i)
        log.record(i, chaos.OK)
    log.future_done(0)
    found = failed(chaos.check_outcomes(log))
    assert list(found) == ["none completed twice"]
    assert "request 0)" in found["none completed twice"]


def test_checker_rejects_a_lost_request_and_a_future_never_completed() -> None:
    log = outcomes(SYNC_CHAT, SYNC_CHAT, FUTURE)
    log.record(0, chaos.OK)
    log.uses_future[2] = 1
    log.record(2, chaos.OK)  # its caller saw an answer, yet the future never completed
    found = failed(chaos.check_outcomes(log))
    assert list(found) == ["no future lost"]
    assert "2 (request 1, 2)" in found["no future lost"]


def test_checker_rejects_untyped_wrong_uninvited_and_unexpected_outcomes() -> None:
    log = outcomes(SYNC_CHAT, SYNC_CHAT, SYNC_CHAT, SYNC_CHAT, TASK_CANCELLED, FUTURE)
    log.record(0, chaos.UNTYPED, KeyError("choices"))
    log.record(1, chaos.WRONG)
    log.record(2, chaos.CALLER_CANCELLED)  # a sync chat's caller never cancels
    log.record(3, chaos.API_ERROR, _error("AuthenticationError"))
    log.record(4, chaos.CALLER_CANCELLED)  # allowed: this caller cancels
    log.uses_future[5] = 1
    log.future_done(5)
    log.record(5, chaos.API_ERROR, _error("CancelledRequestError"))  # nobody cancelled it
    found = failed(chaos.check_outcomes(log))
    assert set(found) == {
        "every failure is a typed error",
        "every success is its own answer",
        "cancelled only by its caller",
        "errors are the ones this weather causes",
    }
    assert "AuthenticationError" in found["errors are the ones this weather causes"]
    assert "2 (request 2, 5)" in found["cancelled only by its caller"]


def _error(name: str) -> BaseException:
    from ipfs_accelerate_py.resilience import errors

    cls: type[BaseException] = getattr(errors, name)
    return cls("synthetic")


def test_checker_accepts_every_expected_outcome() -> None:
    log = outcomes(SYNC_CHAT, SYNC_CHAT, TASK_CANCELLED, FUTURE_CANCELLED)
    log.record(0, chaos.OK)
    log.record(1, chaos.API_ERROR, _error("StreamStalledError"))  # a subclass of an expected one
    log.record(2, chaos.CALLER_CANCELLED)
    log.uses_future[3] = 1
    log.future_done(3)
    log.record(3, chaos.API_ERROR, _error("CancelledRequestError"))
    assert failed(chaos.check_outcomes(log)) == {}


def test_engine_counts_reject_a_request_counted_twice_or_not_at_all() -> None:
    log = outcomes(SYNC_CHAT, SYNC_CHAT, TASK_CANCELLED)
    log.record(0, chaos.OK)
    log.record(1, chaos.API_ERROR, _error("ServerError"))
    log.record(2, chaos.CALLER_CANCELLED)
    right = {
        "total_requests": 3,
        "successful_requests": 2,
        "failed_requests": 1,
        "cancelled_requests": 0,
    }  # the cancelled task had finished first: the engine counted a success
    assert failed(chaos.check_engine_counts(log, right)) == {}
    twice = dict(right, total_requests=4, successful_requests=3)
    assert "engine counted each request once" in failed(chaos.check_engine_counts(log, twice))
    missing = dict(right, total_requests=2, successful_requests=1)
    found = failed(chaos.check_engine_counts(log, missing))
    assert set(found) == {"engine counted each request once", "engine outcomes match the callers'"}


def line(
    tag: Any, status: int | None = 200, faults: tuple[str, ...] = (), finished: bool = False
) -> dict[str, Any]:
    return {
        "tag": None if tag is None else str(tag),
        "status": status,
        "faults": list(faults),
        "disconnected": False,
        "stream_finished": finished,
    }


def test_sim_log_check_accepts_a_consistent_log() -> None:
    log = outcomes(SYNC_CHAT, SYNC_STREAM, EMBEDDINGS)
    for i in range(3):
        log.record(i, chaos.OK)
    lines = [line(0, 500, ("error",)), line(0), line(1, finished=True), line(None)]
    checks, figures = chaos.check_sim_log(lines, log, http_attempts=4, cancelled=0)
    assert failed(checks) == {}
    assert figures == {"log_lines": 4, "tagged_requests_seen": 2}


def test_sim_log_check_rejects_what_the_server_contradicts() -> None:
    log = outcomes(SYNC_CHAT, SYNC_STREAM, SYNC_CHAT)
    for i in range(3):
        log.record(i, chaos.OK)
    lines = [
        line(0, 200, ("malformed",)),  # the only answer of a "success" was garbage
        line(1, 200, ("stream_cut",)),  # a "completed" stream the server cut
        line(2),
        line(2, 502, ("error",)),
        line(2, 502, ("error",)),
        line(2, 502, ("error",)),  # four attempts: one past 1 + max_retries
        line(7),  # no such request
    ]
    checks, _ = chaos.check_sim_log(lines, log, http_attempts=3, cancelled=1)
    found = failed(checks)
    assert set(found) == {
        "server saw the client's attempts (and those cancels aborted)",
        "server saw no phantom request",
        f"at most {1 + chaos.MAX_RETRIES} attempts per request at the server",
        "every success had a clean 200 from the server",
    }
    assert "2 (request 0, 1)" in found["every success had a clean 200 from the server"]
    assert "[7]" in found["server saw no phantom request"]


def test_sim_log_check_rejects_a_stream_the_server_never_finished() -> None:
    log = outcomes(SYNC_STREAM)
    log.record(0, chaos.OK)
    checks, _ = chaos.check_sim_log([line(0, 200)], log, http_attempts=1, cancelled=0)
    assert list(failed(checks)) == ["every completed stream was finished by the server"]


# ------------------------------------------------------------------ the simulator's log


def test_simulator_logs_each_request_with_its_tag_status_and_faults(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with Simulator({"fail_next": 1}, host=LOOPBACK) as sim:
        url = sim.base_url + "/chat/completions"
        post_json(url, body, {"Content-Type": "application/json"})  # before the log: not logged
        sim.configure(fail_next=1)
        log = sim.log_requests(path, tag_header="x-test-tag")
        assert log is not None
        first = post_json(url, body, {"Content-Type": "application/json", "x-test-tag": "a"})
        second = post_json(url, body, {"Content-Type": "application/json", "x-test-tag": "b"})
        post_json(url, body, {"Content-Type": "application/json"})
        assert log.lines == 3
        sim.log_requests(None)
        post_json(url, body, {"Content-Type": "application/json", "x-test-tag": "c"})
    assert (first.status, second.status) == (500, 200)
    assert [
        (entry["n"], entry["tag"], entry["status"], entry["faults"], entry["path"])
        for entry in read_log(path)
    ] == [
        (1, "a", 500, ["error"], "/v1/chat/completions"),
        (2, "b", 200, [], "/v1/chat/completions"),
        (3, None, 200, [], "/v1/chat/completions"),
    ]


def test_simulator_log_marks_a_finished_stream_and_a_cut_one(tmp_path: Path) -> None:
    path = tmp_path / "streams.jsonl"
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Content-Type": "application/json", "x-request-tag": "s"}
    with Simulator(host=LOOPBACK) as sim:
        sim.log_requests(path)
        url = sim.base_url + "/chat/completions"
        whole = post_json(url, body, headers)
        sim.configure(stream_cut_after=1)
        with pytest.raises(http.client.IncompleteRead):  # the chunked body ends unfinished
            post_json(url, body, headers)
    assert whole.status == 200 and b"[DONE]" in whole.body
    entries = list(read_log(path))
    assert [(e["status"], e["faults"], e["stream_finished"]) for e in entries] == [
        (200, [], True),
        (200, ["stream_cut"], False),
    ]
