"""``ipfs-accelerate`` / ``python -m ipfs_accelerate_py``: the command line.

Commands:
  simulate   start the local provider simulator (OpenAI wire format)
  check      run the feature checks of test_enhanced_api_features.py against a backend
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipfs-accelerate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="run the local provider simulator on loopback")
    from .simulator import add_arguments

    add_arguments(sim)
    check = sub.add_parser("check", help="check every advanced feature against a backend")
    check.add_argument("--api", default="openai")
    check.add_argument("--key", default=None)
    check.add_argument("--base-url", default=None)
    check.add_argument("--output-dir", default=".")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "simulate":
        from .simulator import main as simulate_main

        return simulate_main(list(argv if argv is not None else sys.argv[1:])[1:]) or 0
    if args.command == "check":
        from .checks import run_checks

        return run_checks(api=args.api, key=args.key, base_url=args.base_url, output_dir=args.output_dir)
    parser.error(f"unknown command {args.command!r}")
    return 2
