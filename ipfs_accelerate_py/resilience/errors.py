"""Typed errors, and the one place where an outcome becomes one.

::

    ApiError                          every error this package raises
     ├── RateLimitError               429                      rate_limit       retried
     │    └── RateLimitDeadlineError  no key free before the   rate_limit       not retried
     │                                deadline (also a DeadlineExceededError)
     ├── ServerError                  5xx                      server           retried, breaker failure
     │    └── OverloadedError         529                      server           retried, breaker failure
     ├── MalformedResponseError       body not as documented   malformed        retried, breaker failure
     │    └── ResponseTooLargeError   body or stream line past malformed        not retried
     │                                max_response_bytes / max_stream_line_bytes
     ├── RequestTimeoutError          408, attempt timed out   timeout          retried, breaker failure
     │    └── DeadlineExceededError   the request's deadline   timeout          not retried
     ├── NetworkError                 connect/reset/dropped    network          retried, breaker failure
     ├── ConflictError                409                      conflict         retried
     ├── AuthenticationError          401                      authentication
     │    └── PermissionDeniedError   403                      authentication
     ├── NotFoundError                404                      not_found
     ├── InvalidRequestError          400, 422, other 4xx      invalid_request
     │    └── InvalidInputError       refused before sending   invalid_request  (also a ValueError)
     │         └── UnknownParameterError  unknown keyword  invalid_request  (also a TypeError)
     ├── CircuitOpenError             breaker is OPEN          circuit_open
     ├── QueueFullError               queue at queue_size      queue_full
     ├── CancelledRequestError        caller cancelled         cancelled
     ├── ShutdownError                backend closed           shutdown
     └── SettingError                 invalid setting value    setting          (also a ValueError)

Each error carries ``provider``, ``status``, ``request_id`` (the server's
when it sent one, else the client's), ``retry_after`` (seconds), ``attempt``
and, from the server, ``should_retry`` (the ``x-should-retry`` header).  An
error a request ends with also says where it came from: ``model``, ``host``
(the endpoint's host:port), ``key_name`` (the key's label, never the secret),
``attempts`` (made in all) and ``client_request_id`` (this client's id of
the request).  ``kind`` names its class in statistics.  A 429 whose body says
the quota is spent (not a rate) is ``key_wide``: it cools the whole key.

Nothing here does I/O or reads a clock: ``classify`` is given the wall time
when it must read an HTTP-date ``Retry-After``.
"""

from __future__ import annotations

import datetime
import email.utils
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from .redact import redact

_E = TypeVar("_E", bound="ApiError")

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BudgetExceededError",
    "CancelledRequestError",
    "CircuitOpenError",
    "ConflictError",
    "DeadlineExceededError",
    "InvalidInputError",
    "InvalidRequestError",
    "MAX_RETRY_AFTER",
    "MalformedResponseError",
    "NetworkError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimitDeadlineError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "ServerError",
    "SettingError",
    "ShutdownError",
    "StreamStalledError",
    "UnknownParameterError",
    "classify_exception",
    "classify_status",
    "copied",
    "get_header",
    "parse_retry_after",
    "parse_should_retry",
    "provider_message",
    "quota_exhausted",
    "too_large",
]


class ApiError(Exception):
    """Base of every error raised by this package."""

    kind = "error"
    retryable = False
    breaker_failure = False
    chunks_received: int | None = None
    """For an error that ended a started stream: how many chunks had arrived."""
    partial_text: str | None = None
    """For an error that ended a started stream: the text that had arrived."""
    key_wide = False
    """For a 429: the limit is the whole key's (an exhausted quota), not one model's."""
    model: str | None = None
    host: str | None = None
    key_name: str | None = None
    attempts: int | None = None
    client_request_id: str | None = None

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        attempt: int | None = None,
        should_retry: bool | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.attempt = attempt
        self.should_retry = should_retry
        self.body = body

    def __str__(self) -> str:
        parts = []
        if self.provider:
            parts.append(self.provider)
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        prefix = f"[{' '.join(parts)}] " if parts else ""
        suffix = []
        if self.model:
            suffix.append(f"model {self.model}")
        if self.key_name:
            suffix.append(f"key {self.key_name}")
        if self.host:
            suffix.append(self.host)
        if self.retry_after is not None:
            wait = self.retry_after
            suffix.append(f"retry after {wait:.0f}s" if wait >= 100 else f"retry after {wait:.3g}s")
        if self.attempts is not None:
            suffix.append(f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}")
        elif self.attempt is not None:
            suffix.append(f"attempt {self.attempt}")
        if self.request_id:
            suffix.append(f"request {self.request_id}")
        if self.client_request_id and self.client_request_id != self.request_id:
            suffix.append(f"client request {self.client_request_id}")
        tail = f" ({', '.join(suffix)})" if suffix else ""
        return f"{prefix}{self.message}{tail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def redact(self, secrets: Iterable[str | None]) -> ApiError:
        """Mask ``secrets`` in the message and the body by the one rule of
        :mod:`.redact` (the body is kept, redacted, so the provider's details
        stay readable); returns ``self``."""
        secrets = tuple(secrets)
        self.message = redact(self.message, secrets)
        self.args = (self.message,)
        self.body = redact(self.body, secrets)
        self.request_id = redact(self.request_id, secrets)  # a server's id header is its text too
        _redact_causes(self, secrets)
        return self

    def __reduce__(self) -> tuple[Any, tuple[type[ApiError], str, dict[str, Any]]]:
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))  # with its fields


def _redact_causes(error: BaseException, secrets: tuple[str | None, ...]) -> None:
    """The exceptions behind ``error`` hold the server's text too (a
    ``JSONDecodeError`` keeps the whole body it could not read, in ``doc``):
    their args and fields pass the same rule."""
    seen = {id(error)}
    cause = error.__cause__ or error.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        cause.args = redact(cause.args, secrets)
        for name, value in list(getattr(cause, "__dict__", {}).items()):
            masked = redact(value, secrets)
            if masked is not value:
                setattr(cause, name, masked)
        cause = cause.__cause__ or cause.__context__


def copied(error: ApiError) -> ApiError:
    """A copy of ``error``, its fields and its cause, to tell another request's story."""
    copy = _rebuild(type(error), error.message, error.__dict__.copy())
    copy.__cause__ = error.__cause__
    return copy


def _rebuild(cls: type[_E], message: str, state: dict[str, Any]) -> _E:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class RateLimitError(ApiError):
    kind = "rate_limit"
    retryable = True


class ServerError(ApiError):
    kind = "server"
    retryable = True
    breaker_failure = True


class OverloadedError(ServerError):
    pass


class MalformedResponseError(ApiError):
    kind = "malformed"
    retryable = True
    breaker_failure = True


class ResponseTooLargeError(MalformedResponseError):
    """A response body past ``max_response_bytes``, or a stream line (an
    SSE event) past ``max_stream_line_bytes``: reading stopped there, so
    memory stays bounded by the limit.  Not retried (the same request would
    get the same answer) and not a breaker failure (the service answered)."""

    retryable = False
    breaker_failure = False
    limit: int | None = None
    """The limit it went past, in bytes."""
    received: int | None = None
    """Bytes read when reading stopped: the limit plus at most one read (64 KiB)."""


def too_large(
    what: str, limit: int, received: int, setting: str, where: str = ""
) -> ResponseTooLargeError:
    """The error of ``what`` (a body, a line) that went past ``limit`` bytes, naming ``setting``."""
    error = ResponseTooLargeError(
        f"{what} larger than {setting} ({limit} bytes){' from ' + where if where else ''}; reading stopped after "
        f"{received} bytes; raise client.{setting} if such answers are expected"
    )
    error.limit, error.received = limit, received
    return error


class RequestTimeoutError(ApiError):
    kind = "timeout"
    retryable = True
    breaker_failure = True


class StreamStalledError(RequestTimeoutError):
    """A started stream sent no chunk for ``stream_stall_timeout`` seconds."""

    kind = "stream_stalled"


class DeadlineExceededError(RequestTimeoutError):
    retryable = False
    breaker_failure = False


class RateLimitDeadlineError(RateLimitError, DeadlineExceededError):
    """Every key that could serve the request is rate limited for its model
    until past the request's deadline: it fails at once instead of waiting.
    ``retry_after`` is when the first becomes free (seconds from now);
    ``model`` and ``key_name`` say which pair.  Caught as a
    :class:`RateLimitError` and as a :class:`DeadlineExceededError`."""

    kind = "rate_limit"
    retryable = False


class NetworkError(ApiError):
    kind = "network"
    retryable = True
    breaker_failure = True


class ConflictError(ApiError):
    kind = "conflict"
    retryable = True


class AuthenticationError(ApiError):
    kind = "authentication"


class PermissionDeniedError(AuthenticationError):
    pass


class NotFoundError(ApiError):
    kind = "not_found"


class InvalidRequestError(ApiError):
    kind = "invalid_request"


class InvalidInputError(InvalidRequestError, ValueError):
    """Refused before anything was sent: the message says what to change."""


class UnknownParameterError(InvalidInputError, TypeError):
    """A keyword argument that neither the method nor the provider's API
    knows (``chat(..., temprature=0)``): a ``TypeError``, as Python gives for
    an unexpected keyword, and an :class:`InvalidInputError` like every
    other refusal before sending."""


class CircuitOpenError(ApiError):
    kind = "circuit_open"


class QueueFullError(ApiError):
    kind = "queue_full"


class CancelledRequestError(ApiError):
    kind = "cancelled"


class BudgetExceededError(ApiError):
    """The client's budget (``max_cost`` dollars, ``max_tokens_total``
    tokens) is spent: no new request is admitted.  ``budget`` names the limit
    (``"max_cost"``, ``"max_tokens_total"``), ``limit`` and ``spent`` are its
    figures.  Raised at admission; requests already admitted finish."""

    kind = "budget"

    def __init__(
        self, message: str, *, budget: str = "", limit: float = 0.0, spent: float = 0.0, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.budget = budget
        self.limit = limit
        self.spent = spent


class ShutdownError(ApiError):
    kind = "shutdown"


class SettingError(ApiError, ValueError):
    kind = "setting"

    def __init__(self, setting: str, value: Any, expected: str) -> None:
        super().__init__(f"invalid value {value!r} for setting {setting!r}: expected {expected}")
        self.setting = setting
        self.value = value
        self.expected = expected


# ---------------------------------------------------------------- headers


def get_header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup over any mapping (dict, multidict)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lname = name.lower()
    for key, val in headers.items():
        if key.lower() == lname:
            return val
    return None


MAX_RETRY_AFTER = 86400.0
"""The longest wait :func:`parse_retry_after` reports (a day).  What a backend
believes is shorter: its ``max_retry_after`` setting (60 s by default, see
:func:`~.retry.believed_retry_after`); a longer wait is backed off from."""


def parse_retry_after(headers: Mapping[str, str] | None, wall_now: float) -> float | None:
    """Seconds the server asks us to wait, or None; at most :data:`MAX_RETRY_AFTER`.

    ``retry-after-ms`` first, then ``retry-after`` as seconds, then as an
    HTTP date (relative to ``wall_now``, epoch seconds).  Negative or
    unparsable values are ignored.
    """
    seconds = _retry_after_seconds(headers, wall_now)
    return None if seconds is None else min(seconds, MAX_RETRY_AFTER)


def _retry_after_seconds(headers: Mapping[str, str] | None, wall_now: float) -> float | None:
    raw = get_header(headers, "retry-after-ms")
    if raw is not None:
        try:
            ms = float(raw)
        except ValueError:
            ms = -1.0
        if ms >= 0 and ms == ms and ms != float("inf"):
            return ms / 1000.0
    raw = get_header(headers, "retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)  # surrounding spaces allowed, as by parsedate below
    except ValueError:
        seconds = None
    if seconds is not None:
        if seconds >= 0 and seconds == seconds and seconds != float("inf"):
            return seconds
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT, whatever zone this machine is in
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - wall_now)


def parse_should_retry(headers: Mapping[str, str] | None) -> bool | None:
    raw = get_header(headers, "x-should-retry")
    if raw is None:
        return None
    raw = raw.strip().lower()
    if raw == "true":
        return True
    if raw == "false":
        return False
    return None


# ---------------------------------------------------------------- classify

# Any other 4xx (400, 422, ...) is an InvalidRequestError, any other 5xx a ServerError.
_STATUS_TABLE: dict[int, type[ApiError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    429: RateLimitError,
    529: OverloadedError,
}


def _error_class_for(status: int) -> type[ApiError]:
    cls = _STATUS_TABLE.get(status)
    if cls is not None:
        return cls
    if status >= 500:
        return ServerError
    return InvalidRequestError


def provider_message(body: Any) -> str | None:
    """The human message inside a provider's error body, if it has one.

    Understands ``{"error": {"message": ...}}`` (OpenAI, Anthropic, Gemini),
    ``{"error": "..."}`` (Ollama, TGI), ``{"message": ...}`` and
    ``{"detail": ...}``; falls back to a short prefix of a text body.
    """
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8", "replace")
        except Exception:  # pragma: no cover - decode with replace cannot fail
            return None
    if isinstance(body, str):
        text = body.strip()
        if not text:
            return None
        try:
            body = json.loads(text)
        except ValueError:
            return text[:300]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            msg = err.get("message")
            if isinstance(msg, str):
                return msg
        if isinstance(err, str):
            return err
        for key in ("message", "detail"):
            msg = body.get(key)
            if isinstance(msg, str):
                return msg
    return None


def classify_status(
    status: int,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    *,
    wall_now: float,
    provider: str | None = None,
    request_id: str | None = None,
    attempt: int | None = None,
    message: str | None = None,
) -> ApiError:
    """Turn a non-2xx HTTP answer into its typed error."""
    cls = _error_class_for(status)
    text = message or provider_message(body) or f"HTTP {status}"
    error = cls(
        text,
        provider=provider,
        status=status,
        request_id=request_id or get_header(headers, "x-request-id"),
        retry_after=parse_retry_after(headers, wall_now),
        attempt=attempt,
        should_retry=parse_should_retry(headers),
        body=body,
    )
    if status == 429 and quota_exhausted(body):
        error.key_wide = True
    return error


_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "quota_exceeded"})


def quota_exhausted(body: Any) -> bool:
    """Whether a 429's body says the key's quota is spent rather than a rate
    reached: OpenAI's ``insufficient_quota`` code or type, or a Gemini
    ``QuotaFailure`` none of whose violated quotas is per model.  Such a limit
    is the whole key's, whatever model is asked for."""
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except ValueError:
            return False
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    if any(
        isinstance(error.get(field), str) and error[field] in _QUOTA_CODES
        for field in ("code", "type")
    ):
        return True
    details = error.get("details")
    if not isinstance(details, list):
        return False
    quota_ids = [
        str(violation.get("quotaId", ""))
        for detail in details
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("QuotaFailure")
        for violation in detail.get("violations") or ()
        if isinstance(violation, dict)
    ]
    return bool(quota_ids) and not any("PerModel" in quota_id for quota_id in quota_ids)


def classify_exception(
    exc: BaseException,
    *,
    provider: str | None = None,
    request_id: str | None = None,
    attempt: int | None = None,
) -> ApiError:
    """Turn a transport-level exception into its typed error.

    Transports translate their own exceptions at their boundary into
    :class:`NetworkError` / :class:`RequestTimeoutError`; this handles
    whatever else reaches the engine.
    """
    if isinstance(exc, ApiError):
        if attempt is not None and exc.attempt is None:
            exc.attempt = attempt
        return exc
    kind: type[ApiError]
    # on 3.10 asyncio's and concurrent.futures' TimeoutError are not the builtin
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError":
        kind, message = RequestTimeoutError, f"attempt timed out: {type(exc).__name__}"
    elif isinstance(exc, (ConnectionError, OSError, EOFError)):
        kind, message = NetworkError, f"{type(exc).__name__}: {exc}"
    elif isinstance(exc, (ValueError, KeyError, TypeError)):
        kind = MalformedResponseError
        message = f"could not read the response: {type(exc).__name__}: {exc}"
    else:
        kind, message = NetworkError, f"{type(exc).__name__}: {exc}"
    return kind(message, provider=provider, request_id=request_id, attempt=attempt)
