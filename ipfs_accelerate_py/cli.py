"""``ipfs-accelerate`` / ``python -m ipfs_accelerate_py``: the command line.

Commands:
  run        push a JSONL file of requests through a backend: progress, resume, reports
  simulate   start the local provider simulator (every wire format)
  check      run the feature checks of test_enhanced_api_features.py against a backend
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An argument error is one line (and exit code 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="ipfs-accelerate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="run the local provider simulator on loopback")
    from .simulator import add_arguments

    add_arguments(sim)
    _add_run_parser(sub)
    check = sub.add_parser("check", help="check every advanced feature against a backend")
    check.add_argument(
        "--api", default="openai", help="backend (default openai): " + _backend_names()
    )
    check.add_argument("--key", default=None)
    check.add_argument("--base-url", default=None)
    check.add_argument("--output-dir", default=".")
    check.add_argument(
        "--admin-token",
        default=None,
        metavar="TOKEN",
        help="admin token of the simulator at --base-url (default: $IPFS_ACCELERATE_SIMULATOR_ADMIN_TOKEN)",
    )
    return parser


def _add_run_parser(sub: Any) -> None:
    from .runner.stops import DEFAULT_MAX_OUTAGE, DEFAULT_MAX_SAME_FAILURES, DEFAULT_STOP_GRACE

    run = sub.add_parser(
        "run",
        help="push a JSONL file of requests through a backend (progress, resume, reports)",
        description="Each line of JOBS is a request: chat ('messages'), completion ('prompt') or embeddings "
        "('input'), with optional 'id', 'type', 'model', 'priority' (high/normal/low) and parameters. "
        "Results are appended to --out as they finish; running the same command again resumes. "
        "With no --base-url, no key and none in the environment, the embedded simulator answers.",
    )
    run.add_argument("jobs", metavar="JOBS.jsonl")
    run.add_argument("--api", default=None, help="backend (default openai): " + _backend_names())
    run.add_argument("--out", default=None, help="results file (default JOBS.results.jsonl)")
    run.add_argument(
        "--input-format",
        choices=("auto", "jobs", "openai-batch"),
        default="auto",
        help="JOBS lines: ours, OpenAI Batch API request lines, or either, told apart line by line (auto, the default)",
    )
    run.add_argument(
        "--output-format",
        choices=("jobs", "openai-batch"),
        default="jobs",
        help="--out lines: ours (default) or OpenAI Batch API output lines",
    )
    run.add_argument(
        "--report",
        default=None,
        help="report path without extension (default OUT.report -> .json, .html)",
    )
    run.add_argument(
        "--config",
        default=None,
        help="YAML/JSON file: api, base_url, model, keys, settings, window",
    )
    run.add_argument(
        "--base-url", default=None, help="the API's base URL ('simulator' for the embedded one)"
    )
    run.add_argument(
        "--key", action="append", default=None, help="an API key; repeat for several (multiplexed)"
    )
    run.add_argument(
        "--rpm", type=float, default=None, help="requests per minute allowed to each --key"
    )
    run.add_argument(
        "--tpm", type=float, default=None, help="tokens per minute allowed to each --key"
    )
    run.add_argument(
        "--model",
        default=None,
        help="model for chat and completion lines that name none (default: the backend's)",
    )
    run.add_argument(
        "--embedding-model",
        default=None,
        help="model for embeddings lines that name none (default: the backend's)",
    )
    run.add_argument(
        "--concurrency", type=int, default=None, help="attempts in flight at once (default 16)"
    )
    run.add_argument(
        "--window",
        type=int,
        default=None,
        help="jobs admitted at once, in flight or queued (default 4x concurrency, at least 64)",
    )
    run.add_argument("--max-retries", type=int, default=None)
    run.add_argument("--timeout", type=float, default=None, help="seconds one attempt may take")
    run.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds one request may take in all, waits included (default: none; --max-outage caps an outage)",
    )
    run.add_argument(
        "--batching",
        dest="batching",
        action="store_true",
        default=None,
        help="batch embeddings (default)",
    )
    run.add_argument("--no-batching", dest="batching", action="store_false")
    run.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="any client setting, e.g. max_batch_size=64",
    )
    run.add_argument(
        "--retry-failed", action="store_true", help="on resume, send the jobs that failed again"
    )
    run.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="run the good lines of a file with bad ones (listed in the report); without it a bad line stops the command before anything is sent",
    )
    run.add_argument(
        "--max-outage",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"stop (exit 3, resumable) when the circuit stays open this long (default {DEFAULT_MAX_OUTAGE:g})",
    )
    run.add_argument(
        "--max-same-failures",
        type=int,
        default=None,
        metavar="N",
        help=f"stop (exit 5, resumable) after N lines in a row fail the same way (default {DEFAULT_MAX_SAME_FAILURES}; 0: never)",
    )
    run.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"after Ctrl-C or SIGTERM, seconds the requests in flight get to finish (default {DEFAULT_STOP_GRACE:g})",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check the file and the target (one request: the first line, not recorded) and say what would be sent",
    )
    run.add_argument(
        "--progress",
        choices=("auto", "rich", "quiet", "json"),
        default="auto",
        help="live display (auto: rich on a terminal, else quiet); json: a log line a second",
    )


def _backend_names() -> str:
    from .api_backends import BACKENDS, describe_backend_names

    return describe_backend_names(BACKENDS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    argv = list(argv if argv is not None else sys.argv[1:])
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args, argv)
    if args.command == "simulate":
        from .simulator import main as simulate_main

        return simulate_main(argv[1:]) or 0
    if args.command == "check":
        from .checks import run_checks
        from .simulator import ADMIN_TOKEN_ENV

        token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None
        return run_checks(
            api=args.api,
            key=args.key,
            base_url=args.base_url,
            output_dir=args.output_dir,
            admin_token=token,
        )
    parser.error(f"unknown command {args.command!r}")  # exits 2


def _run(args: Any, argv: list[str]) -> int:
    """``run``, whose every failure is one line on stderr and a documented exit code."""
    import asyncio

    from .resilience.errors import SettingError
    from .resilience.redact import redact
    from .runner.command import UsageError, run_command
    from .runner.stops import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE

    try:
        return run_command(args, argv)
    except (UsageError, SettingError) as exc:
        print(f"ipfs-accelerate run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "ipfs-accelerate run: interrupted before the run started; nothing was sent",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (
        Exception,
        asyncio.CancelledError,
    ) as exc:  # a bug of ours: still one line, and how to see more
        if os.environ.get("IPFS_ACCELERATE_TRACEBACK"):
            raise
        message = redact(str(exc), args.key or ())
        print(
            f"ipfs-accelerate run: internal error ({type(exc).__name__}: {message}); please report it, with the "
            "traceback IPFS_ACCELERATE_TRACEBACK=1 shows",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
