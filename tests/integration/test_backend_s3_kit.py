"""``s3_kit`` against a real S3-compatible server on loopback (moto's server
mode), through boto3 -- never a mock of boto3.  Faults come from the
project's simulator in proxy mode in front of moto: it forwards S3 calls
verbatim and injects S3-shaped errors (``SlowDown`` 503, ...), drops and
hangs, and counts what reached it (keys as access key fingerprints).

The only real waiting is a breaker's ``reset_timeout`` (:func:`wait_real`)
and one attempt timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import urllib.request
import uuid

import pytest

pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from ipfs_accelerate_py.api_backends.s3_kit import s3_kit  # noqa: E402
from ipfs_accelerate_py.engine.engine import key_fingerprint  # noqa: E402
from ipfs_accelerate_py.resilience.errors import (  # noqa: E402
    AuthenticationError,
    CircuitOpenError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ipfs_accelerate_py.transport.boto3_transport import Boto3Transport  # noqa: E402

LOOPBACK = "127.0.0.1"
ACCESS = "AKIAS3KITTEST0001"
OTHER_ACCESS = "AKIAS3KITTEST0002"
SECRET = "s3kit-test-secret-0123456789"
RESET_TIMEOUT = 0.3
OUTAGE_BODY = "<Error><Code>ServiceUnavailable</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"


@pytest.fixture(scope="module")
def moto_url():
    """A moto S3 server on an ephemeral loopback port, for this module."""
    logging.getLogger("werkzeug").setLevel(
        logging.ERROR
    )  # one access-log line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def make_client(endpoint, access_key=ACCESS, **metadata):
    meta = {
        "s3cfg": {
            "accessKey": access_key,
            "secretKey": SECRET,
            "endpoint": endpoint,
            "region": "us-east-1",
        },
        "initial_retry_delay": 0.01,
        "retry_jitter": 0.0,
        "timeout": 10.0,
    }
    meta.update(metadata)
    return s3_kit({}, meta)


@pytest.fixture
def bucket(moto_url):
    """A new, empty bucket on moto (names never clash with the simulator's own paths)."""
    name = f"s3kit-{uuid.uuid4().hex[:12]}"
    with make_client(moto_url) as client:
        client.create_bucket(name)
    return name


@pytest.fixture
def proxy(simulator, moto_url):
    """The shared simulator, forwarding to moto: S3 calls pass through its faults."""
    simulator.configure(upstream=moto_url, forward_credentials=True)  # moto checks the signature
    return simulator


def wait_real(seconds: float) -> None:
    """Let a real interval pass (a breaker's reset_timeout); never used to wait for an event."""
    threading.Event().wait(seconds)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------ operations


def test_every_operation_against_a_real_s3_server(moto_url, bucket, tmp_path):
    payload = os.urandom(300_000)
    source = tmp_path / "source.bin"
    source.write_bytes(payload)
    with make_client(moto_url) as client:
        put = client.upload_file(
            b"hello s3",
            bucket,
            "docs/hello.txt",
            ContentType="text/plain",
            Metadata={"owner": "tests"},
        )
        assert put["ResponseMetadata"]["HTTPStatusCode"] == 200 and put["ETag"]
        client.upload_file(source, bucket, "blobs/source.bin")

        head = client.head_object(bucket, "docs/hello.txt")
        assert (head["ContentLength"], head["ContentType"], head["Metadata"]) == (
            8,
            "text/plain",
            {"owner": "tests"},
        )
        assert client.download_file(bucket, "docs/hello.txt") == b"hello s3"
        target = tmp_path / "copy.bin"
        assert client.download_file(bucket, "blobs/source.bin", target) == str(target)
        assert target.read_bytes() == payload

        assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
        report = client.test_s3_endpoint()
        assert report["success"] is True and bucket in report["buckets"]

        deleted = client.delete_object(bucket, "docs/hello.txt")
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(NotFoundError):
            client.head_object(bucket, "docs/hello.txt")
        stats = client.get_stats()
    assert stats["total_requests"] == 9 and stats["successful_requests"] == 8


def test_a_listing_follows_its_continuation_tokens_one_request_per_page(moto_url, bucket):
    with make_client(moto_url) as client:
        for i in range(5):
            client.upload_file(b"%d" % i, bucket, f"logs/{i}.txt")
        client.upload_file(b"other", bucket, "elsewhere.txt")
        client.reset_stats()
        listing = client.list_objects(bucket, "logs/", MaxKeys=2)
        assert client.get_stats()["total_requests"] == 3
        everything = client.list_objects(bucket)
        folders = client.list_objects(bucket, Delimiter="/")
    assert [o["Key"] for o in listing["Contents"]] == [f"logs/{i}.txt" for i in range(5)]
    assert (listing["KeyCount"], listing["Pages"], listing["IsTruncated"]) == (5, 3, False)
    assert everything["KeyCount"] == 6 and everything["Pages"] == 1
    assert [p["Prefix"] for p in folders["CommonPrefixes"]] == ["logs/"]
    assert [o["Key"] for o in folders["Contents"]] == ["elsewhere.txt"]


def test_presigned_urls_are_made_locally_and_work_against_the_server(moto_url, bucket):
    with make_client(moto_url) as client:
        upload_url = client.presigned_url(
            bucket, "shared/note.txt", expires=300, method="put_object"
        )
        assert client.get_stats()["total_requests"] == 0  # nothing was sent to make them
        request = urllib.request.Request(
            upload_url,
            data=b"via a presigned PUT",
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        download_url = client.create_presigned_url(bucket, "shared/note.txt", expiration=300)
        with urllib.request.urlopen(download_url, timeout=10) as answer:
            assert answer.read() == b"via a presigned PUT"
        assert client.download_file(bucket, "shared/note.txt") == b"via a presigned PUT"


@pytest.mark.parametrize(
    "operation, code",
    [
        (lambda c, b: c.download_file(b, "missing.txt"), "NoSuchKey"),
        (lambda c, b: c.head_object(b, "missing.txt"), "Not Found"),
        (lambda c, b: c.list_objects(b + "-absent"), "NoSuchBucket"),
        (lambda c, b: c.delete_object(b + "-absent", "k"), "NoSuchBucket"),
    ],
)
def test_missing_objects_and_buckets_are_not_found_never_retried(moto_url, bucket, operation, code):
    with make_client(moto_url, failure_threshold=1) as client:
        with pytest.raises(NotFoundError) as caught:
            operation(client, bucket)
        assert client.circuit_state == "CLOSED"  # a client error is no outage
        stats = client.get_stats()
    assert caught.value.status == 404 and code in str(caught.value)
    assert stats["total_retries"] == 0 and stats["errors_by_type"] == {"not_found": 1}


# ------------------------------------------------------------ queue and stats


class GatedTransport:
    """The real boto3 transport, holding the first call until released."""

    def __init__(self, inner: Boto3Transport) -> None:
        self.inner = inner
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.keys: list[str] = []

    async def send(self, request):
        self.keys.append(request.operation.get("Key"))
        if len(self.keys) == 1:
            self.arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self.released.wait, 10)
        return await self.inner.send(request)

    async def aclose(self):
        await self.inner.aclose()


def test_priority_order_under_saturation(moto_url, bucket):
    probe = make_client(moto_url)
    gate = GatedTransport(Boto3Transport(probe.s3_config))
    probe.close()
    meta = {
        "s3cfg": {"accessKey": ACCESS, "secretKey": SECRET, "endpoint": moto_url},
        "max_concurrent_requests": 1,
    }
    with s3_kit({}, meta, transport=gate) as client:

        def put(key, priority=None):
            return client.queue_with_priority(
                {
                    "endpoint": "put_object",
                    "data": {"Bucket": bucket, "Key": key, "Body": key.encode()},
                },
                priority,
            )

        blocker = put("blocker")
        assert gate.arrived.wait(10)
        queued = [
            put(key, prio)
            for key, prio in [
                ("low1", 2),
                ("normal1", 1),
                ("low2", 2),
                ("high1", 0),
                ("high2", 0),
                ("normal2", 1),
            ]
        ]
        gate.released.set()
        for future in [blocker] + queued:
            assert future.result(10)["ResponseMetadata"]["HTTPStatusCode"] == 200
        listing = client.list_objects(bucket)
        assert client.get_stats()["max_concurrent_requests"] == 1
    assert gate.keys[:7] == ["blocker", "high1", "high2", "normal1", "normal2", "low1", "low2"]
    assert sorted(o["Key"] for o in listing["Contents"]) == sorted(gate.keys[:7])


def test_stats_count_requests_and_name_each_access_key_by_its_fingerprint(proxy, stocked):
    with make_client(proxy.url, ACCESS) as first, make_client(proxy.url, OTHER_ACCESS) as second:
        for _ in range(3):
            first.head_object(stocked, "stock/0.txt")
        second.download_file(stocked, "stock/0.txt")
        first_stats, second_stats = first.get_stats(), second.get_stats()
        report = first.generate_report(include_details=True)
    seen = proxy.counters()
    assert first_stats["total_requests"] == 3 and second_stats["total_requests"] == 1
    assert first_stats["endpoints"] == {"head_object": 3} and second_stats["endpoints"] == {
        "get_object": 1
    }
    assert list(first_stats["keys"]) == [key_fingerprint(ACCESS)]
    assert list(second_stats["keys"]) == [key_fingerprint(OTHER_ACCESS)]
    assert seen["by_key"] == {
        key_fingerprint(ACCESS): 3,
        key_fingerprint(OTHER_ACCESS): 1,
    }  # what reached the server
    assert seen["requests_total"] == 4 and seen["by_format"] == {"proxy": 4}
    assert ACCESS not in repr(report) and SECRET not in repr(report)


# ------------------------------------------------------------ faults through the simulator
#
# Reads (GET, HEAD, listings) go through the faulty proxy; the ``stocked``
# fixture puts objects straight into moto.  Uploads through the proxy are below.


@pytest.fixture
def stocked(moto_url, bucket):
    """``bucket`` holding ``stock/0.txt`` .. ``stock/4.txt`` (put directly into moto)."""
    with make_client(moto_url) as client:
        for i in range(5):
            client.upload_file(f"content {i}".encode(), bucket, f"stock/{i}.txt")
    return bucket


def test_slowdown_is_retried_by_the_core_and_succeeds(proxy, stocked):
    proxy.configure(fail_next=2, error_status=503)
    with make_client(proxy.url, failure_threshold=1) as client:
        assert client.download_file(stocked, "stock/1.txt") == b"content 1"
        assert client.circuit_state == "CLOSED"  # throttling is not an outage
        stats = client.get_stats()
    seen = proxy.counters()
    assert seen["requests_total"] == 3 and seen["faults"]["error"] == 2
    assert (
        stats["total_requests"] == 1
        and stats["retried_requests"] == 1
        and stats["total_retries"] == 2
    )


def test_a_failed_page_of_a_listing_is_retried_on_its_own(proxy, stocked):
    proxy.configure(fail_next=1, error_status=500)
    with make_client(proxy.url) as client:
        listing = client.list_objects(stocked, "stock/", MaxKeys=2)
        stats = client.get_stats()
    assert listing["KeyCount"] == 5 and listing["Pages"] == 3
    assert stats["total_requests"] == 3 and stats["total_retries"] == 1
    assert proxy.counters()["requests_total"] == 4


def test_a_slowdown_storm_is_a_rate_limit_not_a_breaker_failure(proxy, stocked):
    proxy.configure(outage=True)  # 503 SlowDown: the simulator's S3 code for 503
    with make_client(proxy.url, max_retries=2, failure_threshold=1) as client:
        with pytest.raises(RateLimitError) as caught:
            client.download_file(stocked, "stock/0.txt")
        assert client.circuit_state == "CLOSED"
    assert caught.value.status == 503 and "SlowDown" in str(caught.value)
    assert proxy.counters()["requests_total"] == 3


def test_an_outage_opens_the_breaker_fails_fast_then_a_probe_closes_it(proxy, stocked):
    proxy.configure(outage=True, proxy_error_body=OUTAGE_BODY)
    with make_client(
        proxy.url, max_retries=0, failure_threshold=3, reset_timeout=RESET_TIMEOUT
    ) as client:
        for _ in range(3):
            with pytest.raises(ServerError) as caught:
                client.download_file(stocked, "stock/0.txt")
            assert caught.value.status == 503 and "ServiceUnavailable" in str(caught.value)
        assert client.circuit_state == "OPEN"
        for _ in range(4):  # fast: a call that waited for the probe would meet the outage
            with pytest.raises(CircuitOpenError):
                client.download_file(stocked, "stock/0.txt")
        assert proxy.counters()["requests_total"] == 3  # nothing reached the server while OPEN
        proxy.configure(outage=False)
        wait_real(RESET_TIMEOUT + 0.05)
        assert client.download_file(stocked, "stock/0.txt") == b"content 0"  # the probe
        assert client.circuit_state == "CLOSED"
        assert client.get_stats()["errors_by_type"] == {"server": 3, "circuit_open": 4}


def test_a_dropped_connection_is_a_network_error_retried_by_the_core(proxy, stocked):
    proxy.configure(drop_next=1)
    with make_client(proxy.url) as client:
        assert client.download_file(stocked, "stock/2.txt") == b"content 2"
        stats = client.get_stats()
    assert stats["total_retries"] == 1 and stats["errors_by_type"] == {}
    assert proxy.counters()["faults"]["drop"] == 1


def test_a_hung_attempt_times_out_and_the_retry_succeeds(proxy, stocked):
    proxy.configure(hang_next=1, hang_seconds=5.0)
    with make_client(proxy.url, timeout=0.4) as client:
        assert client.head_object(stocked, "stock/3.txt")["ContentLength"] == 9
        stats = client.get_stats()
    # a client that waited out the hang (5 s) would have had its answer on the first attempt
    assert stats["total_retries"] == 1 and stats["errors_by_type"] == {}
    assert proxy.counters()["faults"]["hang"] == 1


def test_an_unknown_access_key_is_an_authentication_error_not_retried(proxy, stocked):
    proxy.configure(valid_keys=[ACCESS])
    with make_client(proxy.url, OTHER_ACCESS, failure_threshold=1) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.download_file(stocked, "stock/0.txt")
        assert client.circuit_state == "CLOSED"
    assert caught.value.status == 401 and "InvalidAccessKeyId" in str(caught.value)  # S3's code
    assert proxy.counters()["requests_total"] == 1


def test_an_unreachable_endpoint_is_a_network_error_that_opens_the_breaker():
    with make_client(
        f"http://{LOOPBACK}:{closed_port()}", max_retries=1, failure_threshold=2, reset_timeout=60
    ) as client:
        with pytest.raises((NetworkError, CircuitOpenError)):
            client.list_buckets()
        assert client.circuit_state == "OPEN"
        with pytest.raises(CircuitOpenError):
            client.list_buckets()
        stats = client.get_stats()
    assert (
        stats["errors_by_type"].get("network", 0) + stats["errors_by_type"].get("circuit_open", 0)
        == 2
    )


# ------------------------------------------------------------ uploads through the simulator
#
# botocore sends every put_object with ``Expect: 100-continue`` and waits (up
# to 1 s) for the interim answer before sending the body; a fault answered
# before the body is read must not leave the body to be parsed as the next
# request on the keep-alive connection.

SLOWDOWN_BODY = (
    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


def read_back(moto_url, bucket, key):
    with make_client(moto_url) as client:
        return client.download_file(bucket, key)


def test_an_upload_through_the_proxy_gets_100_continue_and_arrives_whole(
    proxy, moto_url, bucket, caplog
):
    payload = os.urandom(200_000)
    caplog.set_level(logging.DEBUG, logger="botocore.awsrequest")
    with make_client(proxy.url) as client:
        for i in range(3):
            assert (
                client.upload_file(payload, bucket, f"up/{i}.bin")["ResponseMetadata"][
                    "HTTPStatusCode"
                ]
                == 200
            )
    waits = [r.getMessage() for r in caplog.records if r.name == "botocore.awsrequest"]
    assert sum("100 Continue response seen" in m for m in waits) == 3
    # never the 1 s stall each upload used to wait for the interim answer
    assert not [m for m in waits if "No response seen from server" in m]
    assert all(read_back(moto_url, bucket, f"up/{i}.bin") == payload for i in range(3))
    assert proxy.counters()["by_status"] == {"200": 3}


@pytest.mark.parametrize(
    "fault",
    [
        {"fail_next": 2, "error_status": 503},  # answered after the body was read
        {
            "script": [
                {
                    "status": 503,
                    "body": SLOWDOWN_BODY,
                    "headers": {"Content-Type": "application/xml"},
                }
            ]
            * 2
        },
        {
            "script": [{"status": 503}, {"status": 500}]
        },  # answered before the body: the body is never read
    ],
    ids=["slowdown-after-body", "scripted-slowdown", "scripted-errors"],
)
def test_a_failed_upload_is_retried_and_the_object_arrives_whole(proxy, moto_url, bucket, fault):
    payload = os.urandom(300_000)
    script = fault.pop("script", None)
    if script is not None:
        proxy.script(script)
    proxy.configure(fault)
    with make_client(proxy.url, failure_threshold=5) as client:
        put = client.upload_file(
            payload, bucket, "retried/object.bin", ContentType="application/octet-stream"
        )
        stats = client.get_stats()
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert stats["total_requests"] == 1 and stats["total_retries"] == 2
    seen = proxy.counters()
    assert (
        seen["requests_total"] == 3
        and seen["by_status"].get("200") == 1
        and "400" not in seen["by_status"]
    )
    assert read_back(moto_url, bucket, "retried/object.bin") == payload  # the object arrived whole


def test_uploads_keep_working_after_an_outage_ends(proxy, moto_url, bucket):
    proxy.configure(outage=True)
    with make_client(proxy.url, max_retries=1, failure_threshold=10) as client:
        with pytest.raises(RateLimitError):  # 503 SlowDown twice
            client.upload_file(b"during the outage", bucket, "outage/first.txt")
        proxy.configure(outage=False)
        for i in range(3):  # on the same pooled connections the refused uploads used
            client.upload_file(b"after %d" % i, bucket, f"outage/{i}.txt")
        stats = client.get_stats()
    assert stats["errors_by_type"] == {"rate_limit": 1} and stats["successful_requests"] == 3
    assert "400" not in proxy.counters()["by_status"]
    assert [read_back(moto_url, bucket, f"outage/{i}.txt") for i in range(3)] == [
        b"after %d" % i for i in range(3)
    ]
