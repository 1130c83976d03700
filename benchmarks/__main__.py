"""``python -m benchmarks``: every scenario, side by side with the peers, in one run.

Each scenario is a script of this folder, run in a process of its own
(``--json`` gives its figures); this writes ``RESULTS.md`` (the machine,
versions and date, then a table or two per scenario and what they show) and
PNG plots (``plots/``, with matplotlib from the ``bench`` extra; without it
the tables are written and the plots left out, saying so).

    python -m benchmarks                        # every scenario, full: benchmarks/RESULTS.md, benchmarks/plots/
    python -m benchmarks --quick                # seconds each, into a new temporary folder (printed)
    python -m benchmarks --only batching outage --out /tmp/bench

Only a full run of every scenario writes the committed ``benchmarks/RESULTS.md``
and plots; ``--quick`` or ``--only`` write into ``--out`` or, without it, a
new temporary folder, and refuse ``benchmarks/`` itself.  Exit status: 0 when
every target was met, 2 when one was missed (its FAIL line is printed), 1 when
a scenario crashed or said its figures mean little (it exited non-zero or left
no figures), 64 for a wrong command line.

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
from collections.abc import Callable
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from results_md import render_plots, write_results  # noqa: E402
from scenario_adapters import adapt_multiplexing, adapt_overhead  # noqa: E402

SCENARIO_TIMEOUT = 1800  # seconds: a full scenario still running then counts as failed
MET, CRASHED, MISSED = (
    0,
    1,
    2,
)  # the exit status: every target met, a scenario crashed, a target missed
USAGE_ERROR = 64  # a wrong command line (EX_USAGE), kept apart from MISSED, argparse's own 2


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


@dataclass(frozen=True)
class Scenario:
    name: str
    script: str
    full: tuple = ()
    quick: tuple = ("--quick",)
    adapt: Callable[[dict], dict] | None = (
        None  # for the scripts that predate the common JSON shape
    )


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
    """The scenario's figures in the common shape with its target verdicts
    (``targets``: ``[{"passed", "line"}]``), or ``{"error": ...}``."""
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
        return {
            "scenario": scenario.name,
            "error": f"exited {code} after {wall:.0f} s without figures",
            "wall_s": wall,
        }
    with open(out) as source:
        document = json.load(source)
    result = scenario.adapt(document) if scenario.adapt else document
    result.setdefault("scenario", scenario.name)
    result["targets"] = [
        verdict(t) for t in document.get("targets") or [] if isinstance(t, dict) and "passed" in t
    ]
    result["wall_s"] = wall
    result["exit_status"] = code
    return result


def verdict(target: dict) -> dict:
    """One target of a script's JSON as a PASS/FAIL line: the ratio targets of the
    overhead scripts (``name``, ``concurrency``, ``minimum``) and the named ones of
    multiplexing (``contender``, ``name``, ``target``)."""
    measured = target.get("measured")
    if "minimum" in target:  # a ratio
        shown = "-" if measured is None else f"{measured:.3g}"
        what = f"{target['name']} at concurrency {target.get('concurrency')} = {shown} (target >= {target['minimum']:g})"
    else:  # a share (a float) or a count, shown as the script shows it
        shown = (
            "-"
            if measured is None
            else f"{measured:.1%}"
            if isinstance(measured, float)
            else str(measured)
        )
        what = f"{target.get('contender', '')} {target['name']} = {shown} (target {target.get('target', '')})".strip()
    return {
        "passed": bool(target["passed"]),
        "line": f"{'PASS' if target['passed'] else 'FAIL'}: {what}",
    }


def crashed(result: dict) -> bool:
    """No figures, stopped at the time cap, or the script's own exit status says
    its figures mean little (the scripts exit 2 for a target only with --strict,
    which the driver never passes)."""
    return "error" in result or result.get("exit_status") != 0


def exit_code(results: list) -> int:
    """1 when a scenario crashed, else 2 when a target was missed, else 0; said on stderr
    (the PASS/FAIL lines themselves are printed by main)."""
    broken = [r["scenario"] for r in results if crashed(r)]
    missed = [t for r in results for t in r.get("targets", []) if not t["passed"]]
    judged = sum(len(r.get("targets", [])) for r in results)
    if broken:
        print(f"scenarios that crashed or exited non-zero: {', '.join(broken)}", file=sys.stderr)
        return CRASHED
    if missed:
        print(f"{len(missed)} of {judged} targets missed", file=sys.stderr)
        return MISSED
    print(f"all {judged} targets met")
    return MET


def out_dir(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """Where RESULTS.md and plots/ go: ``--out``; else benchmarks/ for a full run of
    every scenario and a new temporary folder for a partial one (``--quick``,
    ``--only``), which may never write over the committed page."""
    partial = args.quick or bool(args.only)
    if args.out is None:
        return tempfile.mkdtemp(prefix="benchmarks-") if partial else HERE
    if partial and os.path.realpath(args.out) == os.path.realpath(HERE):
        parser.error(
            "--quick and --only never write over the committed benchmarks/RESULTS.md: give another --out"
        )
    return args.out


def main(argv=None) -> int:
    parser = Parser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="every scenario in its quick mode (seconds each)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=[s.name for s in SCENARIOS], help="these scenarios only"
    )
    parser.add_argument(
        "--out",
        "--out-dir",
        dest="out",
        metavar="DIR",
        help="where RESULTS.md and plots/ go (default: benchmarks/ for a full run, "
        "a new temporary folder for --quick or --only)",
    )
    args = parser.parse_args(argv)
    directory = out_dir(parser, args)
    print(f"writing RESULTS.md and plots/ to {directory}", flush=True)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    started = time.time()
    with tempfile.TemporaryDirectory() as workdir:
        results = [run_scenario(scenario, args.quick, workdir) for scenario in chosen]
    os.makedirs(directory, exist_ok=True)
    plots_note = render_plots(results, os.path.join(directory, "plots"))
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m benchmarks" + ("".join(" " + a for a in given))
    path = write_results(
        results,
        directory,
        command=command,
        quick=args.quick,
        started=started,
        plots_note=plots_note,
    )
    print(f"wrote {path}")
    for result in results:
        for target in result.get("targets", []):
            print(f"{result['scenario']}: {target['line']}")
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
