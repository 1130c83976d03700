"""The S3 adapter, the boto3 transport's translation and ``s3_kit`` over the
in-memory transport: no network (tests/integration talks to a real S3 server)."""

from __future__ import annotations

import asyncio
import os

import pytest

pytest.importorskip("boto3")

import botocore.exceptions as boto_errors  # noqa: E402

from ipfs_accelerate_py.api_backends.s3_kit import s3_config_from, s3_kit  # noqa: E402
from ipfs_accelerate_py.engine.engine import key_fingerprint  # noqa: E402
from ipfs_accelerate_py.providers.s3 import S3, S3Wire  # noqa: E402
from ipfs_accelerate_py.resilience.errors import (  # noqa: E402
    ApiError,
    AuthenticationError,
    CircuitOpenError,
    ConflictError,
    InvalidInputError,
    InvalidRequestError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SettingError,
)
from ipfs_accelerate_py.resilience.retry import RetryOptions, is_retryable  # noqa: E402
from ipfs_accelerate_py.transport import boto3_transport as bt  # noqa: E402
from ipfs_accelerate_py.transport.base import HttpRequest, HttpResponse  # noqa: E402

from ..helpers import QUICK_RETRIES, ClientFactory, scripted  # noqa: E402

bt.require_boto3()
WIRE = S3Wire(S3)
ACCESS = "AKIAUNITTEST0000"
SECRET = "unit-secret-key-0123456789"
S3CFG = {
    "accessKey": ACCESS,
    "secretKey": SECRET,
    "endpoint": "http://s3.test.invalid",
    "region": "eu-west-1",
}


def s3_error(status, code, message="", headers=None):
    return HttpResponse(status, headers or {}, b"", {"Code": code, "Message": message})


def ok(value, status=200):
    return HttpResponse(status, {}, b"", dict(value, ResponseMetadata={"HTTPStatusCode": status}))


make_client = ClientFactory(s3_kit, defaults={"s3cfg": S3CFG, **QUICK_RETRIES}).in_memory


# ------------------------------------------------------------ requests


@pytest.mark.parametrize(
    "build, method, url, operation",
    [
        (
            lambda: WIRE.put_object_request("bkt", "a/b.txt", b"hi", {"ContentType": "text/plain"}),
            "put_object",
            "s3://bkt/a/b.txt",
            {"Bucket": "bkt", "Key": "a/b.txt", "Body": b"hi", "ContentType": "text/plain"},
        ),
        (
            lambda: WIRE.put_object_request("bkt", "k", bt.FileBody("/tmp/f"), {}),
            "put_object",
            "s3://bkt/k",
            {"Bucket": "bkt", "Key": "k", "Body": bt.FileBody("/tmp/f")},
        ),
        (
            lambda: WIRE.get_object_request("bkt", "k", {}),
            "get_object",
            "s3://bkt/k",
            {"Bucket": "bkt", "Key": "k"},
        ),
        (
            lambda: WIRE.head_object_request("bkt", "k"),
            "head_object",
            "s3://bkt/k",
            {"Bucket": "bkt", "Key": "k"},
        ),
        (
            lambda: WIRE.delete_object_request("bkt", "k"),
            "delete_object",
            "s3://bkt/k",
            {"Bucket": "bkt", "Key": "k"},
        ),
        (
            lambda: WIRE.list_objects_request("bkt", "p/", None, {}),
            "list_objects_v2",
            "s3://bkt",
            {"Bucket": "bkt", "Prefix": "p/"},
        ),
        (
            lambda: WIRE.list_objects_request("bkt", "", "tok", {"MaxKeys": 2}),
            "list_objects_v2",
            "s3://bkt",
            {"Bucket": "bkt", "MaxKeys": 2, "ContinuationToken": "tok"},
        ),
        (
            lambda: WIRE.create_bucket_request("bkt", "us-east-1"),
            "create_bucket",
            "s3://bkt",
            {"Bucket": "bkt"},
        ),
        (
            lambda: WIRE.create_bucket_request("bkt", "eu-west-1"),
            "create_bucket",
            "s3://bkt",
            {"Bucket": "bkt", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}},
        ),
        (lambda: WIRE.list_buckets_request(), "list_buckets", "s3://", {}),
    ],
)
def test_each_operation_builds_exactly_this_boto3_call(build, method, url, operation):
    endpoint, data = build()
    request = WIRE.build_request(
        endpoint, data, api_key=ACCESS, base_url="http://ignored", timeout=7.0, request_id="r1"
    )
    assert (request.method, request.url, request.operation, request.timeout) == (
        method,
        url,
        operation,
        7.0,
    )
    assert request.headers == {} and request.body is None
    assert ACCESS not in repr(request)


@pytest.mark.parametrize("endpoint", ["", "put object", "_make_api_call", "s3/put", "../x"])
def test_an_endpoint_must_be_a_public_boto3_method_name(endpoint):
    with pytest.raises(InvalidInputError, match="boto3 client method"):
        WIRE.build_request(endpoint, {}, api_key=None, base_url="", timeout=1.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: WIRE.put_object_request("", "k", b"x", {}),
        lambda: WIRE.put_object_request("b", None, b"x", {}),
        lambda: WIRE.put_object_request("b", "k", "a string is a path, not a body", {}),
        lambda: WIRE.put_object_request("b", "k", 42, {}),
        lambda: WIRE.build_request(
            "get_object", {}, api_key=None, base_url="", timeout=1.0, stream=True
        ),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_sent(call):
    with pytest.raises(InvalidInputError):
        call()


def test_listing_pages_follow_their_tokens_and_a_stuck_listing_is_malformed():
    assert WIRE.next_page_token({"IsTruncated": False}, None) is None
    assert WIRE.next_page_token({"IsTruncated": True, "NextContinuationToken": "t2"}, "t1") == "t2"
    for page in ({"IsTruncated": True}, {"IsTruncated": True, "NextContinuationToken": "t1"}):
        with pytest.raises(MalformedResponseError, match="NextContinuationToken"):
            WIRE.next_page_token(page, "t1")


# ------------------------------------------------------------ responses


def test_the_response_is_boto3s_result_dict():
    value = {"ETag": '"abc"', "ResponseMetadata": {"HTTPStatusCode": 200}}
    assert WIRE.parse_response("put_object", HttpResponse(200, {}, b"", value)) is value
    assert WIRE.usage(value) == (0, 0)
    with pytest.raises(MalformedResponseError):
        WIRE.parse_response("put_object", HttpResponse(200, {}, b"", None))


OPTIONS = RetryOptions()


@pytest.mark.parametrize(
    "status, code, cls, retried, breaker_failure",
    [
        (503, "SlowDown", RateLimitError, True, False),
        (400, "Throttling", RateLimitError, True, False),
        (400, "ThrottlingException", RateLimitError, True, False),
        (503, "RequestLimitExceeded", RateLimitError, True, False),
        (429, "TooManyRequests", RateLimitError, True, False),
        (404, "NoSuchKey", NotFoundError, False, False),
        (404, "NoSuchBucket", NotFoundError, False, False),
        (404, "404", NotFoundError, False, False),  # HEAD: no body, the status is the code
        (403, "AccessDenied", PermissionDeniedError, False, False),
        (403, "403", PermissionDeniedError, False, False),
        (403, "InvalidAccessKeyId", AuthenticationError, False, False),
        (403, "SignatureDoesNotMatch", AuthenticationError, False, False),
        (400, "RequestTimeout", RequestTimeoutError, True, True),
        (409, "BucketAlreadyOwnedByYou", InvalidRequestError, False, False),
        (409, "OperationAborted", ConflictError, True, False),
        (400, "InvalidBucketName", InvalidRequestError, False, False),
        (500, "InternalError", ServerError, True, True),
        (503, "ServiceUnavailable", ServerError, True, True),
        (502, "502", ServerError, True, True),
        (504, "GatewayTimeout", ServerError, True, True),
    ],
)
def test_s3_error_codes_map_to_typed_errors(status, code, cls, retried, breaker_failure):
    error = WIRE.error_for(s3_error(status, code, "the server said so"), wall_now=0.0, attempt=2)
    assert type(error) is cls
    assert error.status == status and error.attempt == 2 and error.provider == "s3"
    assert is_retryable(error, OPTIONS) is retried
    assert error.breaker_failure is breaker_failure
    assert "the server said so" in error.message
    if not code.isdigit():
        assert error.message.startswith(code)


def test_error_carries_s3_request_id_and_honours_retry_after_and_x_should_retry():
    response = s3_error(
        503,
        "SlowDown",
        "Please reduce your request rate.",
        {"x-amz-request-id": "RID1", "Retry-After": "2"},
    )
    error = WIRE.error_for(response, wall_now=0.0, attempt=1)
    assert (error.request_id, error.retry_after) == ("RID1", 2.0)
    assert (
        str(error)
        == "[s3 HTTP 503] SlowDown: Please reduce your request rate. (retry after 2s, attempt 1, request RID1)"
    )
    vetoed = WIRE.error_for(
        s3_error(503, "SlowDown", "", {"x-should-retry": "false"}), wall_now=0.0, attempt=1
    )
    assert is_retryable(vetoed, OPTIONS) is False


# ------------------------------------------------------------ config


@pytest.mark.parametrize(
    "metadata, environ, expected",
    [
        (
            {"s3cfg": dict(S3CFG, bucket="bkt")},
            {"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "x"},
            ("http://s3.test.invalid", "eu-west-1", ACCESS, SECRET, "bkt"),
        ),
        (
            {},
            {
                "S3_ACCESS_KEY": "SEEDKEY",
                "S3_SECRET_KEY": "s1",
                "AWS_ACCESS_KEY_ID": "AWSKEY",
                "AWS_SECRET_ACCESS_KEY": "s2",
                "S3_ENDPOINT": "http://seed:9000",
                "AWS_ENDPOINT_URL": "http://aws:9000",
            },
            ("http://seed:9000", None, "SEEDKEY", "s1", None),
        ),
        (
            {},
            {
                "AWS_ACCESS_KEY_ID": "AWSKEY",
                "AWS_SECRET_ACCESS_KEY": "s2",
                "AWS_ENDPOINT_URL": "http://aws:9000",
                "AWS_DEFAULT_REGION": "ap-south-1",
                "S3_BUCKET": "envbkt",
            },
            ("http://aws:9000", "ap-south-1", "AWSKEY", "s2", "envbkt"),
        ),
        (
            {"s3cfg": {"endpoint": "http://only-endpoint"}},
            {"S3_ENDPOINT_URL": "http://other"},
            ("http://only-endpoint", None, None, None, None),
        ),
        ({}, {"S3_ACCESS_KEY": "half-a-pair"}, (None, None, None, None, None)),
    ],
)
def test_config_comes_from_s3cfg_then_the_environment(metadata, environ, expected):
    config, bucket = s3_config_from(metadata, environ)
    assert (
        config.endpoint_url,
        config.region,
        config.access_key,
        config.secret_key,
        bucket,
    ) == expected


@pytest.mark.parametrize(
    "s3cfg",
    [
        {"accessKey": "only-the-key"},
        {"endpoint": "s3.example.com"},
        {"accessKey": "a", "secretKey": "b", "addressingStyle": "odd"},
    ],
)
def test_an_inconsistent_s3cfg_is_refused_naming_the_field(s3cfg):
    with pytest.raises(SettingError):
        s3_config_from({"s3cfg": s3cfg}, {})


def test_the_config_repr_never_shows_a_credential():
    config, _ = s3_config_from({"s3cfg": dict(S3CFG, sessionToken="tok-SECRET")}, {})
    text = repr(config)
    assert ACCESS not in text and SECRET not in text and "tok-SECRET" not in text
    assert "http://s3.test.invalid" in text


# ------------------------------------------------------------ transport


def test_timeouts_share_a_few_clients():
    assert [bt._timeout_bucket(t) for t in (None, 0.2, 1.0, 1.5, 30.0, 33.0)] == [
        bt.DEFAULT_TIMEOUT,
        1.0,
        1.0,
        2.0,
        32.0,
        64.0,
    ]


def _client_error(status, code, message, headers=None):
    return boto_errors.ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {
                "HTTPStatusCode": status,
                "HTTPHeaders": headers or {},
                "RequestId": "RID9",
            },
        },
        "GetObject",
    )


def test_a_client_error_becomes_an_answer_with_its_status_headers_and_error_dict():
    response = bt._error_response(
        _client_error(503, "SlowDown", "Reduce your request rate.", {"x-amz-request-id": "RID9"})
    )
    assert (response.status, response.headers, response.body) == (
        503,
        {"x-amz-request-id": "RID9"},
        b"",
    )
    assert response.value == {
        "Code": "SlowDown",
        "Message": "Reduce your request rate.",
        "RequestId": "RID9",
    }
    head = bt._error_response(
        boto_errors.ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")
    )
    assert head.status == 404


@pytest.mark.parametrize(
    "exc, cls",
    [
        (boto_errors.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), NetworkError),
        (boto_errors.ConnectionClosedError(endpoint_url="http://127.0.0.1:9"), NetworkError),
        (boto_errors.ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), RequestTimeoutError),
        (boto_errors.ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"), RequestTimeoutError),
        (boto_errors.ResponseStreamingError(error="reset"), NetworkError),
        (boto_errors.NoCredentialsError(), AuthenticationError),
        (
            boto_errors.ParamValidationError(report="Missing required parameter Key"),
            InvalidInputError,
        ),
        (boto_errors.FlexibleChecksumError(error_msg="crc mismatch"), MalformedResponseError),
        (asyncio.TimeoutError(), RequestTimeoutError),
        (ConnectionResetError("reset by peer"), NetworkError),
    ],
)
def test_failures_without_an_answer_are_translated_at_the_transport(exc, cls):
    request = HttpRequest("get_object", "s3://bkt/k", timeout=3.0, operation={})
    translated = bt._translate(exc, request)
    assert type(translated) is cls
    assert isinstance(translated, ApiError)


def test_a_bug_is_not_disguised_as_a_service_error():
    bug = KeyError("oops")
    assert bt._translate(bug, None) is bug


async def test_the_transport_refuses_what_is_not_an_s3_operation(tmp_path):
    transport = bt.Boto3Transport(
        bt.S3ClientConfig(
            endpoint_url="http://127.0.0.1:9", region="us-east-1", access_key="a", secret_key="b"
        )
    )
    try:
        with pytest.raises(InvalidInputError, match="not an operation"):
            await transport.send(HttpRequest("close", "s3://", timeout=1.0, operation={}))
        with pytest.raises(InvalidInputError, match="Missing required parameter"):
            await transport.send(
                HttpRequest("put_object", "s3://bkt", timeout=1.0, operation={"Bucket": "bkt"})
            )
        with pytest.raises(InvalidInputError, match="cannot read"):
            missing = bt.FileBody(str(tmp_path / "missing.bin"))
            await transport.send(
                HttpRequest(
                    "put_object",
                    "s3://bkt/k",
                    timeout=1.0,
                    operation={"Bucket": "bkt", "Key": "k", "Body": missing},
                )
            )
        with pytest.raises(InvalidInputError, match="names no boto3 operation"):
            await transport.send(HttpRequest("GET", "http://x/"))
    finally:
        await transport.aclose()


def test_presigning_is_local_and_signed_with_sigv4():
    transport = bt.Boto3Transport(
        bt.S3ClientConfig(
            endpoint_url="http://127.0.0.1:9",
            region="us-east-1",
            access_key=ACCESS,
            secret_key=SECRET,
        )
    )
    url = transport.presign("get_object", {"Bucket": "bkt", "Key": "a b.txt"}, 60)
    assert (
        url.startswith("http://127.0.0.1:9/bkt/a%20b.txt?")
        and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    )
    assert "X-Amz-Expires=60" in url and SECRET not in url
    asyncio.run(transport.aclose())


# ------------------------------------------------------------ backend over MemoryTransport


def test_list_objects_sends_one_request_per_page_and_joins_them():
    pages = {
        None: {
            "IsTruncated": True,
            "NextContinuationToken": "t1",
            "Contents": [{"Key": "p/1"}],
            "CommonPrefixes": [{"Prefix": "p/d/"}],
        },
        "t1": {"IsTruncated": True, "NextContinuationToken": "t2", "Contents": [{"Key": "p/2"}]},
        "t2": {"IsTruncated": False, "Contents": [{"Key": "p/3"}]},
    }
    client, transport = make_client(lambda r: ok(pages[r.operation.get("ContinuationToken")]))
    with client:
        listing = client.list_objects("bkt", "p/", Delimiter="/")
        stats = client.get_stats()
    assert [o["Key"] for o in listing["Contents"]] == ["p/1", "p/2", "p/3"]
    assert (listing["KeyCount"], listing["Pages"], listing["IsTruncated"]) == (3, 3, False)
    assert listing["CommonPrefixes"] == [{"Prefix": "p/d/"}]
    assert [r.operation.get("ContinuationToken") for r in transport.requests] == [None, "t1", "t2"]
    assert all(
        r.operation["Delimiter"] == "/" and r.operation["Prefix"] == "p/"
        for r in transport.requests
    )
    assert stats["total_requests"] == 3


def test_slowdown_is_retried_by_the_core_and_does_not_open_the_breaker():
    slow_down = s3_error(503, "SlowDown", "Reduce your request rate.")
    client, transport = make_client(
        scripted(slow_down, slow_down, then=ok({"ETag": '"e"'})), failure_threshold=1
    )
    with client:
        assert client.upload_file(b"data", "bkt", "k")["ETag"] == '"e"'
        assert client.circuit_state == "CLOSED"
        stats = client.get_stats()
    assert len(transport.requests) == 3
    assert stats["retried_requests"] == 1 and stats["total_retries"] == 2


def test_server_errors_open_the_breaker_and_then_it_fails_fast():
    client, transport = make_client(
        lambda r: s3_error(500, "InternalError", "boom"),
        failure_threshold=2,
        max_retries=0,
        reset_timeout=60,
    )
    with client:
        for _ in range(2):
            with pytest.raises(ServerError):
                client.head_object("bkt", "k")
        with pytest.raises(CircuitOpenError):
            client.head_object("bkt", "k")
    assert len(transport.requests) == 2


def test_not_found_is_not_retried_and_stats_name_the_access_key_by_fingerprint():
    client, transport = make_client(
        lambda r: s3_error(404, "NoSuchKey", "The specified key does not exist.")
    )
    with client:
        with pytest.raises(NotFoundError, match="NoSuchKey"):
            client.download_file("bkt", "missing")
        stats = client.get_stats()
        report = client.generate_report(include_details=True)
    assert len(transport.requests) == 1
    assert list(stats["keys"]) == [key_fingerprint(ACCESS)]
    assert ACCESS not in repr(report) and SECRET not in repr(report) and SECRET not in repr(client)


def test_upload_of_a_path_sends_a_file_body_and_download_writes_whole_files(tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(b"\x00payload")
    target = tmp_path / "out.bin"
    client, transport = make_client(
        lambda r: ok({"Body": b"content"} if r.method == "get_object" else {"ETag": '"e"'})
    )
    with client:
        client.upload_file(source, "bkt", "k")
        client.upload_file(str(source), "bkt", "k2", ContentType="application/octet-stream")
        assert client.download_file("bkt", "k") == b"content"
        assert client.download_file("bkt", "k", target) == str(target)
        with pytest.raises(InvalidInputError, match="no file to upload"):
            client.upload_file(tmp_path / "missing", "bkt", "k")
    assert transport.requests[0].operation["Body"] == bt.FileBody(str(source))
    assert transport.requests[1].operation["ContentType"] == "application/octet-stream"
    assert target.read_bytes() == b"content"
    assert sorted(os.listdir(tmp_path)) == ["in.bin", "out.bin"]  # no temporary left behind


def test_the_default_bucket_is_used_when_none_is_named():
    client, transport = make_client(lambda r: ok({}), s3cfg=dict(S3CFG, bucket="default-bkt"))
    with client:
        client.delete_object(None, "k")
    assert transport.requests[0].operation == {"Bucket": "default-bkt", "Key": "k"}
    bare, _ = make_client(lambda r: ok({}))
    with bare, pytest.raises(InvalidInputError, match="name a bucket"):
        bare.delete_object(None, "k")


def test_presigned_url_checks_its_arguments_and_needs_boto3():
    client, transport = make_client(lambda r: ok({}))
    with client:
        for expires in (0, -1, 8 * 24 * 3600, 1.5, True):
            with pytest.raises(InvalidInputError, match="expires"):
                client.presigned_url("bkt", "k", expires)
        with pytest.raises(InvalidInputError, match="boto3 transport"):
            client.presigned_url("bkt", "k")
    assert transport.requests == []


def test_the_default_transport_is_boto3_sized_for_the_concurrency_and_follows_the_endpoint():
    with s3_kit({}, {"s3cfg": dict(S3CFG), "max_concurrent_requests": 100}) as client:
        assert isinstance(client.s3_config, bt.S3ClientConfig)
        assert client.s3_config.max_workers == 100
        assert client.base_url == "http://s3.test.invalid"
        client.base_url = "http://127.0.0.1:9000"
        assert client.s3_config.endpoint_url == "http://127.0.0.1:9000"
        assert client.s3_config.access_key == ACCESS  # the rest of the config is kept
        with pytest.raises(SettingError):
            client.base_url = "s3.example.com"
