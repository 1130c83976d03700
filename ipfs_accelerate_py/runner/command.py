"""The ``run`` command: its settings (flags, a config file), the client
they make, and one run from start to report.  The run itself is
:class:`.run.Runner`."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from typing import Any, Iterable, Mapping, Optional

from ..api_backends import UnknownBackendError, backend_class, canonical_backend_name
from ..engine.settings import SETTINGS
from ..resilience.errors import SettingError
from .results import Outcomes, ResultLog
from .run import DEFAULT_WINDOW_PER_SLOT, MIN_WINDOW, RunOptions, Runner
from .stops import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["client_metadata", "load_config", "run_command"]


def client_metadata(
    backend: Any,
    *,
    base_url: Optional[str] = None,
    keys: Iterable[str] = (),
    key_limits: Optional[Mapping[str, Any]] = None,
    config_keys: Iterable[Mapping[str, Any]] = (),
    settings: Optional[Mapping[str, Any]] = None,
    environ: Mapping[str, str] = os.environ,
) -> dict:
    """The metadata a run's client is built with.  With no base URL and no
    key given, and none in the provider's environment variables, the
    embedded simulator is used."""
    spec = backend.provider.spec
    keys = list(keys)
    config_keys = [dict(k) for k in config_keys]
    configured = base_url or keys or config_keys or any(environ.get(name) for name in spec.key_env + spec.base_url_env)
    metadata: dict = {}
    if base_url or not configured:
        metadata.update(backend.connection_metadata(base_url or "simulator", None))
    limits = {k: v for k, v in dict(key_limits or {}).items() if v is not None}
    listed = config_keys + [{"name": f"key{i}", "key": key, **limits} for i, key in enumerate(keys, start=1)]
    if listed:
        metadata["api_keys"] = listed
    metadata["on_circuit_open"] = "wait"  # an outage holds the jobs until the probe closes the circuit, within their deadline
    metadata.update(settings or {})
    return metadata


def load_config(path: str) -> dict:
    """A YAML or JSON file: ``api``, ``base_url``, ``model``, ``keys`` (a list
    of ``{name, key, rpm, tpm, max_concurrent, base_url}``), ``settings``."""
    import yaml

    with open(path, encoding="utf-8") as source:
        data = yaml.safe_load(source) or {}
    if not isinstance(data, dict):
        raise SettingError("config", path, "a mapping with api, base_url, model, keys, settings")
    unknown = set(data) - {"api", "base_url", "model", "keys", "settings", "window"}
    if unknown:
        raise SettingError("config", sorted(unknown), "only api, base_url, model, keys, settings, window")
    return data


def run_command(args: Any, argv: Iterable[str]) -> int:
    """The ``run`` command, from parsed arguments (see ``cli.py``)."""
    from .progress import make_display
    from .report import build_report, write_reports

    config = load_config(args.config) if args.config else {}
    api = canonical_backend_name(args.api or config.get("api") or "openai")  # "anthropic" -> "claude"
    try:
        backend = backend_class(api)
    except UnknownBackendError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    if not os.path.exists(args.jobs):
        print(f"no such job file: {args.jobs}", file=sys.stderr)
        return EXIT_USAGE
    settings = dict(config.get("settings") or {})
    settings.update(_flag_settings(args))
    _check_setting_names(settings)
    concurrency = int(settings.get("max_concurrent_requests", 16))
    settings.setdefault("max_concurrent_requests", concurrency)
    window = args.window or config.get("window") or max(MIN_WINDOW, DEFAULT_WINDOW_PER_SLOT * concurrency)
    settings["queue_size"] = max(int(settings.get("queue_size", 0)), window)
    out = args.out or _beside(args.jobs, ".results.jsonl")
    metadata = client_metadata(
        backend,
        base_url=args.base_url or config.get("base_url"),
        keys=args.key or (),
        key_limits={"rpm": args.rpm, "tpm": args.tpm},
        config_keys=config.get("keys") or (),
        settings=settings,
    )
    display = make_display(args.progress, stream=sys.stderr)
    outcomes = Outcomes.read(out)
    if len(outcomes):
        display.note(f"resuming: {len(outcomes.ok)} done and {len(outcomes.failed)} failed in {out}"
                     + ("" if args.retry_failed else " (failed ones are kept: --retry-failed sends them again)"))
    client = backend({}, metadata)
    options = RunOptions(
        jobs=args.jobs,
        out=out,
        api=api,
        model=args.model or config.get("model"),
        window=window,
        retry_failed=args.retry_failed,
        report=args.report or _beside(out, ".report"),
        command=" ".join(shlex.quote(a) for a in ["ipfs-accelerate", *argv]),
        settings=settings,
        secrets=(client.api_key, *(entry.get("key") for entry in metadata.get("api_keys", ()))),
        input_format=args.input_format,
        output_format=args.output_format,
    )
    try:
        with ResultLog(out, options.output_format, options.secrets) as log:
            runner = Runner(client, options, log, outcomes, display)
            run = asyncio.run(runner.run())
    finally:
        client.close()
    report = build_report(run)
    write_reports(report, options.report + ".json", options.report + ".html")
    display.finish(dict(_summary(run), report_json=options.report + ".json", report_html=options.report + ".html", output=out))
    totals = run["totals"]
    if run["stopped"]:
        return EXIT_INTERRUPTED
    clean = totals["failed"] == totals["skipped_failed"] == totals["malformed"] == 0
    return EXIT_OK if clean else EXIT_FAILURES  # 0: every line of the file has its result


def _summary(run: dict) -> dict:
    totals = run["totals"]
    return {
        "elapsed_s": run["duration_s"],
        "duration_s": run["duration_s"],
        "total": totals["lines"],
        "done": totals["ok"] + totals["failed"],
        **{k: totals[k] for k in ("ok", "failed", "skipped", "malformed", "interrupted")},
        "in_flight": 0,
        "queued": 0,
        "throughput_rps": run["throughput_rps"],
        "eta_s": None,
        "errors_by_class": run["errors_by_class"],
        "circuit_state": run["circuit"]["state"],
        "keys": {name: {"in_flight": 0, **row} for name, row in run["keys"].items()},
        "latency": {k: run["latency"][k] for k in ("p50", "p90", "p99", "max")},
        "stopped": run["stopped"],
        "stopping": False,
    }


def _flag_settings(args: Any) -> dict:
    import yaml

    settings: dict = {}
    for name, value in (
        ("max_concurrent_requests", args.concurrency),
        ("max_retries", args.max_retries),
        ("request_deadline", args.deadline),
        ("timeout", args.timeout),
        ("batching_enabled", args.batching),
    ):
        if value is not None:
            settings[name] = value
    for item in args.set or ():
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise SettingError("--set", item, "NAME=VALUE, e.g. --set max_batch_size=64")
        settings[name.strip()] = yaml.safe_load(raw)
    return settings


def _check_setting_names(settings: Mapping[str, Any]) -> None:
    known = {spec.name for spec in SETTINGS}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise SettingError(unknown[0], settings[unknown[0]], f"one of the settings: {', '.join(sorted(known))}")


def _beside(path: str, suffix: str) -> str:
    stem = path[: -len(".jsonl")] if path.endswith(".jsonl") else path
    return stem + suffix
