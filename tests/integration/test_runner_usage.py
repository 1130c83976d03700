"""Every way of getting ``ipfs-accelerate run`` wrong that a user has been
seen to try: one line naming the problem and the fix, exit code 2, no
traceback, nothing sent, no results file.  Then random bytes as a job file.

The table runs the command in this process (``cli.main``, the same code the
console script runs) to keep it fast; ``test_runner_stops.py`` runs it in
subprocesses."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipfs_accelerate_py.cli import main as cli_main
from ipfs_accelerate_py.runner.stops import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"id": "a", "messages": [{"role": "user", "content": "hi"}]}


def jsonl(*items) -> str:
    return "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)


# name -> (files to write {name: text or bytes}, extra arguments (JOBS=path: the job file, else
# jobs.jsonl), a phrase of the one line)
CASES = {
    "no job file": (
        {},
        ["JOBS=missing.jsonl", "--out", "o.jsonl"],
        "no such job file: missing.jsonl",
    ),
    "job file is a directory": (
        {"dir/x": ""},
        ["JOBS=dir"],
        "job file dir is a directory; give the path of a JSONL file",
    ),
    "empty job file": ({"jobs.jsonl": ""}, [], "has no job lines (it is empty or blank)"),
    "blank job file": ({"jobs.jsonl": "\n  \n\n"}, [], "has no job lines"),
    "a line not JSON": ({"jobs.jsonl": jsonl(CHAT, "{not json")}, [], "line 2: not JSON"),
    "a line not an object": (
        {"jobs.jsonl": jsonl([1, 2])},
        [],
        "line 1: a job is a JSON object, not list",
    ),
    "a line with no content": (
        {"jobs.jsonl": jsonl({"id": "x"})},
        [],
        "line 1: no 'messages', 'input' or 'prompt'",
    ),
    "a duplicate id": (
        {"jobs.jsonl": jsonl(CHAT, CHAT)},
        [],
        "line 2: id 'a' already used on an earlier line",
    ),
    "a bad priority": (
        {"jobs.jsonl": jsonl(dict(CHAT, priority="urgent"))},
        [],
        "unknown priority 'urgent'",
    ),
    "messages not a list": (
        {"jobs.jsonl": jsonl({"messages": "hi"})},
        [],
        "'messages' must be a non-empty list",
    ),
    "binary bytes": ({"jobs.jsonl": b"\xff\xfe\x00garbage\x1b[31m\n"}, [], "line 1: not JSON"),
    "results of another job file": (
        {"o.jsonl": jsonl({"id": "other-1", "status": "ok"})},
        ["--out", "o.jsonl"],
        "holds results of 1 lines and none is a line of jobs.jsonl",
    ),
    "a control character in an id": (
        {"jobs.jsonl": jsonl({"id": "a\u001b[2Jb", "input": "x"})},
        [],
        "holds a control character",
    ),
    "an unknown type": (
        {"jobs.jsonl": jsonl({"type": "image", "prompt": "x"})},
        [],
        "unknown type 'image'",
    ),
    "batch lines forced as jobs": (
        {
            "jobs.jsonl": jsonl(
                {
                    "custom_id": "c",
                    "method": "POST",
                    "url": "/v1/embeddings",
                    "body": {"input": "x"},
                }
            )
        },
        ["--input-format", "jobs"],
        "line 1:",
    ),
    "no config file": ({}, ["--config", "nope.yaml"], "no such config file: nope.yaml"),
    "config is a directory": ({"cfg/x": ""}, ["--config", "cfg"], "config file cfg is a directory"),
    "config not YAML": (
        {"c.yaml": "api: [openai\n"},
        ["--config", "c.yaml"],
        "is not valid YAML or JSON at line",
    ),
    "config a list": (
        {"c.yaml": "- api\n"},
        ["--config", "c.yaml"],
        "must be a mapping of api, base_url",
    ),
    "config unknown field": (
        {"c.yaml": "retries: 3\n"},
        ["--config", "c.yaml"],
        "unknown field 'retries'",
    ),
    "config keys not a list": (
        {"c.yaml": "keys: sk-abc\n"},
        ["--config", "c.yaml"],
        "'keys' must be a list of mappings",
    ),
    "config key without key": (
        {"c.yaml": "keys: [{name: a}]\n"},
        ["--config", "c.yaml"],
        "key 1 has no 'key'",
    ),
    "config key unknown field": (
        {"c.yaml": "keys: [{key: sk-1, rmp: 5}]\n"},
        ["--config", "c.yaml"],
        "unknown field 'rmp'",
    ),
    "config settings not a mapping": (
        {"c.yaml": "settings: 5\n"},
        ["--config", "c.yaml"],
        "'settings' must be a mapping",
    ),
    "config unknown setting": (
        {"c.yaml": "settings: {retries: 3}\n"},
        ["--config", "c.yaml"],
        "unknown setting 'retries'",
    ),
    "config window zero": (
        {"c.yaml": "window: 0\n"},
        ["--config", "c.yaml"],
        "'window' must be a whole number",
    ),
    "config not UTF-8": (
        {"c.yaml": b"api: \xff\xfe\n"},
        ["--config", "c.yaml"],
        "is not UTF-8 text",
    ),
    "rpm without key": ({}, ["--rpm", "60"], "--rpm limits each --key, and no --key is given"),
    "tpm without key": ({}, ["--tpm", "1000"], "--tpm limits each --key, and no --key is given"),
    "retry-failed on a first run": ({}, ["--retry-failed"], "this is a first run"),
    "window below concurrency": (
        {},
        ["--concurrency", "32", "--window", "8"],
        "the window (8, from --window or the config) is smaller than the concurrency (32)",
    ),
    "concurrency zero": ({}, ["--concurrency", "0"], "--concurrency must be at least 1"),
    "negative retries": ({}, ["--max-retries", "-1"], "--max-retries must be at least 0"),
    "zero timeout": ({}, ["--timeout", "0"], "--timeout must be a number of more than 0"),
    "zero max-outage": ({}, ["--max-outage", "0"], "--max-outage must be a number of more than 0"),
    "negative grace": ({}, ["--grace", "-1"], "--grace must be 0 or more seconds"),
    "negative same failures": (
        {},
        ["--max-same-failures", "-2"],
        "--max-same-failures must be at least 0",
    ),
    "concurrency not a number": (
        {},
        ["--concurrency", "many"],
        "argument --concurrency: invalid int value: 'many'",
    ),
    "unknown progress mode": (
        {},
        ["--progress", "fancy"],
        "argument --progress: invalid choice: 'fancy'",
    ),
    "unknown flag": ({}, ["--bogus"], "unrecognized arguments: --bogus"),
    "unknown backend": ({}, ["--api", "nosuch"], "nosuch"),
    "set without =": ({}, ["--set", "max_retries"], "write NAME=VALUE"),
    "set unknown name": ({}, ["--set", "max_retrys=3"], "unknown setting 'max_retrys'"),
    "set bad value": ({}, ["--set", "max_batch_size=-5"], "max_batch_size"),
    "out is a directory": ({"outdir/x": ""}, ["--out", "outdir"], "--out outdir is a directory"),
    "empty key": ({}, ["--key", ""], "--key is empty"),
    "empty model": ({}, ["--model", " "], "--model is empty"),
    "out is the job file": ({}, ["--out", "jobs.jsonl"], "is the job file itself"),
    "base URL with no scheme": (
        {},
        ["--base-url", "127.0.0.1:8000/v1"],
        "must start with http:// or https://",
    ),
    "a pipe as the job file": ({}, ["JOBS=/dev/stdin"], "is not a regular file (a pipe?)"),
    "max-outage not above reset_timeout": (
        {},
        ["--max-outage", "10"],
        "is not longer than reset_timeout 30",
    ),
    "an operation the backend lacks": (
        {"jobs.jsonl": jsonl({"input": "x"})},
        ["--api", "claude"],
        "the anthropic backend has no embeddings operation",
    ),
    "a chat to an embeddings server": (
        {},
        ["--api", "hf_tei"],
        "line 1: the hf_tei backend has no chat operation",
    ),
    "a results file of the other format": (
        {"o.jsonl": jsonl({"id": "a", "status": "ok"})},
        ["--out", "o.jsonl", "--output-format", "openai-batch"],
        "o.jsonl holds results in the jobs format",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_invocation_is_one_line_and_exit_2_with_nothing_sent(
    name, tmp_path, simulator, monkeypatch
):
    files, extra, phrase = CASES[name]
    monkeypatch.chdir(tmp_path)
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    if "jobs.jsonl" not in files:
        (tmp_path / "jobs.jsonl").write_text(jsonl(CHAT))
    jobs = next((a[len("JOBS=") :] for a in extra if a.startswith("JOBS=")), "jobs.jsonl")
    extra = [a for a in extra if not a.startswith("JOBS=")]
    argv = ["run", jobs, "--base-url", simulator.url + "/v1", "--progress", "quiet", *extra]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli_main(argv)
        except SystemExit as exit_:  # argparse's errors exit
            code = exit_.code
    lines = err.getvalue().splitlines()
    assert code == EXIT_USAGE, err.getvalue()
    assert len(lines) == 1 and phrase in lines[0], lines
    assert lines[0].startswith("ipfs-accelerate")
    assert simulator.counters()["requests_total"] == 0
    assert not (tmp_path / "jobs.results.jsonl").exists()
    assert (
        (tmp_path / "o.jsonl").read_bytes() == files["o.jsonl"].encode()
        if "o.jsonl" in files
        else not (tmp_path / "o.jsonl").exists()
    )


def test_the_table_covers_at_least_thirty_mistakes():
    assert len(CASES) >= 30


def test_a_bad_line_is_named_with_its_number_and_a_snippet_escaped_for_the_terminal(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(
        jsonl(CHAT).encode() + b'{"id": "b", "messages": \x1b[2J oops\n' + b"[3]\n" * 9
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ipfs_accelerate_py", "run", str(jobs), "--progress", "quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == EXIT_USAGE and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert (
        "line 2: not JSON" in line
        and '(the line starts "{\\"id\\": \\"b\\", \\"messages\\": \\u001b[2J oops")' in line
    )
    assert "9 more bad lines (3, 4, 5, 6, ...)" in line and "--skip-bad-lines" in line
    assert (
        "\x1b" not in proc.stderr
    )  # the file's escape sequence is shown, never sent to the terminal
    assert not (tmp_path / "jobs.results.jsonl").exists()


# ------------------------------------------------------------ random bytes


def _run_in_process(argv: list) -> tuple:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli_main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, err.getvalue()


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.lists(st.binary(max_size=80), min_size=1, max_size=6), valid=st.integers(0, 4))
def test_random_bytes_as_a_job_file_never_crash_never_hang_and_good_lines_still_run(
    simulator, garbage, valid
):
    with tempfile.TemporaryDirectory() as folder:
        jobs = Path(folder) / "jobs.jsonl"
        good = [{"id": f"good-{i}", "input": f"text {i}"} for i in range(valid)]
        lines = [json.dumps(job).encode() for job in good] + [
            g.replace(b"\n", b" ") for g in garbage
        ]
        jobs.write_bytes(b"\n".join(lines) + b"\n")
        out = Path(folder) / "out.jsonl"
        base = [
            "run",
            str(jobs),
            "--base-url",
            simulator.url + "/v1",
            "--out",
            str(out),
            "--progress",
            "quiet",
            "--set",
            "batch_timeout=0",  # the embeddings go at once, not after 0.5 s waiting for company
        ]
        code, err = _run_in_process(base)
        assert "Traceback" not in err
        assert code in (0, 1, 2), err
        if code == 2:
            assert (
                len([line for line in err.splitlines() if line.startswith("ipfs-accelerate run: ")])
                == 1
            )
            assert not out.exists()  # refused before anything was sent
        code, err = _run_in_process(base + ["--skip-bad-lines"])
        assert "Traceback" not in err and code in (0, 1, 2), err
        if valid:  # the documented behaviour: with --skip-bad-lines, the good lines run
            assert code in (0, 1)
            done = {
                json.loads(line)["id"]
                for line in out.read_text().splitlines()
                if json.loads(line)["status"] == "ok"
            }
            assert {job["id"] for job in good} <= done


SAMPLE = ROOT / "examples" / "jobs.jsonl"


@pytest.mark.parametrize(
    "api",
    [
        "claude",
        "gemini",
        "groq",
        "hf_tei",
        "hf_tgi",
        "llvm",
        "ollama",
        "opea",
        "openai",
        "ovms",
        "vllm",
    ],
)
def test_every_backend_runs_the_sample_or_names_the_lines_it_cannot_send(api, tmp_path):
    out = tmp_path / "out.jsonl"
    base = [
        "run",
        str(SAMPLE),
        "--api",
        api,
        "--base-url",
        "simulator",
        "--out",
        str(out),
        "--progress",
        "quiet",
        "--set",
        "batch_timeout=0",  # the embeddings go at once, not after 0.5 s waiting for company
    ]
    code, err = _run_in_process(base + ["--dry-run"])
    assert code in (0, 2) and "internal error" not in err and "Traceback" not in err, err
    if (
        code == 2
    ):  # a chat line to an embeddings server, an embeddings line to a chat-only API: named, nothing sent
        assert "backend has no" in err and not out.exists()
    code, err = _run_in_process(base + ["--skip-bad-lines"])
    assert code in (0, 1) and "internal error" not in err, err
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    assert all(r["status"] == "ok" for r in done)  # every line it could send, answered
    totals = json.loads((tmp_path / "out.report.json").read_text())["totals"]
    assert totals["ok"] == len(done) and totals["ok"] + totals["malformed"] == totals["lines"] == 42
