"""``ipfs-accelerate run`` on an OpenAI Batch API file (``cli.main`` in this process)
against the simulator: every custom_id answered once in the Batch API's
output format, a failure as its error line, and resume sending nothing again."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ..helpers import REPLY_PREFIX, cli_here

ROOT = Path(__file__).resolve().parents[2]
CHATS = 6
EMBEDDINGS = 4


def batch_file(path: Path) -> Path:
    lines = [
        {
            "custom_id": f"chat-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"question {i}"}],
                "temperature": 0,
            },
        }
        for i in range(CHATS)
    ] + [
        {
            "custom_id": f"embed-{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": f"text {i}"},
        }
        for i in range(EMBEDDINGS)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run_cli(jobs: Path, out: Path, simulator, *extra: str) -> subprocess.CompletedProcess:
    """The command, run by ``cli.main`` in this process."""
    return cli_here(
        [
            "run",
            str(jobs),
            "--base-url",
            simulator.url + "/v1",
            "--out",
            str(out),
            "--progress",
            "quiet",
            "--set",
            "initial_retry_delay=0.01",
            "--set",
            "retry_jitter=0",
            *extra,
        ]
    )


def output_lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_batch_output_shape(line: dict) -> None:
    assert set(line) == {"id", "custom_id", "response", "error"}
    assert isinstance(line["id"], str) and line["id"].startswith("batch_req_")
    if line["response"] is not None:
        assert set(line["response"]) == {"status_code", "request_id", "body"}
        assert isinstance(line["response"]["status_code"], int) and isinstance(
            line["response"]["body"], dict
        )
    if line["error"] is not None:
        assert set(line["error"]) == {"code", "message"}


def test_a_batch_file_of_chats_and_embeddings_runs_as_it_is_and_resumes_with_nothing_to_send(
    tmp_path, simulator
):
    jobs, out = batch_file(tmp_path / "batch.jsonl"), tmp_path / "out.jsonl"
    proc = run_cli(jobs, out, simulator, "--output-format", "openai-batch")
    assert proc.returncode == 0, proc.stderr
    lines = output_lines(out)
    for line in lines:
        assert_batch_output_shape(line)
    expected = sorted(
        [f"chat-{i}" for i in range(CHATS)] + [f"embed-{i}" for i in range(EMBEDDINGS)]
    )
    assert sorted(line["custom_id"] for line in lines) == expected  # every custom_id once
    assert all(line["error"] is None and line["response"]["status_code"] == 200 for line in lines)
    answers = {line["custom_id"]: line["response"]["body"] for line in lines}
    assert answers["chat-3"]["object"] == "chat.completion"
    assert answers["chat-3"]["choices"][0]["message"]["content"] == REPLY_PREFIX + "question 3"
    assert answers["embed-2"]["object"] == "list" and len(answers["embed-2"]["data"]) == 1
    by_path = simulator.counters()["by_path"]
    assert by_path.get("/v1/chat/completions", 0) == CHATS
    assert 1 <= by_path.get("/v1/embeddings", 0) <= EMBEDDINGS  # batched, perhaps

    simulator.reset()
    again = run_cli(jobs, out, simulator, "--output-format", "openai-batch")
    assert again.returncode == 0, again.stderr
    assert simulator.counters()["requests_total"] == 0
    assert len(output_lines(out)) == len(lines)


def test_a_failed_request_is_an_error_line_with_the_servers_status_and_body(tmp_path, simulator):
    jobs, out = batch_file(tmp_path / "batch.jsonl"), tmp_path / "out.jsonl"
    simulator.script([{"status": 400}])  # one request refused for good (400 is not retried)
    proc = run_cli(
        jobs,
        out,
        simulator,
        "--output-format",
        "openai-batch",
        "--input-format",
        "openai-batch",
        "--concurrency",
        "1",
    )
    assert proc.returncode == 1, proc.stderr  # some line failed
    lines = output_lines(out)
    for line in lines:
        assert_batch_output_shape(line)
    failed = [line for line in lines if line["response"]["status_code"] != 200]
    assert len(lines) == CHATS + EMBEDDINGS and len(failed) == 1
    (line,) = failed
    assert (
        line["response"]["status_code"] == 400 and line["error"] is None
    )  # as the Batch API writes an HTTP failure
    assert line["response"]["request_id"]  # the server's x-request-id
    assert isinstance(line["response"]["body"].get("error"), dict)

    simulator.reset()
    assert (
        run_cli(
            jobs, out, simulator, "--output-format", "openai-batch", "--retry-failed"
        ).returncode
        == 0
    )
    assert simulator.counters()["requests_total"] == 1  # only the failed one again
    final = output_lines(out)
    assert [x["custom_id"] for x in final[len(lines) :]] == [line["custom_id"]]
    assert final[-1]["response"]["status_code"] == 200 and final[-1]["error"] is None


def test_forcing_our_format_reports_every_batch_line_and_sends_nothing(tmp_path, simulator):
    jobs, out = batch_file(tmp_path / "batch.jsonl"), tmp_path / "out.jsonl"
    proc = run_cli(jobs, out, simulator, "--input-format", "jobs")
    assert proc.returncode == 2  # refused before anything is sent, the first bad line named
    assert (
        "line 1: " in proc.stderr
        and "input format is jobs" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert simulator.counters()["requests_total"] == 0
