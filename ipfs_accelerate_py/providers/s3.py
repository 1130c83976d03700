"""S3 through boto3: operations as boto3 calls, S3 error codes as typed errors.

S3 is not JSON over HTTP: a request here is a boto3 client call that the
:class:`~ipfs_accelerate_py.transport.boto3_transport.Boto3Transport` makes.
``build_request(endpoint, data)`` takes the endpoint as the boto3 method
name (``"put_object"``) and ``data`` as its keyword arguments
(``{"Bucket": ..., "Key": ..., "Body": ...}``); ``HttpRequest.url`` is
``s3://bucket/key``, for messages only.  Credentials and the endpoint URL
live in the transport's client, not in each request.

Errors come as HTTP status, headers and S3's error dict (``Code``,
``Message``).  The code decides where it is more precise than the status:
``SlowDown`` (503) and the throttling codes are rate limits (retried, not a
breaker failure), ``NoSuchKey``/``NoSuchBucket`` not found, ``AccessDenied``
permission denied, ``InvalidAccessKeyId``/``SignatureDoesNotMatch``
authentication, ``RequestTimeout`` (400) a retryable timeout; otherwise the
status decides (404, 403, 5xx, ...).  The code also says whether a retry can
help where the status alone would say otherwise (``should_retry``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..resilience.errors import (
    ApiError,
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    classify_status,
    get_header,
)
from ..transport.base import HttpRequest, HttpResponse
from ..transport.boto3_transport import FileBody
from .base import ProviderSpec, Wire, retyped

__all__ = ["S3", "S3Wire", "US_EAST_1"]

US_EAST_1 = "us-east-1"
"""The region whose buckets take no ``LocationConstraint``."""

S3 = ProviderSpec(
    name="s3",
    default_base_url="https://s3.amazonaws.com",
    key_env=("S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID"),
    requires_key=False,  # boto3 finds credentials of its own (profiles, instance roles)
)

# Where S3's error code says more than the HTTP status: (error class, may a retry help?).
_CODES: dict[str, tuple[type[ApiError], bool | None]] = {
    "SlowDown": (RateLimitError, True),
    "Throttling": (RateLimitError, True),
    "ThrottlingException": (RateLimitError, True),
    "RequestLimitExceeded": (RateLimitError, True),
    "TooManyRequests": (RateLimitError, True),
    "TooManyRequestsException": (RateLimitError, True),
    "RequestThrottled": (RateLimitError, True),
    "NoSuchKey": (NotFoundError, False),
    "NoSuchBucket": (NotFoundError, False),
    "NoSuchUpload": (NotFoundError, False),
    "NoSuchVersion": (NotFoundError, False),
    "NotFound": (NotFoundError, False),
    "AccessDenied": (PermissionDeniedError, False),
    "AllAccessDisabled": (PermissionDeniedError, False),
    "InvalidAccessKeyId": (AuthenticationError, False),
    "SignatureDoesNotMatch": (AuthenticationError, False),
    "ExpiredToken": (AuthenticationError, False),
    "InvalidToken": (AuthenticationError, False),
    "RequestTimeout": (RequestTimeoutError, True),  # 400: the socket was not read in time
    "RequestTimeTooSkewed": (AuthenticationError, False),
    "BucketAlreadyExists": (InvalidRequestError, False),  # 409s that waiting cannot fix
    "BucketAlreadyOwnedByYou": (InvalidRequestError, False),
    "BucketNotEmpty": (InvalidRequestError, False),
    "OperationAborted": (ConflictError, True),
    "InternalError": (ServerError, True),
    "ServiceUnavailable": (ServerError, True),
}


_SAFE_ERROR_FIELDS = ("Code", "Message", "RequestId", "BucketName", "Key", "Resource")
"""What an error keeps of S3's error dict (never ``AWSAccessKeyId``, ``StringToSign``, ...)."""


def s3_url(operation: Mapping[str, Any]) -> str:
    """``s3://bucket/key`` (or less) for messages."""
    bucket, key = operation.get("Bucket"), operation.get("Key")
    if not bucket:
        return "s3://"
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"


def check_name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(
            f"{what} must be a non-empty string, not {value!r}", provider=S3.name
        )
    return value


def check_body(body: Any) -> Any:
    """Bytes to send, or a :class:`FileBody`; a ``str`` is not a body (it would be a path)."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, FileBody):
        return body
    raise InvalidInputError(
        f"an object body must be bytes or a file path, not {type(body).__name__}", provider=S3.name
    )


class S3Wire(Wire):
    """Builds boto3 calls and reads their answers."""

    # ------------------------------------------------------------ requests

    def endpoint_path(self, endpoint: str) -> str:
        method = endpoint.strip()
        if not method.isidentifier() or method.startswith("_"):
            raise InvalidInputError(
                f"an S3 endpoint is a boto3 client method such as 'put_object', not {endpoint!r}",
                provider=self.name,
            )
        return method

    def build_request(
        self,
        endpoint: str,
        data: Mapping[str, Any] | None,
        *,
        timeout: float | None,
        stream: bool = False,
        extra_headers: Any = (),
        extra_query: Any = (),
        **_: Any,
    ) -> HttpRequest:
        """The boto3 call: ``method`` the client method, ``operation`` its
        arguments (the key and the endpoint URL are the transport's client's).
        boto3 signs what it sends: extra headers or query cannot be added."""
        if stream:
            raise InvalidInputError(
                "S3 operations do not stream; read the object with download_file",
                provider=self.name,
            )
        if extra_headers or extra_query:
            raise InvalidInputError(
                "S3 operations take no extra_headers or extra_query (boto3 signs the request)",
                provider=self.name,
            )
        operation = dict(data or {})
        return HttpRequest(
            self.endpoint_path(endpoint), s3_url(operation), timeout=timeout, operation=operation
        )

    # ----------------------------------------------------------- responses

    def parse_response(self, endpoint: str, response: HttpResponse) -> Any:
        if response.value is None:
            raise MalformedResponseError(
                f"{endpoint} answered HTTP {response.status} with no result",
                provider=self.name,
                status=response.status,
            )
        return response.value

    def error_for(self, response: HttpResponse, *, wall_now: float, attempt: int) -> ApiError:
        error = response.value if isinstance(response.value, Mapping) else {}
        code = str(error.get("Code") or response.status)
        text = str(error.get("Message") or "").strip()
        message = (
            f"{code}: {text}"
            if text and not code.isdigit()
            else (text or f"HTTP {response.status}")
        )
        request_id = error.get("RequestId") or get_header(response.headers, "x-amz-request-id")
        base = classify_status(
            response.status,
            response.headers,
            None,
            wall_now=wall_now,
            provider=self.name,
            request_id=request_id,
            attempt=attempt,
            message=message,
        )
        cls, should_retry = _CODES.get(code, (type(base), None))
        if base.should_retry is not None:  # the server's own x-should-retry header wins
            should_retry = base.should_retry
        body = {k: error[k] for k in _SAFE_ERROR_FIELDS if k in error} or None
        return retyped(base, cls, should_retry=should_retry, body=body)

    def usage(self, result: Any) -> tuple[int, int]:
        return 0, 0

    # ---------------------------------------------------------- operations

    def put_object_request(
        self, bucket: str, key: str, body: Any, extra: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return "put_object", {
            "Bucket": check_name("bucket", bucket),
            "Key": check_name("key", key),
            "Body": check_body(body),
            **extra,
        }

    def get_object_request(
        self, bucket: str, key: str, extra: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return "get_object", {
            "Bucket": check_name("bucket", bucket),
            "Key": check_name("key", key),
            **extra,
        }

    def head_object_request(self, bucket: str, key: str) -> tuple[str, dict[str, Any]]:
        return "head_object", {
            "Bucket": check_name("bucket", bucket),
            "Key": check_name("key", key),
        }

    def delete_object_request(self, bucket: str, key: str) -> tuple[str, dict[str, Any]]:
        return "delete_object", {
            "Bucket": check_name("bucket", bucket),
            "Key": check_name("key", key),
        }

    def list_objects_request(
        self, bucket: str, prefix: str | None, token: str | None, extra: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """One page of ``list_objects_v2``; ``token`` continues a listing."""
        data = {"Bucket": check_name("bucket", bucket), **extra}
        if prefix:
            data["Prefix"] = check_name("prefix", prefix)
        if token:
            data["ContinuationToken"] = token
        return "list_objects_v2", data

    def next_page_token(self, page: Mapping[str, Any], token: str | None) -> str | None:
        """The token of the page after ``page`` (fetched with ``token``), or
        None at the end; a listing that cannot advance is malformed."""
        if not page.get("IsTruncated"):
            return None
        following = page.get("NextContinuationToken")
        if not following or following == token:
            raise MalformedResponseError(
                "list_objects_v2 says IsTruncated but gives no new NextContinuationToken",
                provider=self.name,
            )
        return str(following)

    def create_bucket_request(self, bucket: str, region: str | None) -> tuple[str, dict[str, Any]]:
        data: dict[str, Any] = {"Bucket": check_name("bucket", bucket)}
        if region and region != US_EAST_1:
            data["CreateBucketConfiguration"] = {"LocationConstraint": region}
        return "create_bucket", data

    def list_buckets_request(self) -> tuple[str, dict[str, Any]]:
        return "list_buckets", {}
