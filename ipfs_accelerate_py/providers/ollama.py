"""Ollama's native API: ``/api/chat``, ``/api/generate``, ``/api/embed``,
``/api/tags``; NDJSON streams.

The wire, as Ollama documents it (docs.ollama.com/api):

- ``/api/chat`` and ``/api/generate`` stream unless told otherwise, so every
  request to them says ``"stream"`` explicitly: the request's own mode
  decides it (a ``make_request`` is never answered with a stream).
- Model parameters (``temperature``, ``top_p``, ``seed``, ``stop``,
  ``num_predict``, ...) go inside ``options``; ``max_tokens`` is Ollama's
  ``num_predict``.  Request fields (``keep_alive``, ``format``, ``tools``,
  ``think``, ``system``, ``truncate``, ``dimensions``, ...) stay at the top.
- A stream is one JSON object per line; the last has ``"done": true`` with
  ``done_reason`` and the counts.  A chat line's ``message.content`` (or a
  generate line's ``response``) is its text; ``message.tool_calls`` come
  whole (``{"function": {"name", "arguments": {...}}}``), ``thinking`` is
  not reply text.  An error in the middle of a stream is a
  line ``{"error": "..."}`` under the 200 already sent.
- Errors: ``{"error": "..."}`` with 400, 401, 403, 404 (model not found),
  429, 500, 502.
- Usage: ``prompt_eval_count`` (in) and ``eval_count`` (out).
- ``/api/embed`` takes ``input`` as a string or a list of strings and
  answers ``{"model", "embeddings": [[...], ...]}`` in input order (no
  ``index``).
- No key locally; ``https://ollama.com`` (and proxies) take
  ``Authorization: Bearer <key>``.
- ``OLLAMA_HOST`` may be ``host``, ``host:port`` or a URL:
  :func:`normalize_host` reads it as Ollama does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from ..resilience.batching import normalize_inputs
from ..resilience.errors import (
    InvalidInputError,
    MalformedResponseError,
    ServerError,
    SettingError,
    provider_message,
)
from ..transport.base import HttpResponse
from .base import (
    EMPTY_DELTA,
    Event,
    ProviderSpec,
    StreamDelta,
    ToolCallDelta,
    Wire,
    apportion,
    finish_reason,
    ndjson_line,
    token_count,
)
from .openai import arguments_text

__all__ = ["OLLAMA", "OLLAMA_PARAMS", "OllamaWire", "normalize_host", "request_fields"]

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 11434
DEFAULT_BASE_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "[::]"})
"""Bind-all addresses (how a server is told to listen): a client means this machine."""

OLLAMA = ProviderSpec(
    name="ollama",
    default_base_url=DEFAULT_BASE_URL,
    key_metadata=("ollama_api_key",),
    key_env=("OLLAMA_API_KEY",),
    base_url_metadata=("ollama_host", "ollama_api_base", "ollama_base_url", "base_url", "api_base"),
    base_url_env=("OLLAMA_HOST",),
    requires_key=False,
    embedding_models=(
        "nomic-embed-text",
        "mxbai-embed-large",
        "all-minilm",
        "snowflake-arctic-embed",
        "bge-m3",
    ),
    batch_any_model=True,  # /api/embed takes a list for every model the user has pulled
    simulator_path="",
    default_chat_model="llama3.2",
    default_embedding_model="nomic-embed-text",
)

STREAMING_PATHS = frozenset({"api/chat", "api/generate", "api/pull", "api/push", "api/create"})
"""Endpoints that stream unless the body says ``"stream": false``."""
GET_PATHS = frozenset({"api/tags", "api/ps", "api/version"})
DELETE_PATHS = frozenset({"api/delete"})

OPTION_NAMES = frozenset(
    {
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_last_n",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "penalize_newline",
        "stop",
        "numa",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "low_vram",
        "vocab_only",
        "use_mmap",
        "use_mlock",
        "num_thread",
        "tfs_z",
    }
)
"""Modelfile parameters: sent inside ``options``."""
RENAMED_OPTIONS = {"max_tokens": "num_predict"}
"""OpenAI-style names and the Ollama option they mean."""
_OPTIONS = OPTION_NAMES | frozenset(RENAMED_OPTIONS) | {"options", "keep_alive"}
OLLAMA_PARAMS = {
    "chat": _OPTIONS | {"format", "logprobs", "think", "tools", "top_logprobs"},
    "completion": _OPTIONS
    | {
        "context",
        "format",
        "images",
        "logprobs",
        "raw",
        "suffix",
        "system",
        "template",
        "think",
        "top_logprobs",
    },
    "embeddings": _OPTIONS | {"dimensions", "truncate"},
}
"""What ``/api/chat``, ``/api/generate`` and ``/api/embed`` take: their own
fields, ``options`` and each Modelfile option by name (put into ``options``)."""


# ------------------------------------------------------------------ host


@functools.lru_cache(maxsize=64)
def normalize_host(value: str) -> str:
    """``OLLAMA_HOST`` as Ollama reads it, as a base URL.

    The scheme defaults to ``http``; the port to 11434 over http (443 is
    implicit over https); an empty or bind-all host (``0.0.0.0``, ``[::]``)
    means this machine.  A path is kept (a proxy's prefix), without its
    trailing slash.  ``"localhost:11434"``, ``"0.0.0.0"`` and
    ``"http://localhost:11434/"`` all give ``"http://localhost:11434"``.
    Anything else raises :class:`SettingError`.
    """
    text = value.strip() if isinstance(value, str) else ""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    scheme = scheme.lower()
    hostport, _, path = rest.partition("/")
    host, port = _split_host_port(hostport)
    if scheme not in ("http", "https") or port is False:
        raise SettingError(
            "ollama_host", value, "host, host:port or an http(s):// URL, e.g. 'localhost:11434'"
        )
    if not host or host in UNSPECIFIED_HOSTS:
        host = DEFAULT_HOST
    if port is None and scheme == "http":
        port = str(DEFAULT_PORT)
    netloc = host if port is None else f"{host}:{port}"
    path = path.strip("/")
    return f"{scheme}://{netloc}" + (f"/{path}" if path else "")


def _split_host_port(hostport: str) -> tuple[str, Any]:
    """``(host, port)``; port None when absent, False when not a number."""
    if hostport.startswith("["):  # [v6]:port
        end = hostport.find("]")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return hostport, False
        port = rest[1:] if rest else None
    elif hostport.count(":") > 1:  # a bare IPv6 address
        return f"[{hostport}]", None
    else:
        host, _, port = hostport.partition(":")
        port = port if ":" in hostport else None
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        return host, False
    return host.lower(), port


# ------------------------------------------------------------ parameters


def request_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments as Ollama request fields.

    Modelfile parameters (and ``max_tokens``, as ``num_predict``) go into
    ``options``, merged with an ``options`` dict given as such; everything
    else stays at the top level.  One parameter given twice with different
    values (``max_tokens`` and ``num_predict``, or ``temperature`` and
    ``options={"temperature": ...}``) raises :class:`InvalidInputError`.
    """
    given = params.get("options")
    if given is not None and not isinstance(given, Mapping):
        raise InvalidInputError(
            f"options must be a dict of model parameters, e.g. {{'temperature': 0.2}}, not {type(given).__name__}"
        )
    options = dict(given or {})
    fields: dict[str, Any] = {}
    for name, value in params.items():
        if name == "options":
            continue
        target = RENAMED_OPTIONS.get(name, name)
        if target not in OPTION_NAMES:
            fields[name] = value
        elif target in options and options[target] != value:
            raise InvalidInputError(
                f"the option {target!r} was given twice with different values "
                f"({options[target]!r} and {value!r} as {name!r}); give it once"
            )
        else:
            options[target] = value
    if options:
        fields["options"] = options
    return fields


# ------------------------------------------------------------------ wire


class OllamaWire(Wire):
    """Maps operations to Ollama's native API and back."""

    stream_format = "ndjson"
    # "/api/chat", "api/chat" and "chat" are the same endpoint; a path under
    # "v1/" (Ollama's OpenAI-compatible API) is left as it is
    path_prefixes = ("api/", "v1/")
    response_types = (dict,)
    body_params = OLLAMA_PARAMS

    # ------------------------------------------------------------ requests

    def normalize_base_url(self, raw: str) -> str:
        """``OLLAMA_HOST`` spellings (``host``, ``host:port``, a URL) as a base URL."""
        return normalize_host(raw)

    def method_for(self, path: str, data: Any) -> str:
        if path in GET_PATHS:
            return "GET"
        return "DELETE" if path in DELETE_PATHS else "POST"

    def prepare(self, endpoint: str, data: Any, stream: bool) -> tuple[str, Any]:
        """A streaming endpoint's body says ``"stream"`` as the request is
        sent (Ollama would stream when it is left out)."""
        if (
            self.endpoint_path(endpoint) in STREAMING_PATHS
            and isinstance(data, Mapping)
            and data.get("stream") is not bool(stream)
        ):
            data = dict(data, stream=bool(stream))
        return endpoint, data

    # ----------------------------------------------------------- responses

    def parse_response(self, endpoint: str, response: HttpResponse) -> Any:
        result = super().parse_response(endpoint, response)
        if "error" in result:  # a 2xx that reports a failure of the model
            raise self._reported_error(result, response.status)
        return result

    def usage(self, result: Any) -> tuple[int, int]:
        """``prompt_eval_count`` in, ``eval_count`` out (a stream's last line carries them)."""
        if not isinstance(result, dict):
            return 0, 0
        return token_count(result.get("prompt_eval_count")), token_count(result.get("eval_count"))

    def _reported_error(self, body: dict[str, Any], status: int | None) -> ServerError:
        message = provider_message(body) or "the server reported an error"
        return ServerError(message, provider=self.name, status=status, body=body)

    # ------------------------------------------------------------- streams

    def parse_stream_event(self, event: Event) -> tuple[Any, bool]:
        """One NDJSON line: the chunk, done on ``"done": true``; an
        ``{"error": ...}`` line raises :class:`ServerError`."""
        line = ndjson_line(event)
        chunk = self.stream_json(line)
        if not isinstance(chunk, dict):
            raise MalformedResponseError(
                f"stream line is not a JSON object: {line[:80]!r}", provider=self.name
            )
        if "error" in chunk:
            raise self._reported_error(chunk, None)
        return chunk, chunk.get("done") is True

    def stream_delta(self, chunk: Any) -> StreamDelta:
        """One line in common terms: ``message.content`` (chat) or
        ``response`` (generate) as text; ``message.tool_calls`` as whole
        calls (``index`` the call's ``function.index`` when given, else its
        position in the line; ``arguments`` the JSON of the arguments
        object); on the ``"done": true`` line, ``done_reason`` and the
        counts (``prompt_eval_count``, ``eval_count``) as usage."""
        if not isinstance(chunk, dict):
            return EMPTY_DELTA
        message = chunk.get("message")
        message = message if isinstance(message, dict) else {}
        text = message.get("content") if message else chunk.get("response")
        done = chunk.get("done") is True
        counted = done and ("prompt_eval_count" in chunk or "eval_count" in chunk)
        return StreamDelta(
            text=text if isinstance(text, str) else "",
            tool_calls=_tool_calls(message.get("tool_calls")),
            finish_reason=finish_reason(chunk.get("done_reason")) if done else None,
            usage=self.usage(chunk) if counted else None,
        )

    # ---------------------------------------------------------- operations

    def chat_request(
        self, model: str, messages: list[Any], params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        return "api/chat", {
            "model": model,
            "messages": messages,
            "stream": bool(stream),
            **request_fields(params),
        }

    def completion_request(
        self, model: str, prompt: Any, params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        if not isinstance(prompt, str):
            raise InvalidInputError(
                f"Ollama's /api/generate takes one prompt string, not {type(prompt).__name__}; "
                "send one request per prompt",
                provider=self.name,
            )
        return "api/generate", {
            "model": model,
            "prompt": prompt,
            "stream": bool(stream),
            **request_fields(params),
        }

    generate_request = completion_request

    def embeddings_request(
        self, model: str, inputs: Any, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        texts = normalize_inputs(inputs)
        if not all(isinstance(text, str) for text in texts):
            raise InvalidInputError(
                "Ollama's /api/embed takes text: a string or a list of strings, not token arrays",
                provider=self.name,
            )
        return "api/embed", {"model": model, "input": inputs, **request_fields(params)}

    def models_request(self) -> tuple[str, dict[str, Any] | None]:
        return "api/tags", None

    def reply_text(self, result: Any) -> str:
        """``message.content`` of a chat response, ``response`` of a generate one."""
        if not isinstance(result, dict):
            return ""
        message = result.get("message")
        text = message.get("content") if isinstance(message, dict) else result.get("response")
        return text if isinstance(text, str) else ""

    def models_from(self, result: Any) -> list[Any]:
        """The ``models`` of ``/api/tags`` (each with ``name``, ``model``, ``size``, ``details``...)."""
        models = result.get("models") if isinstance(result, dict) else result
        return list(models or [])

    def embedding_vectors(self, result: Any) -> list[list[float]]:
        vectors = result.get("embeddings") if isinstance(result, dict) else None
        if not isinstance(vectors, list):
            raise MalformedResponseError(
                "embed response has no list of embeddings", provider=self.name
            )
        return vectors

    # ------------------------------------------------------------ batching

    def batch_inputs(self, endpoint: str, data: Any) -> list[Any] | None:
        """The texts of an ``/api/embed`` request (anything else is not batched)."""
        if self.endpoint_path(endpoint) != "api/embed" or not isinstance(data, Mapping):
            return None
        inputs = normalize_inputs(data.get("input"))
        return inputs if all(isinstance(text, str) for text in inputs) else None

    def split_batch_result(
        self, result: Any, counts: list[int], weights: list[int] | None = None
    ) -> list[dict[str, Any]]:
        """One ``/api/embed`` response per member: its own vectors, in its
        order (Ollama answers in input order); the batch's
        ``prompt_eval_count`` shared out by ``weights`` so the members'
        counts add up to the server's.  Durations describe the one call
        every member waited on, and are kept as they are."""
        if not isinstance(result, dict):
            raise MalformedResponseError("embed response is not a JSON object", provider=self.name)
        parts = self.split_positional(result.get("embeddings"), counts, "embeddings")
        shared = {k: v for k, v in result.items() if k != "embeddings"}
        tokens = result.get("prompt_eval_count")
        shares = apportion(token_count(tokens), weights or counts) if token_count(tokens) else None
        members = []
        for i, part in enumerate(parts):
            member = dict(shared, embeddings=part)
            if shares is not None:
                member["prompt_eval_count"] = shares[i]
            members.append(member)
        return members


def _tool_calls(calls: Any) -> tuple[ToolCallDelta, ...]:
    """Ollama's ``[{"function": {"index"?, "name", "arguments": {...}}}]`` as whole tool calls."""
    if not isinstance(calls, list):
        return ()
    out = []
    for position, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        index, name, call_id = function.get("index"), function.get("name"), call.get("id")
        arguments = function.get("arguments")
        out.append(
            ToolCallDelta(
                index=index
                if isinstance(index, int) and not isinstance(index, bool) and index >= 0
                else position,
                id=call_id if isinstance(call_id, str) and call_id else None,
                name=name if isinstance(name, str) and name else None,
                arguments=arguments_text(arguments if arguments is not None else {}),
            )
        )
    return tuple(out)
