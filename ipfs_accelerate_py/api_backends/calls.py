"""The public calls, sync and async: ``chat``/``achat``, ``completions``/``acompletions``,
``embeddings``/``aembeddings``, ``make_request``/``amake_request``, ``list_models``.

Each call is written once, as the builder of the request it sends
(``_request_call``, ``_chat_call``, ...), and made twice from it: the sync
method waits for the outcome, its ``a`` twin awaits it.  Besides its
content and the provider's own parameters (``**params``, checked against
``provider.body_params``), each takes the openai SDK's per-call options,
none of which is ever sent in the body: ``model=`` (the same as
``model_name=``), ``timeout=`` (seconds each attempt may take),
``max_retries=``, ``extra_headers=`` (HTTP headers, over the client's own),
``extra_query=`` (URL query parameters), ``on_circuit_open=`` ("fail" or
"wait", see the circuit in README) and ``extra_body=`` (fields merged into
the JSON body last, unchecked).

For a type checker, ``chat(..., stream=True)`` returns a :class:`ChunkStream`
(an iterator of :class:`StreamChunk`, sync and async) and ``chat(...)`` the
provider's response (a JSON object): the methods are overloaded on ``stream``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Concatenate, Literal, NamedTuple, ParamSpec, TypeAlias, TypeVar, overload

from ..engine.call_options import CallOptions
from ..engine.stream import ChunkStream
from .operations import check_endpoint, with_extra_body
from .priority import PriorityLike
from .submission import Submission

__all__ = ["CallSurface", "Messages", "Response", "public_method"]

Response: TypeAlias = "dict[str, Any]"
"""A provider's answer to a call that does not stream: its JSON object."""
Messages: TypeAlias = "list[dict[str, Any]]"
"""OpenAI-style chat messages: ``[{"role": "user", "content": "Hello"}]``."""

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
S = TypeVar("S", bound="CallSurface")


class _Call(NamedTuple):
    """The request a public call sends: where, what, and how to submit it."""

    endpoint: str
    data: Any
    submit: dict[str, Any]


def public_method(call: F, build: Callable[..., Any], owner: str, name: str, doc: str) -> F:
    """``call`` as the public method ``owner.name``: its name and doc, the
    builder's parameters, its own result (the provider's response, or a
    ``ChunkStream`` when streaming)."""
    call.__name__, call.__doc__ = name, doc
    call.__qualname__ = f"{owner}.{name}"
    call.__annotations__ = {**build.__annotations__, "return": "Any"}
    call.__signature__ = inspect.signature(build).replace(return_annotation="Any")  # type: ignore[attr-defined]  # the attribute inspect.signature reads
    return call


def _built_by(build: Callable[..., Any]) -> Callable[[F], F]:
    """The public method over ``build``: its parameters (for ``help()`` and
    ``inspect.signature``), its own name and doc."""

    def wrap(call: F) -> F:
        return public_method(call, build, "BaseApiBackend", call.__name__, call.__doc__ or "")

    return wrap


def _blocking(
    build: Callable[Concatenate[S, P], _Call], name: str, doc: str
) -> Callable[Concatenate[S, P], Any]:
    """The sync public method over ``build``: its request, sent, waited for
    (a type checker sees the builder's parameters, and the provider's JSON back)."""

    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        endpoint, data, submit = build(self, *args, **kwargs)
        return self._call(endpoint, data, **submit)

    return public_method(call, build, "BaseApiBackend", name, doc)


def _awaited(
    build: Callable[Concatenate[S, P], _Call], name: str, doc: str
) -> Callable[Concatenate[S, P], Awaitable[Any]]:
    """The async twin of :func:`_blocking` over the same ``build``: the same request, awaited."""

    async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        endpoint, data, submit = build(self, *args, **kwargs)
        return await self._acall(endpoint, data, **submit)

    return public_method(call, build, "BaseApiBackend", name, doc)


def _blocking_json(
    build: Callable[Concatenate[S, P], _Call], name: str, doc: str
) -> Callable[Concatenate[S, P], Response]:
    """:func:`_blocking` for a call that answers with a JSON object."""

    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Response:
        endpoint, data, submit = build(self, *args, **kwargs)
        return self._call_json(endpoint, data, **submit)

    return public_method(call, build, "BaseApiBackend", name, doc)


def _awaited_json(
    build: Callable[Concatenate[S, P], _Call], name: str, doc: str
) -> Callable[Concatenate[S, P], Awaitable[Response]]:
    """:func:`_awaited` for a call that answers with a JSON object."""

    async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Response:
        endpoint, data, submit = build(self, *args, **kwargs)
        result: Response = await self._acall(endpoint, data, **submit)
        return result

    return public_method(call, build, "BaseApiBackend", name, doc)


class CallSurface(Submission):
    """The public calls, each in its sync and async form."""

    # ------------------------------------------------------------ builders

    def _request_call(
        self,
        /,
        endpoint: str,
        data: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        *,
        priority: PriorityLike = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        on_circuit_open: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> _Call:
        check_endpoint(endpoint)
        options = CallOptions.of(timeout, max_retries, extra_headers, extra_query, on_circuit_open)
        submit = dict(request_id=request_id, priority=priority, api_key=api_key, options=options)
        return _Call(endpoint, with_extra_body(data, extra_body), submit)

    def _chat_call(
        self,
        /,
        model_name: str | None = None,
        messages: Messages | None = None,
        *,
        model: str | None = None,
        stream: bool = False,
        priority: PriorityLike = None,
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
        submit = dict(priority=priority, request_id=request_id, stream=stream, options=options)
        return _Call(endpoint, data, submit)

    def _completion_call(
        self,
        /,
        model_name: str | None = None,
        prompt: str | list[str] | None = None,
        *,
        model: str | None = None,
        stream: bool = False,
        priority: PriorityLike = None,
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

    def _embeddings_call(
        self,
        /,
        model_name: str | None = None,
        input: str | list[str] | None = None,
        *,
        model: str | None = None,
        priority: PriorityLike = None,
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

    # ------------------------------------------------------- make_request

    make_request = _blocking(
        _request_call,
        "make_request",
        """Send one request to ``endpoint`` (e.g. ``"chat/completions"``,
        ``"embeddings"``, ``"models"``) and return the provider's JSON.
        Embeddings to ``supported_batch_models`` are batched transparently.
        Per-call options as in :meth:`chat`.""",
    )
    amake_request = _awaited(_request_call, "amake_request", """:meth:`make_request`, awaited.""")

    # --------------------------------------------------------------- chat

    @overload
    def chat(
        self,
        model_name: str | None = None,
        messages: Messages | None = None,
        *,
        stream: Literal[False] = False,
        **options: Any,
    ) -> Response: ...
    @overload
    def chat(
        self,
        model_name: str | None = None,
        messages: Messages | None = None,
        *,
        stream: Literal[True],
        **options: Any,
    ) -> ChunkStream: ...
    @overload
    def chat(
        self,
        model_name: str | None = None,
        messages: Messages | None = None,
        *,
        stream: bool,
        **options: Any,
    ) -> Response | ChunkStream: ...
    @_built_by(_chat_call)
    def chat(self, *args: Any, **kwargs: Any) -> Any:
        """A chat completion: the provider's response, or with ``stream=True``
        a :class:`ChunkStream` of normalized chunks (close it to stop early)."""
        endpoint, data, submit = self._chat_call(*args, **kwargs)
        return self._call(endpoint, data, **submit)

    @overload
    async def achat(
        self,
        model_name: str | None = None,
        messages: Messages | None = None,
        *,
        stream: Literal[False] = False,
        **options: Any,
    ) -> Response: ...
    @overload
    async def achat(
        self,
        model_name: str | None = None,
        messages: Messages | None = None,
        *,
        stream: Literal[True],
        **options: Any,
    ) -> ChunkStream: ...
    @overload
    async def achat(
        self,
        model_name: str | None = None,
        messages: Messages | None = None,
        *,
        stream: bool,
        **options: Any,
    ) -> Response | ChunkStream: ...
    @_built_by(_chat_call)
    async def achat(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`chat`, awaited; a stream is read with ``async for``."""
        endpoint, data, submit = self._chat_call(*args, **kwargs)
        return await self._acall(endpoint, data, **submit)

    # -------------------------------------------------------- completions

    @overload
    def completions(
        self,
        model_name: str | None = None,
        prompt: str | list[str] | None = None,
        *,
        stream: Literal[False] = False,
        **options: Any,
    ) -> Response: ...
    @overload
    def completions(
        self,
        model_name: str | None = None,
        prompt: str | list[str] | None = None,
        *,
        stream: Literal[True],
        **options: Any,
    ) -> ChunkStream: ...
    @overload
    def completions(
        self,
        model_name: str | None = None,
        prompt: str | list[str] | None = None,
        *,
        stream: bool,
        **options: Any,
    ) -> Response | ChunkStream: ...
    @_built_by(_completion_call)
    def completions(self, *args: Any, **kwargs: Any) -> Any:
        """A text completion from ``prompt`` (the provider's response or chunks)."""
        endpoint, data, submit = self._completion_call(*args, **kwargs)
        return self._call(endpoint, data, **submit)

    @overload
    async def acompletions(
        self,
        model_name: str | None = None,
        prompt: str | list[str] | None = None,
        *,
        stream: Literal[False] = False,
        **options: Any,
    ) -> Response: ...
    @overload
    async def acompletions(
        self,
        model_name: str | None = None,
        prompt: str | list[str] | None = None,
        *,
        stream: Literal[True],
        **options: Any,
    ) -> ChunkStream: ...
    @overload
    async def acompletions(
        self,
        model_name: str | None = None,
        prompt: str | list[str] | None = None,
        *,
        stream: bool,
        **options: Any,
    ) -> Response | ChunkStream: ...
    @_built_by(_completion_call)
    async def acompletions(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`completions`, awaited."""
        endpoint, data, submit = self._completion_call(*args, **kwargs)
        return await self._acall(endpoint, data, **submit)

    # --------------------------------------------------------- embeddings

    embeddings = _blocking_json(
        _embeddings_call,
        "embeddings",
        """Embeddings for one text or a list; batched with other callers'
        when ``model_name`` is in ``supported_batch_models`` (only with
        requests of the same per-call options and body fields).""",
    )
    aembeddings = _awaited_json(
        _embeddings_call,
        "aembeddings",
        """:meth:`embeddings`, awaited (batched with sync and async callers alike).""",
    )

    def list_models(self) -> list[Any]:
        endpoint, data = self.provider.models_request()
        return list(self.provider.models_from(self._call(endpoint, data)))
