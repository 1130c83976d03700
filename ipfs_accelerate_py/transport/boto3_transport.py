"""The boto3 transport: S3 (any S3-compatible endpoint) behind the same seam.

A request names a client method and its arguments: ``request.method`` is a
boto3 client method (``"put_object"``, ``"list_objects_v2"``, ...) and
``request.operation`` its keyword arguments; ``request.url`` (``s3://bucket/
key``) is only for messages.  :meth:`Boto3Transport.send` runs the call in
its own bounded thread pool (boto3 blocks) and answers an
:class:`HttpResponse`:

- success: ``status`` and ``headers`` from boto3's ``ResponseMetadata``,
  ``value`` the result dict (a ``get_object`` body already read to bytes, in
  the worker thread);
- a service error (botocore ``ClientError``): the error's HTTP status and
  headers, ``value`` the error dict (``Code``, ``Message``), so the engine
  classifies and retries it like any other HTTP answer;
- no answer at all: translated here, at this one boundary --
  connection failures to :class:`NetworkError`, timeouts to
  :class:`RequestTimeoutError`, missing credentials to
  :class:`AuthenticationError`, bad parameters to :class:`InvalidInputError`.

Retries are the engine's: botocore's own are off (one attempt per call).
The request's ``timeout`` bounds each call exactly (an asyncio bound); the
client's connect/read timeouts are a backstop rounded up to a power of two,
so a handful of clients serve every timeout.  A call that overruns its bound
is abandoned, not interrupted: its worker finishes in the background.

A body given as :class:`FileBody` is opened in the worker thread at every
attempt, so a retried upload sends the whole file again.

boto3 is an optional dependency (the ``s3`` extra), imported when the first
transport is made: this module imports without it, and a transport made
without it says how to install it.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any, BinaryIO

from ..resilience.errors import (
    ApiError,
    AuthenticationError,
    InvalidInputError,
    MalformedResponseError,
    NetworkError,
    RequestTimeoutError,
    SettingError,
)
from .base import HttpRequest, HttpResponse

# boto3 (the optional "s3" extra) is imported when the first transport is made:
# it costs ~0.15 s, which importing this package should not.
boto3: Any = None
botocore_config: Any = None
boto_errors: Any = None

__all__ = ["Boto3Transport", "FileBody", "S3ClientConfig", "DEFAULT_MAX_WORKERS", "DEFAULT_TIMEOUT"]

DEFAULT_MAX_WORKERS = 64
"""Most worker threads (and pooled connections) per transport; both are made
only as calls need them, so the engine's max_concurrent_requests is the bound
in practice (s3_kit raises this to it when it is higher)."""
DEFAULT_TIMEOUT = 60.0
"""Connect/read timeout of a call made without a request timeout (a presign makes none)."""
ADDRESSING_STYLES = ("auto", "path", "virtual")
CHECKSUM_MODE = "when_required"
"""Checksums only where S3 requires them: third-party S3 servers do not all
accept the newer default (aws-chunked bodies with trailing checksums)."""
SIGNATURE_VERSION = "s3v4"
"""SigV4 for calls and presigned URLs alike (SigV2 is deprecated; every S3 server speaks v4)."""
_MAX_CLIENTS = 8
INSTALL_HINT = (
    "the s3_kit backend needs boto3: pip install 'ipfs_accelerate_py[s3]' (or pip install boto3)"
)


@dataclass(frozen=True)
class FileBody:
    """A request body read from a file, opened afresh in the worker thread at each attempt."""

    path: str

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise InvalidInputError(f"FileBody needs a file path, not {self.path!r}")


@dataclass(frozen=True)
class S3ClientConfig:
    """Where and as whom the boto3 client talks.  ``None`` leaves a value to
    boto3's own chain (``~/.aws``, instance roles, ...).  The repr never
    shows a credential (``***``).  ``max_workers`` is read when the first
    call makes the thread pool."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    addressing_style: str = "auto"
    max_workers: int = DEFAULT_MAX_WORKERS

    def __post_init__(self) -> None:
        for name in ("endpoint_url", "region", "access_key", "secret_key", "session_token"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise SettingError(
                    name,
                    "<not shown>" if "key" in name or "token" in name else value,
                    "a non-empty string or None",
                )
        if self.endpoint_url is not None and not self.endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise SettingError("endpoint_url", self.endpoint_url, "an http:// or https:// URL")
        if self.addressing_style not in ADDRESSING_STYLES:
            raise SettingError(
                "addressing_style", self.addressing_style, f"one of {', '.join(ADDRESSING_STYLES)}"
            )
        if (
            isinstance(self.max_workers, bool)
            or not isinstance(self.max_workers, int)
            or self.max_workers < 1
        ):
            raise SettingError("max_workers", self.max_workers, "a whole number >= 1")
        if (self.access_key is None) != (self.secret_key is None):
            raise SettingError(
                "secret_key", "<not shown>", "an access key and a secret key together (or neither)"
            )

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("access_key", "secret_key", "session_token"):
                value = None if value is None else "***"
            shown.append(f"{f.name}={value!r}")
        return f"S3ClientConfig({', '.join(shown)})"


def require_boto3() -> None:
    """Import boto3 on first use; an ``ImportError`` that says how to install it."""
    global boto3, botocore_config, boto_errors
    if boto3 is not None:
        return
    try:
        import boto3 as boto3_module
        import botocore.config as config_module
        import botocore.exceptions as errors_module
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    botocore_config, boto_errors = config_module, errors_module
    boto3 = boto3_module  # last: whoever sees it set sees the others set


class Boto3Transport:
    """Runs boto3 client calls on a bounded thread pool; one client per
    timeout bucket, created lazily (and afresh in a forked child)."""

    def __init__(self, config: S3ClientConfig | None = None, *, service: str = "s3") -> None:
        require_boto3()
        self._config = config or S3ClientConfig()
        self._service = service
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._clients: dict[float, Any] = {}
        self._executor: ThreadPoolExecutor | None = None

    @property
    def config(self) -> S3ClientConfig:
        return self._config

    def reconfigure(self, config: S3ClientConfig) -> None:
        """Use ``config`` from the next call on (calls in flight finish with the old client)."""
        with self._lock:
            self._config = config
            self._clients = {}

    # --------------------------------------------------------------- send

    async def send(self, request: HttpRequest) -> HttpResponse:
        if request.operation is None:
            raise InvalidInputError(
                f"{request!r} names no boto3 operation; it was not built for this transport"
            )
        executor = self._get_executor()
        loop = asyncio.get_running_loop()
        if (
            _timeout_bucket(request.timeout) not in self._clients
        ):  # made once, outside the attempt's time
            try:
                await loop.run_in_executor(executor, self._client, request.timeout)
            except BaseException as exc:
                raise _translate(exc, request) from exc
        call = loop.run_in_executor(executor, self._invoke, request)
        try:
            if request.timeout is None:
                return await call
            return await asyncio.wait_for(call, request.timeout)
        except BaseException as exc:
            raise _translate(exc, request) from exc

    async def aclose(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
            clients, self._clients = self._clients, {}
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        for client in clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()

    # ------------------------------------------------------------ presign

    def presign(self, method: str, params: Mapping[str, Any], expires: int) -> str:
        """A presigned URL for ``method`` with ``params``, valid ``expires``
        seconds: computed locally from the credentials, no request is made."""
        try:
            client = self._client(None)
            _client_method(client, method)
            url: str = client.generate_presigned_url(
                ClientMethod=method, Params=dict(params), ExpiresIn=expires
            )
            return url
        except BaseException as exc:
            raise _translate(exc, None) from exc

    # --------------------------------------------------------- internals

    def _get_executor(self) -> ThreadPoolExecutor:
        if (
            self._pid != os.getpid()
        ):  # a forked child: the parent's threads and sockets are not ours
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._clients, self._executor = {}, None
        executor = self._executor
        if executor is None:
            executor = ThreadPoolExecutor(
                self._config.max_workers, thread_name_prefix="ipfs-accelerate-boto3"
            )
            self._executor = executor
        return executor

    def _client(self, timeout: float | None) -> Any:
        bucket = _timeout_bucket(timeout)
        with self._lock:
            client = self._clients.get(bucket)
            config = self._config
        if client is not None:
            return client
        client = _make_client(config, self._service, bucket)
        with self._lock:
            if self._config is not config:  # reconfigured meanwhile: serve this call, keep nothing
                return client
            if len(self._clients) >= _MAX_CLIENTS:
                self._clients.clear()
            return self._clients.setdefault(bucket, client)

    def _invoke(self, request: HttpRequest) -> HttpResponse:
        """(worker thread) One boto3 call: its answer, or its exception raised."""
        client = self._client(request.timeout)
        method = _client_method(client, request.method)
        kwargs, opened = _open_files(request.operation or {})
        try:
            try:
                result = method(**kwargs)
            except boto_errors.ClientError as exc:
                return _error_response(exc)
            _read_body(result)
        finally:
            for handle in opened:
                handle.close()
        meta = result.get("ResponseMetadata", {}) if isinstance(result, dict) else {}
        return HttpResponse(
            int(meta.get("HTTPStatusCode", 200)), dict(meta.get("HTTPHeaders", {})), b"", result
        )


def _timeout_bucket(timeout: float | None) -> float:
    """The client timeout serving ``timeout``: the next power of two, at least 1 s."""
    if timeout is None or timeout <= 0:
        return DEFAULT_TIMEOUT
    return float(2 ** max(0, math.ceil(math.log2(timeout))))


_session_lock = threading.Lock()
_sessions: list[
    Any
] = []  # one boto3 Session per process: it caches the service models (a new one costs ~0.15 s per client)


def _reset_after_fork() -> None:
    global _session_lock
    _session_lock = threading.Lock()
    _sessions.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _make_client(config: S3ClientConfig, service: str, timeout: float) -> Any:
    """A client with this config's credentials (made under a lock: a boto3 Session is not thread-safe)."""
    options = dict(
        # the engine retries, not botocore: one attempt in all ("max_attempts" would count retries, and 1 is one retry)
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=timeout,
        read_timeout=timeout,
        max_pool_connections=config.max_workers,
        s3={"addressing_style": config.addressing_style},
        signature_version=SIGNATURE_VERSION if service == "s3" else None,
    )
    try:
        client_config = botocore_config.Config(
            request_checksum_calculation=CHECKSUM_MODE,
            response_checksum_validation=CHECKSUM_MODE,
            **options,
        )
    except TypeError:  # botocore before 1.36 knows neither option (and needs neither)
        client_config = botocore_config.Config(**options)
    with _session_lock:
        if not _sessions:
            _sessions.append(boto3.session.Session())
        return _sessions[0].client(
            service,
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            aws_access_key_id=config.access_key,
            aws_secret_access_key=config.secret_key,
            aws_session_token=config.session_token,
            config=client_config,
        )


def _client_method(client: Any, name: str) -> Any:
    """The client's method for an API operation; never a helper like ``close``."""
    if name not in client.meta.method_to_api_mapping:
        raise InvalidInputError(
            f"{name!r} is not an operation of the {client.meta.service_model.service_name} API"
        )
    return getattr(client, name)


def _open_files(operation: Mapping[str, Any]) -> tuple[dict[str, Any], list[BinaryIO]]:
    kwargs, opened = dict(operation), list[BinaryIO]()
    try:
        for name, value in kwargs.items():
            if isinstance(value, FileBody):
                handle = open(value.path, "rb")  # noqa: SIM115 (closed by the caller after the call)
                opened.append(handle)
                kwargs[name] = handle
    except OSError as exc:
        for done in opened:
            done.close()
        raise InvalidInputError(f"cannot read {exc.filename!r} to upload: {exc.strerror}") from exc
    return kwargs, opened


def _read_body(result: Any) -> None:
    """A streamed body (``get_object``) becomes bytes, read in this thread."""
    body = result.get("Body") if isinstance(result, dict) else None
    if body is not None and hasattr(body, "read"):
        try:
            result["Body"] = body.read()
        finally:
            body.close()


def _error_response(exc: Any) -> HttpResponse:
    """A service error is an answer: its status, headers and error dict."""
    response = exc.response or {}
    meta = response.get("ResponseMetadata") or {}
    error = dict(response.get("Error") or {})
    status = int(meta.get("HTTPStatusCode") or 0)
    if not status:
        status = int(error["Code"]) if str(error.get("Code", "")).isdigit() else 500
    error.setdefault("Code", str(status))
    error.setdefault("Message", "")
    if meta.get("RequestId"):
        error.setdefault("RequestId", meta["RequestId"])
    return HttpResponse(status, dict(meta.get("HTTPHeaders") or {}), b"", error)


def _translate(exc: BaseException, request: HttpRequest | None) -> BaseException:
    """boto3's and asyncio's exceptions become ours here, and nowhere else."""
    where = request.url if request is not None else "S3"
    if isinstance(exc, (asyncio.CancelledError, ApiError)):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return RequestTimeoutError(
            f"no answer within {request.timeout}s from {where}" if request else "timed out"
        )
    if boto_errors is None or not isinstance(exc, boto_errors.BotoCoreError):
        return (
            NetworkError(f"{type(exc).__name__} talking to {where}: {exc}")
            if isinstance(exc, OSError)
            else exc
        )
    name = type(exc).__name__
    if isinstance(exc, (boto_errors.ReadTimeoutError, boto_errors.ConnectTimeoutError)):
        return RequestTimeoutError(f"{name} talking to {where}: {exc}")
    if isinstance(
        exc,
        (boto_errors.ConnectionError, boto_errors.HTTPClientError, boto_errors.IncompleteReadError),
    ):
        return NetworkError(f"{name} talking to {where}: {exc}")
    if isinstance(exc, (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError)):
        return AuthenticationError(
            f"no usable S3 credentials: {exc}; set s3cfg accessKey/secretKey or AWS_ACCESS_KEY_ID"
        )
    if isinstance(exc, (boto_errors.ParamValidationError, boto_errors.NoRegionError)):
        return InvalidInputError(f"{where}: {exc}")
    if isinstance(exc, (boto_errors.ChecksumError, boto_errors.FlexibleChecksumError)):
        return MalformedResponseError(f"{where}: {exc}")
    return ApiError(f"{name} talking to {where}: {exc}")
