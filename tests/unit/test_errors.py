"""Typed errors: the status table, header parsing, messages, pickling."""

from __future__ import annotations

import email.utils
import os
import pickle
import time

import pytest

from ipfs_accelerate_py.resilience import errors as errors_module
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    AuthenticationError,
    CancelledRequestError,
    CircuitOpenError,
    ConflictError,
    DeadlineExceededError,
    InvalidInputError,
    InvalidRequestError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    QueueFullError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SettingError,
    ShutdownError,
    UnknownParameterError,
    classify_exception,
    classify_status,
    get_header,
    parse_retry_after,
    parse_should_retry,
    provider_message,
)

WALL = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT


def http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


# ---------------------------------------------------------------- the status table


@pytest.mark.parametrize(
    "status, cls, kind, retryable, breaker_failure",
    [
        (400, InvalidRequestError, "invalid_request", False, False),
        (401, AuthenticationError, "authentication", False, False),
        (403, PermissionDeniedError, "authentication", False, False),
        (404, NotFoundError, "not_found", False, False),
        (408, RequestTimeoutError, "timeout", True, True),
        (409, ConflictError, "conflict", True, False),
        (413, InvalidRequestError, "invalid_request", False, False),
        (422, InvalidRequestError, "invalid_request", False, False),
        (429, RateLimitError, "rate_limit", True, False),
        (500, ServerError, "server", True, True),
        (502, ServerError, "server", True, True),
        (503, ServerError, "server", True, True),
        (504, ServerError, "server", True, True),
        (529, OverloadedError, "server", True, True),
        (599, ServerError, "server", True, True),
    ],
)
def test_status_table(status, cls, kind, retryable, breaker_failure):
    err = classify_status(status, wall_now=WALL)
    assert type(err) is cls
    assert (err.kind, err.retryable, err.breaker_failure, err.status) == (
        kind,
        retryable,
        breaker_failure,
        status,
    )
    assert isinstance(err, ApiError)


@pytest.mark.parametrize(
    "cls, kind, retryable, breaker_failure, bases",
    [
        (DeadlineExceededError, "timeout", False, False, (RequestTimeoutError,)),
        (InvalidInputError, "invalid_request", False, False, (InvalidRequestError, ValueError)),
        (UnknownParameterError, "invalid_request", False, False, (InvalidInputError, TypeError)),
        (SettingError, "setting", False, False, (ValueError,)),
        (MalformedResponseError, "malformed", True, True, ()),
        (NetworkError, "network", True, True, ()),
        (CircuitOpenError, "circuit_open", False, False, ()),
        (QueueFullError, "queue_full", False, False, ()),
        (CancelledRequestError, "cancelled", False, False, ()),
        (ShutdownError, "shutdown", False, False, ()),
        (OverloadedError, "server", True, True, (ServerError,)),
    ],
)
def test_class_attributes(cls, kind, retryable, breaker_failure, bases):
    assert (cls.kind, cls.retryable, cls.breaker_failure) == (kind, retryable, breaker_failure)
    assert issubclass(cls, ApiError)
    for base in bases:
        assert issubclass(cls, base)


def test_classify_status_fields():
    headers = {"X-Request-ID": "req_42", "Retry-After": "7", "x-should-retry": "false"}
    body = {"error": {"message": "The server is overloaded", "type": "server_error"}}
    err = classify_status(503, headers, body, wall_now=WALL, provider="openai", attempt=3)
    assert err.message == "The server is overloaded"
    assert (err.provider, err.status, err.request_id, err.attempt) == ("openai", 503, "req_42", 3)
    assert err.retry_after == 7.0
    assert err.should_retry is False
    assert err.body is body


@pytest.mark.parametrize(
    "kwargs, body, expected",
    [
        ({"message": "explicit"}, {"error": {"message": "from body"}}, "explicit"),
        ({}, {"error": {"message": "from body"}}, "from body"),
        ({}, None, "HTTP 418"),
        ({}, "", "HTTP 418"),
    ],
)
def test_classify_status_message(kwargs, body, expected):
    assert classify_status(418, None, body, wall_now=WALL, **kwargs).message == expected


def test_explicit_request_id_beats_header():
    err = classify_status(500, {"x-request-id": "hdr"}, None, wall_now=WALL, request_id="mine")
    assert err.request_id == "mine"


# ---------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # ms first
        ({"Retry-After-Ms": "250"}, 0.25),
        ({"retry-after-ms": "-1", "retry-after": "2"}, 2.0),  # negative ms ignored
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),  # garbage ms ignored
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after": "12"}, 12.0),
        ({"Retry-After": " 3 "}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": http_date(WALL + 30)}, 30.0),
        ({"retry-after": http_date(WALL - 3600)}, 0.0),  # a date in the past: no wait
        ({"retry-after": "-5"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "Wed, 99 Foo 2015 07:28:00 GMT"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers, WALL) == expected


def test_retry_after_date_is_relative_to_wall_now():
    headers = {"retry-after": http_date(WALL + 30)}
    assert parse_retry_after(headers, WALL + 10) == 20.0


@pytest.fixture
def eastern_time_zone():
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available")
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_retry_after_date_without_zone_is_gmt(eastern_time_zone):
    headers = {"retry-after": email.utils.formatdate(WALL + 30)}  # ends in "-0000"
    assert headers["retry-after"].endswith("-0000")
    assert parse_retry_after(headers, WALL) == 30.0


# ---------------------------------------------------------------- x-should-retry, headers


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"x-should-retry": "true"}, True),
        ({"X-Should-Retry": "TRUE"}, True),
        ({"x-should-retry": " false "}, False),
        ({"x-should-retry": "1"}, None),
        ({"x-should-retry": ""}, None),
        ({}, None),
        (None, None),
    ],
)
def test_parse_should_retry(headers, expected):
    assert parse_should_retry(headers) is expected


def test_get_header_is_case_insensitive():
    headers = {"Content-Type": "application/json"}
    assert get_header(headers, "content-type") == "application/json"
    assert get_header(headers, "CONTENT-TYPE") == "application/json"
    assert get_header(headers, "x-missing") is None
    assert get_header(None, "x") is None


# ---------------------------------------------------------------- provider messages


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"error": {"message": "bad key", "type": "invalid_request_error"}}, "bad key"),  # OpenAI
        (
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "Overloaded",
        ),  # Anthropic
        (
            {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}},
            "Quota exceeded",
        ),  # Gemini
        ({"error": "model 'x' not found"}, "model 'x' not found"),  # Ollama, TGI
        ({"message": "plain"}, "plain"),
        ({"detail": "Not Found"}, "Not Found"),  # FastAPI style
        ('{"error": {"message": "in a string"}}', "in a string"),
        (b'{"error": "in bytes"}', "in bytes"),
        ("upstream connect error", "upstream connect error"),
        ("x" * 500, "x" * 300),  # a text body is cut short
        (b"\xff\xfe broken", "\ufffd\ufffd broken"),
        ({"error": {"code": 1}}, None),
        ({"detail": [{"loc": ["body"]}]}, None),
        ("   ", None),
        (None, None),
        (42, None),
        ([{"error": "a list"}], None),
    ],
)
def test_provider_message(body, expected):
    assert provider_message(body) == expected


# ---------------------------------------------------------------- str, repr, pickling


def test_str_contains_every_field():
    err = RateLimitError(
        "Rate limit reached",
        provider="groq",
        status=429,
        request_id="req_1",
        retry_after=1.5,
        attempt=2,
    )
    assert (
        str(err)
        == "[groq HTTP 429] Rate limit reached (retry after 1.5s, attempt 2, request req_1)"
    )
    assert repr(err) == f"RateLimitError({str(err)!r})"


@pytest.mark.parametrize(
    "err, expected",
    [
        (ApiError("plain"), "plain"),
        (NetworkError("reset", provider="ollama"), "[ollama] reset"),
        (ServerError("boom", status=500), "[HTTP 500] boom"),
        (RateLimitError("wait", retry_after=0.0), "wait (retry after 0s)"),
        (ApiError("x", attempt=1), "x (attempt 1)"),
    ],
)
def test_str_minimal_forms(err, expected):
    assert str(err) == expected


@pytest.mark.parametrize(
    "err",
    [
        classify_status(
            429,
            {"retry-after": "2", "x-request-id": "r9", "x-should-retry": "true"},
            {"error": {"message": "slow down"}},
            wall_now=WALL,
            provider="openai",
            attempt=1,
        ),
        OverloadedError("overloaded", status=529, provider="claude"),
        DeadlineExceededError("deadline", retry_after=12.0),
        InvalidInputError("messages must not be empty"),
        SettingError("max_retries", -1, "an integer >= 0"),
    ],
)
def test_pickle_round_trip(err):
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err)
    assert copy.__dict__ == err.__dict__
    assert str(copy) == str(err)
    assert copy.args == err.args


def test_setting_error_names_the_setting():
    err = SettingError("queue_size", 0, "an integer >= 1")
    assert (err.setting, err.value) == ("queue_size", 0)
    assert str(err) == "invalid value 0 for setting 'queue_size': expected an integer >= 1"
    assert isinstance(err, ValueError)


# ---------------------------------------------------------------- exceptions from the transport


@pytest.mark.parametrize(
    "exc, cls",
    [
        (TimeoutError(), RequestTimeoutError),
        (ConnectionResetError("reset by peer"), NetworkError),
        (ConnectionRefusedError(), NetworkError),
        (OSError("no route"), NetworkError),
        (EOFError(), NetworkError),
        (ValueError("bad json"), MalformedResponseError),
        (KeyError("choices"), MalformedResponseError),
        (RuntimeError("odd"), NetworkError),
    ],
)
def test_classify_exception(exc, cls):
    err = classify_exception(exc, provider="vllm", attempt=2, request_id="r")
    assert type(err) is cls
    assert (err.provider, err.attempt, err.request_id) == ("vllm", 2, "r")
    assert type(exc).__name__ in err.message


def test_classify_exception_keeps_an_api_error_and_fills_attempt():
    err = ServerError("boom", status=500)
    assert classify_exception(err, attempt=4) is err and err.attempt == 4
    classify_exception(err, attempt=9)
    assert err.attempt == 4  # never overwritten


def test_all_is_sorted_and_importable():
    names = errors_module.__all__
    assert list(names) == sorted(names)
    for name in names:
        assert hasattr(errors_module, name)
