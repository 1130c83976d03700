#!/usr/bin/env python
"""Check every advanced feature of an API backend, for real.

    python test_enhanced_api_features.py --api openai                # embedded simulator
    python test_enhanced_api_features.py --api openai --key sk-...   # the real API
    python test_enhanced_api_features.py --base-url http://127.0.0.1:8000/v1

Prints a summary table, writes ``<api>_enhanced_features_<timestamp>.json``
into ``--output-dir`` and exits 0 only if every check that ran passed (2 for
a backend that is not there yet).  The logic is ``ipfs_accelerate_py.checks``.
"""

import argparse
import sys

from ipfs_accelerate_py.checks import run_checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default="openai", help="backend to check (default: openai)")
    parser.add_argument("--key", default=None, help="API key (never printed or written)")
    parser.add_argument(
        "--base-url", default=None, help="server to check; default: an embedded simulator"
    )
    parser.add_argument("--output-dir", default=".", help="where the JSON report goes (default: .)")
    args = parser.parse_args()
    return run_checks(
        api=args.api, key=args.key, base_url=args.base_url, output_dir=args.output_dir
    )


if __name__ == "__main__":
    sys.exit(main())
