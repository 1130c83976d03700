"""How a call reaches the engine: one :class:`Request`, submitted; then waited
for (sync), awaited (async) or handed back as its future (the queue API).

``queue_with_priority`` is the seed's queue API (a dict describing the
request, a priority, a future back); ``add_to_batch`` queues embeddings
inputs for the batch lane; ``_process_batch`` sends what is being assembled.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ..engine.call_options import DEFAULT_OPTIONS, CallOptions
from ..engine.future import RequestFuture
from ..engine.loop import in_engine_thread
from ..engine.request import Request
from ..engine.stream import ChunkStream
from ..resilience.errors import AuthenticationError, InvalidInputError
from ..resilience.priority_queue import PRIORITY_NORMAL, priority_level
from .operations import Operations
from .priority import PriorityLike

__all__ = ["REQUEST_INFO_FIELDS", "Submission"]

R = TypeVar("R")

REQUEST_INFO_FIELDS = frozenset(
    {"endpoint", "data", "api_key", "request_id", "stream", "priority", "on_circuit_open"}
)
"""What a ``queue_with_priority`` request may say."""


class Submission(Operations):
    """Requests submitted to the engine, and their outcomes."""

    def queue_with_priority(
        self, request_info: Mapping[str, Any], priority: PriorityLike = None
    ) -> RequestFuture:
        """Queue ``{"endpoint", "data", "api_key"?, "request_id"?, "stream"?, "priority"?, "on_circuit_open"?}``
        at ``priority`` (``Priority.HIGH`` / HIGH 0, NORMAL 1, LOW 2, or ``"high"``,
        ``"normal"``, ``"low"``) and return its future at once.

        The future is the seed's dict (``completed``, ``result``, ``error``)
        and also offers ``wait(timeout)``, ``result(timeout)``, ``cancel()``,
        and ``await future`` from any event loop.
        """
        if not isinstance(request_info, Mapping):
            raise InvalidInputError(
                f"request_info must be a dict like {{'endpoint': 'chat/completions', 'data': {{...}}}}, "
                f"not {type(request_info).__name__}"
            )
        unknown = set(request_info) - REQUEST_INFO_FIELDS
        if unknown:
            name = sorted(unknown, key=str)[0]
            close = difflib.get_close_matches(str(name), sorted(REQUEST_INFO_FIELDS), n=2)
            raise InvalidInputError(
                f"request_info has unknown field {name!r}"
                + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
                + f"; it takes {', '.join(sorted(REQUEST_INFO_FIELDS))} (body fields go in its 'data')"
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
        priority: PriorityLike = None,
        request_id: str | None = None,
        api_key: str | None = None,
        stream: bool = False,
        options: CallOptions = DEFAULT_OPTIONS,
    ) -> Request:
        options = options.over(self._call_defaults)
        if priority is None:
            priority = self._default_priority
        level = PRIORITY_NORMAL if priority is None else priority_level(priority)
        if data is not None and not isinstance(data, (dict, Mapping)):
            raise InvalidInputError(
                f"request data must be a dict (the JSON body), not {type(data).__name__}"
            )
        if request_id is not None and not isinstance(request_id, str):
            raise InvalidInputError(f"request_id must be a string, not {type(request_id).__name__}")
        if api_key is not None and not isinstance(api_key, str):
            raise InvalidInputError("api_key must be a string")
        engine = self._engine
        spec = self.provider.spec
        if (
            not (api_key or engine.keys.has_secret())
            and spec.requires_key
            and engine.base_url == spec.default_base_url
        ):
            names = " or ".join(
                spec.key_env + tuple(f"metadata['{m}']" for m in spec.key_metadata[:1])
            )
            raise AuthenticationError(
                f"no API key for {self.provider.name}: set {names}", provider=self.provider.name
            )
        body = dict(data) if data is not None else None
        now = self._clock.now()
        settings = self._settings.values  # read without a descriptor call each
        deadline = settings["request_deadline"]
        req = Request(
            endpoint,
            body,
            priority=level,
            request_id=request_id,
            api_key=api_key,
            stream=stream,
            submitted_at=now,
            deadline=None if deadline is None else now + deadline,
            model=self.provider.request_model(endpoint, body),
            options=options,
            circuit_wait=(options.on_circuit_open or settings["on_circuit_open"]) == "wait",
        )
        if not stream:
            req.inputs = engine.batch_inputs(endpoint, body)
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

    def _call_json(self, endpoint: str, data: Any, **kwargs: Any) -> dict[str, Any]:
        """:meth:`_call` for an endpoint that answers with a JSON object."""
        result: dict[str, Any] = self._call(endpoint, data, **kwargs)
        return result

    def _call_maybe_stream(
        self, endpoint: str, data: Any, **kwargs: Any
    ) -> dict[str, Any] | ChunkStream:
        """:meth:`_call` for an endpoint that streams when ``stream=True`` is given."""
        result: dict[str, Any] | ChunkStream = self._call(endpoint, data, **kwargs)
        return result

    async def _acall(self, endpoint: str, data: Any, **kwargs: Any) -> Any:
        """Submit and await the outcome (the async API; any running loop).
        Cancelling the awaiting task cancels the request."""
        future = self._submit(endpoint, data, **kwargs).future
        result = await future
        future["result"] = None
        return result

    # ----------------------------------------------------------- batching

    def add_to_batch(
        self,
        model_name: str | None = None,
        request_input: Any = None,
        future: dict[str, Any] | None = None,
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
            filled = future
            fut.add_done_callback(
                lambda f: filled.update(result=f["result"], error=f["error"], completed=True)
            )
        return fut

    def _process_batch(self) -> int:
        """Send the batches being assembled now, without waiting for
        ``batch_timeout``; returns how many were sent."""
        return self._run_on_engine(self._engine.flush_batches)

    def _run_on_engine(self, fn: Callable[[], R]) -> R:
        """``fn()`` on the engine's loop thread, its result (or exception) handed back."""
        if in_engine_thread():
            return fn()
        done = threading.Event()
        results: list[R] = []
        raised: list[BaseException] = []

        def run() -> None:
            try:
                results.append(fn())
            except BaseException as exc:  # handed back to the caller
                raised.append(exc)
            finally:
                done.set()

        self._engine.loop.call_soon_threadsafe(run)
        done.wait()
        if raised:
            raise raised[0]
        return results[0]
