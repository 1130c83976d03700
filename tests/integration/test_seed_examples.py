"""Every ```python example of the seed document runs verbatim against the simulator.

The document is ``docs/ADVANCED_FEATURES.md`` (a copy of the seed kept in the
repository so CI has it).  Each block runs in a fresh interpreter with
``OPENAI_BASE_URL`` pointing at the simulator; the backend honours that
variable, so the examples' own code needs no change.  Two things are done to
the text, and only these:

* the literal ``{...}`` placeholder (the priority example's ``"data"``) is
  replaced with a real chat payload;
* ``import time`` is put in front of a block that calls ``time.sleep`` without
  importing ``time`` (the priority example's polling loop does).

Some blocks print nothing of their own; for those the test appends an
epilogue *after* the verbatim block that prints what the block computed, so
the result can be checked, not just the exit status.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ipfs_accelerate_py.simulator import embedding_for, key_fingerprint

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "ADVANCED_FEATURES.md"
PLACEHOLDER = "{...}"
CHAT_PAYLOAD = (
    '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello from the seed"}]}'
)
RUN_TIMEOUT = 60.0


def python_blocks(text: str) -> dict[str, str]:
    """``{section heading: code}`` for each ```python block, under its ``## `` heading."""
    blocks: dict[str, str] = {}
    heading = ""
    for match in re.finditer(r"^## ([^\n]+)$|^```python\n(.*?)^```", text, re.M | re.S):
        if match.group(1) is not None:
            heading = match.group(1).strip()
        else:
            assert heading not in blocks, f"two python blocks under {heading!r}"
            blocks[heading] = match.group(2)
    return blocks


BLOCKS = python_blocks(DOC.read_text(encoding="utf-8"))


def prepared(code: str) -> str:
    """The block with only the placeholder filled in and ``time`` imported if it needs it."""
    code = code.replace(PLACEHOLDER, CHAT_PAYLOAD)
    uses_time = re.search(r"\btime\.", code) is not None
    imports_time = re.search(r"^\s*(import time\b|from time import)", code, re.M) is not None
    if uses_time and not imports_time:
        # The seed's priority example calls time.sleep without importing time.
        code = "import time\n" + code
    return code


def run_block(heading: str, base_url: str, epilogue: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENAI_BASE_URL=base_url, PYTHONUNBUFFERED="1")
    env.pop("OPENAI_API_BASE", None)
    code = prepared(BLOCKS[heading]) + ("\n" + epilogue if epilogue else "")
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, (
        f"{heading!r} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done


def test_the_document_is_the_seed_and_has_its_five_examples():
    assert list(BLOCKS) == [
        "Configuration",
        "Priority Queue Usage",
        "Circuit Breaker Usage",
        "Monitoring and Reporting",
        "Request Batching",
    ]
    assert BLOCKS["Priority Queue Usage"].count(PLACEHOLDER) == 1
    assert sum(code.count(PLACEHOLDER) for code in BLOCKS.values()) == 1
    seed = Path("/work/shared/seed/ADVANCED_FEATURES.md")
    if seed.exists():  # in the project's workspace: the copy must not drift from the seed
        assert DOC.read_text(encoding="utf-8") == seed.read_text(encoding="utf-8")


def test_configuration_example(simulator):
    done = run_block(
        "Configuration",
        simulator.base_url,
        epilogue=(
            "print(client.max_concurrent_requests, client.queue_size, client.max_retries, client.backoff_factor,"
            " client.failure_threshold, client.reset_timeout, client.batching_enabled, client.max_batch_size,"
            " client.batch_timeout)"
        ),
    )
    assert done.stdout.split() == ["10", "50", "3", "1.5", "5", "30.0", "True", "10", "0.5"]
    assert simulator.counters()["requests_total"] == 0


def test_priority_queue_example(simulator):
    done = run_block(
        "Priority Queue Usage",
        simulator.base_url,
        epilogue=("print('REPLY', result['choices'][0]['message']['content'])"),
    )
    assert "Error:" not in done.stdout
    assert "REPLY Simulated reply to: Hello from the seed" in done.stdout
    counted = simulator.counters()
    assert counted["by_path"] == {"/v1/chat/completions": 1}
    assert counted["by_status"] == {"200": 1}
    assert counted["by_key"] == {key_fingerprint("your-key"): 1}


def test_circuit_breaker_example(simulator):
    done = run_block(
        "Circuit Breaker Usage", simulator.base_url, epilogue="print('STATE', client.circuit_state)"
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "Circuit is CLOSED, service operating normally"
    assert lines[-1] == "STATE CLOSED"  # one tracked failure is below failure_threshold
    assert simulator.counters()["requests_total"] == 0


def test_monitoring_example(simulator):
    done = run_block("Monitoring and Reporting", simulator.base_url)
    lines = done.stdout.splitlines()
    for expected in [
        "Total requests: 1",
        "Successful requests: 1",
        "Failed requests: 0",
        "Success rate: 100.0%",
        "Retry rate: 0.0%",
        "Circuit breaker state: CLOSED",
        "Error types: {}",
    ]:
        assert expected in lines, done.stdout
    [average] = [line for line in lines if line.startswith("Average response time: ")]
    assert 0 < float(average.split(": ")[1].rstrip("s")) < 5
    [models] = [line for line in lines if line.startswith("Models used: ")]
    assert "gpt-3.5-turbo" in models
    counted = simulator.counters()
    assert counted["by_path"] == {"/v1/chat/completions": 1}
    assert counted["by_model"] == {"gpt-3.5-turbo": 1}


def test_request_batching_example(simulator):
    done = run_block(
        "Request Batching",
        simulator.base_url,
        epilogue=(
            "import json\n"
            "print(json.dumps([embeddings1['data'][0]['embedding'], embeddings2['data'][0]['embedding']]))"
        ),
    )
    first, second = json.loads(done.stdout.strip().splitlines()[-1])
    assert first == embedding_for("First text to embed")
    assert second == embedding_for("Second text to embed")
    counted = simulator.counters()
    assert counted["by_model"] == {"text-embedding-3-small": 2}  # one after the other: two calls
    assert counted["embedding_inputs"]["total"] == 2
