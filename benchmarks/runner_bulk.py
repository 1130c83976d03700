"""The bulk runner on a large embeddings file: throughput and peak memory.

Writes a job file of N single-text embedding lines, starts the simulator
(zero latency, pinned apart as the other benchmarks do), and runs
``ipfs-accelerate run`` on it in a subprocess, with batching on and off,
for each size given.  Peak memory is the runner process's maximum resident
set (``ru_maxrss`` of the child); throughput is lines per second of the run.

    python benchmarks/runner_bulk.py                          # 10,000 and 100,000 lines
    python benchmarks/runner_bulk.py --lines 100000 1000000
    python benchmarks/runner_bulk.py --quick --json out.json  # 2,000 lines, seconds (the test uses it)

Flat memory means: the peak barely moves when the file grows 10x (the file
is read as a stream, results are written as they finish; what grows is the
set of ids, a 64-bit digest each: 8 to 16 bytes a line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from procs import CLIENT_CORE, pinned_simulator, pinning_note, usable_cores

DEFAULT_LINES = (10_000, 100_000)
QUICK_LINES = (2_000,)
MODEL = "text-embedding-3-small"


def write_jobs(path: str, lines: int) -> None:
    with open(path, "w") as out:
        for i in range(lines):
            out.write(
                json.dumps(
                    {"id": f"e{i}", "model": MODEL, "input": f"passage number {i} of the corpus"}
                )
                + "\n"
            )


def run_once(url: str, jobs: str, out_dir: str, batching: bool, pin: bool) -> dict:
    out = os.path.join(out_dir, f"results-{'batch' if batching else 'single'}.jsonl")
    command = [
        sys.executable, "-m", "ipfs_accelerate_py", "run", jobs, "--base-url", url, "--out", out,
        "--progress", "quiet", "--concurrency", "32",
        "--batching" if batching else "--no-batching", "--set", "max_batch_size=64", "--set", "batch_timeout=0.01",
    ]  # fmt: skip
    pin_child = (lambda: os.sched_setaffinity(0, {CLIENT_CORE})) if pin else None
    started = time.perf_counter()
    with open(os.path.join(out_dir, "stderr.txt"), "w+") as errors:
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=errors, preexec_fn=pin_child
        )
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own figures, peak memory included
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"the runner exited {proc.returncode}: {errors.read()[-2000:]}")
    with open(out) as results:
        ok = sum(1 for line in results if '"status":"ok"' in line)
    os.remove(out)
    return {
        "lines_ok": ok,
        "wall_s": wall,
        "lines_per_s": ok / wall if wall else 0.0,
        "peak_rss_mb": usage.ru_maxrss / 1024.0,  # Linux: KiB
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, nargs="+", default=list(DEFAULT_LINES))
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    sizes = sorted(QUICK_LINES if args.quick else args.lines)
    pin = not args.no_pin and len(usable_cores()) >= 2
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp, pinned_simulator(pin) as (_, url):
        print(f"simulator {url}; {pinning_note(pin)}")
        print(
            f"{'lines':>10} {'batching':>9} {'lines/s':>10} {'wall s':>8} {'cpu s':>7} {'peak RSS MB':>12}"
        )
        for size in sizes:
            jobs = os.path.join(tmp, f"jobs-{size}.jsonl")
            write_jobs(jobs, size)
            for batching in (True, False):
                row = run_once(url, jobs, tmp, batching, pin)
                if row["lines_ok"] != size:
                    print(f"only {row['lines_ok']} of {size} lines succeeded", file=sys.stderr)
                    return 1
                figures.setdefault(str(size), {})["on" if batching else "off"] = row
                print(
                    f"{size:>10,} {'on' if batching else 'off':>9} {row['lines_per_s']:>10,.0f} "
                    f"{row['wall_s']:>8.1f} {row['cpu_s']:>7.1f} {row['peak_rss_mb']:>12.1f}"
                )
            os.remove(jobs)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"sizes": sizes, "pinned": pin, "figures": figures}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
