"""``python -m benchmarks``: every scenario, side by side with the peers, in one run.

Each scenario is a script of this folder, run in a process of its own
(``--json`` gives its figures); this writes ``RESULTS.md`` (the machine,
versions and date, then a table or two per scenario and what they show) and
PNG plots (``plots/``, with matplotlib from the ``bench`` extra; without it
the tables are written and the plots left out, saying so).

    python -m benchmarks                        # every scenario, full: benchmarks/RESULTS.md, benchmarks/plots/
    python -m benchmarks --quick --out-dir /tmp/bench    # seconds each (the test runs this)
    python -m benchmarks --only batching outage

The ratios within one run are what carry over to another machine; absolute
figures drift with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from results_md import render_plots, write_results  # noqa: E402
from scenario_adapters import adapt_multiplexing, adapt_overhead  # noqa: E402

SCENARIO_TIMEOUT = 1800  # seconds: a full scenario still running then counts as failed


@dataclass(frozen=True)
class Scenario:
    name: str
    script: str
    full: tuple = ()
    quick: tuple = ("--quick",)
    adapt: Optional[Callable[[dict], dict]] = None  # for the scripts that predate the common JSON shape


SCENARIOS = (
    Scenario("overhead-sync", "overhead.py", ("--concurrency", "1", "16", "64", "256"),
             adapt=adapt_overhead("overhead-sync", "Overhead, sync: chat at zero latency from threads")),
    Scenario("overhead-async", "async_overhead.py", ("--concurrency", "1", "16", "64", "256"),
             adapt=adapt_overhead("overhead-async", "Overhead, async: chat at zero latency from asyncio tasks")),
    Scenario("batching", "batching.py"),
    Scenario("priority", "priority.py"),
    Scenario("multiplexing", "multiplexing.py", adapt=adapt_multiplexing),
    Scenario("outage", "outage.py"),
    Scenario("memory", "memory.py"),
)  # fmt: skip


def run_scenario(scenario: Scenario, quick: bool, workdir: str) -> dict:
    """The scenario's figures in the common shape, or ``{"error": ...}``."""
    out = os.path.join(workdir, scenario.name + ".json")
    args = scenario.quick if quick else scenario.full
    command = [sys.executable, os.path.join(HERE, scenario.script), *args, "--json", out]
    print(f"== {scenario.name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=os.path.dirname(HERE), timeout=SCENARIO_TIMEOUT)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
    wall = time.perf_counter() - started
    if not os.path.exists(out):
        return {"scenario": scenario.name, "error": f"exited {code} after {wall:.0f} s without figures", "wall_s": wall}
    with open(out) as source:
        document = json.load(source)
    result = scenario.adapt(document) if scenario.adapt else document
    result.setdefault("scenario", scenario.name)
    result["wall_s"] = wall
    result["exit_status"] = code
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every scenario in its quick mode (seconds each)")
    parser.add_argument("--only", nargs="+", choices=[s.name for s in SCENARIOS], help="these scenarios only")
    parser.add_argument("--out-dir", default=HERE, help="where RESULTS.md and plots/ go (default: benchmarks/)")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    started = time.time()
    with tempfile.TemporaryDirectory() as workdir:
        results = [run_scenario(scenario, args.quick, workdir) for scenario in chosen]
    os.makedirs(args.out_dir, exist_ok=True)
    plots_note = render_plots(results, os.path.join(args.out_dir, "plots"))
    command = "python -m benchmarks" + (" " + " ".join(argv if argv is not None else sys.argv[1:]) if (argv or sys.argv[1:]) else "")
    path = write_results(results, args.out_dir, command=command, quick=args.quick, started=started, plots_note=plots_note)
    print(f"wrote {path}")
    failed = [r["scenario"] for r in results if "error" in r]
    if failed:
        print(f"scenarios without figures: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
