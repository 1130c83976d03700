"""``ipfs-accelerate run`` at the edges a new user meets first: a target that
cannot work, an outage, signals, bad keys, the same failure again and again,
where the run goes.  Each test checks the command's exit code, what it
printed, the files it left and what the server saw.  Runs that are stopped by
a signal, write to the process's own stdout or stand for the exit code as a
shell sees it run the real CLI in a subprocess; the others run ``cli.main``,
the same code, in this process (with the environment given), which is much
quicker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ipfs_accelerate_py.runner.stops import (
    EXIT_FAILURES,
    EXIT_NO_KEY,
    EXIT_OK,
    EXIT_OUTAGE,
    EXIT_SAME_FAILURES,
    EXIT_TERMINATED,
    EXIT_USAGE,
    EXIT_WRITE_FAILED,
)
from ipfs_accelerate_py.simulator import key_fingerprint

from ..helpers import WAIT, cli_here, eventually

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "sk-good-0123456789abcdefghijkl"
BAD_KEY = "sk-bad-0123456789abcdefghijklmn"
OTHER_BAD_KEY = "sk-worse-0123456789abcdefghijk"
FAST_RETRIES = ("--set", "initial_retry_delay=0.01", "--set", "retry_jitter=0")


def write_chats(path: Path, n: int, **fields) -> Path:
    with open(path, "w") as out:
        for i in range(n):
            out.write(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "messages": [{"role": "user", "content": f"question {i}"}],
                        **fields,
                    }
                )
                + "\n"
            )
    return path


def command(jobs: Path, out: Path, *extra: str) -> list:
    return [
        sys.executable,
        "-m",
        "ipfs_accelerate_py",
        "run",
        str(jobs),
        "--out",
        str(out),
        "--progress",
        "quiet",
        *extra,
    ]


def cli(
    jobs: Path, out: Path, *extra: str, env=None, timeout: float = 60, process: bool = False
) -> subprocess.CompletedProcess:
    """The command run to its end: in this process, or in a real one with ``process=True``."""
    argv = command(jobs, out, *extra)
    env = env if env is not None else clean_env()
    if process:
        return subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
        )
    return cli_here(argv[3:], env)  # after "python -m ipfs_accelerate_py"


def spawn(jobs: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        command(jobs, out, *extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )


def clean_env(**more: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IPFS_ACCELERATE_"))}
    env.update(more)
    return env


def records(path: Path) -> list:
    with open(path) as source:
        return [
            json.loads(line) for line in source
        ]  # every line whole: json.loads fails on a torn one


def lines_in(path: Path) -> int:
    return sum(1 for _ in open(path)) if path.exists() else 0


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line the command printed for its error (after the target line)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ipfs-accelerate run: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def signalled_run(tmp_path: Path, simulator, lines: int, signum: int) -> tuple:
    """A run of ``lines`` chats at 50 ms each, sent ``signum`` once 20 are written: (jobs, out, proc, stderr)."""
    simulator.configure(latency=0.05)
    jobs = write_chats(tmp_path / "jobs.jsonl", lines)
    out = tmp_path / "out.jsonl"
    proc = spawn(jobs, out, "--base-url", simulator.url + "/v1", "--concurrency", "4")
    eventually(lambda: lines_in(out) >= 20, "the run writes results")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=WAIT)
    return jobs, out, proc, err


# ------------------------------------------------------------ 1. pre-flight


@pytest.mark.parametrize("case", ["refused", "dns", "tls", "bad key", "no such model"])
def test_a_target_that_cannot_work_ends_the_run_at_the_first_request_with_the_cause(
    tmp_path, simulator, case
):
    jobs = write_chats(tmp_path / "jobs.jsonl", 50)
    out = tmp_path / "out.jsonl"
    simulator.configure(valid_keys=[GOOD_KEY], strict_models=True)
    http = simulator.url + "/v1"
    target, cause = {
        "refused": (
            (f"http://127.0.0.1:{free_port()}/v1", "--key", GOOD_KEY),
            "connection refused to 127.0.0.1",
        ),
        "dns": (
            ("http://no-such-host.invalid/v1", "--key", GOOD_KEY),
            "cannot resolve host 'no-such-host.invalid'",
        ),
        "tls": ((http.replace("http://", "https://"), "--key", GOOD_KEY), "TLS handshake"),
        "bad key": ((http, "--key", BAD_KEY), "the target refused the key"),
        "no such model": ((http, "--key", GOOD_KEY, "--model", "no-such-model"), "not found"),
    }[case]
    proc = cli(jobs, out, "--base-url", *target, timeout=30)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    line = error_line(proc)
    assert cause in line and "no result was written" in line
    assert BAD_KEY not in proc.stderr and GOOD_KEY not in proc.stderr
    assert (
        not out.exists() and not (tmp_path / "out.report.json").exists()
    )  # nothing claimed done, no report
    assert (
        simulator.counters()["requests_total"] <= 1
    )  # the pre-flight alone reached the server, if anything did


def test_a_first_line_that_fails_alone_is_its_own_result_and_the_run_goes_on(tmp_path, simulator):
    jobs = write_chats(tmp_path / "jobs.jsonl", 5)
    simulator.script([{"status": 400}])  # the first request: a bad request of that line only
    proc = cli(
        jobs, tmp_path / "out.jsonl", "--base-url", simulator.url + "/v1", "--concurrency", "1"
    )
    assert proc.returncode == EXIT_FAILURES, proc.stderr
    statuses = {r["id"]: r["status"] for r in records(tmp_path / "out.jsonl")}
    assert statuses == {"q0": "error", "q1": "ok", "q2": "ok", "q3": "ok", "q4": "ok"}
    assert (
        simulator.counters()["requests_total"] == 5
    )  # q0 was sent once, not again after its pre-flight


# ------------------------------------------------------------ 2. outages


def test_an_outage_longer_than_max_outage_stops_resumably_with_exit_3(tmp_path, fresh_simulator):
    simulator = fresh_simulator
    simulator.configure(outage=True)
    jobs = write_chats(tmp_path / "jobs.jsonl", 40)
    out = tmp_path / "out.jsonl"
    args = (
        "--base-url",
        simulator.url + "/v1",
        "--max-outage",
        "1",
        "--concurrency",
        "4",
        *FAST_RETRIES,
        "--set",
        "failure_threshold=3",
        "--set",
        "reset_timeout=0.2",
    )
    proc = cli(jobs, out, *args, timeout=60, process=True)  # exit 3 as a shell sees it
    assert proc.returncode == EXIT_OUTAGE, proc.stderr
    assert "stopped: outage of" in proc.stderr and "last error: ServerError" in proc.stderr
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["stopped"].startswith("outage of") and "last error" in report["stopped"]
    assert (
        report["job"]["ok"] == 0
        and report["job"]["not_run"] == 40
        and report["success_rate"] == 0.0
    )
    assert not any(r["status"] == "ok" for r in records(out))
    simulator.configure(outage=False)
    again = cli(jobs, out, *args)
    assert again.returncode == EXIT_OK, again.stderr
    final = {}
    for record in records(out):
        final[record["id"]] = record["status"]
    assert final == {f"q{i}": "ok" for i in range(40)}


# ------------------------------------------------------------ 3. signals


def test_sigterm_finishes_what_is_in_flight_and_exits_143(tmp_path, fresh_simulator):
    simulator = fresh_simulator
    jobs, out, proc, err = signalled_run(tmp_path, simulator, 300, signal.SIGTERM)
    assert proc.returncode == EXIT_TERMINATED, err
    assert "stopped: interrupted by SIGTERM" in err and "Traceback" not in err
    first = records(out)
    ok = [r for r in first if r["status"] == "ok"]
    assert ok and {r["status"] for r in first} == {
        "ok",
        "interrupted",
    }  # in flight: finished; queued: left unsent
    assert all(
        "not finished: interrupted by SIGTERM" in r["error"]["message"]
        for r in first
        if r["status"] != "ok"
    )
    assert (
        simulator.counters()["requests_total"] == len(ok) < 300
    )  # every answer kept; nothing queued was sent
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["runs"][-1]["exit_code"] == EXIT_TERMINATED


def test_a_second_signal_abandons_what_is_in_flight_at_once_leaving_no_torn_line(
    tmp_path, fresh_simulator
):
    simulator = fresh_simulator
    simulator.script(
        [{}] + [{"delay": 30}] * 19
    )  # after the pre-flight nothing finishes in the test's time
    jobs = write_chats(tmp_path / "jobs.jsonl", 20)
    out = tmp_path / "out.jsonl"
    proc = spawn(
        jobs, out, "--base-url", simulator.url + "/v1", "--concurrency", "4", "--grace", "600"
    )
    err = StderrLines(proc)
    eventually(lambda: simulator.counters()["in_flight"] >= 4, "requests are in flight")
    proc.send_signal(signal.SIGTERM)
    eventually(lambda: err.has("stopping (interrupted by SIGTERM)"), "the first signal is taken")
    eventually(lambda: lines_in(out) == 16, "the queued lines are recorded interrupted")
    proc.send_signal(signal.SIGINT)
    proc.wait(WAIT)  # far below the 600 s grace: the second signal ended it
    text = err.all()
    assert proc.returncode == EXIT_TERMINATED, text  # the first reason is the one reported
    assert "15 queued lines are left for resume; 4 in flight get 600s" in text
    assert "abandoning the 4 lines not finished" in text and "Traceback" not in text
    first = records(out)
    assert [r["status"] for r in first] == ["ok"] + [
        "interrupted"
    ] * 19  # the pre-flight's line, then the rest
    simulator.reset()
    again = cli(jobs, out, "--base-url", simulator.url + "/v1")
    assert again.returncode == EXIT_OK, again.stderr
    done = [r["id"] for r in records(out) if r["status"] == "ok"]
    assert sorted(done) == sorted(f"q{i}" for i in range(20))


class StderrLines:
    """A child's stderr read line by line as it comes (a thread), so a test can wait for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._lines: list = []
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self._lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self._lines))

    def all(self) -> str:
        self._thread.join(WAIT)
        return "".join(self._lines)


# ------------------------------------------------------------ 4. keys and repeated failures


def test_a_refused_key_is_disabled_by_name_and_the_others_carry_the_run(tmp_path, simulator):
    simulator.configure(valid_keys=[GOOD_KEY])
    jobs = write_chats(tmp_path / "jobs.jsonl", 60)
    proc = cli(
        jobs,
        tmp_path / "out.jsonl",
        "--base-url",
        simulator.url + "/v1",
        "--key",
        BAD_KEY,
        "--key",
        GOOD_KEY,
        "--concurrency",
        "4",
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert all(r["status"] == "ok" for r in records(tmp_path / "out.jsonl"))
    assert (
        proc.stderr.count("key key1 disabled") == 1 and BAD_KEY not in proc.stderr
    )  # once, not once a request
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert "key1" in report["keys_disabled"] and report["keys"]["key1"]["auth_failures"] >= 1
    by_key = simulator.counters()["by_key"]
    assert (
        by_key.get(key_fingerprint(BAD_KEY), 0) <= 4
    )  # refused once (or once per request in flight then), never again
    assert by_key[key_fingerprint(GOOD_KEY)] >= 60


def test_when_every_key_is_refused_at_the_start_nothing_is_sent_beyond_one_try_of_each(
    tmp_path, simulator
):
    simulator.configure(valid_keys=[GOOD_KEY])
    jobs = write_chats(tmp_path / "jobs.jsonl", 300)
    out = tmp_path / "out.jsonl"
    proc = cli(
        jobs,
        out,
        "--base-url",
        simulator.url + "/v1",
        "--key",
        BAD_KEY,
        "--key",
        OTHER_BAD_KEY,
        "--concurrency",
        "4",
    )
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "the target refused every key (key1, key2)" in error_line(proc)
    assert BAD_KEY not in proc.stderr and OTHER_BAD_KEY not in proc.stderr
    assert (
        simulator.counters()["requests_total"] == 2
    )  # one try of each key, not 300 lines answered 401
    assert not out.exists()


def test_when_the_last_key_is_refused_mid_run_the_run_stops_resumably_with_exit_4(
    tmp_path, fresh_simulator
):
    simulator = fresh_simulator
    simulator.configure(valid_keys=[GOOD_KEY], latency=0.02)
    jobs = write_chats(tmp_path / "jobs.jsonl", 300)
    out = tmp_path / "out.jsonl"
    proc = spawn(
        jobs, out, "--base-url", simulator.url + "/v1", "--key", GOOD_KEY, "--concurrency", "4"
    )
    eventually(lambda: lines_in(out) >= 20, "the run writes results")
    simulator.configure(valid_keys=[OTHER_BAD_KEY])  # the key is revoked while the run goes on
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == EXIT_NO_KEY, err
    assert "stopped: the key was refused" in err and GOOD_KEY not in err
    first = records(out)
    ok = {r["id"] for r in first if r["status"] == "ok"}
    assert not any(
        r["status"] == "error" for r in first
    )  # refused lines are left for resume, not failed for good
    refused = simulator.counters()["by_status"].get("401", 0) + simulator.counters()[
        "by_status"
    ].get(401, 0)
    assert (
        1 <= refused <= 4 + 1
    )  # the lines in flight when the key went bad, not the rest of the file
    again = cli(jobs, out, "--base-url", simulator.url + "/v1", "--key", OTHER_BAD_KEY)
    assert again.returncode == EXIT_OK, again.stderr
    assert {r["id"] for r in records(out) if r["status"] == "ok"} == {f"q{i}" for i in range(300)}
    assert 20 <= len(ok) < 300


def test_a_lone_key_refused_takes_one_401_per_request_in_flight_and_no_more(
    tmp_path, fresh_simulator
):
    simulator = fresh_simulator
    simulator.configure(valid_keys=[GOOD_KEY])  # at once: the next line is queued when a 401 comes
    # seconds of lines (about 800 a second here), far longer than revoking the key after 10
    jobs = write_chats(tmp_path / "jobs.jsonl", 5000)
    out = tmp_path / "out.jsonl"
    proc = spawn(
        jobs, out, "--base-url", simulator.url + "/v1", "--key", GOOD_KEY, "--concurrency", "1"
    )
    eventually(lambda: lines_in(out) >= 10, "the run writes results")
    simulator.configure(valid_keys=[OTHER_BAD_KEY])  # revoked: the queued lines must stay unsent
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == EXIT_NO_KEY, err
    assert simulator.counters()["by_status"].get("401") == 1
    assert not any(r["status"] == "error" for r in records(out))


def test_the_same_failure_on_line_after_line_stops_the_run_with_exit_5(tmp_path, simulator):
    simulator.script(
        [{"status": 422, "body": {"error": {"message": "temperature must be <= 2"}}}] * 50
    )
    jobs = write_chats(tmp_path / "jobs.jsonl", 50)
    out = tmp_path / "out.jsonl"
    proc = cli(
        jobs,
        out,
        "--base-url",
        simulator.url + "/v1",
        "--concurrency",
        "1",
        "--window",
        "1",
        "--max-same-failures",
        "5",
    )
    assert proc.returncode == EXIT_SAME_FAILURES, proc.stderr
    assert (
        "the last 5 lines all failed the same way" in proc.stderr
        and "temperature must be <= 2" in proc.stderr
    )
    assert simulator.counters()["requests_total"] == 5
    failed = [r for r in records(out) if r["status"] == "error"]
    assert len(failed) == 5
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["job"] == {"lines": 50, "ok": 0, "failed": 5, "not_run": 45, "bad": 0}


# ------------------------------------------------------------ 5. where the run goes


def test_an_exported_key_alone_never_leaves_the_simulator_and_the_target_is_said_three_times(
    tmp_path,
):
    jobs = write_chats(tmp_path / "jobs.jsonl", 3)
    secret = "sk-proj-exported0123456789abcdefgh"
    proc = cli(
        jobs,
        tmp_path / "out.jsonl",
        env=clean_env(OPENAI_API_KEY=secret, OPENAI_BASE_URL="https://api.openai.com/v1"),
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    targets = [line for line in proc.stderr.splitlines() if line.startswith("target: ")]
    assert len(targets) == 2 and all(
        "(the embedded simulator)" in line for line in targets
    )  # at start, in the summary
    assert "OPENAI_API_KEY and OPENAI_BASE_URL are set but not used" in proc.stderr
    assert secret not in proc.stderr
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["target"]["simulator"] is True and report["target"]["host"].startswith(
        "127.0.0.1:"
    )
    assert "embedded simulator" in (tmp_path / "out.report.html").read_text()


def test_a_named_target_is_said_with_host_model_key_labels_and_limits_never_the_key(
    tmp_path, simulator
):
    jobs = write_chats(tmp_path / "jobs.jsonl", 3, model="gpt-4o-mini")
    proc = cli(
        jobs,
        tmp_path / "out.jsonl",
        "--base-url",
        simulator.url + "/v1",
        "--key",
        GOOD_KEY,
        "--rpm",
        "600",
        "--concurrency",
        "2",
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    start = proc.stderr.splitlines()[0]
    host = simulator.url.split("//", 1)[1]
    assert (
        start
        == f"target: openai at {host}; model gpt-4o-mini; key key1 (rpm 600) from --key; concurrency 2, window 64, retries 3"
    )
    assert GOOD_KEY not in proc.stderr + (tmp_path / "out.report.json").read_text()
    assert simulator.counters()["by_key"] == {key_fingerprint(GOOD_KEY): 3}


# ------------------------------------------------------------ 9, 10. history, --version, --dry-run


def test_a_resumed_job_keeps_every_run_in_its_report_and_counts_lines_not_run(
    tmp_path, fresh_simulator
):
    simulator = fresh_simulator
    jobs, out, proc, _ = signalled_run(tmp_path, simulator, 200, signal.SIGINT)
    first = json.loads((tmp_path / "out.report.json").read_text())
    done = first["job"]["ok"]
    assert 20 <= done < 200 and first["job"]["not_run"] == 200 - done
    assert first["success_rate"] == pytest.approx(
        100.0 * done / 200
    )  # not "100 %" of a job half done
    simulator.configure(latency=0)
    again = cli(jobs, out, "--base-url", simulator.url + "/v1")
    assert again.returncode == EXIT_OK, again.stderr
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert [run["ended"] for run in report["runs"]] == ["interrupted by Ctrl-C", "finished"]
    assert [run["exit_code"] for run in report["runs"]] == [130, 0]
    assert report["runs"][0]["ok"] + report["runs"][1]["ok"] == 200
    assert (
        report["job"] == {"lines": 200, "ok": 200, "failed": 0, "not_run": 0, "bad": 0}
        and report["success_rate"] == 100.0
    )
    assert "Runs of this job" in (tmp_path / "out.report.html").read_text()


def test_version_prints_the_package_version():
    import ipfs_accelerate_py

    proc = subprocess.run(
        [sys.executable, "-m", "ipfs_accelerate_py", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        proc.returncode == 0
        and proc.stdout.strip() == f"ipfs-accelerate {ipfs_accelerate_py.__version__}"
    )


def test_a_dry_run_checks_the_target_with_one_request_and_says_what_would_be_sent(
    tmp_path, simulator
):
    path = tmp_path / "jobs.jsonl"
    with open(path, "w") as out:
        for i in range(6):
            out.write(
                json.dumps(
                    {
                        "id": f"c{i}",
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": "x" * 40}],
                    }
                )
                + "\n"
            )
        for i in range(4):
            out.write(json.dumps({"id": f"e{i}", "input": "y" * 20}) + "\n")
    proc = cli(path, tmp_path / "out.jsonl", "--base-url", simulator.url + "/v1", "--dry-run")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert (
        "dry run: 10 of 10 jobs would be sent" in proc.stdout
        and "the target answered line 1" in proc.stdout
    )
    assert (
        "6 chat to gpt-4o-mini" in proc.stdout
        and "4 embeddings to text-embedding-3-small" in proc.stdout
    )
    assert "about 80 input tokens" in proc.stdout  # (6 x 40 + 4 x 20) characters / 4
    assert simulator.counters()["requests_total"] == 1  # the pre-flight only
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.report.json").exists()
    refused = cli(
        path,
        tmp_path / "out.jsonl",
        "--base-url",
        f"http://127.0.0.1:{free_port()}/v1",
        "--dry-run",
    )
    assert refused.returncode == EXIT_USAGE and "connection refused" in error_line(refused)


# ------------------------------------------------------------ the results file


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 64 KiB tmpfs (the tests run as root, as CI does), unmounted after."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True, timeout=30
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, timeout=30)


def test_a_full_disk_stops_the_run_with_exit_6_and_claims_only_what_is_on_disk(
    tmp_path, simulator, tiny_disk
):
    jobs = write_chats(tmp_path / "jobs.jsonl", 400)
    out = tiny_disk / "out.jsonl"
    proc = cli(
        jobs,
        out,
        "--base-url",
        simulator.url + "/v1",
        "--concurrency",
        "4",
        "--report",
        str(tmp_path / "report"),
    )
    assert proc.returncode == EXIT_WRITE_FAILED, proc.stderr
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    on_disk = records(out)  # every line whole: a torn one would not parse
    ok = {r["id"] for r in on_disk if r["status"] == "ok"}
    assert 0 < len(ok) < 400
    report = json.loads((tmp_path / "report.json").read_text())
    assert (
        report["job"]["ok"] == len(ok) and report["runs"][-1]["exit_code"] == EXIT_WRITE_FAILED
    )  # what is on disk
    assert report["stopped"].startswith("[Errno 28] cannot write to")
    moved = tmp_path / "out.jsonl"
    moved.write_bytes(out.read_bytes())  # room again: the same file, elsewhere
    simulator.reset()
    again = cli(jobs, moved, "--base-url", simulator.url + "/v1")
    assert again.returncode == EXIT_OK, again.stderr
    assert simulator.counters()["requests_total"] == 400 - len(
        ok
    )  # only what was not on disk is sent again


def test_a_device_or_a_pipe_as_output_is_written_never_read_back(tmp_path, simulator):
    jobs = write_chats(tmp_path / "jobs.jsonl", 3)
    full = cli(jobs, Path("/dev/full"), "--base-url", simulator.url + "/v1", process=True)
    assert full.returncode == EXIT_WRITE_FAILED and "No space left on device" in full.stderr
    assert "Traceback" not in full.stderr and "MemoryError" not in full.stderr
    piped = cli(jobs, Path("/dev/stdout"), "--base-url", simulator.url + "/v1", process=True)
    assert piped.returncode == EXIT_OK, piped.stderr
    assert sorted(json.loads(line)["id"] for line in piped.stdout.splitlines()) == [
        "q0",
        "q1",
        "q2",
    ]
    assert "is not a regular file" in piped.stderr and "cannot resume from it" in piped.stderr
    assert (tmp_path / "jobs.report.json").exists()  # the report beside the job file, not in /dev
