"""Failover across backends: a declared chain of steps, tried in order.

::

    chain = FailoverChain([
        openai_client,
        (groq_client, {"gpt-4o-mini": "llama-3.3-70b-versatile"}),
        FailoverStep(claude_client, default_model="claude-sonnet-4-5"),
    ])
    response = chain.chat("gpt-4o-mini", [{"role": "user", "content": "Hi"}])
    print(chain.last_step.name, chain.reply_text(response))

A request goes to the first step.  It moves on to the next step only when it
cannot succeed where it is (:func:`fails_over`):

* the step's circuit is OPEN (:class:`CircuitOpenError`, raised at admission,
  so nothing is sent: an OPEN step is skipped at no cost);
* the step cannot serve at all: :class:`AuthenticationError` /
  :class:`PermissionDeniedError` (every key refused or disabled), or
  :class:`ShutdownError` (the backend was closed);
* the backend spent its retries on a retryable error (:class:`RateLimitError`,
  :class:`ServerError`, :class:`RequestTimeoutError` and
  :class:`DeadlineExceededError`, :class:`NetworkError`,
  :class:`MalformedResponseError`, :class:`ConflictError`) or its queue was
  full (:class:`QueueFullError`).  The backend retries first: the chain sees an
  error only once the backend has given up.

The caller's own mistakes (:class:`InvalidRequestError`, which includes
:class:`InvalidInputError`, and :class:`NotFoundError`) would fail on every
step: they are raised at once, unless the step lists them in its
``fail_over_on`` (say ``NotFoundError`` when a model may exist only further
on).  A cancellation, a setting error or an exception that is not an
:class:`ApiError` (a bug) is raised at once too.

Each step maps the requested model (``models``), else uses its
``default_model``, else passes the model unchanged.  ``chat`` takes
OpenAI-style messages, as every backend's ``chat`` does, and the answer is
returned as that step's provider shapes it: :attr:`FailoverChain.last_step`
(per thread, and per asyncio task) says which step answered, and :meth:`FailoverChain.reply_text`
reads its text whatever the provider.  A stream fails over only until it has
started: once ``chat(stream=True)`` has returned, its chunks come from that
step.

When every step failed, a copy of the last error is raised (its class and
fields kept, the original as its ``__cause__``) with ``failures``, the list
of ``(step name, error)``, also summed up in its message, and ``step``, the
name of the step that raised it.  An error that does not fail over, raised
by a later step, carries the earlier failures the same way.  Error messages
never carry a key (the engine redacts them).

The chain does not own its backends: closing them is the caller's business.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union

from ..resilience.errors import (
    ApiError,
    AuthenticationError,
    CircuitOpenError,
    ConflictError,
    MalformedResponseError,
    NetworkError,
    QueueFullError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SettingError,
    ShutdownError,
)
from .base import model_argument, public_method

__all__ = ["FAIL_OVER_ON", "FailoverChain", "FailoverStep", "fails_over"]

FAIL_OVER_ON: tuple[type[ApiError], ...] = (
    CircuitOpenError,
    AuthenticationError,  # and PermissionDeniedError: no key left that this backend may use
    ShutdownError,
    RateLimitError,
    ServerError,
    RequestTimeoutError,  # and DeadlineExceededError
    NetworkError,
    MalformedResponseError,
    ConflictError,
    QueueFullError,
)
"""The errors after which a request moves on to the next step (subclasses included)."""

MAX_MESSAGE_ERROR_CHARS = 200
"""How much of each step's error the final error's message quotes."""

StepLike = Union["FailoverStep", Any, tuple[Any, ...]]


# ---------------------------------------------------------------- steps


@dataclass(frozen=True)
class FailoverStep:
    """One backend of a chain and how requests are adapted to it.

    ``models`` maps a requested model to this backend's; a model it does not
    map becomes ``default_model`` when one is set, else goes unchanged.
    ``fail_over_on``: error classes that also move on from this step, beyond
    :data:`FAIL_OVER_ON`.  ``name`` is how stats and errors name the step
    (default: the backend's class name, numbered when repeated in a chain).
    """

    backend: Any
    models: Mapping[str, str] = field(default_factory=dict)
    default_model: str | None = None
    fail_over_on: tuple[Any, ...] = ()
    name: str | None = None

    def __post_init__(self) -> None:
        if (
            not callable(getattr(self.backend, "chat", None))
            or getattr(self.backend, "provider", None) is None
        ):
            raise SettingError(
                "backend", self.backend, "a backend (e.g. openai_api(...), groq(...), claude(...))"
            )
        if not isinstance(self.models, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in self.models.items()
        ):
            raise SettingError(
                "models", self.models, "a dict mapping requested model names to this backend's"
            )
        object.__setattr__(self, "models", dict(self.models))
        if self.default_model is not None and (
            not isinstance(self.default_model, str) or not self.default_model
        ):
            raise SettingError("default_model", self.default_model, "a model name or None")
        extra = tuple(self.fail_over_on)
        if not all(isinstance(cls, type) and issubclass(cls, ApiError) for cls in extra):
            raise SettingError(
                "fail_over_on",
                self.fail_over_on,
                "error classes from ipfs_accelerate_py.resilience.errors",
            )
        object.__setattr__(self, "fail_over_on", extra)
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise SettingError("name", self.name, "a non-empty string or None")

    def model_for(self, model: Any) -> Any:
        """The model this step sends for a request of ``model``."""
        if isinstance(model, str) and model in self.models:
            return self.models[model]
        return self.default_model if self.default_model is not None else model

    def __repr__(self) -> str:
        return f"FailoverStep({self.label!r}, models={self.models!r})"

    @property
    def label(self) -> str:
        """How stats and errors name the step: ``name``, else the backend's class name."""
        return self.name or type(self.backend).__name__


def fails_over(error: BaseException, step: FailoverStep | None = None) -> bool:
    """True when ``error``, raised by ``step``, means the request should move on."""
    if not isinstance(error, ApiError):
        return False
    extra = step.fail_over_on if step is not None else ()
    return isinstance(error, FAIL_OVER_ON + extra)


def _as_step(item: StepLike) -> FailoverStep:
    if isinstance(item, FailoverStep):
        return item
    if isinstance(item, tuple):
        if not 1 <= len(item) <= 2:
            raise SettingError(
                "steps", item, "a backend, (backend, {model: model}) or a FailoverStep"
            )
        return FailoverStep(*item)
    return FailoverStep(item)


def _named(steps: list[FailoverStep]) -> list[FailoverStep]:
    """Steps with unique names: a repeated default name gets ``#2``, ``#3``..."""
    seen: dict[str, int] = {}
    named = []
    for step in steps:
        base = step.label
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}#{seen[base]}"
        if step.name is not None and seen[base] > 1:
            raise SettingError("name", step.name, "a step name not used twice in the chain")
        named.append(
            FailoverStep(step.backend, step.models, step.default_model, step.fail_over_on, name)
        )
    return named


# ---------------------------------------------------------------- stats


class _ChainStats:
    """Thread-safe counters of one chain."""

    def __init__(self, names: list[str]) -> None:
        self._lock = threading.Lock()
        self._names = names
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = self._succeeded = self._failed = self._failovers = 0
            self._steps: dict[str, dict[str, Any]] = {
                name: {"attempts": 0, "served": 0, "failed": 0, "errors": {}}
                for name in self._names
            }

    def attempt(self, name: str) -> None:
        with self._lock:
            self._steps[name]["attempts"] += 1

    def step_failed(self, name: str, error: BaseException, moving_on: bool) -> None:
        kind = getattr(error, "kind", type(error).__name__)
        with self._lock:
            step = self._steps[name]
            step["failed"] += 1
            step["errors"][kind] = step["errors"].get(kind, 0) + 1
            self._failovers += moving_on

    def finished(self, served_by: str | None) -> None:
        with self._lock:
            self._requests += 1
            if served_by is None:
                self._failed += 1
            else:
                self._succeeded += 1
                self._steps[served_by]["served"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            steps = {name: dict(s, errors=dict(s["errors"])) for name, s in self._steps.items()}
            return {
                "requests": self._requests,
                "succeeded": self._succeeded,
                "failed": self._failed,
                "failovers": self._failovers,
                "served_by": {name: s["served"] for name, s in steps.items()},
                "steps": steps,
            }


# ---------------------------------------------------------------- the chain


class _Plan(NamedTuple):
    """What each step of a chain is asked: its backend's ``method`` (the sync
    name; the async twin calls ``"a" + method``), the positional arguments
    for that step, and the keywords, the same for every step."""

    method: str
    args: Callable[[FailoverStep], tuple[Any, ...]]
    kwargs: dict[str, Any]


def _over_steps(plan: Callable[..., _Plan], name: str, doc: str) -> tuple[Any, Any]:
    """The sync operation ``name`` and its async twin over the one ``plan``."""

    @functools.wraps(plan)
    def call(self: FailoverChain, *args: Any, **kwargs: Any) -> Any:
        method, step_args, options = plan(self, *args, **kwargs)
        return self._run(lambda step: getattr(step.backend, method)(*step_args(step), **options))

    @functools.wraps(plan)
    async def acall(self: FailoverChain, *args: Any, **kwargs: Any) -> Any:
        method, step_args, options = plan(self, *args, **kwargs)
        return await self._arun(
            lambda step: getattr(step.backend, "a" + method)(*step_args(step), **options)
        )

    return (
        public_method(call, plan, "FailoverChain", name, doc),
        public_method(
            acall,
            plan,
            "FailoverChain",
            "a" + name,
            f":meth:`{name}`, awaited (each step's ``a{name}``).",
        ),
    )


class FailoverChain:
    """Backends tried in order; see the module docstring for the rules.

    ``steps``: a list of backends, ``(backend, {requested: model})`` pairs or
    :class:`FailoverStep` objects.  Thread-safe: calls from many threads go
    through at once (each backend queues its own).
    """

    def __init__(self, steps: Iterable[StepLike]) -> None:
        if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
            raise SettingError(
                "steps", steps, "a list of backends or (backend, {model: model}) steps"
            )
        steps = _named([_as_step(item) for item in steps])
        if not steps:
            raise SettingError("steps", steps, "at least one backend")
        self._steps = tuple(steps)
        self._stats = _ChainStats([s.label for s in steps])
        self._last_step: contextvars.ContextVar[FailoverStep | None] = contextvars.ContextVar(
            "last_step", default=None
        )

    # ------------------------------------------------------------ inspection

    @property
    def steps(self) -> tuple[FailoverStep, ...]:
        return self._steps

    @property
    def last_step(self) -> FailoverStep | None:
        """The step that answered this thread's (or this task's) last successful
        call (None before one)."""
        return self._last_step.get()

    def reply_text(self, result: Any) -> str:
        """The text of a chat or completion answer, read by the provider of the step
        that answered this thread's last call (else by the first provider that can)."""
        step = self.last_step
        if step is not None:
            text: str = step.backend.provider.reply_text(result)
            return text
        for candidate in self._steps:
            try:
                text = candidate.backend.provider.reply_text(result)
                return text
            except (ApiError, LookupError, TypeError, ValueError):
                continue
        raise ValueError("no step's provider can read this answer")

    def get_stats(self) -> dict[str, Any]:
        """Requests, successes, final failures, failovers (moves to a next step), who
        served how many, and per step: attempts, served, failed, errors by kind."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    def __repr__(self) -> str:
        return f"FailoverChain([{', '.join(s.label for s in self._steps)}])"

    # ------------------------------------------------------------ operations
    #
    # Each operation is written once, as the plan of what each step is asked
    # (``_chat_plan``, ...); the sync method runs it over the steps and its
    # ``a`` twin awaits each step's ``a`` method (:func:`_over_steps`).

    def _chat_plan(
        self,
        model_name: str | None = None,
        messages: list[Any] | None = None,
        *,
        model: str | None = None,
        **params: Any,
    ) -> _Plan:
        model_name = model_argument(model_name, model)
        return _Plan("chat", lambda step: (step.model_for(model_name), messages), params)

    chat, achat = _over_steps(
        _chat_plan,
        "chat",
        """``backend.chat`` on each step in turn (OpenAI-style messages; see the module docstring):
        ``stream``, ``priority``, ``request_id`` and the per-call options are handed to each step.""",
    )

    def _completions_plan(
        self,
        model_name: str | None = None,
        prompt: Any = None,
        *,
        model: str | None = None,
        **params: Any,
    ) -> _Plan:
        model_name = model_argument(model_name, model)
        return _Plan("completions", lambda step: (step.model_for(model_name), prompt), params)

    completions, acompletions = _over_steps(
        _completions_plan, "completions", """``backend.completions`` on each step in turn."""
    )

    def _embeddings_plan(
        self,
        model_name: str | None = None,
        input: Any = None,
        *,
        model: str | None = None,
        **params: Any,
    ) -> _Plan:
        model_name = model_argument(model_name, model)
        return _Plan("embeddings", lambda step: (step.model_for(model_name), input), params)

    embeddings, aembeddings = _over_steps(
        _embeddings_plan, "embeddings", """``backend.embeddings`` on each step in turn."""
    )

    def _request_plan(
        self,
        endpoint: str,
        data: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **options: Any,
    ) -> _Plan:
        return _Plan(
            "make_request", lambda step: (endpoint, _with_model(step, data), request_id), options
        )

    make_request, amake_request = _over_steps(
        _request_plan,
        "make_request",
        """``backend.make_request`` on each step in turn.  The body is sent as it is
        (a wire format's own), with ``data["model"]`` mapped when present: fail over
        between backends of one wire format here, or use :meth:`chat`.""",
    )

    # ------------------------------------------------------------ the loop

    def _run(self, call: Callable[[FailoverStep], Any]) -> Any:
        failures: list[tuple[str, ApiError]] = []
        for index, step in enumerate(self._steps):
            self._stats.attempt(step.label)
            try:
                result = call(step)
            except BaseException as error:
                self._step_failed(index, step, error, failures)
                continue
            return self._served(step, result)
        raise self._all_failed(failures)

    async def _arun(self, call: Callable[[FailoverStep], Awaitable[Any]]) -> Any:
        failures: list[tuple[str, ApiError]] = []
        for index, step in enumerate(self._steps):
            self._stats.attempt(step.label)
            try:
                result = await call(step)
            except BaseException as error:
                self._step_failed(index, step, error, failures)
                continue
            return self._served(step, result)
        raise self._all_failed(failures)

    def _step_failed(
        self, index: int, step: FailoverStep, error: BaseException, failures: list[Any]
    ) -> None:
        """Note a step's failure; raise at once when it does not fail over."""
        moving_on = fails_over(error, step)
        self._stats.step_failed(step.label, error, moving_on and index + 1 < len(self._steps))
        if not moving_on:
            self._stats.finished(None)
            raise _after_failover(error, step.label, failures)
        failures.append((step.label, error))

    def _served(self, step: FailoverStep, result: Any) -> Any:
        self._stats.finished(step.label)
        self._last_step.set(step)
        return result

    def _all_failed(self, failures: list[tuple[str, ApiError]]) -> BaseException:
        self._stats.finished(None)
        error = _exhausted(failures)
        error.__cause__ = failures[-1][1]
        return error


def _with_model(step: FailoverStep, data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if data is None or not isinstance(data, Mapping) or "model" not in data:
        return data  # type: ignore[return-value]  # the backend refuses a body that is not a dict
    return dict(data, model=step.model_for(data["model"]))


def _exhausted(failures: list[tuple[str, ApiError]]) -> ApiError:
    """Every step failed: a copy of the last error (same class and fields) whose
    message sums up every step's, with the list in ``failures``."""
    name, last = failures[-1]
    return _annotated(
        last, failures, f"every step of the failover chain failed: {_summary(failures)}"
    )


def _after_failover(
    error: BaseException, name: str, earlier: list[tuple[str, ApiError]]
) -> BaseException:
    """An error that does not fail over, raised by step ``name``: as it is on the first
    step; after earlier steps failed, a copy that says so and lists them too."""
    if not earlier or not isinstance(error, ApiError):
        return error
    failures = earlier + [(name, error)]
    return _annotated(
        error, failures, f"{error.message} (on {name}, after failing over: {_summary(earlier)})"
    )


def _annotated(error: ApiError, failures: list[tuple[str, ApiError]], message: str) -> ApiError:
    final = copy.copy(error)  # the original stays as its backend raised it
    final.message = message
    # A failed-over error also says which steps failed before and which failed last:
    final.__dict__.update(failures=list(failures), step=failures[-1][0])
    return final


def _summary(failures: list[tuple[str, ApiError]]) -> str:
    return "; ".join(f"{name}: {_short(error)}" for name, error in failures)


def _short(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return (
        text
        if len(text) <= MAX_MESSAGE_ERROR_CHARS
        else text[: MAX_MESSAGE_ERROR_CHARS - 3] + "..."
    )
