"""The public surface every backend shares (the seed's contract).

A backend module only names its provider adapter and its defaults; all
behaviour lives here and in the engine below it.
"""

from __future__ import annotations

import copy
import difflib
import functools
import inspect
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Concatenate, NamedTuple, ParamSpec

from ..engine.call_options import DEFAULT_OPTIONS, CallOptions
from ..engine.engine import Engine
from ..engine.future import RequestFuture
from ..engine.keyring import KeyConfig
from ..engine.loop import in_engine_thread
from ..engine.request import Request
from ..engine.settings import SETTINGS, Settings
from ..resilience.batching import normalize_inputs
from ..resilience.breaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN
from ..resilience.clock import SYSTEM_CLOCK, Clock
from ..resilience.errors import (
    ApiError,
    AuthenticationError,
    InvalidInputError,
    SettingError,
    UnknownParameterError,
)
from ..resilience.keys import KeyOptions
from ..resilience.priority_queue import PRIORITY_NAMES, priority_level
from ..resilience.redact import public_url
from ..resilience.stats import RequestRecord
from ..resilience.validation import require_int, require_number

__all__ = ["BaseApiBackend", "model_argument"]

SIMULATOR_BASE_URLS = ("simulator", "embedded")
"""A base URL of ``"simulator"`` starts the embedded simulator in this process and uses it."""

_NOT_SERVICE_FAILURES = frozenset(
    {
        "ratelimiterror",
        "rate_limit",
        "authenticationerror",
        "authentication",
        "permissiondeniederror",
        "invalidrequesterror",
        "invalid_request",
        "invalidinputerror",
        "notfounderror",
        "not_found",
        "cancelled",
        "cancelledrequesterror",
    }
)


_VIEWED_SETTINGS = ("timeout", "max_retries", "on_circuit_open")
_REQUEST_INFO_FIELDS = frozenset(
    {"endpoint", "data", "api_key", "request_id", "stream", "priority", "on_circuit_open"}
)
"""Settings a view (``client.with_options``) may give its own value."""


class _SettingAttr:
    """``client.<setting>``: read the current value (a view's own, if it
    has one); set it, checked."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        own = getattr(obj._call_defaults, self.name) if self.name in _VIEWED_SETTINGS else None
        return obj._settings[self.name] if own is None else own

    def __set__(self, obj: Any, value: Any) -> None:
        obj._settings.set(self.name, value)


class _Call(NamedTuple):
    """The request a public call sends: where, what, and how to submit it."""

    endpoint: str
    data: Any
    submit: dict


P = ParamSpec("P")


def _blocking(
    build: Callable[Concatenate[Any, P], _Call], name: str, doc: str
) -> Callable[Concatenate[Any, P], Any]:
    """The sync public call over ``build``: its request, sent, waited for."""

    @functools.wraps(build)
    def call(self: Any, *args: P.args, **kwargs: P.kwargs) -> Any:
        endpoint, data, submit = build(self, *args, **kwargs)
        return self._call(endpoint, data, **submit)

    return public_method(call, build, "BaseApiBackend", name, doc)


def _awaited(
    build: Callable[Concatenate[Any, P], _Call], name: str, doc: str
) -> Callable[Concatenate[Any, P], Awaitable[Any]]:
    """The async twin over the same ``build``: the same request, awaited."""

    @functools.wraps(build)
    async def call(self: Any, *args: P.args, **kwargs: P.kwargs) -> Any:
        endpoint, data, submit = build(self, *args, **kwargs)
        return await self._acall(endpoint, data, **submit)

    return public_method(call, build, "BaseApiBackend", name, doc)


def public_method(call: Any, build: Any, owner: str, name: str, doc: str) -> Any:
    """``call`` as the public method ``owner.name``: its name and doc, the
    builder's parameters, its own result (the provider's response, or a
    ``ChunkStream`` when streaming)."""
    call.__name__, call.__doc__ = name, doc
    call.__qualname__ = f"{owner}.{name}"
    call.__annotations__ = {**build.__annotations__, "return": "Any"}
    call.__signature__ = inspect.signature(build).replace(return_annotation="Any")
    return call


class BaseApiBackend:
    """Priority queue, circuit breaker, retries, batching and statistics
    over one provider.  Subclasses set ``provider`` (a wire adapter)."""

    PRIORITY_HIGH = 0
    PRIORITY_NORMAL = 1
    PRIORITY_LOW = 2

    provider: Any = None  # the provider's wire adapter, set by each backend module

    # A view (with_options) sets its own; a client has these:
    _view_of: BaseApiBackend | None = None
    _call_defaults: CallOptions = DEFAULT_OPTIONS
    _default_priority: int | None = None

    def __init__(
        self,
        resources: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        transport: Any = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: Any = None,
    ) -> None:
        if resources is not None and not isinstance(resources, Mapping):
            raise InvalidInputError(
                f"resources must be a dict (or None), not {type(resources).__name__}"
            )
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInputError(
                f"metadata must be a dict (or None), not {type(metadata).__name__}"
            )
        self.resources = dict(resources or {})
        self.metadata = dict(metadata or {})
        spec = self.provider.spec
        self._settings = Settings(self.metadata)
        self._clock = clock
        base_url = (
            _first(self.metadata, spec.base_url_metadata, spec.base_url_env)
            or spec.default_base_url
        )
        if base_url.strip().lower() in SIMULATOR_BASE_URLS:
            from ..simulator.embedded import embedded_simulator

            base_url = embedded_simulator().url + spec.simulator_path
        base_url = self.provider.normalize_base_url(base_url)
        self._engine = Engine(
            self.provider,
            self._settings,
            base_url=base_url,
            api_key=_first(self.metadata, spec.key_metadata, spec.key_env),
            transport=transport,
            clock=clock,
            rng=rng,
        )
        for config in key_configs(self.metadata, spec, os.environ):
            self._engine.keys.add(config, clock.now())
        models = self.metadata.get("embedding_models", spec.embedding_models)
        self.embedding_models = models
        self.supported_batch_models = self.metadata.get("supported_batch_models", models)
        self._started_wall = clock.wall()

    # --------------------------------------------------------- identity

    @property
    def api_key(self) -> str | None:
        return self._engine.api_key

    @api_key.setter
    def api_key(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise SettingError("api_key", "<not shown>", "a string or None")
        self._engine.api_key = value or None

    # ------------------------------------------------------------ keys

    def add_api_key(
        self,
        name: str,
        key: str | None,
        *,
        base_url: str | None = None,
        max_concurrent: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        weight: float = 1.0,
    ) -> None:
        """Add a key (or another endpoint, with ``base_url``) that requests
        are spread over; ``rpm``/``tpm``/``max_concurrent`` are its own limits."""
        self._engine.keys.add(
            key_config(
                name=name,
                key=key,
                base_url=base_url,
                max_concurrent=max_concurrent,
                rpm=rpm,
                tpm=tpm,
                weight=weight,
            ),
            self._clock.now(),
        )
        self._engine.wake()

    def remove_api_key(self, name: str) -> None:
        self._engine.keys.remove(name)

    @property
    def api_key_names(self) -> list[str]:
        """The keys requests are spread over, by name (the seed's key by its fingerprint)."""
        return self._engine.keys.names()

    @property
    def base_url(self) -> str:
        return self._engine.base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        if not isinstance(value, str):
            raise SettingError("base_url", value, "a URL string")
        value = self.provider.normalize_base_url(value)
        if not value.startswith(("http://", "https://")):
            raise SettingError("base_url", value, "an http:// or https:// URL")
        self._engine.base_url = value

    @property
    def supported_batch_models(self) -> list[str]:
        return list(self._engine.supported_batch_models)

    @supported_batch_models.setter
    def supported_batch_models(self, value: Iterable[str]) -> None:
        self._engine.supported_batch_models = frozenset(
            _model_names("supported_batch_models", value)
        )

    @property
    def embedding_models(self) -> list[str]:
        return self._embedding_models

    @embedding_models.setter
    def embedding_models(self, value: Iterable[str]) -> None:
        value = _model_names("embedding_models", value)
        if "_embedding_models" in self.__dict__:
            self._embedding_models[:] = value  # in place: views share the list
        else:
            self._embedding_models = list(value)

    def __repr__(self) -> str:
        if self._view_of is not None:
            return f"<{type(self).__name__} view ({self._view_description()}) of {self._view_of!r}>"
        names = self.api_key_names
        key = f"key={names[0]}" if len(names) == 1 else f"keys={','.join(names)}"
        if not self._engine.keys.has_secret():
            key = "no key"
        return f"<{type(self).__name__} {public_url(self.base_url)} {key} circuit={self.circuit_state}>"

    # ------------------------------------------------------------ views

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        priority: Any = None,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        on_circuit_open: str | None = None,
    ) -> BaseApiBackend:
        """A view of this client whose calls default to these per-call
        options (as in the openai SDK): ``client.with_options(timeout=5,
        max_retries=0).chat(...)``.  A call's own arguments still win;
        headers and query parameters merge.

        The view is cheap and shares everything with its client: the engine
        (queue, breaker, statistics, keys, connections) and the settings.
        ``view.timeout`` and ``view.max_retries`` read its own values where it
        has them.  Nothing can be set through a view (set it on the client),
        and closing a view does nothing: the client owns the engine."""
        options = CallOptions.of(
            timeout, max_retries, extra_headers, extra_query, on_circuit_open
        ).over(self._call_defaults)
        level = self._default_priority if priority is None else priority_level(priority)
        view = copy.copy(
            self
        )  # the same engine, settings and state: only the defaults below differ
        view.__dict__.update(
            _view_of=self._view_of or self, _call_defaults=options, _default_priority=level
        )
        return view

    def _view_description(self) -> str:
        parts = (
            [self._call_defaults.describe()] if self._call_defaults is not DEFAULT_OPTIONS else []
        )
        if self._default_priority is not None:
            parts.append(f"priority={PRIORITY_NAMES[self._default_priority].lower()}")
        return ", ".join(parts) or "no options"

    def __setattr__(self, name: str, value: Any) -> None:
        if self._view_of is not None:
            raise AttributeError(
                f"cannot set {name!r} on a view ({type(self).__name__}.with_options): set it on the client, "
                "which the view shares, or make another view with client.with_options(...)"
            )
        super().__setattr__(name, value)

    # ------------------------------------------------------------ queue

    def queue_with_priority(
        self, request_info: Mapping[str, Any], priority: Any = None
    ) -> RequestFuture:
        """Queue ``{"endpoint", "data", "api_key"?, "request_id"?, "stream"?, "priority"?, "on_circuit_open"?}``
        at ``priority`` (HIGH 0, NORMAL 1, LOW 2, or ``"high"``, ``"normal"``,
        ``"low"``) and return its future at once.

        The future is the seed's dict (``completed``, ``result``, ``error``)
        and also offers ``wait(timeout)``, ``result(timeout)``, ``cancel()``,
        and ``await future`` from any event loop.
        """
        if not isinstance(request_info, Mapping):
            raise InvalidInputError(
                f"request_info must be a dict like {{'endpoint': 'chat/completions', 'data': {{...}}}}, "
                f"not {type(request_info).__name__}"
            )
        unknown = set(request_info) - _REQUEST_INFO_FIELDS
        if unknown:
            name = sorted(unknown, key=str)[0]
            close = difflib.get_close_matches(str(name), sorted(_REQUEST_INFO_FIELDS), n=2)
            raise InvalidInputError(
                f"request_info has unknown field {name!r}"
                + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
                + f"; it takes {', '.join(sorted(_REQUEST_INFO_FIELDS))} (body fields go in its 'data')"
            )
        endpoint = request_info.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.strip():
            raise InvalidInputError(
                "request_info['endpoint'] must name the API endpoint, e.g. 'chat/completions'"
            )
        return self._submit(
            endpoint,
            request_info.get("data"),
            priority=request_info.get("priority") if priority is None else priority,
            request_id=request_info.get("request_id"),
            api_key=request_info.get("api_key"),
            stream=bool(request_info.get("stream", False)),
            options=CallOptions.of(on_circuit_open=request_info.get("on_circuit_open")),
        ).future

    aqueue_with_priority = queue_with_priority
    """The same for async code: it queues at once (so calls keep their order
    of priority and arrival) and returns the future, which is awaitable:
    ``result = await client.aqueue_with_priority(info, client.PRIORITY_HIGH)``,
    or keep it, do other work, then ``await`` it.  Cancelling the task that
    awaits it cancels the request."""

    def _submit(
        self,
        endpoint: str,
        data: Any,
        *,
        priority: Any = None,
        request_id: str | None = None,
        api_key: str | None = None,
        stream: bool = False,
        options: CallOptions = DEFAULT_OPTIONS,
    ) -> Request:
        options = options.over(self._call_defaults)
        if priority is None:
            priority = self._default_priority
        priority = self.PRIORITY_NORMAL if priority is None else priority_level(priority)
        if data is not None and not isinstance(data, Mapping):
            raise InvalidInputError(
                f"request data must be a dict (the JSON body), not {type(data).__name__}"
            )
        if request_id is not None and not isinstance(request_id, str):
            raise InvalidInputError(f"request_id must be a string, not {type(request_id).__name__}")
        if api_key is not None and not isinstance(api_key, str):
            raise InvalidInputError("api_key must be a string")
        engine = self._engine
        if (
            not (api_key or engine.keys.has_secret())
            and self.provider.spec.requires_key
            and engine.base_url == self.provider.spec.default_base_url
        ):
            names = " or ".join(
                self.provider.spec.key_env
                + tuple(f"metadata['{m}']" for m in self.provider.spec.key_metadata[:1])
            )
            raise AuthenticationError(
                f"no API key for {self.provider.name}: set {names}", provider=self.provider.name
            )
        data = dict(data) if data is not None else None
        now = self._clock.now()
        deadline = self._settings["request_deadline"]
        req = Request(
            endpoint,
            data,
            priority=priority,
            request_id=request_id,
            api_key=api_key,
            stream=stream,
            submitted_at=now,
            deadline=None if deadline is None else now + deadline,
            model=self.provider.request_model(endpoint, data),
            options=options,
            circuit_wait=(options.on_circuit_open or self._settings["on_circuit_open"]) == "wait",
        )
        if not stream:
            req.inputs = engine.batch_inputs(endpoint, data)
        return engine.submit(req)

    def _call(self, endpoint: str, data: Any, **kwargs: Any) -> Any:
        """Submit and block until the outcome (the sync API)."""
        if in_engine_thread():
            raise RuntimeError(
                "a blocking call was made from the engine's own event loop (inside a callback); "
                "this would deadlock: call it from another thread"
            )
        future = self._submit(endpoint, data, **kwargs).future
        result = future.result()
        future["result"] = (
            None  # the caller holds the result now; a dropped stream can be collected
        )
        return result

    async def _acall(self, endpoint: str, data: Any, **kwargs: Any) -> Any:
        """Submit and await the outcome (the async API; any running loop).
        Cancelling the awaiting task cancels the request."""
        future = self._submit(endpoint, data, **kwargs).future
        result = await future
        future["result"] = None
        return result

    # ------------------------------------------------------------ calls
    #
    # Each public call is written once, as the builder of the request it
    # sends (``_request_call``, ``_chat_call``, ...), and made twice from it:
    # the sync method waits for the outcome, its ``a`` twin awaits it (see
    # :func:`_blocking` and :func:`_awaited`).  Besides its content and the
    # provider's own parameters (``**params``, checked against
    # ``provider.body_params``), each takes the openai SDK's per-call options,
    # none of which is ever sent in the body: ``model=`` (the same as
    # ``model_name=``), ``timeout=`` (seconds each attempt may take),
    # ``max_retries=``, ``extra_headers=`` (HTTP headers, over the client's
    # own), ``extra_query=`` (URL query parameters), ``on_circuit_open=``
    # ("fail" or "wait", see the circuit in README) and ``extra_body=``
    # (fields merged into the JSON body last, unchecked).

    def _request_call(
        self,
        endpoint: str,
        data: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        *,
        priority: Any = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        on_circuit_open: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> _Call:
        _check_endpoint(endpoint)
        options = CallOptions.of(timeout, max_retries, extra_headers, extra_query, on_circuit_open)
        submit = dict(request_id=request_id, priority=priority, api_key=api_key, options=options)
        return _Call(endpoint, _with_extra_body(data, extra_body), submit)

    make_request = _blocking(
        _request_call,
        "make_request",
        """Send one request to ``endpoint`` (e.g. ``"chat/completions"``,
        ``"embeddings"``, ``"models"``) and return the provider's JSON.
        Embeddings to ``supported_batch_models`` are batched transparently.
        Per-call options as in :meth:`chat`.""",
    )
    amake_request = _awaited(_request_call, "amake_request", """:meth:`make_request`, awaited.""")

    def _chat_call(
        self,
        model_name: str | None = None,
        messages: list | None = None,
        *,
        model: str | None = None,
        stream: bool = False,
        priority: Any = None,
        request_id: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        on_circuit_open: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> _Call:
        endpoint, data = self._operation(
            "chat", model_name, model, messages, stream, params, extra_body
        )
        options = CallOptions.of(timeout, max_retries, extra_headers, extra_query, on_circuit_open)
        return _Call(
            endpoint,
            data,
            dict(priority=priority, request_id=request_id, stream=stream, options=options),
        )

    chat = _blocking(
        _chat_call,
        "chat",
        """A chat completion: the provider's response, or with ``stream=True``
        a :class:`ChunkStream` of normalized chunks (close it to stop early).""",
    )
    achat = _awaited(
        _chat_call, "achat", """:meth:`chat`, awaited; a stream is read with ``async for``."""
    )

    def _chat_request(
        self, model_name: Any, messages: Any, stream: bool, params: dict
    ) -> tuple[str, Any]:
        _check_model(model_name)
        _check_messages(messages)
        return self.provider.chat_request(model_name, messages, params, stream)

    def _completion_call(
        self,
        model_name: str | None = None,
        prompt: Any = None,
        *,
        model: str | None = None,
        stream: bool = False,
        priority: Any = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        on_circuit_open: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> _Call:
        endpoint, data = self._operation(
            "completions", model_name, model, prompt, stream, params, extra_body
        )
        options = CallOptions.of(timeout, max_retries, extra_headers, extra_query, on_circuit_open)
        return _Call(endpoint, data, dict(priority=priority, stream=stream, options=options))

    completions = _blocking(
        _completion_call,
        "completions",
        """A text completion from ``prompt`` (the provider's response or chunks).""",
    )
    acompletions = _awaited(_completion_call, "acompletions", """:meth:`completions`, awaited.""")

    def _completion_request(
        self, model_name: Any, prompt: Any, stream: bool, params: dict
    ) -> tuple[str, Any]:
        _check_model(model_name)
        if not isinstance(prompt, (str, list)):
            raise InvalidInputError(
                f"prompt must be a string or a list of strings, not {type(prompt).__name__}"
            )
        return self.provider.completion_request(model_name, prompt, params, stream)

    def _embeddings_call(
        self,
        model_name: str | None = None,
        input: Any = None,
        *,
        model: str | None = None,
        priority: Any = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        on_circuit_open: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> _Call:
        endpoint, data = self._operation(
            "embeddings", model_name, model, input, False, params, extra_body
        )
        options = CallOptions.of(timeout, max_retries, extra_headers, extra_query, on_circuit_open)
        return _Call(endpoint, data, dict(priority=priority, options=options))

    embeddings = _blocking(
        _embeddings_call,
        "embeddings",
        """Embeddings for one text or a list; batched with other callers'
        when ``model_name`` is in ``supported_batch_models`` (only with
        requests of the same per-call options and body fields).""",
    )
    aembeddings = _awaited(
        _embeddings_call,
        "aembeddings",
        """:meth:`embeddings`, awaited (batched with sync and async callers alike).""",
    )

    def _embeddings_request(self, model_name: Any, inputs: Any, params: dict) -> tuple[str, Any]:
        _check_model(model_name)
        normalize_inputs(inputs)
        return self.provider.embeddings_request(model_name, inputs, params)

    OPERATIONS = ("chat", "completion", "embeddings")
    _OPERATION_OF = {
        "chat": "chat",
        "completions": "completion",
        "embeddings": "embeddings",
        "add_to_batch": "embeddings",
    }
    """The operation each public method performs, by the method's name."""

    def _operation(
        self,
        method: str,
        model_name: Any,
        model: Any,
        content: Any,
        stream: bool,
        params: dict,
        extra_body: Any,
    ) -> tuple[str, Any]:
        """``(endpoint, data)`` of a call to the public ``method``: the model
        named either way, the keywords checked against what the provider's
        API documents, and ``extra_body`` laid over the body last."""
        operation = self._OPERATION_OF[method]
        self._check_params(method, operation, params)
        endpoint, data = self.operation_request(
            operation, model_argument(model_name, model), content, params, stream=stream
        )
        return endpoint, _with_extra_body(data, extra_body)

    def _check_params(self, method: str, operation: str, params: Mapping[str, Any]) -> None:
        """Refuse a keyword that neither ``method`` nor the provider's API
        knows: a typo would otherwise be sent as a body field, silently."""
        known = self.provider.body_params.get(operation)
        unknown = [name for name in params if known is not None and name not in known]
        if not unknown:
            return
        signature = inspect.signature(getattr(BaseApiBackend, method))
        own = [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind is not p.VAR_KEYWORD
        ]
        candidates = own + sorted(known)
        described = []
        for name in unknown:
            close = difflib.get_close_matches(name, candidates, n=3)
            described.append(
                f"{name!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
            )
        plural = "s" if len(unknown) > 1 else ""
        raise UnknownParameterError(
            f"{method}() got unknown parameter{plural} {', '.join(described)}; "
            f"to send a field as it is, pass extra_body={{{unknown[0]!r}: ...}}",
            provider=self.provider.name,
        )

    def operation_request(
        self,
        operation: str,
        model_name: str | None = None,
        content: Any = None,
        params: Mapping[str, Any] | None = None,
        *,
        model: str | None = None,
        stream: bool = False,
    ) -> tuple[str, Any]:
        """``(endpoint, data)`` that ``chat`` (``content``: messages), ``completions``
        (a prompt) or ``embeddings`` (an input) sends: the same request, checked the
        same way, for ``queue_with_priority`` (whose future tells attempts and key).
        ``params`` are body fields, sent as given (not checked by name)."""
        if operation not in self.OPERATIONS:
            raise InvalidInputError(
                f"unknown operation {operation!r}: use {', '.join(self.OPERATIONS)}"
            )
        model_name = model_argument(model_name, model)
        params = dict(params or {})
        if operation == "embeddings":
            return self._embeddings_request(model_name, content, params)
        if operation == "chat":
            return self._chat_request(model_name, content, stream, params)
        return self._completion_request(model_name, content, stream, params)

    def default_model(self, operation: str) -> str | None:
        """The model a request of ``operation`` uses when it names none (None: it must name one)."""
        spec = self.provider.spec
        return (
            spec.default_embedding_model if operation == "embeddings" else spec.default_chat_model
        )

    @classmethod
    def connection_metadata(cls, base_url: str, api_key: str | None) -> dict:
        """The metadata that points a new client at ``base_url`` with ``api_key``."""
        spec = cls.provider.spec
        metadata = {spec.base_url_metadata[0]: base_url}
        if api_key and spec.key_metadata:
            metadata[spec.key_metadata[0]] = api_key
        return metadata

    def feature_probe(self, tag: str) -> tuple[str, Any]:
        """A small request for the feature checks, tagged ``tag`` (a backend
        without chat or embeddings overrides it)."""
        spec = self.provider.spec
        if spec.default_chat_model:
            return self.provider.chat_request(
                spec.default_chat_model, [{"role": "user", "content": tag}], {}, False
            )
        if spec.default_embedding_model:
            return self.provider.embeddings_request(spec.default_embedding_model, tag, {})
        raise NotImplementedError(f"{type(self).__name__} must say what the feature checks send")

    def list_models(self) -> list:
        endpoint, data = self.provider.models_request()
        return self.provider.models_from(self._call(endpoint, data))

    # ---------------------------------------------------- circuit breaker

    @property
    def circuit_state(self) -> str:
        """``"CLOSED"``, ``"OPEN"`` or ``"HALF_OPEN"``."""
        return self._engine.breaker.state(self._clock.now())

    def add_circuit_listener(
        self, listener: Callable[[str, str, ApiError | None], None]
    ) -> Callable[[], None]:
        """Call ``listener(old_state, new_state, last_failure)`` on each
        transition of this client's circuit, in the thread that made it
        (``last_failure``: the last failure the breaker counted, or None).
        Returns the function that removes it."""
        engine = self._engine

        def forward(old: str, new: str, now: float) -> None:
            listener(old, new, engine.last_failure)

        engine.breaker.add_listener(forward)
        return lambda: engine.breaker.remove_listener(forward)

    def check_circuit_breaker(self) -> bool:
        """True when a request may go now (CLOSED, or HALF_OPEN with a probe free)."""
        return self.circuit_state != STATE_OPEN

    def track_request_result(self, success: bool, error_type: str | None = None) -> None:
        """Record an outcome of an operation made outside this client: it
        feeds the breaker (a failure counts unless ``error_type`` names a
        client error or a rate limit) and the statistics."""
        now = self._clock.now()
        breaker = self._engine.breaker
        if success:
            breaker.on_success(now)
        elif error_type and str(error_type).lower() in _NOT_SERVICE_FAILURES:
            breaker.on_ignored(now)
        else:
            breaker.on_failure(now)
        self._engine.stats.record_external(
            bool(success), None if success else str(error_type or "error")
        )

    # -------------------------------------------------------------- stats

    def update_stats(self, stats_update: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Record one finished request made outside the queue (thread-safe).

        Fields: ``success`` (bool, required), ``response_time`` and
        ``queue_wait`` (seconds >= 0), ``model``, ``error_type``, ``endpoint``
        (text), ``tokens_in``, ``tokens_out`` (whole numbers >= 0),
        ``attempts`` (>= 1).  Anything else is refused with an
        :class:`InvalidInputError` naming the field, and nothing is recorded.
        """
        self._engine.stats.record_request(_stats_record(stats_update, fields))

    def get_stats(self) -> dict:
        """Counters and figures since the last ``reset_stats()``."""
        stats = self._engine.stats.snapshot()
        engine = self._engine.snapshot()
        stats.update(
            current_queue_size=engine["queue_size"],
            queue_by_priority=engine["queue_by_priority"],
            queue_capacity=engine["queue_capacity"],
            in_flight=engine["in_flight"],
            max_concurrent_requests=engine["max_concurrent_requests"],
            circuit_state=engine["circuit_breaker"]["state"],
            key_pool=engine["key_pool"],
        )
        return stats

    def generate_report(self, include_details: bool = False) -> dict:
        stats = self.get_stats()
        engine = self._engine.snapshot()
        report = {
            "api": self.provider.name,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock.wall())),
            "summary": {
                "total_requests": stats["total_requests"],
                "successful_requests": stats["successful_requests"],
                "failed_requests": stats["failed_requests"],
                "cancelled_requests": stats["cancelled_requests"],
                "success_rate": stats["success_rate"],
                "retry_rate": stats["retry_rate"],
                "retried_requests": stats["retried_requests"],
                "total_retries": stats["total_retries"],
                "average_response_time": stats["average_response_time"],
                "p50_response_time": stats["latency"]["p50"],
                "p95_response_time": stats["latency"]["p95"],
                "p99_response_time": stats["latency"]["p99"],
                "average_queue_wait": stats["queue_wait"]["mean"],
            },
            "circuit_breaker": engine["circuit_breaker"],
            "queue": {
                "size": engine["queue_size"],
                "capacity": engine["queue_capacity"],
                "by_priority": engine["queue_by_priority"],
                "in_flight": engine["in_flight"],
                "max_concurrent_requests": engine["max_concurrent_requests"],
                "backing_off": engine["backing_off"],
            },
            "models": stats["models"],
            "errors": stats["errors_by_type"],
            "tokens": stats["tokens"],
            "streams": stats["streams"],
            "batching": dict(
                stats["batches"], enabled=self.batching_enabled, max_batch_size=self.max_batch_size
            ),
            "keys": stats["keys"],
            "key_pool": stats["key_pool"],
        }
        if include_details:
            report["details"] = {
                "stats": stats,
                "settings": self._settings.as_dict(),
                "base_url": self.base_url,
                "supported_batch_models": self.supported_batch_models,
            }
        return report

    def reset_stats(self) -> None:
        self._engine.stats.reset()

    # ----------------------------------------------------------- batching

    def add_to_batch(
        self,
        model_name: str | None = None,
        request_input: Any = None,
        future: dict | None = None,
        *,
        model: str | None = None,
        **params: Any,
    ) -> RequestFuture:
        """Queue embeddings input(s) for ``model_name`` (or ``model``) to go
        out in a batch; returns the future (a given ``future`` dict is filled
        in too)."""
        if future is not None and not isinstance(future, dict):  # refused before anything is sent
            raise InvalidInputError(
                f"add_to_batch: future must be a dict to fill in, or None, not {type(future).__name__}"
            )
        endpoint, data = self._operation(
            "add_to_batch", model_name, model, request_input, False, params, None
        )
        fut = self._submit(endpoint, data).future
        if future is not None:
            fut.add_done_callback(
                lambda f: future.update(result=f["result"], error=f["error"], completed=True)
            )
        return fut

    def _process_batch(self) -> int:
        """Send the batches being assembled now, without waiting for
        ``batch_timeout``; returns how many were sent."""
        return self._run_on_engine(self._engine.flush_batches)

    def _run_on_engine(self, fn, *args):
        if in_engine_thread():
            return fn(*args)
        done = threading.Event()
        box: list = []

        def run() -> None:
            try:
                box.append((fn(*args), None))
            except BaseException as exc:  # handed back to the caller
                box.append((None, exc))
            done.set()

        self._engine.loop.call_soon_threadsafe(run)
        done.wait()
        value, exc = box[0]
        if exc is not None:
            raise exc
        return value

    # -------------------------------------------------------- inspection

    @property
    def request_queue(self) -> list[dict]:
        """What waits in the queue now, in dispatch order (a snapshot)."""
        return [
            {
                "request_id": r.request_id,
                "endpoint": r.endpoint,
                "priority": r.priority,
                "model": r.model,
            }
            for r in self._engine.queue.snapshot()
        ]

    @property
    def queue_lock(self):
        """The lock that guards the queue (reentrant); hold it only briefly."""
        return self._engine.queue.lock

    @property
    def current_requests(self) -> int:
        return self._engine.in_flight

    # ----------------------------------------------------------- closing

    def close(self) -> None:
        """Fail what is queued with ``ShutdownError``, let attempts in flight
        finish (a few seconds at most), release connections.  On a view
        (:meth:`with_options`) it does nothing: the client owns the engine."""
        if self._view_of is None:
            self._engine.close()

    async def aclose(self, grace: float = 5.0) -> None:
        """:meth:`close`, awaited from any event loop; attempts in flight get
        ``grace`` seconds to finish, then are cancelled."""
        if self._view_of is None:
            await self._engine.aclose_from_any_loop(grace)

    def __enter__(self) -> BaseApiBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> BaseApiBackend:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # ------------------------------------------------------------ events

    def subscribe(self, callback: Callable[[Any], object], *kinds: type) -> Callable[[], None]:
        """Call ``callback(event)`` for each event of this client's engine
        (:mod:`ipfs_accelerate_py.engine.events`: ``RequestQueued``,
        ``AttemptStarted``, ``AttemptEnded``, ``RetryScheduled``, ``KeyCooled``,
        ``BreakerTransition``, ``RequestDone``), or only for ``kinds``; on the
        engine's thread.  What it raises is logged once and never breaks a
        request.  Returns the function that unsubscribes it."""
        return self._engine.events.subscribe(callback, *kinds)

    def unsubscribe(self, callback: Callable[[Any], object]) -> None:
        """Stop calling ``callback`` (nothing happens if it was not subscribed)."""
        self._engine.events.unsubscribe(callback)


for _spec in SETTINGS:
    setattr(BaseApiBackend, _spec.name, _SettingAttr(_spec.name))

CIRCUIT_STATES = (STATE_CLOSED, STATE_OPEN, STATE_HALF_OPEN)


def _model_names(setting: str, value: Any) -> list[str]:
    """A list of model names (any iterable of strings but a string itself), or a SettingError naming ``setting``."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise SettingError(setting, value, "a list of model names")
    names = list(value)
    if not all(isinstance(v, str) for v in names):
        raise SettingError(setting, value, "a list of model names")
    return names


_STATS_FIELDS = (
    "success",
    "response_time",
    "queue_wait",
    "model",
    "error_type",
    "endpoint",
    "tokens_in",
    "tokens_out",
    "attempts",
)


def _stats_record(stats_update: Any, fields: dict) -> RequestRecord:
    """``update_stats``'s arguments as a record, each field checked and named when refused."""
    if stats_update is not None and not isinstance(stats_update, Mapping):
        raise InvalidInputError(
            f"update_stats takes a dict of fields or keyword arguments, not {type(stats_update).__name__} "
            f"{_shown(stats_update)}; e.g. update_stats(success=True, response_time=0.25)"
        )
    update = dict(stats_update or {}, **fields)
    unknown = set(update) - set(_STATS_FIELDS)
    if unknown or "success" not in update:
        raise InvalidInputError(
            f"update_stats takes {', '.join(_STATS_FIELDS)} (success required); got {sorted(map(str, update))}"
        )
    success = update["success"]
    if not isinstance(success, bool) and success not in (0, 1):
        raise InvalidInputError(
            f"update_stats field 'success' must be True or False, not {_shown(success)}"
        )

    def number(name: str, default: float) -> float:
        return _stats_field(name, update.get(name, default), lambda v: require_number(name, v))

    def count(name: str, default: int, minimum: int) -> int:
        return _stats_field(
            name, update.get(name, default), lambda v: require_int(name, v, minimum)
        )

    def text(name: str) -> str | None:
        value = update.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(
                f"update_stats field {name!r} must be text or None, not {_shown(value)}"
            )
        return value

    return RequestRecord(
        success=bool(success),
        latency=number("response_time", 0.0),
        queue_wait=number("queue_wait", 0.0),
        attempts=count("attempts", 1, 1),
        model=text("model"),
        error_kind=text("error_type"),
        tokens_in=count("tokens_in", 0, 0),
        tokens_out=count("tokens_out", 0, 0),
        endpoint=text("endpoint"),
    )


def _stats_field(name: str, value: Any, check: Callable[[Any], Any]) -> Any:
    try:
        return check(value)
    except SettingError as exc:
        raise InvalidInputError(
            f"update_stats field {name!r} must be {exc.expected}, not {_shown(value)}"
        ) from None


def _shown(value: Any) -> str:
    """A caller's value for an error message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first(metadata: Mapping[str, Any], keys: Iterable[str], env: Iterable[str]) -> str | None:
    for key in keys:
        value = metadata.get(key)
        if value:
            return str(value)
    for name in env:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _check_endpoint(endpoint: Any) -> None:
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise InvalidInputError("endpoint must name the API endpoint, e.g. 'chat/completions'")


def model_argument(model_name: Any, model: Any) -> Any:
    """The model a call names, as ``model_name=`` or as ``model=`` (the
    openai SDK's name); both may be given only when they agree."""
    if model is None:
        return model_name
    if model_name is not None and model_name != model:
        raise InvalidInputError(
            f"model_name={model_name!r} and model={model!r} name different models: give one of them "
            "(model= is the openai SDK's name for model_name=)"
        )
    return model


def _with_extra_body(data: Any, extra_body: Any) -> Any:
    """``data`` with ``extra_body``'s fields laid over it (sent as they are)."""
    if extra_body is None:
        return data
    if not isinstance(extra_body, Mapping):
        raise InvalidInputError(
            f"extra_body must be a dict of fields to add to the JSON body, not {type(extra_body).__name__}"
        )
    if data is not None and not isinstance(data, Mapping):
        raise InvalidInputError(
            f"request data must be a dict (the JSON body), not {type(data).__name__}"
        )
    return {**(data or {}), **extra_body}


def _check_model(model_name: Any) -> None:
    if not isinstance(model_name, str) or not model_name.strip():
        raise InvalidInputError(
            f"model_name must be a non-empty string (e.g. 'gpt-4o-mini'), not {model_name!r}"
        )


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError(
            "messages must be a non-empty list like [{'role': 'user', 'content': 'Hello'}], "
            f"not {type(messages).__name__}"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message:
            raise InvalidInputError(
                f"messages[{i}] must be a dict with a 'role' (and 'content'), not {message!r:.80}"
            )


_KEY_FIELDS = ("name", "key", "base_url", "max_concurrent", "rpm", "tpm", "weight")


def key_config(**fields: Any) -> KeyConfig:
    """A :class:`KeyConfig` from ``{name, key, base_url, max_concurrent, rpm, tpm, weight}``."""
    unknown = set(fields) - set(_KEY_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"unknown key field(s) {sorted(unknown)}: a key takes {', '.join(_KEY_FIELDS)}"
        )
    secret, base_url = fields.pop("key", None), fields.pop("base_url", None)
    if secret is not None and not isinstance(secret, str):
        raise SettingError("api_keys", "<not shown>", "each key's 'key' to be a string")
    if base_url is not None and (
        not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
    ):
        raise SettingError(
            "api_keys", base_url, "each key's 'base_url' to be an http:// or https:// URL"
        )
    options = {k: v for k, v in fields.items() if v is not None}
    options.setdefault("weight", 1.0)
    return KeyConfig(KeyOptions(**options), secret, base_url)


def key_configs(
    metadata: Mapping[str, Any], spec: Any, environ: Mapping[str, str]
) -> list[KeyConfig]:
    """The keys beside the seed's one: ``metadata["api_keys"]`` (a list of
    dicts), then numbered environment variables (``OPENAI_API_KEY_1``, ...)."""
    listed = metadata.get("api_keys") or []
    if not isinstance(listed, (list, tuple)) or not all(
        isinstance(item, Mapping) for item in listed
    ):
        raise InvalidInputError(
            "metadata['api_keys'] must be a list of dicts like {'name': 'k1', 'key': 'sk-...', 'rpm': 500}"
        )
    configs = [key_config(**item) for item in listed]
    if spec.key_env:
        pattern = re.compile(rf"^{re.escape(spec.key_env[0])}_(\d+)$")
        numbered = sorted(
            (int(m.group(1)), value)
            for name, value in environ.items()
            if value and (m := pattern.match(name))
        )
        configs += [KeyConfig(KeyOptions(f"key{n}"), value) for n, value in numbered]
    return configs
