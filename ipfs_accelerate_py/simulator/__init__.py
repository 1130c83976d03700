"""A local provider simulator: one HTTP server speaking many providers' wire formats,
with faults and counters.

Each wire format is a module in :mod:`.formats` (found automatically; the
contract is :mod:`.wireformat`); the script, latency, keys, rate limits,
faults, stream faults and counters apply to every one of them alike.  With
the scenario's ``upstream`` set, requests on paths no format claims are
forwarded there, faults injected in front (:mod:`.proxy`).

The OpenAI format answers under ``/v1``:

* ``POST /v1/chat/completions`` (JSON, or SSE with ``"stream": true``;
  ``stream_options.include_usage`` adds a final usage chunk),
* ``POST /v1/completions`` (``text_completion``, streams too),
* ``POST /v1/embeddings`` (``input`` a string or up to 2048 strings; vectors are
  :func:`embedding_for` of each text, ``dimensions`` long, default 16;
  ``encoding_format: "base64"`` gives little-endian float32),
* ``GET /v1/models`` and ``GET /v1/models/{id}``.

Errors are OpenAI-shaped (``{"error": {"message", "type", "param", "code"}}``):
400 bad body, 401 bad or missing key (only when ``valid_keys`` is set), 404
unknown path or model, 405 wrong method, 429 rate limited, 5xx injected.
Replies are deterministic (``"Simulated reply to: "`` + the first 60
characters of the last user message) and tokens are ``ceil(len(text) / 4)``;
see :mod:`.openai_wire`.  Every API response carries ``x-request-id``; when a
key has limits, every response to it carries OpenAI's ``x-ratelimit-*``
headers (limit, remaining, reset; requests and tokens).

Behaviour comes from a scenario (flags, a JSON/YAML file, ``configure()``,
``POST /_admin/config``; every field is listed below), a response script
(``script()``, ``POST /_admin/script``), and what it saw is in
``counters()`` / ``GET /_admin/counters`` (see :mod:`.counters`; keys appear
only as ``sha256(key).hexdigest()[:8]``).  The admin endpoints are described
in :mod:`.admin`.

Use::

    with Simulator({"latency": 0.05}) as sim:
        ...  # point a client at sim.base_url
        sim.script([{"status": 429, "headers": {"retry-after": "0.2"}}, {"status": 200}])
        sim.configure(fail_next=2)
        assert sim.counters()["by_status"]["200"] == 1

This package imports nothing else from ``ipfs_accelerate_py``.

"""

from .command import ADMIN_TOKEN_ENV, add_arguments, main, scenario_from_args
from .counters import key_fingerprint
from .formats import discover_formats
from .openai_wire import (
    DEFAULT_EMBEDDING_DIMENSIONS,
    DEFAULT_MODELS,
    embedding_for,
    estimate_tokens,
)
from .routing import RouteConflict
from .scenario import Scenario, ScenarioError, ScriptEntry, describe_fields, load_scenario_file
from .server import Simulator, run_server
from .wireformat import Prepared, Route, WireError, WireFormat

__all__ = [
    "ADMIN_TOKEN_ENV",
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "DEFAULT_MODELS",
    "Prepared",
    "Route",
    "RouteConflict",
    "Scenario",
    "ScenarioError",
    "ScriptEntry",
    "Simulator",
    "WireError",
    "WireFormat",
    "add_arguments",
    "describe_fields",
    "discover_formats",
    "embedding_for",
    "estimate_tokens",
    "key_fingerprint",
    "load_scenario_file",
    "main",
    "run_server",
    "scenario_from_args",
]

__doc__ = (
    (__doc__ or "")
    + "Scenario fields (name, default, meaning)::\n\n"
    + describe_fields("    ")
    + "\n"
)
