"""What the simulator does: a scenario, validated, with every field documented.

A scenario is a flat JSON/YAML object.  Every field is optional; an unknown
field or a wrong value is refused with :class:`ScenarioError` naming it.
Changing a scenario while the server runs (``Simulator.configure`` or
``POST /_admin/config``) merges the given fields over the running ones, field
by field (a nested value such as ``rate_limits`` is replaced whole).

"Targeted" requests are the ones latency, auth failures aside, rate limits,
faults and the response script apply to: by default every route of every wire
format whose method is not GET or HEAD (chat, completions, embeddings, ...;
a format may say otherwise per route), and every request forwarded to the
``upstream``; ``fault_paths`` replaces that with path prefixes (e.g.
``["/v1/models"]`` targets ``GET /v1/models`` only).  Untargeted requests are
still counted and still need a valid key.

Proxy mode: with ``upstream`` set, a request on a path that no wire format
claims is forwarded verbatim (method, path, query, headers, body) to
``upstream`` and its answer relayed -- but for the client's credential
headers, which are removed unless ``forward_credentials`` is true -- once it reaches the normal-answer step;
the faults, latency, keys, limits and script apply in front of it as to any
targeted request.  Errors the simulator makes up for such a request use
``proxy_error_body`` (``{status}``, ``{code}``, ``{message}`` and
``{request_id}`` are filled in; ``{code}`` is S3's name for the status, e.g.
``SlowDown`` for 503).

A targeted request is handled in this order: a pending script entry answers
it as written (bypassing everything below); else ``latency`` (+ jitter); a
missing or unknown key -> 401; ``outage`` -> 503; body validation -> 400/404;
rate limits -> 429; then faults, in the order ``fail_next``, ``drop_next``,
``hang_next``, ``malformed_next``, ``error_rate``, ``drop_rate``,
``hang_rate``, ``malformed_rate`` (the first that fires wins; a hang then
answers normally); then the normal answer, with the stream faults applied.

Randomness: each targeted request that reaches the fault step draws one
``random.Random(seed).random()`` value for each ``*_rate`` that is above 0,
in the order error, drop, hang, malformed; a fault fires when its draw is
below its rate.  Latency jitter uses a second generator seeded with the same
``seed``, so jitter never shifts the fault sequence.  Setting ``seed``
restarts both generators.

Fields (name, default, meaning):
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .openai_wire import DEFAULT_EMBEDDING_DIMENSIONS, DEFAULT_MODELS, MAX_EMBEDDING_DIMENSIONS

__all__ = [
    "RateLimits",
    "Scenario",
    "ScenarioError",
    "ScriptEntry",
    "describe_fields",
    "load_scenario_file",
]

DEFAULT_RATE_WINDOW = 60.0
DEFAULT_HANG_SECONDS = 30.0
DEFAULT_STALL_SECONDS = 10.0
DEFAULT_ERROR_STATUS = 500
DEFAULT_SEED = 0
DEFAULT_PROXY_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>{message}</Message><RequestId>{request_id}</RequestId>"
    "</Error>"
)
DEFAULT_PROXY_ERROR_TYPE = "application/xml"
SCRIPT_FAULTS = ("drop", "hang", "malformed")
STREAM_FAULT_FIELDS = ("stream_stall_after", "stream_cut_after", "stream_malformed_after")


class ScenarioError(ValueError):
    """Refused scenario fields: ``unknown`` names, ``invalid`` name -> what was expected."""

    def __init__(
        self,
        unknown: tuple[str, ...] = (),
        invalid: Mapping[str, str] | None = None,
        where: str = "scenario",
    ) -> None:
        self.unknown = tuple(sorted(unknown))
        self.invalid = dict(invalid or {})
        parts = []
        if self.unknown:
            parts.append(f"unknown {where} fields: {', '.join(self.unknown)}")
        parts.extend(f"{name}: expected {what}" for name, what in sorted(self.invalid.items()))
        super().__init__("; ".join(parts) or f"invalid {where}")

    @property
    def fields(self) -> tuple[str, ...]:
        """Every refused field name, unknown ones first."""
        return self.unknown + tuple(sorted(self.invalid))


# -- value checks: each returns the normalised value or raises ValueError(expected) --


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(value: Any) -> float:
    if not _is_number(value) or value < 0:
        raise ValueError("a number of seconds >= 0")
    return float(value)


def _positive_seconds(value: Any) -> float:
    if not _is_number(value) or value <= 0:
        raise ValueError("a number of seconds > 0")
    return float(value)


def _probability(value: Any) -> float:
    if not _is_number(value) or not 0 <= value <= 1:
        raise ValueError("a probability between 0 and 1")
    return float(value)


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("an integer >= 0")
    return value


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError("an integer >= 1 or null")
    return value


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def optional(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as exc:
            raise ValueError(f"{exc} or null") from None

    return optional


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _error_status(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 400 <= value <= 599:
        raise ValueError("an HTTP status from 400 to 599")
    return value


def _dimensions(value: Any) -> int:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 1 <= value <= MAX_EMBEDDING_DIMENSIONS
    ):
        raise ValueError(f"an integer from 1 to {MAX_EMBEDDING_DIMENSIONS}")
    return value


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("a list of non-empty strings")
    return tuple(value)


def _paths(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) and v.startswith("/") for v in value
    ):
        raise ValueError("a list of paths starting with '/', or null")
    return tuple(value)


def _upstream(value: Any) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.startswith(("http://", "https://"))
        or len(value) <= len("https://")
    ):
        raise ValueError("an http:// or https:// URL, or null")
    return value.rstrip("/")


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("a non-empty string")
    return value


def normalise_path(path: Any) -> str:
    """``"embeddings"`` -> ``"/v1/embeddings"``; a path starting with ``/`` is kept."""
    if not isinstance(path, str) or not path:
        raise ValueError("a request path such as '/v1/embeddings'")
    return path if path.startswith("/") else "/v1/" + path


# -- nested values ------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimits:
    """Per-key limits: ``rpm``/``tpm`` apply to each key separately; ``keys`` overrides them."""

    rpm: int | None = None
    tpm: int | None = None
    keys: Mapping[str, Mapping[str, int | None]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return (
            self.rpm is not None
            or self.tpm is not None
            or any(v is not None for limits in self.keys.values() for v in limits.values())
        )

    def for_key(self, key: str | None) -> tuple[int | None, int | None]:
        """``(rpm, tpm)`` that apply to ``key`` (``None`` = unlimited)."""
        override = self.keys.get(key, {}) if key is not None else {}
        return override.get("rpm", self.rpm), override.get("tpm", self.tpm)

    def to_dict(self, mask: Callable[[str], str] = str) -> dict[str, Any]:
        out: dict[str, Any] = {"rpm": self.rpm, "tpm": self.tpm}
        if self.keys:
            out["keys"] = {mask(k): dict(v) for k, v in self.keys.items()}
        return out


def _limit_pair(value: Any, where: str) -> dict[str, int | None]:
    if not isinstance(value, Mapping) or set(value) - {"rpm", "tpm"}:
        raise ValueError(f"{where} to be an object with only 'rpm' and 'tpm'")
    return {name: _limit(v) for name, v in value.items()}


def _rate_limits(value: Any) -> RateLimits:
    if isinstance(value, RateLimits):
        return value
    if value is None:
        return RateLimits()
    if not isinstance(value, Mapping) or set(value) - {"rpm", "tpm", "keys"}:
        raise ValueError(
            "an object with 'rpm', 'tpm' (integers >= 1 or null) and 'keys' ({key: {rpm, tpm}})"
        )
    keys = value.get("keys") or {}
    if not isinstance(keys, Mapping) or not all(isinstance(k, str) for k in keys):
        raise ValueError("'keys' to map API keys to {rpm, tpm}")
    limits = _limit_pair({k: v for k, v in value.items() if k != "keys"}, "rate_limits")
    return RateLimits(
        rpm=limits.get("rpm"),
        tpm=limits.get("tpm"),
        keys={k: _limit_pair(v, f"keys[{k!r}]") for k, v in keys.items()},
    )


@dataclass(frozen=True)
class ScriptEntry:
    """One canned response, consumed by one targeted request.

    ``body``: an object or list is sent as JSON, a string verbatim; ``None``
    means "the normal answer" when ``status`` < 400 (``headers`` and
    ``status`` still apply, the stream fault fields too) and an OpenAI error
    body when ``status`` >= 400.  ``delay`` seconds pass before answering.
    ``fault``: ``"drop"`` (close the connection, no answer), ``"hang"``
    (hold the request ``hang_seconds``, then answer), ``"malformed"`` (200,
    invalid JSON).  A script entry bypasses latency, keys, limits and faults.
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    delay: float = 0.0
    fault: str | None = None
    stream_stall_after: int | None = None
    stream_cut_after: int | None = None
    stream_malformed_after: int | None = None

    @property
    def is_normal(self) -> bool:
        return self.fault is None and self.body is None and self.status < 400

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["headers"] = dict(self.headers)
        return {k: v for k, v in out.items() if v not in (None, {}) or k == "body"}


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError("'headers' to be an object of header names to values")
    return tuple((k, v if isinstance(v, str) else json.dumps(v)) for k, v in value.items())


def script_entry(value: Any) -> ScriptEntry:
    """Validate one script entry (an object) into a :class:`ScriptEntry`."""
    if isinstance(value, ScriptEntry):
        return value
    if not isinstance(value, Mapping):
        raise ValueError("each script entry to be an object")
    names = {f.name for f in dataclasses.fields(ScriptEntry)}
    unknown = set(value) - names
    if unknown:
        raise ValueError(f"script entry fields among {sorted(names)}, not {sorted(unknown)}")
    status = value.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError("a script entry 'status' from 100 to 599")
    fault = value.get("fault")
    if fault is not None and fault not in SCRIPT_FAULTS:
        raise ValueError(f"a script entry 'fault' among {list(SCRIPT_FAULTS)}")
    return ScriptEntry(
        status=status,
        headers=_headers(value.get("headers") or {}),
        body=value.get("body"),
        delay=_seconds(value.get("delay", 0.0)),
        fault=fault,
        **{name: _optional(_count)(value.get(name)) for name in STREAM_FAULT_FIELDS},
    )


def script_entries(value: Any) -> tuple[ScriptEntry, ...]:
    """Validate a list of script entries."""
    if not isinstance(value, (list, tuple)):
        raise ValueError("a list of script entries")
    return tuple(script_entry(v) for v in value)


def _path_scripts(value: Any) -> Mapping[str, tuple[ScriptEntry, ...]]:
    if not isinstance(value, Mapping):
        raise ValueError("an object mapping request paths to lists of script entries")
    return {normalise_path(path): script_entries(entries) for path, entries in value.items()}


# -- the scenario -------------------------------------------------------------------


def _field(
    default: Any,
    check: Callable[[Any], Any],
    doc: str,
    *,
    cli: str = "",
    factory: Callable[[], Any] | None = None,
) -> Any:
    metadata = {"check": check, "doc": doc, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario; build with :meth:`from_mapping`, change with :meth:`merged`."""

    latency: float = _field(
        0.0,
        _seconds,
        "seconds added before answering each targeted request (also before a stream's first byte)",
        cli="float",
    )
    latency_jitter: float = _field(
        0.0, _seconds, "extra latency drawn uniformly from [0, latency_jitter) seconds", cli="float"
    )
    valid_keys: tuple[str, ...] = _field(
        (),
        _strings,
        "accepted API keys (Authorization: Bearer KEY); empty = any key or none is accepted",
        cli="strings",
    )
    rate_limits: RateLimits = _field(
        None,
        _rate_limits,
        "per-key limits {rpm, tpm, keys: "
        "{KEY: {rpm, tpm}}}: each key (or 'anonymous') has its own "
        "fixed window of rate_window seconds; over a limit -> 429",
        cli="json",
        factory=RateLimits,
    )
    rate_window: float = _field(
        DEFAULT_RATE_WINDOW,
        _positive_seconds,
        "length in seconds "
        "of the fixed rate-limit window, which starts at a key's first "
        "request and restarts at the first request after it ends",
        cli="float",
    )
    retry_after: float | None = _field(
        None,
        _optional(_seconds),
        "fixed Retry-After "
        "seconds for every 429 (and injected 429/503); null = "
        "time left in the window",
        cli="float",
    )
    seed: int | None = _field(
        DEFAULT_SEED,
        _optional(_count),
        "seed of the fault and jitter generators; null = unseeded",
        cli="int",
    )
    error_rate: float = _field(
        0.0,
        _probability,
        "probability that a targeted request fails with error_status",
        cli="float",
    )
    error_status: int = _field(
        DEFAULT_ERROR_STATUS,
        _error_status,
        "status of injected errors (error_rate, fail_next)",
        cli="int",
    )
    fail_next: int = _field(
        0, _count, "the next N targeted requests fail with error_status", cli="int"
    )
    outage: bool = _field(
        False, _flag, "every targeted request gets 503 until set false", cli="bool"
    )
    hang_rate: float = _field(
        0.0,
        _probability,
        "probability that a targeted request is "
        "held hang_seconds (or until the client leaves), then answered",
        cli="float",
    )
    hang_next: int = _field(0, _count, "the next N targeted requests hang", cli="int")
    hang_seconds: float = _field(
        DEFAULT_HANG_SECONDS, _seconds, "how long a hang lasts", cli="float"
    )
    drop_rate: float = _field(
        0.0, _probability, "probability that the connection is closed with no response", cli="float"
    )
    drop_next: int = _field(0, _count, "the next N targeted requests are dropped", cli="int")
    malformed_rate: float = _field(
        0.0, _probability, "probability of a 200 whose body is not valid JSON", cli="float"
    )
    malformed_next: int = _field(
        0, _count, "the next N targeted requests get a malformed body", cli="int"
    )
    stream_stall_after: int | None = _field(
        None,
        _optional(_count),
        "every stream stalls stall_seconds after N chunks, then goes on",
        cli="int",
    )
    stall_seconds: float = _field(
        DEFAULT_STALL_SECONDS, _seconds, "how long a stream stall lasts", cli="float"
    )
    stream_cut_after: int | None = _field(
        None,
        _optional(_count),
        "every stream's connection is closed after N chunks, without [DONE]",
        cli="int",
    )
    stream_malformed_after: int | None = _field(
        None,
        _optional(_count),
        "every stream sends a non-JSON data line after N chunks, then goes on",
        cli="int",
    )
    stream_chunk_delay: float = _field(0.0, _seconds, "seconds between stream chunks", cli="float")
    fault_paths: tuple[str, ...] | None = _field(
        None,
        _paths,
        "path prefixes of targeted requests, "
        "any method; null = every non-GET route of every "
        "format, and every proxied request",
        cli="strings",
    )
    upstream: str | None = _field(
        None,
        _upstream,
        "proxy mode: URL that requests on paths "
        "no format claims are forwarded to (faults still apply); "
        "null = such paths get 404",
        cli="str",
    )
    forward_credentials: bool = _field(
        False,
        _flag,
        "proxy mode: forward the client's "
        "credential headers (Authorization, x-api-key, "
        "x-goog-api-key, api-key, Cookie, ...) to the upstream; "
        "false = they are removed",
        cli="bool",
    )
    proxy_error_body: str = _field(
        DEFAULT_PROXY_ERROR_BODY,
        _text,
        "body of errors the "
        "simulator makes up for proxied requests ({status}, {code}, "
        "{message}, {request_id} filled in)",
        cli="str",
    )
    proxy_error_content_type: str = _field(
        DEFAULT_PROXY_ERROR_TYPE, _text, "content type of proxy_error_body", cli="str"
    )
    models: tuple[str, ...] = _field(
        DEFAULT_MODELS, _strings, "ids listed by GET /v1/models", cli="strings"
    )
    strict_models: bool = _field(
        False,
        _flag,
        "refuse (404) a model not in 'models'; false = any model name is served",
        cli="bool",
    )
    embedding_dimensions: int = _field(
        DEFAULT_EMBEDDING_DIMENSIONS,
        _dimensions,
        "length of an embedding when the request gives no 'dimensions'",
        cli="int",
    )
    script: tuple[ScriptEntry, ...] = _field(
        (),
        script_entries,
        "canned responses {status, headers, body, "
        "delay, fault, stream_*_after}, one per targeted request, before "
        "normal behaviour resumes; setting it replaces the pending script",
        cli="json",
    )
    path_scripts: Mapping[str, tuple[ScriptEntry, ...]] = _field(
        None,
        _path_scripts,
        "{path: [entries]}: like script, for one path only, consulted before 'script'",
        cli="json",
        factory=dict,
    )

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any] | None = None, base: Scenario | None = None
    ) -> Scenario:
        """Validate ``values`` over ``base`` (defaults if none); raise ScenarioError."""
        return (base or cls()).merged(values or {})

    def merged(self, values: Mapping[str, Any]) -> Scenario:
        """A copy with ``values`` validated and set; unknown or bad fields raise ScenarioError."""
        return dataclasses.replace(self, **check_fields(values))

    def to_dict(self, mask: Callable[[str], str] = str) -> dict[str, Any]:
        """JSON-ready fields; ``mask`` renders API keys (e.g. as fingerprints)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "valid_keys":
                value = [mask(k) for k in value]
            elif f.name == "rate_limits":
                value = value.to_dict(mask)
            elif f.name == "script":
                value = [e.to_dict() for e in value]
            elif f.name == "path_scripts":
                value = {p: [e.to_dict() for e in es] for p, es in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @property
    def key_set(self) -> frozenset[str]:
        return frozenset(self.valid_keys)

    @property
    def has_stream_faults(self) -> bool:
        return any(getattr(self, name) is not None for name in STREAM_FAULT_FIELDS)

    @property
    def is_plain(self) -> bool:
        """No configured behaviour beyond the normal answer (consumable state aside)."""
        return (
            self.latency == 0
            and self.latency_jitter == 0
            and not self.valid_keys
            and not self.rate_limits.active
            and not self.outage
            and self.error_rate == 0
            and self.hang_rate == 0
            and self.drop_rate == 0
            and self.malformed_rate == 0
            and not self.has_stream_faults
            and self.stream_chunk_delay == 0
        )

    def targets(self, method: str, path: str, default: bool | None = None) -> bool:
        """Whether latency, limits, faults and the script apply to this request.

        ``default`` is the route's own answer when ``fault_paths`` is null
        (without it: any method but GET and HEAD).
        """
        if self.fault_paths is None:
            return default if default is not None else method not in ("GET", "HEAD")
        return any(path.startswith(prefix) for prefix in self.fault_paths)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Scenario))


def check_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate scenario fields; return them normalised or raise ScenarioError."""
    if not isinstance(values, Mapping):
        raise ScenarioError(invalid={"scenario": "a JSON object of scenario fields"})
    unknown = tuple(name for name in values if name not in FIELD_NAMES)
    checks = {f.name: f.metadata["check"] for f in dataclasses.fields(Scenario)}
    normalised: dict[str, Any] = {}
    invalid: dict[str, str] = {}
    for name, value in values.items():
        if name in unknown:
            continue
        try:
            normalised[name] = checks[name](value)
        except ValueError as exc:
            invalid[name] = f"{exc}, got {value!r}"[:300]
    if unknown or invalid:
        raise ScenarioError(unknown, invalid)
    return normalised


def describe_fields(indent: str = "  ") -> str:
    """One line per scenario field: ``name (default): meaning``."""
    lines = []
    defaults = Scenario().to_dict()
    for f in dataclasses.fields(Scenario):
        lines.append(
            f"{indent}{f.name} (default {json.dumps(defaults[f.name])}): {f.metadata['doc']}"
        )
    return "\n".join(lines)


def load_scenario_file(path: str | Path) -> dict[str, Any]:
    """Read a scenario object from a ``.json``, ``.yaml`` or ``.yml`` file (not yet validated)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ScenarioError(invalid={"scenario": f"a JSON/YAML object in {path}"})
    return data


__doc__ = (__doc__ or "") + describe_fields() + "\n"
