"""``ipfs-accelerate run``: a job file through a backend against the
simulator, checked on the results file, the report and what the simulator
saw.  Kill and Ctrl-C run the command in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ipfs_accelerate_py.cli import main as cli_main

from ..helpers import REPLY_PREFIX, WAIT, eventually

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "jobs.jsonl"


def write_jobs(path: Path, jobs: list, extra_lines: tuple = ()) -> Path:
    with open(path, "w") as out:
        for job in jobs:
            out.write(json.dumps(job) + "\n")
        for line in extra_lines:
            out.write(line + "\n")
    return path


def chats(n: int, prefix: str = "q") -> list:
    return [
        {"id": f"{prefix}{i}", "messages": [{"role": "user", "content": f"question {i}"}]}
        for i in range(n)
    ]


def results(path: Path) -> list:
    with open(path) as source:
        return [json.loads(line) for line in source]


def by_id(records: list) -> dict:
    out: dict = {}
    for record in records:
        out.setdefault(record["id"], []).append(record)
    return out


def run(tmp_path: Path, jobs: Path, simulator, *extra: str) -> int:
    return cli_main(
        [
            "run",
            str(jobs),
            "--base-url",
            simulator.url + "/v1",
            "--out",
            str(tmp_path / "out.jsonl"),
            "--progress",
            "quiet",
            "--set",
            "initial_retry_delay=0.01",
            "--set",
            "retry_jitter=0",
            *extra,
        ]
    )


# --------------------------------------------------------------- whole runs


def test_the_sample_runs_end_to_end_with_results_and_a_report(tmp_path, simulator):
    code = run(tmp_path, SAMPLE, simulator)
    assert code == 0
    records = results(tmp_path / "out.jsonl")
    sample_ids = [json.loads(line)["id"] for line in SAMPLE.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(sample_ids)
    assert all(r["status"] == "ok" and r["attempts"] >= 1 and r["latency_s"] >= 0 for r in records)
    chat = next(r for r in records if r["id"] == "chat-01")
    assert (
        chat["result"]["choices"][0]["message"]["content"]
        == REPLY_PREFIX + "Write one sentence about the moon."
    )
    embed = next(r for r in records if r["id"] == "embed-batch")
    assert len(embed["result"]["data"]) == 8
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["totals"]["ok"] == len(sample_ids) and report["totals"]["failed"] == 0
    assert "<svg" in (tmp_path / "out.report.html").read_text()
    counted = simulator.counters()
    chat_calls = counted["by_path"].get("/v1/chat/completions", 0)
    assert chat_calls == sum(
        1 for i in sample_ids if i.startswith("chat-")
    )  # every chat exactly once
    assert counted["by_path"]["/v1/embeddings"] < 21  # single-text embeddings went out in batches


def test_malformed_lines_stop_the_command_unless_skipped_then_are_reported_by_number(
    tmp_path, simulator
):
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        chats(3),
        extra_lines=(
            "{not json",
            '{"id": "x"}',
            '{"id": "q0", "messages": [{"role": "user", "content": "dup"}]}',
            '{"messages": "no list"}',
            '{"input": "ok line without id"}',
        ),
    )
    assert run(tmp_path, jobs, simulator) == 2  # refused before anything is sent
    assert simulator.counters()["requests_total"] == 0 and not (tmp_path / "out.jsonl").exists()
    code = run(tmp_path, jobs, simulator, "--skip-bad-lines")
    assert code == 1  # malformed lines make the run not clean
    records = results(tmp_path / "out.jsonl")
    assert sorted(r["id"] for r in records) == ["line-8", "q0", "q1", "q2"]
    assert all(r["status"] == "ok" for r in records)
    report = json.loads((tmp_path / "out.report.json").read_text())
    lines = {line: reason for line, reason in report["malformed_lines"]}
    assert sorted(lines) == [4, 5, 6, 7]
    assert "not JSON" in lines[4] and "already used" in lines[6] and "messages" in lines[7]
    assert report["totals"]["malformed"] == 4
    assert (
        report["job"] == {"lines": 8, "ok": 4, "failed": 0, "not_run": 0, "bad": 4}
        and report["success_rate"] == 50.0
    )
    assert report["runs"][-1]["exit_code"] == 1  # a finished run says its exit code too


def test_a_rerun_skips_what_is_done_and_retries_failures_only_when_asked(tmp_path, simulator):
    jobs = write_jobs(tmp_path / "jobs.jsonl", chats(6))
    simulator.script([{"status": 400}, {"status": 400}])  # two jobs fail for good (not retryable)
    assert run(tmp_path, jobs, simulator, "--concurrency", "1") == 1
    first = results(tmp_path / "out.jsonl")
    failed = sorted(r["id"] for r in first if r["status"] == "error")
    assert len(failed) == 2 and all(
        r["error"]["type"] == "InvalidRequestError" for r in first if r["status"] == "error"
    )
    simulator.reset()
    assert run(tmp_path, jobs, simulator) == 1  # nothing to do: the two failures stand
    assert simulator.counters()["requests_total"] == 0
    assert run(tmp_path, jobs, simulator, "--retry-failed") == 0
    assert simulator.counters()["requests_total"] == 2
    final = by_id(results(tmp_path / "out.jsonl"))
    assert sorted(final) == [f"q{i}" for i in range(6)]
    assert all(records[-1]["status"] == "ok" for records in final.values())


def test_rate_limits_and_an_outage_still_complete_every_line(tmp_path, fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(
        rate_limits={"rpm": 60}, rate_window=0.5, latency=0.01
    )  # 60 a half-second window: 120 req/s
    jobs = write_jobs(tmp_path / "jobs.jsonl", chats(150))
    out = tmp_path / "out.jsonl"

    def outage() -> None:  # an outage of 0.6 s (two reset_timeouts) once a fifth of the run is done
        eventually(lambda: lines_in(out) >= 30, "the run is under way")
        simulator.configure(outage=True)
        threading.Event().wait(0.6)
        simulator.configure(outage=False)

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    code = run(
        tmp_path,
        jobs,
        simulator,
        "--concurrency",
        "8",
        "--max-retries",
        "8",
        "--set",
        "reset_timeout=0.3",
        "--set",
        "failure_threshold=3",
        "--set",
        "max_retry_delay=0.5",
    )
    thread.join(WAIT)
    records = results(out)
    assert code == 0, [r for r in records if r["status"] != "ok"][:3]
    assert sorted(r["id"] for r in records) == sorted(f"q{i}" for i in range(150))
    counted = simulator.counters()
    assert counted["faults"]["outage"] > 0  # the outage did hit the run
    assert counted["rate_limited"] > 0  # and so did the limits
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["circuit"]["times_opened"] >= 1


# --------------------------------------------------- kill, Ctrl-C, resume


def spawn(tmp_path: Path, jobs: Path, simulator, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipfs_accelerate_py",
            "run",
            str(jobs),
            "--base-url",
            simulator.url + "/v1",
            "--out",
            str(tmp_path / "out.jsonl"),
            "--progress",
            "quiet",
            "--concurrency",
            "4",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines_in(path: Path) -> int:
    return sum(1 for _ in open(path)) if path.exists() else 0


def test_a_killed_run_resumes_with_exactly_the_missing_ids(tmp_path, fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(latency=0.02)
    jobs = write_jobs(tmp_path / "jobs.jsonl", chats(200))
    proc = spawn(tmp_path, jobs, simulator)
    try:
        eventually(lambda: lines_in(tmp_path / "out.jsonl") >= 40, "the first run writes results")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(WAIT)
    done_before = {r["id"] for r in results(tmp_path / "out.jsonl")}
    assert 40 <= len(done_before) < 200
    simulator.reset()  # counters zeroed, no latency: the rerun (in this process) need not be paced
    assert run(tmp_path, jobs, simulator) == 0
    records = results(tmp_path / "out.jsonl")
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 200  # every id once: nothing repeated, nothing missing
    assert all(r["status"] == "ok" for r in records)
    assert simulator.counters()["requests_total"] == 200 - len(done_before)


def test_ctrl_c_finishes_what_is_in_flight_records_it_and_a_rerun_completes(
    tmp_path, fresh_simulator
):
    simulator = fresh_simulator
    simulator.configure(latency=0.05)
    jobs = write_jobs(tmp_path / "jobs.jsonl", chats(300))
    proc = spawn(tmp_path, jobs, simulator)
    eventually(lambda: lines_in(tmp_path / "out.jsonl") >= 20, "the first run writes results")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    first = results(tmp_path / "out.jsonl")
    ok = [r for r in first if r["status"] == "ok"]
    assert {r["status"] for r in first} <= {
        "ok",
        "interrupted",
    }  # in flight: finished; queued: left, unsent
    seen = simulator.counters()["requests_total"]
    assert (
        seen == len(ok) < 300
    )  # every request the server answered is in the results, and no queued one was sent
    simulator.configure(latency=0.0)  # the rerun need not be paced (it runs in this process)
    assert run(tmp_path, jobs, simulator) == 0
    ids = [r["id"] for r in results(tmp_path / "out.jsonl") if r["status"] == "ok"]
    assert (
        len(ids) == len(set(ids)) == 300
    )  # each line answered once: the interrupted ones ran on resume
    assert simulator.counters()["requests_total"] == 300


def test_a_line_cut_by_a_crash_is_dropped_and_its_job_run_again(tmp_path, simulator):
    jobs = write_jobs(tmp_path / "jobs.jsonl", chats(3))
    out = tmp_path / "out.jsonl"
    out.write_text(
        json.dumps({"id": "q0", "line": 1, "status": "ok", "result": {}})
        + "\n"
        + '{"id": "q1", "line": 2, "sta'
    )
    assert run(tmp_path, jobs, simulator) == 0
    records = results(out)
    assert [r["id"] for r in records][0] == "q0" and sorted(r["id"] for r in records) == [
        "q0",
        "q1",
        "q2",
    ]
    assert simulator.counters()["requests_total"] == 2


def test_an_unknown_setting_is_refused_with_its_name(tmp_path, simulator, capsys):
    jobs = write_jobs(tmp_path / "jobs.jsonl", chats(1))
    assert run(tmp_path, jobs, simulator, "--set", "max_concurent_requests=4") == 2
    assert "max_concurent_requests" in capsys.readouterr().err
    assert simulator.counters()["requests_total"] == 0


@pytest.mark.parametrize("mode", ["json", "quiet"])
def test_non_interactive_modes_print_no_terminal_control(tmp_path, simulator, mode):
    jobs = write_jobs(tmp_path / "jobs.jsonl", chats(5))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ipfs_accelerate_py",
            "run",
            str(jobs),
            "--base-url",
            simulator.url + "/v1",
            "--out",
            str(tmp_path / "out.jsonl"),
            "--progress",
            mode,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr
    if mode == "json":
        events = [
            json.loads(line) for line in proc.stderr.splitlines()
        ]  # every line JSON, the target too
        assert events[0]["event"] == "note" and events[0]["message"].startswith(
            "target: openai at 127.0.0.1:"
        )
        assert events[-1]["event"] == "summary"
    assert os.path.exists(tmp_path / "out.report.html")


def test_the_readme_main_job_command_runs_the_sample_against_the_embedded_simulator(tmp_path):
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("pip install -e . && "))
    runner = command.split(" && ", 1)[1].split()
    assert runner[:3] == ["ipfs-accelerate", "run", "examples/jobs.jsonl"]
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "jobs.jsonl").write_bytes(SAMPLE.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IPFS_ACCELERATE_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "ipfs_accelerate_py", *runner[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    records = results(tmp_path / "examples" / "jobs.results.jsonl")
    assert len(records) == len(SAMPLE.read_text().splitlines()) and all(
        r["status"] == "ok" for r in records
    )
    assert (tmp_path / "examples" / "jobs.results.report.html").exists()
