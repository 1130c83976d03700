"""The runner's stop rules and its pass over the job file, exactly: no
clock, no network."""

from __future__ import annotations

import json
import signal

import pytest

from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ipfs_accelerate_py.runner.results import Outcomes
from ipfs_accelerate_py.runner.scan import scan_jobs, snippet
from ipfs_accelerate_py.runner.stops import (
    EXIT_INTERRUPTED,
    EXIT_NO_KEY,
    EXIT_OUTAGE,
    EXIT_SAME_FAILURES,
    EXIT_TERMINATED,
    FailureStreak,
    no_key_stop,
    outage_stop,
    preflight_failure,
    signal_stop,
)


def not_found(model: str = "x") -> NotFoundError:
    return NotFoundError(f"The model `{model}` does not exist", status=404)


# ------------------------------------------------------------ the streak


def test_the_streak_stops_at_the_limit_of_identical_failures_in_a_row():
    streak = FailureStreak(3)
    assert streak.failure(not_found()) is None and streak.failure(not_found()) is None
    stop = streak.failure(not_found())
    assert stop is not None and stop.code == EXIT_SAME_FAILURES and not stop.graceful
    assert (
        "the last 3 lines all failed the same way (NotFoundError" in stop.reason
        and "--max-same-failures" in stop.reason
    )


@pytest.mark.parametrize(
    "breaker",
    [
        lambda streak: streak.success(),
        lambda streak: streak.failure(not_found("other")),
        lambda streak: streak.failure(
            InvalidRequestError("The model `x` does not exist", status=400)
        ),
        lambda streak: streak.failure(NotFoundError("The model `x` does not exist", status=410)),
    ],
)
def test_a_success_or_a_different_failure_starts_the_count_again(breaker):
    streak = FailureStreak(3)
    streak.failure(not_found())
    streak.failure(not_found())
    breaker(streak)
    assert streak.failure(not_found()) is None  # one or two in a row now, not three


def test_a_limit_of_zero_never_stops():
    streak = FailureStreak(0)
    assert all(streak.failure(not_found()) is None for _ in range(1000))


# ------------------------------------------------------------ the pre-flight's verdicts


@pytest.mark.parametrize(
    "error, usable, words",
    [
        (
            NetworkError("connection refused to 127.0.0.1:9"),
            0,
            "cannot reach the target: connection refused",
        ),
        (
            NetworkError("connection refused to 127.0.0.1:9"),
            3,
            "cannot reach the target",
        ),  # keys do not help a dead host
        (AuthenticationError("Incorrect API key", status=401), 0, "the target refused the key"),
        (not_found(), 1, "not found: [HTTP 404] The model `x` does not exist; check the model"),
    ],
)
def test_what_cannot_work_is_named_with_its_fix(error, usable, words):
    assert words in preflight_failure(error, usable)


@pytest.mark.parametrize(
    "error, usable",
    [
        (
            AuthenticationError("Incorrect API key", status=401),
            1,
        ),  # another key may work: the run goes on
        (RateLimitError("slow down", status=429), 0),
        (ServerError("overloaded", status=503), 0),
        (InvalidRequestError("bad temperature", status=400), 0),  # that line's own failure
    ],
)
def test_what_the_run_can_handle_lets_it_go_on(error, usable):
    assert preflight_failure(error, usable) is None


def test_every_refused_key_is_named():
    verdict = preflight_failure(AuthenticationError("no", status=401), 0, ("key1", "key2"))
    assert verdict.startswith("the target refused every key (key1, key2): ")


# ------------------------------------------------------------ the other stops


def test_signals_stop_gracefully_with_128_plus_their_number():
    assert signal_stop(signal.SIGINT).code == EXIT_INTERRUPTED == 130
    assert signal_stop(signal.SIGTERM).code == EXIT_TERMINATED == 143
    assert (
        signal_stop(signal.SIGTERM).reason == "interrupted by SIGTERM"
        and signal_stop(signal.SIGINT).graceful
    )
    assert signal_stop(signal.SIGINT).reason == "interrupted by Ctrl-C"


def test_an_outage_stop_says_how_long_and_the_last_error():
    stop = outage_stop(301.4, ServerError("Service Unavailable", status=503))
    assert stop.code == EXIT_OUTAGE and not stop.graceful
    assert stop.reason.startswith("outage of 301 s") and "last error: ServerError: " in stop.reason
    assert "last error" not in outage_stop(5, None).reason


def test_a_no_key_stop_names_each_disabled_key_and_why():
    stop = no_key_stop(
        AuthenticationError("no", status=401), {"key1": "401 Unauthorized", "key2": "403 Forbidden"}
    )
    assert stop.code == EXIT_NO_KEY and "key1: 401 Unauthorized; key2: 403 Forbidden" in stop.reason
    assert "the key was refused" in no_key_stop(AuthenticationError("no", status=401), {}).reason


# ------------------------------------------------------------ the pass over the file


def write(path, *lines) -> str:
    path.write_bytes(
        b"".join(
            (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n"
            for line in lines
        )
    )
    return str(path)


def test_the_scan_counts_jobs_by_type_and_model_and_estimates_tokens(tmp_path):
    path = write(
        tmp_path / "j.jsonl",
        {"id": "a", "model": "m1", "messages": [{"role": "user", "content": "x" * 10}]},
        {"id": "b", "input": ["y" * 6, "z" * 6]},
        b"",
        {"id": "c", "prompt": "w" * 3},
    )
    scan = scan_jobs(path, check=lambda job: (job.model or f"default-{job.type}", None))
    assert (scan.lines, scan.jobs, scan.bad, scan.to_send) == (3, 3, 0, 3)
    assert dict(scan.by_model) == {
        ("chat", "m1"): 1,
        ("embeddings", "default-embeddings"): 1,
        ("completion", "default-completion"): 1,
    }
    assert scan.chars == 25 and scan.estimated_tokens == 7  # rounded up
    assert scan.problem() is None
    refused = scan_jobs(
        path, check=lambda job: ("m", "no completions here" if job.type == "completion" else None)
    )
    assert (refused.jobs, refused.bad) == (
        2,
        1,
    ) and "line 4: no completions here" in refused.problem()


def test_the_scan_knows_where_the_job_stands_after_earlier_runs(tmp_path):
    path = write(tmp_path / "j.jsonl", *({"id": f"q{i}", "input": "x"} for i in range(5)))
    outcomes = Outcomes()
    outcomes.ok.add("q0")
    outcomes.failed.add("q1")
    outcomes.failed.add("q2")
    outcomes.ok.add("q2")  # failed, then succeeded on a retry
    outcomes.ok.add("elsewhere")  # a result of a line no longer in the file
    scan = scan_jobs(path, outcomes=outcomes)
    assert (scan.ok, scan.failed, scan.not_run, scan.to_send) == (2, 1, 2, 2)
    assert scan_jobs(path, outcomes=outcomes, retry_failed=True).to_send == 3


def test_the_problem_names_the_first_bad_lines_and_counts_the_rest(tmp_path):
    path = write(
        tmp_path / "j.jsonl",
        {"id": "a", "input": "x"},
        b"nope",
        *([b"[1]"] * 7),
        {"id": "a", "input": "y"},
    )
    scan = scan_jobs(path)
    assert scan.bad == 9 and scan.jobs == 1
    problem = scan.problem()
    assert problem.startswith("line 2: not JSON") and '(the line starts "nope")' in problem
    assert "; 8 more bad lines (3, 4, 5, 6, ...)" in problem and "--skip-bad-lines" in problem
    assert "empty" in scan_jobs(write(tmp_path / "e.jsonl", b"  ", b"")).problem()


def test_a_snippet_is_short_quoted_and_escapes_what_a_terminal_would_run():
    assert (
        snippet(b"\x1b]0;pwned\x07" + b"a" * 100)
        == json.dumps("\x1b]0;pwned\x07" + "a" * 50) + "..."
    )
    assert "\\u001b" in snippet(b"\x1b[2J") and snippet(b"\xff") == '"\\ufffd"'
