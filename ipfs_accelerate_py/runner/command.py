"""The ``run`` command: its settings (flags, a config file), the client
they make, the checks before anything is sent, and one run from start to
report.  The run itself is :class:`.run.Runner`; why it stops and the exit
codes are in :mod:`.stops`.

Everything a user can get wrong (a flag, the config, the job file, the
target) ends the command with one line on stderr naming the problem and the
fix, and exit code 2, before a request is sent; see :class:`UsageError`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..api_backends import UnknownBackendError, backend_class, canonical_backend_name
from ..engine.settings import SETTINGS
from ..resilience.errors import InvalidInputError, SettingError
from ..resilience.redact import public_url
from .openai_batch import is_batch_output
from .results import Outcomes, ResultLog, is_resumable
from .run import DEFAULT_WINDOW_PER_SLOT, MIN_WINDOW, Runner, RunOptions, model_for
from .scan import Scan, scan_jobs
from .stops import (
    DEFAULT_MAX_OUTAGE,
    DEFAULT_MAX_SAME_FAILURES,
    DEFAULT_STOP_GRACE,
    EXIT_FAILURES,
    EXIT_OK,
    EXIT_WRITE_FAILED,
    PreflightFailed,
    write_stop,
)
from .target import SIMULATOR_KEY, describe_target, target_text

if TYPE_CHECKING:  # progress imports rich: loaded only when a display is made
    from .progress import Display

__all__ = ["UsageError", "client_metadata", "load_config", "run_command"]

CONFIG_FIELDS = ("api", "base_url", "model", "embedding_model", "keys", "settings", "window")
KEY_FIELDS = ("name", "key", "rpm", "tpm", "max_concurrent", "base_url", "weight")


class UsageError(Exception):
    """A mistake in the command, its config or its job file: one line that
    names it and says how to fix it.  The command exits with code 2."""


def client_metadata(
    backend: Any,
    *,
    base_url: str | None = None,
    keys: Iterable[str] = (),
    key_limits: Mapping[str, Any] | None = None,
    config_keys: Iterable[Mapping[str, Any]] = (),
    settings: Mapping[str, Any] | None = None,
    named: bool = False,
) -> dict[str, Any]:
    """The metadata a run's client is built with.  A real service is used
    only when the command names a target: ``named`` (``--api`` or the
    config's ``api``), a base URL or keys.  Otherwise the embedded simulator
    answers, whatever the environment holds: an exported ``OPENAI_API_KEY``
    never turns a try-out into paid calls."""
    keys = list(keys)
    config_keys = [dict(k) for k in config_keys]
    metadata: dict[str, Any] = {}
    if base_url:
        metadata.update(backend.connection_metadata(base_url, None))
    elif not (named or keys or config_keys):
        metadata.update(backend.connection_metadata("simulator", SIMULATOR_KEY))
    limits = {k: v for k, v in dict(key_limits or {}).items() if v is not None}
    listed = config_keys + [
        {"name": f"key{i}", "key": key, **limits} for i, key in enumerate(keys, start=1)
    ]
    if listed:
        metadata["api_keys"] = listed
    metadata["on_circuit_open"] = (
        "wait"  # an outage holds the jobs until the probe closes it (--max-outage caps it)
    )
    metadata["request_deadline"] = (
        None  # a job may wait out an outage shorter than --max-outage (--deadline sets one)
    )
    metadata.update(settings or {})
    return metadata


def load_config(path: str) -> dict[str, Any]:
    """A YAML or JSON file: ``api``, ``base_url``, ``model``, ``keys`` (a list
    of ``{name, key, rpm, tpm, max_concurrent, base_url}``), ``settings``,
    ``window``.  Any problem is a :class:`UsageError` naming the file."""
    import yaml

    text = _read_text(path, "config file", "--config")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(
            f"config file {path} is not valid YAML or JSON{where}: {problem}"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(
            f"config file {path} must be a mapping of {', '.join(CONFIG_FIELDS)}, not a {type(data).__name__}"
        )
    unknown = sorted(str(name) for name in set(data) - set(CONFIG_FIELDS))
    if unknown:
        raise UsageError(
            f"config file {path}: unknown field {unknown[0]!r}; the fields are {', '.join(CONFIG_FIELDS)}"
        )
    for name in ("api", "base_url", "model", "embedding_model"):
        if name in data and not (isinstance(data[name], str) and data[name].strip()):
            raise UsageError(f"config file {path}: {name!r} must be a non-empty string")
    if "settings" in data and not isinstance(data["settings"], dict):
        raise UsageError(
            f"config file {path}: 'settings' must be a mapping of setting names to values"
        )
    if "window" in data and (
        isinstance(data["window"], bool)
        or not isinstance(data["window"], int)
        or data["window"] < 1
    ):
        raise UsageError(f"config file {path}: 'window' must be a whole number of at least 1")
    keys = data.get("keys")
    if keys is not None:
        if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            raise UsageError(
                f"config file {path}: 'keys' must be a list of mappings like {{name: k1, key: sk-..., rpm: 500}}"
            )
        for number, entry in enumerate(keys, start=1):
            if not isinstance(entry.get("key"), str) or not entry["key"].strip():
                raise UsageError(
                    f"config file {path}: key {number} has no 'key' (the API key as a string)"
                )
            extra = sorted(str(name) for name in set(entry) - set(KEY_FIELDS))
            if extra:
                raise UsageError(
                    f"config file {path}: key {number} has unknown field {extra[0]!r}; its fields are {', '.join(KEY_FIELDS)}"
                )
    return data


def _read_text(path: str, what: str, flag: str) -> str:
    if os.path.isdir(path):
        raise UsageError(f"{what} {path} is a directory; give the path of a file to {flag}")
    try:
        with open(path, encoding="utf-8") as source:
            return source.read()
    except FileNotFoundError:
        raise UsageError(f"no such {what}: {path}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _check_job_file(path: str) -> None:
    if os.path.isdir(path):
        raise UsageError(
            f"job file {path} is a directory; give the path of a JSONL file (one job per line)"
        )
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise UsageError(f"no such job file: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read job file {path}: {exc.strerror or exc}") from None
    if not os.path.isfile(path):
        raise UsageError(
            f"job file {path} is not a regular file (a pipe?): the run reads it twice, to check it and to send "
            "it, and resumes from it; save it to a file first"
        )


def _check_base_url(url: str | None) -> None:
    if url is None or url.strip().lower() in ("simulator", "embedded"):
        return
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("http", "https"):
        raise UsageError(
            f"--base-url {public_url(url)!r} must start with http:// or https:// (or be 'simulator'), "
            "e.g. http://127.0.0.1:8000/v1"
        )


def _check_output_format(out: str, output_format: str) -> None:
    """A results file keeps one format: resuming in the other would mix two kinds of line."""
    try:
        with open(out, "rb") as source:
            first = source.readline(1 << 20)
    except OSError:
        return
    try:
        record = json.loads(first)
    except ValueError:
        return
    written = "openai-batch" if is_batch_output(record) else "jobs"
    if isinstance(record, dict) and written != output_format:
        raise UsageError(
            f"{out} holds results in the {written} format; resume it with --output-format {written} "
            f"(or give another --out for {output_format} results)"
        )


def _check_flags(args: Any) -> None:
    """Values out of range, and flags that would be silently ignored."""
    for flag, value, least in (
        ("--concurrency", args.concurrency, 1),
        ("--window", args.window, 1),
        ("--max-retries", args.max_retries, 0),
        ("--max-same-failures", args.max_same_failures, 0),
    ):
        if value is not None and value < least:
            raise UsageError(f"{flag} must be at least {least}, not {value}")
    for flag, value in (
        ("--timeout", args.timeout),
        ("--deadline", args.deadline),
        ("--max-outage", args.max_outage),
        ("--rpm", args.rpm),
        ("--tpm", args.tpm),
    ):
        if value is not None and not value > 0:
            raise UsageError(f"{flag} must be a number of more than 0, not {value:g}")
    if args.grace is not None and args.grace < 0:
        raise UsageError(f"--grace must be 0 or more seconds, not {args.grace:g}")
    for flag, value in (("--rpm", args.rpm), ("--tpm", args.tpm)):
        if value is not None and not args.key:
            raise UsageError(
                f"{flag} limits each --key, and no --key is given; add --key, or put {flag[2:]} on the config's keys"
            )
    for key in args.key or ():
        if not key.strip():
            raise UsageError("--key is empty; give the API key (or leave --key out)")
    for flag, value in (("--model", args.model), ("--embedding-model", args.embedding_model)):
        if value is not None and not value.strip():
            raise UsageError(f"{flag} is empty; give a model name (or leave {flag} out)")


def _check_job(job: Any, options: RunOptions, client: Any) -> tuple[str, str | None]:
    """The model ``job`` goes to, and why the client would refuse to send it (None: it would not)."""
    model = model_for(job, options, client)
    try:
        client.operation_request(job.type, model or "model", job.content, job.params)
    except InvalidInputError as exc:  # an operation the backend lacks, content it refuses
        return model or "", str(
            exc.message if isinstance(getattr(exc, "message", None), str) else exc
        )
    if model is None:
        flag = "--embedding-model" if job.type == "embeddings" else "--model"
        return "", (
            f"no model: the {client.provider.spec.name} backend has no default {job.type} model; name one in the "
            f"line's 'model' or with {flag}"
        )
    return model, None


def _check_client(client: Any, args: Any, metadata: Mapping[str, Any]) -> None:
    """What the client's settings make impossible, said before anything is sent."""
    spec = client.provider.spec
    keyless = not client.api_key and not metadata.get("api_keys")
    if keyless and spec.requires_key and client.base_url == spec.default_base_url:
        variables = " or ".join(spec.key_env) or "the provider's key variable"
        raise UsageError(
            f"{spec.name} at {public_url(client.base_url)} needs an API key and none is given: pass --key, set "
            f"{variables}, or list keys in the config (without --api, the embedded simulator answers)"
        )
    max_outage = args.max_outage if args.max_outage is not None else DEFAULT_MAX_OUTAGE
    if max_outage <= client.reset_timeout:
        raise UsageError(
            f"--max-outage {max_outage:g} is not longer than reset_timeout {client.reset_timeout:g} s (how long the "
            "circuit stays open before it probes the service again), so the run would stop before it could see the "
            f"service back; raise --max-outage, or lower reset_timeout (e.g. --set reset_timeout={max_outage / 4:g})"
        )


def run_command(args: Any, argv: Iterable[str]) -> int:
    """The ``run`` command, from parsed arguments (see ``cli.py``)."""
    from .progress import make_display

    _check_flags(args)
    config = load_config(args.config) if args.config else {}
    api = canonical_backend_name(
        args.api or config.get("api") or "openai"
    )  # "anthropic" -> "claude"
    try:
        backend = backend_class(api)
    except UnknownBackendError as exc:
        raise UsageError(str(exc)) from None
    _check_job_file(args.jobs)
    settings = dict(config.get("settings") or {})
    settings.update(_flag_settings(args))
    _check_setting_names(settings)
    concurrency = int(settings.get("max_concurrent_requests", 16))
    settings.setdefault("max_concurrent_requests", concurrency)
    window = (
        args.window
        or config.get("window")
        or max(MIN_WINDOW, DEFAULT_WINDOW_PER_SLOT * concurrency)
    )
    if window < concurrency:
        raise UsageError(
            f"the window ({window}, from --window or the config) is smaller than the concurrency ({concurrency}): "
            f"at most {window} requests could be in flight; raise the window to at least {concurrency} or lower "
            "the concurrency"
        )
    settings["queue_size"] = max(int(settings.get("queue_size", 0)), window)
    base_url = args.base_url or config.get("base_url")
    _check_base_url(base_url)
    out = args.out or _beside(args.jobs, ".results.jsonl")
    if os.path.isdir(out):
        raise UsageError(f"--out {out} is a directory; give the path of the results file")
    if os.path.exists(out) and os.path.samefile(out, args.jobs):
        raise UsageError(
            f"--out {out} is the job file itself: results would be appended to the jobs; give another path"
        )
    if is_resumable(out):
        _check_output_format(out, args.output_format)
    outcomes = Outcomes.read(out)
    if args.retry_failed and not len(outcomes):
        raise UsageError(
            f"--retry-failed: {out} holds no results yet (this is a first run), so there is nothing to retry; "
            "leave --retry-failed out"
        )
    metadata = client_metadata(
        backend,
        base_url=base_url,
        keys=args.key or (),
        key_limits={"rpm": args.rpm, "tpm": args.tpm},
        config_keys=config.get("keys") or (),
        settings=settings,
        named=bool(args.api or config.get("api")),
    )
    try:
        client = backend({}, metadata)
    except (SettingError, InvalidInputError) as exc:
        raise UsageError(str(exc)) from None
    try:
        _check_client(client, args, metadata)
        secrets = tuple(
            s for s in (client.api_key, *(k.get("key") for k in metadata.get("api_keys", ()))) if s
        )
        models = RunOptions(
            jobs=args.jobs,
            out=out,
            model=args.model or config.get("model"),
            embedding_model=args.embedding_model or config.get("embedding_model"),
        )
        scan = scan_jobs(
            args.jobs,
            check=lambda job: _check_job(job, models, client),
            outcomes=outcomes,
            retry_failed=args.retry_failed,
            input_format=args.input_format,
        )
        if len(outcomes) and scan.jobs and scan.ok + scan.failed == 0:
            raise UsageError(
                f"{out} holds results of {len(outcomes)} lines and none is a line of {args.jobs}: is it another "
                "job file's results? give another --out (or move that file away)"
            )
        problem = scan.problem()
        if problem and (scan.lines == 0 or not args.skip_bad_lines):
            raise UsageError(
                f"job file {args.jobs} {problem}"
                if scan.lines == 0
                else f"job file {args.jobs}, {problem}"
            )
        target = describe_target(
            client,
            api,
            metadata,
            concurrency=concurrency,
            window=window,
            scan=scan,
            key_source=_key_source(backend, args, config),
        )
        display = make_display(args.progress, stream=sys.stderr)
        display.note(f"target: {target_text(target)}")
        unused = _unused_environment(backend, metadata)
        if unused:
            display.note(f"note: {unused}")
        options = RunOptions(
            jobs=args.jobs,
            out=out,
            api=api,
            model=models.model,
            embedding_model=models.embedding_model,
            window=window,
            retry_failed=args.retry_failed,
            report=args.report
            or _beside(
                out if not os.path.exists(out) or is_resumable(out) else args.jobs, ".report"
            ),
            command=" ".join(shlex.quote(a) for a in ["ipfs-accelerate", *argv]),
            settings=settings,
            secrets=secrets,
            max_outage=args.max_outage if args.max_outage is not None else DEFAULT_MAX_OUTAGE,
            max_same_failures=args.max_same_failures
            if args.max_same_failures is not None
            else DEFAULT_MAX_SAME_FAILURES,
            grace=args.grace if args.grace is not None else DEFAULT_STOP_GRACE,
            target=target,
            input_format=args.input_format,
            output_format=args.output_format,
        )
        if os.path.exists(out) and not is_resumable(out):
            display.note(
                f"note: --out {out} is not a regular file: results are written there as they finish, and a later "
                "run cannot resume from it"
            )
        if args.dry_run:
            return _dry_run(client, options, outcomes, display, scan)
        if len(outcomes):
            display.note(
                f"resuming: {len(outcomes.ok)} done and {len(outcomes.failed)} failed in {out}"
                + (
                    ""
                    if args.retry_failed
                    else " (failed ones are kept: --retry-failed sends them again)"
                )
            )
        return _run(client, options, outcomes, display, scan)
    finally:
        client.close()


def _run(client: Any, options: RunOptions, outcomes: Outcomes, display: Display, scan: Scan) -> int:
    from .report import build_report, write_reports

    existed = os.path.exists(options.out)
    log = ResultLog(options.out, options.output_format, options.secrets)
    try:
        log.open()
    except OSError as exc:
        raise UsageError(f"cannot open --out {options.out}: {exc.strerror or exc}") from None
    try:
        runner = Runner(
            client,
            options,
            log,
            outcomes,
            display,
            check=lambda job: _check_job(job, options, client),
        )
        runner.total = scan.lines
        run = asyncio.run(runner.run())
    except PreflightFailed as exc:
        log.close()
        if not existed and log.written == 0:
            os.remove(options.out)  # the run never started: no file left behind
        raise UsageError(
            f"{exc} (nothing was sent after this first request; no result was written)"
        ) from None
    log.close()
    stop = runner.stop_reason
    if (
        stop is None and log.failure is not None
    ):  # the last fsync failed: the end of the file may be lost
        stop = write_stop(log.failure, log.written)
    totals = run["totals"]
    if is_resumable(options.out):  # what is on disk, across every run of the file
        job = scan_jobs(
            options.jobs,
            check=lambda item: _check_job(item, options, client),
            outcomes=Outcomes.read(options.out),
            input_format=options.input_format,
        )
        run["job"] = {
            "lines": job.lines,
            "ok": job.ok,
            "failed": job.failed,
            "not_run": job.not_run,
            "bad": job.bad,
        }
    else:  # a pipe or a device: this run's lines, never read back
        run["job"] = {
            "lines": scan.lines,
            "ok": totals["ok"],
            "failed": totals["failed"],
            "bad": scan.bad,
            "not_run": scan.lines - scan.bad - totals["ok"] - totals["failed"],
        }
    if stop is not None:
        code = stop.code
        run["stopped"] = stop.reason
    else:  # 0: every line of the file has its result, all ok
        code = EXIT_OK if run["job"]["ok"] == run["job"]["lines"] else EXIT_FAILURES
    run["exit_code"] = code
    assert options.report is not None  # run_command always names the report's files
    run["runs"] = _history(options.report + ".json") + [_this_run(run)]
    report = build_report(run)
    try:
        write_reports(report, options.report + ".json", options.report + ".html")
    except OSError as exc:
        display.note(f"cannot write the report {options.report}.json/.html: {exc.strerror or exc}")
        code = code if code != EXIT_OK and code != EXIT_FAILURES else EXIT_WRITE_FAILED
    display.finish(
        dict(
            _summary(run),
            report_json=options.report + ".json",
            report_html=options.report + ".html",
            output=options.out,
        )
    )
    return code


def _dry_run(
    client: Any, options: RunOptions, outcomes: Outcomes, display: Display, scan: Scan
) -> int:
    """Check the file (done) and the target (the pre-flight, not recorded); say what a run would send."""
    runner = Runner(client, options, ResultLog(os.devnull), outcomes, display)
    started = time.monotonic()
    try:
        job = asyncio.run(runner.check())
    except PreflightFailed as exc:
        raise UsageError(str(exc)) from None
    checked = (
        f"the target answered line {job.line} in {time.monotonic() - started:.2f} s"
        + (
            ""
            if runner.preflight is None or runner.preflight["ok"]
            else f" ({runner.preflight['error']}, not fatal)"
        )
        if job is not None
        else "nothing to send, so the target was not contacted"
    )
    lines = [
        f"dry run: {scan.to_send} of {scan.jobs} jobs would be sent ({scan.jobs - scan.to_send} done by earlier runs"
        + (f", {scan.bad} bad lines skipped" if scan.bad else "")
        + f"); {checked}",
        *(f"  {count} {kind} to {model}" for (kind, model), count in sorted(scan.by_model.items())),
        f"  about {scan.estimated_tokens:,} input tokens (text length / 4)",
    ]
    print("\n".join(lines))
    return EXIT_OK


def _key_source(backend: Any, args: Any, config: Mapping[str, Any]) -> str:
    if args.key or config.get("keys"):
        return (
            "--key"
            if not config.get("keys")
            else ("the config" if not args.key else "the config and --key")
        )
    spec = backend.provider.spec
    return next((name for name in spec.key_env if os.environ.get(name)), "")


def _unused_environment(backend: Any, metadata: Mapping[str, Any]) -> str | None:
    """When the simulator answers although the environment holds a key or
    base URL of the provider: say so, and how to use them."""
    spec = backend.provider.spec
    if metadata.get(spec.base_url_metadata[0]) != "simulator":
        return None
    present = [name for name in spec.key_env + spec.base_url_env if os.environ.get(name)]
    if not present:
        return None
    return (
        f"{' and '.join(present)} {'is' if len(present) == 1 else 'are'} set but not used: no --api, --base-url, --key "
        f"or config names a target, so the embedded simulator answers; add --api {backend.provider.spec.name} to use them"
    )


# ---------------------------------------------------------------- the report's history


def _history(report_json: str) -> list[dict[str, Any]]:
    """The runs the previous report of this file lists (a resumed job keeps them)."""
    try:
        with open(report_json, encoding="utf-8") as source:
            previous = json.load(source)
    except (OSError, ValueError):
        return []
    if not isinstance(previous, dict):
        return []
    runs = previous.get("runs")
    if isinstance(runs, list):
        return [run for run in runs if isinstance(run, dict)]
    return [_this_run(previous)] if "totals" in previous else []


def _this_run(run: Mapping[str, Any]) -> dict[str, Any]:
    found = run.get("totals")
    totals: Mapping[str, Any] = found if isinstance(found, dict) else {}
    return {
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "duration_s": run.get("duration_s"),
        **{name: totals.get(name, 0) for name in ("submitted", "ok", "failed", "interrupted")},
        "ended": run.get("stopped") or "finished",
        "exit_code": run.get("exit_code"),
    }


def _summary(run: Mapping[str, Any]) -> dict[str, Any]:
    totals, job = run["totals"], run["job"]
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
        "target": target_text(run["target"]) if run.get("target") else None,
        "job": job,
        "runs": len(run["runs"]),
    }


def _flag_settings(args: Any) -> dict[str, Any]:
    import yaml

    settings: dict[str, Any] = {}
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
            raise UsageError(f"--set {item!r}: write NAME=VALUE, e.g. --set max_batch_size=64")
        try:
            settings[name.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UsageError(
                f"--set {item!r}: the value is not a YAML/JSON value; quote it, e.g. --set name='\"text\"'"
            ) from None
    return settings


def _check_setting_names(settings: Mapping[str, Any]) -> None:
    known = {spec.name for spec in SETTINGS}
    unknown = sorted(str(name) for name in set(settings) - known)
    if unknown:
        raise UsageError(
            f"unknown setting {unknown[0]!r} (from --set or the config's settings); the settings are: "
            + ", ".join(sorted(known))
        )


def _beside(path: str, suffix: str) -> str:
    stem = path[: -len(".jsonl")] if path.endswith(".jsonl") else path
    return stem + suffix
