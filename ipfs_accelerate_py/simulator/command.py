"""Command line: ``python -m ipfs_accelerate_py simulate`` (or ``-m ipfs_accelerate_py.simulator``).

Every scenario field has a flag (``latency_jitter`` -> ``--latency-jitter``;
list fields repeat: ``--valid-key K1 --valid-key K2``, ``--model``,
``--fault-path``; ``rate_limits``, ``script`` and ``path_scripts`` take JSON),
plus ``--rpm``/``--tpm`` for the common per-key limits.  Flags override the
fields of ``--scenario FILE`` (JSON or YAML).  ``--admin-token`` (else the
environment's ``IPFS_ACCELERATE_SIMULATOR_ADMIN_TOKEN``, else a random one,
printed at start) guards ``/_admin/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .scenario import Scenario, ScenarioError, describe_fields, load_scenario_file
from .server import DEFAULT_HOST, run_server

__all__ = ["ADMIN_TOKEN_ENV", "add_arguments", "main", "scenario_from_args"]

ADMIN_TOKEN_ENV = "IPFS_ACCELERATE_SIMULATOR_ADMIN_TOKEN"
DEFAULT_CLI_PORT = 8000
_LIST_FLAGS = {"valid_keys": "--valid-key", "models": "--model", "fault_paths": "--fault-path"}
_DEST_PREFIX = "scenario_"


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def _add_field_flag(group: Any, f: dataclasses.Field[Any]) -> None:
    kind, doc, dest = f.metadata["cli"], f.metadata["doc"], _DEST_PREFIX + f.name
    if kind == "strings":
        group.add_argument(
            _LIST_FLAGS[f.name],
            dest=dest,
            action="append",
            metavar="VALUE",
            help=f"{f.name}: {doc} (repeatable)",
        )
        return
    flag = "--" + f.name.replace("_", "-")
    if kind == "bool":
        group.add_argument(
            flag, dest=dest, nargs="?", const=True, type=_bool, metavar="BOOL", help=f"{doc}"
        )
        return
    types = {"float": float, "int": int, "json": _json, "str": str}
    metavar = {"float": "X", "int": "N", "json": "JSON", "str": "TEXT"}[kind]
    group.add_argument(flag, dest=dest, type=types[kind], metavar=metavar, help=doc)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the simulator's flags (host, port, scenario file, every scenario field)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Scenario fields (in --scenario FILE, POST /_admin/config, or as flags):\n"
        + describe_fields()
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_CLI_PORT,
        help=f"port to listen on; 0 = any free port (default {DEFAULT_CLI_PORT})",
    )
    parser.add_argument(
        "--scenario",
        metavar="FILE",
        help="scenario file (.json, .yaml or .yml); flags override its fields",
    )
    parser.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="token /_admin/ requests must send as 'Authorization: Bearer TOKEN' "
        f"(default: ${ADMIN_TOKEN_ENV}, else a random one, printed at start)",
    )
    parser.add_argument(
        "--no-uvloop",
        action="store_true",
        help="use the default asyncio loop even if uvloop is installed",
    )
    parser.add_argument(
        "--rpm", type=int, metavar="N", help="requests per window allowed per key (rate_limits.rpm)"
    )
    parser.add_argument(
        "--tpm", type=int, metavar="N", help="tokens per window allowed per key (rate_limits.tpm)"
    )
    group = parser.add_argument_group("scenario fields")
    for f in dataclasses.fields(Scenario):
        _add_field_flag(group, f)
    return parser


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario the parsed flags describe (file first, then flags); ScenarioError if bad."""
    values: dict[str, Any] = load_scenario_file(args.scenario) if args.scenario else {}
    for f in dataclasses.fields(Scenario):
        given = getattr(args, _DEST_PREFIX + f.name, None)
        if given is not None:
            values[f.name] = given
    if args.rpm is not None or args.tpm is not None:
        limits = dict(values.get("rate_limits") or {})
        for name in ("rpm", "tpm"):
            if getattr(args, name) is not None:
                limits[name] = getattr(args, name)
        values["rate_limits"] = limits
    return Scenario.from_mapping(values)


def run_from_args(args: argparse.Namespace) -> int:
    """Serve as the parsed flags say; 2 (with a message) for a refused scenario."""
    try:
        scenario = scenario_from_args(args)
    except (ScenarioError, OSError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None
    run_server(args.host, args.port, scenario, use_uvloop=not args.no_uvloop, admin_token=token)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and serve until interrupted; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m ipfs_accelerate_py simulate",
        description="Run the local OpenAI-compatible provider simulator (fault injection, "
        "rate limits, counters at /_admin/counters).",
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
