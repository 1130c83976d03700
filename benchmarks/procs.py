"""Shared by the benchmarks: the simulator as a pinned subprocess, and CPU accounting.

The server runs on SERVER_CORE and the client on CLIENT_CORE when the machine
has both, so the two never fight for a core.
"""

from __future__ import annotations

import os
import re
import resource
import selectors
import subprocess
import sys

SERVER_CORE = 1
CLIENT_CORE = 0
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 5.0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def usable_cores() -> set:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()


def start_simulator(pin: bool) -> tuple:
    """The simulator subprocess (pinned to SERVER_CORE before it runs) and its base URL."""
    pin_child = (lambda: os.sched_setaffinity(0, {SERVER_CORE})) if pin else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipfs_accelerate_py", "simulate", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, text=True, preexec_fn=pin_child,
    )
    try:
        line = _read_line(proc, SERVER_START_TIMEOUT)
        found = re.search(r"http://\S+", line)
        if not found:
            raise RuntimeError(f"the simulator did not announce its URL: {line!r}")
    except BaseException:
        stop_simulator(proc)
        raise
    return proc, found.group(0).rstrip("/")


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"the simulator said nothing within {timeout:.0f}s")
    return proc.stdout.readline()


def stop_simulator(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not gone within SERVER_STOP_TIMEOUT."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
