"""OpenAI Batch API files: request lines become jobs, results become the
Batch API's output lines, and resume reads those back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipfs_accelerate_py.resilience.errors import InvalidRequestError, NetworkError, RateLimitError
from ipfs_accelerate_py.runner.jobs import BadLine, Job, parse_job, read_jobs
from ipfs_accelerate_py.runner.openai_batch import output_line
from ipfs_accelerate_py.runner.results import Outcomes, ResultLog

MESSAGES = [{"role": "user", "content": "What is 2+2?"}]
SECRET = "sk-live-0123456789abcdefghijklmnop"


def batch(url: str = "/v1/chat/completions", custom_id="request-1", method="POST", **body) -> dict:
    line = {"custom_id": custom_id, "method": method, "url": url, "body": body}
    return {k: v for k, v in line.items() if v is not None}


def parse(line: dict, input_format: str = "auto", number: int = 1):
    return parse_job(json.dumps(line), number, input_format)


# --------------------------------------------------------------- reading


def test_a_chat_request_line_is_a_chat_job_with_the_rest_of_the_body_as_parameters():
    job = parse(batch(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20, temperature=0))
    assert job == Job(
        1, "request-1", "chat", "gpt-4o-mini", 1, MESSAGES, {"max_tokens": 20, "temperature": 0}
    )


def test_an_embeddings_request_line_is_an_embeddings_job():
    job = parse(
        batch(
            "/v1/embeddings", "e-7", model="text-embedding-3-small", input=["a", "b"], dimensions=8
        )
    )
    assert isinstance(job, Job)
    assert (job.id, job.type, job.model, job.content, job.params) == (
        "e-7",
        "embeddings",
        "text-embedding-3-small",
        ["a", "b"],
        {"dimensions": 8},
    )


def test_a_completions_request_line_is_a_completion_job():
    job = parse(
        batch("/v1/completions", model="gpt-3.5-turbo-instruct", prompt="Once upon", max_tokens=5)
    )
    assert isinstance(job, Job)
    assert (job.type, job.content, job.params) == ("completion", "Once upon", {"max_tokens": 5})


def test_a_body_without_a_model_leaves_it_to_the_run():
    job = parse(batch(messages=MESSAGES))
    assert isinstance(job, Job) and job.model is None


@pytest.mark.parametrize(
    "line, words",
    [
        (dict(batch(messages=MESSAGES), body=None), "'body' must be a JSON object"),
        (batch(model="m"), "body: 'messages' must be a non-empty list"),
        (batch("/v1/embeddings", model="m", messages=MESSAGES), "body: 'input' must be"),
        (batch(method="GET", messages=MESSAGES), "'method' must be POST"),
        (batch(method=None, messages=MESSAGES), "'method' must be POST"),
        (
            batch("/v1/responses", input="hi"),
            "unknown url '/v1/responses': use /v1/chat/completions, /v1/embeddings, /v1/completions",
        ),
        (batch("chat/completions", messages=MESSAGES), "unknown url"),
        (batch(custom_id="", messages=MESSAGES), "'custom_id' must be a non-empty string"),
        (batch(custom_id=17, messages=MESSAGES), "'custom_id' must be a non-empty string"),
        (batch(model="", messages=MESSAGES), "body: 'model' must be a non-empty string"),
    ],
)
def test_a_request_line_that_cannot_be_sent_is_a_bad_line_saying_why(line, words):
    bad = parse(line, number=4)
    assert isinstance(bad, BadLine) and bad.line == 4 and words in bad.reason


def test_a_line_without_custom_id_is_read_as_ours_in_auto_and_refused_when_batch_is_forced():
    line = {"method": "POST", "url": "/v1/chat/completions", "body": {"messages": MESSAGES}}
    assert isinstance(parse(line), BadLine)  # ours: it has no messages of its own
    forced = parse(line, "openai-batch")
    assert isinstance(forced, BadLine) and "not an OpenAI Batch API line" in forced.reason


def test_forcing_batch_refuses_a_line_of_ours_and_forcing_jobs_refuses_a_batch_line():
    ours = {"id": "q1", "messages": MESSAGES}
    theirs = batch(messages=MESSAGES)
    assert isinstance(parse(ours, "jobs"), Job) and isinstance(parse(theirs, "openai-batch"), Job)
    refused = parse(ours, "openai-batch")
    assert isinstance(refused, BadLine) and "input format is openai-batch" in refused.reason
    refused = parse(theirs, "jobs")
    assert (
        isinstance(refused, BadLine)
        and "OpenAI Batch API line" in refused.reason
        and "input format is jobs" in refused.reason
    )


def test_auto_reads_a_file_mixing_both_formats_line_by_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        json.dumps(batch(messages=MESSAGES))
        + "\n\n"
        + json.dumps({"id": "q1", "input": "x"})
        + "\n"
    )
    jobs = list(read_jobs(str(path)))
    assert [(j.line, j.id, j.type) for j in jobs] == [
        (1, "request-1", "chat"),
        (3, "q1", "embeddings"),
    ]
    assert [type(j) for j in read_jobs(str(path), "openai-batch")] == [Job, BadLine]


def test_an_unknown_input_format_is_refused():
    with pytest.raises(ValueError, match="auto, jobs, openai-batch"):
        parse(batch(messages=MESSAGES), "openai")


# --------------------------------------------------------------- writing

OK_RECORD = {
    "id": "request-1",
    "line": 1,
    "status": "ok",
    "result": {"object": "chat.completion", "choices": []},
    "attempts": 1,
    "latency_s": 0.1,
    "key": "key1",
    "finished_at": 1.0,
}


def line_id() -> str:
    return "batch_req_test"


def test_a_success_is_a_200_response_carrying_the_body_and_no_error():
    assert output_line(OK_RECORD, line_id=line_id) == {
        "id": "batch_req_test",
        "custom_id": "request-1",
        "response": {
            "status_code": 200,
            "request_id": None,
            "body": {"object": "chat.completion", "choices": []},
        },
        "error": None,
    }


def test_the_default_line_id_is_shaped_as_the_batch_apis():
    first, second = output_line(OK_RECORD)["id"], output_line(OK_RECORD)["id"]
    assert (
        first.startswith("batch_req_") and len(first) == len("batch_req_") + 24 and first != second
    )


def failed(error: BaseException) -> dict:
    return {
        "id": "request-2",
        "line": 2,
        "status": "error",
        "attempts": 1,
        "error": {
            "type": type(error).__name__,
            "message": str(error),
            **({"kind": error.kind} if hasattr(error, "kind") else {}),
            **({"status": error.status} if getattr(error, "status", None) else {}),
        },
    }


def test_a_server_error_is_its_response_status_request_id_and_body_with_no_error_object():
    body = {
        "error": {
            "message": "bad key " + SECRET,
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    error = InvalidRequestError(
        "bad key " + SECRET, provider="openai", status=400, request_id="req_abc", body=body
    )
    line = output_line(failed(error), error, secrets=(SECRET,), line_id=line_id)
    assert line == {
        "id": "batch_req_test",
        "custom_id": "request-2",
        "response": {
            "status_code": 400,
            "request_id": "req_abc",
            "body": {
                "error": {
                    "message": "bad key ***",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
        },
        "error": None,  # the Batch API's error is for failures with no HTTP answer
    }
    assert SECRET[:12] not in json.dumps(line)


def test_a_text_body_is_read_as_json_and_a_missing_one_is_given_the_openai_shape():
    error = RateLimitError(
        "slow down",
        status=429,
        body=b'{"error": {"message": "slow down", "code": "rate_limit_exceeded"}}',
    )
    assert output_line(failed(error), error)["response"]["body"] == {
        "error": {"message": "slow down", "code": "rate_limit_exceeded"}
    }
    error = RateLimitError("slow down", status=429, body="<html>busy</html>")
    assert output_line(failed(error), error)["response"]["body"] == {
        "error": {"message": "slow down", "type": "rate_limit", "param": None, "code": None}
    }


def test_a_failure_with_no_answer_has_no_response_and_an_unknown_exception_is_named_by_class():
    error = NetworkError("connection refused")
    assert output_line(failed(error), error) | {"id": "x"} == {
        "id": "x",
        "custom_id": "request-2",
        "response": None,
        "error": {"code": "network", "message": "connection refused"},
    }
    error = RuntimeError("boom")
    assert output_line(failed(error), error)["error"] == {"code": "RuntimeError", "message": "boom"}


# --------------------------------------------------------------- the log and resume


def test_the_log_writes_batch_lines_skips_interrupted_ones_and_resume_reads_them_back(tmp_path):
    path = str(tmp_path / "out.jsonl")
    error = InvalidRequestError("no", status=400, request_id="req_1")
    with ResultLog(path, "openai-batch") as log:
        log.write(OK_RECORD)
        log.write(failed(error), error)
        log.write(
            {
                "id": "request-3",
                "line": 3,
                "status": "interrupted",
                "error": {"type": "Interrupted", "message": "x"},
            },
            "x",
        )
    lines = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == ["request-1", "request-2"]
    assert all(set(line) == {"id", "custom_id", "response", "error"} for line in lines)
    outcomes = Outcomes.read(path)
    assert (
        "request-1" in outcomes.ok
        and "request-2" in outcomes.failed
        and "request-2" not in outcomes.ok
    )
    assert not outcomes.done("request-3", retry_failed=False) and not outcomes.done(
        "request-2", retry_failed=True
    )
    assert outcomes.done("request-2", retry_failed=False)


@pytest.mark.parametrize(
    "line, ok",
    [
        (
            {
                "id": "b",
                "custom_id": "c",
                "response": {"status_code": 201, "body": {}},
                "error": None,
            },
            True,
        ),
        (
            {
                "id": "b",
                "custom_id": "c",
                "response": {"status_code": 200, "body": {}},
                "error": {"code": "x"},
            },
            False,
        ),
        (
            {
                "id": "b",
                "custom_id": "c",
                "response": {"status_code": 500, "body": {}},
                "error": None,
            },
            False,
        ),
        (
            {
                "id": "b",
                "custom_id": "c",
                "response": None,
                "error": {"code": "batch_expired", "message": "m"},
            },
            False,
        ),
    ],
)
def test_resume_reads_a_batch_line_ok_only_when_2xx_and_no_error(tmp_path, line, ok):
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(line) + "\n")
    outcomes = Outcomes.read(str(path))
    assert ("c" in outcomes.ok, "c" in outcomes.failed) == (ok, not ok)


def test_resume_reads_both_formats_in_one_file(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(
        json.dumps({"id": "q1", "line": 1, "status": "ok", "result": {}})
        + "\n"
        + json.dumps(output_line(dict(OK_RECORD, id="request-9")))
        + "\n"
        + json.dumps({"custom_id": None, "response": None})
        + "\n"  # not a line of either: ignored
    )
    outcomes = Outcomes.read(str(path))
    assert "q1" in outcomes.ok and "request-9" in outcomes.ok and len(outcomes) == 2


def test_the_jobs_format_is_unchanged_by_an_error_given_to_the_log(tmp_path):
    path = str(tmp_path / "out.jsonl")
    record = failed(InvalidRequestError("no", status=400))
    with ResultLog(path) as log:
        log.write(record, InvalidRequestError("no", status=400))
    assert json.loads(Path(path).read_text()) == record


def test_an_unknown_output_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="jobs, openai-batch"):
        ResultLog(str(tmp_path / "out.jsonl"), "batch")
