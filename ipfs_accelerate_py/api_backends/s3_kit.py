"""``s3_kit``: S3 (AWS or any S3-compatible server) through boto3, on the shared core.

Every operation is one request through the same priority queue, retries
(botocore's own are off), circuit breaker and statistics as every other
backend; a listing follows its continuation tokens page by page, each page
its own request.  Needs boto3 (``pip install 'ipfs_accelerate_py[s3]'``).

Configuration, first found wins, field by field:

- ``metadata["s3cfg"]``: ``{"accessKey", "secretKey", "endpoint"}`` and
  optionally ``"region"``, ``"bucket"`` (the default bucket),
  ``"sessionToken"``, ``"addressingStyle"`` (``"auto"``, ``"path"``,
  ``"virtual"``);
- the environment: ``S3_ACCESS_KEY``/``S3_SECRET_KEY`` or
  ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``),
  ``S3_ENDPOINT``, ``S3_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3`` or
  ``AWS_ENDPOINT_URL``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``, ``S3_BUCKET``;
- otherwise boto3's own chain (profiles, instance roles) and AWS's endpoint.

Credentials live in the boto3 client: ``api_key`` (and a request's
``api_key``) is the access key id only as stats and reports name it, by its
fingerprint; it signs nothing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

from ..providers.s3 import S3, S3Wire
from ..resilience.errors import ApiError, InvalidInputError
from ..transport.boto3_transport import Boto3Transport, FileBody, S3ClientConfig
from .base import BaseApiBackend

__all__ = ["s3_kit", "s3_config_from"]

DEFAULT_PRESIGN_EXPIRES = 3600
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600  # SigV4's limit
KEY_PAIRS_ENV = (("S3_ACCESS_KEY", "S3_SECRET_KEY"), ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
ENDPOINT_ENV = ("S3_ENDPOINT", "S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")
BUCKET_ENV = ("S3_BUCKET",)

FEATURE_CHECK_BUCKET = "feature-checks"  # the feature checks' bucket on a local S3 server
FEATURE_CHECK_KEY = "testing"  # the local S3 server's credentials for the feature checks

Path = str | os.PathLike[str]
PathOrBytes = Path | bytes | bytearray | memoryview


def s3_config_from(
    metadata: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[S3ClientConfig, str | None]:
    """The client configuration and the default bucket, from ``metadata["s3cfg"]``
    then ``environ`` (see the module docstring)."""
    cfg = metadata.get("s3cfg") or {}
    if not isinstance(cfg, Mapping):
        raise InvalidInputError(
            f"metadata['s3cfg'] must be a dict like {{'accessKey', 'secretKey', 'endpoint'}}, not {type(cfg).__name__}"
        )
    access, secret = cfg.get("accessKey") or None, cfg.get("secretKey") or None
    if access is None and secret is None:
        for key_var, secret_var in KEY_PAIRS_ENV:
            if environ.get(key_var) and environ.get(secret_var):
                access, secret = environ[key_var], environ[secret_var]
                break
    token = cfg.get("sessionToken") or (
        environ.get("AWS_SESSION_TOKEN") if access == environ.get("AWS_ACCESS_KEY_ID") else None
    )
    config = S3ClientConfig(
        endpoint_url=cfg.get("endpoint") or _env(environ, ENDPOINT_ENV),
        region=cfg.get("region") or _env(environ, REGION_ENV),
        access_key=access,
        secret_key=secret,
        session_token=token or None,
        addressing_style=cfg.get("addressingStyle") or "auto",
    )
    return config, cfg.get("bucket") or _env(environ, BUCKET_ENV)


def _env(environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((environ[name] for name in names if environ.get(name)), None)


class s3_kit(BaseApiBackend):  # noqa: N801 - the seed's name
    """S3 object operations; each method is one request (a listing, one per page)."""

    provider = S3Wire(S3)

    def __init__(
        self,
        resources: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        transport: Any = None,
        **kwargs: Any,
    ) -> None:
        config, self.default_bucket = s3_config_from(
            metadata if isinstance(metadata, Mapping) else {}, os.environ
        )
        if transport is None:
            transport = Boto3Transport(config)
        self._transport = transport
        super().__init__(resources, metadata, transport=transport, **kwargs)
        self._engine.api_key = config.access_key  # stats name it by its fingerprint
        self._engine.base_url = config.endpoint_url or S3.default_base_url
        if (
            isinstance(transport, Boto3Transport)
            and transport.config.max_workers < self.max_concurrent_requests
        ):
            transport.reconfigure(_with(transport.config, max_workers=self.max_concurrent_requests))

    @property
    def s3_config(self) -> S3ClientConfig | None:
        """The boto3 client's configuration (credentials masked in its repr)."""
        return self._transport.config if isinstance(self._transport, Boto3Transport) else None

    def _set_base_url(self, value: Any) -> None:
        """The S3 endpoint URL (checked as every backend's); the next request goes there."""
        super()._set_base_url(value)
        if isinstance(self._transport, Boto3Transport):
            self._transport.reconfigure(_with(self._transport.config, endpoint_url=self.base_url))

    @classmethod
    def connection_metadata(cls, base_url: str, api_key: str | None) -> dict[str, Any]:
        return {
            "s3cfg": {
                "endpoint": base_url,
                "accessKey": api_key or FEATURE_CHECK_KEY,
                "secretKey": FEATURE_CHECK_KEY,
                "bucket": FEATURE_CHECK_BUCKET,
            }
        }

    def feature_probe(self, tag: str) -> tuple[str, Any]:
        """A one-key listing of the default bucket."""
        return "list_objects_v2", {"Bucket": self._bucket(None), "Prefix": tag, "MaxKeys": 1}

    # --------------------------------------------------------- operations

    def upload_file(
        self,
        path_or_bytes: PathOrBytes,
        bucket: str | None,
        key: str,
        *,
        priority: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Put an object: ``path_or_bytes`` is the content (bytes) or a file
        path (read at each attempt, so a retry sends it whole).  ``extra``
        goes to ``put_object`` (``ContentType``, ``Metadata``, ...)."""
        if isinstance(path_or_bytes, (str, os.PathLike)):
            path = os.fspath(path_or_bytes)
            if not os.path.isfile(path):
                raise InvalidInputError(f"no file to upload at {path!r}")
            body: Any = FileBody(path)
        else:
            body = path_or_bytes
        endpoint, data = self.provider.put_object_request(self._bucket(bucket), key, body, extra)
        return self._call_json(endpoint, data, priority=priority)

    def download_file(
        self, bucket: str | None, key: str, path: Path | None = None, *, priority: int | None = None
    ) -> bytes | str:
        """An object's content as bytes; with ``path``, written there instead
        (whole or not at all: through a temporary file) and the path returned."""
        endpoint, data = self.provider.get_object_request(self._bucket(bucket), key, {})
        content: bytes = self._call_json(endpoint, data, priority=priority)["Body"]
        if path is None:
            return content
        return _write_atomically(os.fspath(path), content)

    def list_objects(
        self,
        bucket: str | None,
        prefix: str | None = "",
        *,
        priority: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Every object under ``prefix``: ``list_objects_v2``'s shape with all
        pages' ``Contents`` (and ``CommonPrefixes``) joined; each page is
        its own request.  ``extra`` goes to every page (``Delimiter``, ``MaxKeys``)."""
        bucket = self._bucket(bucket)
        token = extra.pop("ContinuationToken", None)
        listing: dict[str, Any] = {
            "Name": bucket,
            "Prefix": prefix or "",
            "Contents": [],
            "KeyCount": 0,
            "IsTruncated": False,
            "Pages": 0,
        }
        while True:
            endpoint, data = self.provider.list_objects_request(bucket, prefix, token, extra)
            page = self._call(endpoint, data, priority=priority)
            listing["Pages"] += 1
            listing["Contents"].extend(page.get("Contents", []))
            if page.get("CommonPrefixes"):
                listing.setdefault("CommonPrefixes", []).extend(page["CommonPrefixes"])
            token = self.provider.next_page_token(page, token)
            if token is None:
                listing["KeyCount"] = len(listing["Contents"])
                return listing

    def delete_object(
        self, bucket: str | None, key: str, *, priority: int | None = None
    ) -> dict[str, Any]:
        endpoint, data = self.provider.delete_object_request(self._bucket(bucket), key)
        return self._call_json(endpoint, data, priority=priority)

    def head_object(
        self, bucket: str | None, key: str, *, priority: int | None = None
    ) -> dict[str, Any]:
        """The object's metadata (``ContentLength``, ``ETag``, ...); a missing one raises ``NotFoundError``."""
        endpoint, data = self.provider.head_object_request(self._bucket(bucket), key)
        return self._call_json(endpoint, data, priority=priority)

    def create_bucket(
        self, bucket: str | None = None, *, priority: int | None = None
    ) -> dict[str, Any]:
        region = self.s3_config.region if self.s3_config else None
        endpoint, data = self.provider.create_bucket_request(self._bucket(bucket), region)
        return self._call_json(endpoint, data, priority=priority)

    def list_buckets(self, *, priority: int | None = None) -> dict[str, Any]:
        endpoint, data = self.provider.list_buckets_request()
        return self._call_json(endpoint, data, priority=priority)

    def presigned_url(
        self,
        bucket: str | None,
        key: str,
        expires: int = DEFAULT_PRESIGN_EXPIRES,
        method: str = "get_object",
    ) -> str:
        """A URL that lets anyone ``method`` the object for ``expires`` seconds.
        Computed locally by boto3 from the credentials: no request is made,
        so it goes through no queue, retry or breaker and is not counted."""
        if (
            isinstance(expires, bool)
            or not isinstance(expires, int)
            or not 1 <= expires <= MAX_PRESIGN_EXPIRES
        ):
            raise InvalidInputError(
                f"expires must be whole seconds from 1 to {MAX_PRESIGN_EXPIRES} (7 days), not {expires!r}"
            )
        if not isinstance(self._transport, Boto3Transport):
            raise InvalidInputError(
                "presigned URLs need the boto3 transport (this backend was given another)"
            )
        endpoint, data = self.provider.head_object_request(self._bucket(bucket), key)
        return self._transport.presign(self.provider.endpoint_path(method), data, expires)

    def test_s3_endpoint(
        self,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> dict[str, Any]:
        """Can this endpoint be reached and listed?  ``{"success", "endpoint",
        "bucket_count", "buckets"}`` or ``{"success": False, "endpoint", "error"}``.
        With overrides, a short-lived client of the same settings asks."""
        if endpoint_url is None and access_key is None and secret_key is None:
            return _endpoint_report(self, self.base_url)
        cfg = self.s3_config
        s3cfg = {
            "endpoint": endpoint_url or (cfg.endpoint_url if cfg else None),
            "accessKey": access_key or (cfg.access_key if cfg else None),
            "secretKey": secret_key or (cfg.secret_key if cfg else None),
            "region": cfg.region if cfg else None,
        }
        try:
            probe = s3_kit(self.resources, dict(self.metadata, s3cfg=s3cfg))
        except ApiError as exc:  # e.g. a key without its secret
            return {"success": False, "endpoint": endpoint_url or self.base_url, "error": str(exc)}
        with probe:
            return _endpoint_report(probe, probe.base_url)

    def create_presigned_url(
        self, bucket: str | None, key: str, expiration: int = DEFAULT_PRESIGN_EXPIRES
    ) -> str:
        """The seed's name for :meth:`presigned_url` (a GET URL)."""
        return self.presigned_url(bucket, key, expiration)

    def _bucket(self, bucket: str | None) -> str:
        chosen = bucket or self.default_bucket
        if not chosen:
            raise InvalidInputError(
                "name a bucket (or set metadata['s3cfg']['bucket'] or S3_BUCKET)", provider=S3.name
            )
        return chosen


def _with(config: S3ClientConfig, **changes: Any) -> S3ClientConfig:
    values = {name: getattr(config, name) for name in config.__dataclass_fields__}
    values.update(changes)
    return S3ClientConfig(**values)


def _endpoint_report(client: s3_kit, endpoint: str) -> dict[str, Any]:
    try:
        names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    except ApiError as exc:
        return {"success": False, "endpoint": endpoint, "error": str(exc)}
    return {"success": True, "endpoint": endpoint, "bucket_count": len(names), "buckets": names}


def _write_atomically(path: str, content: bytes) -> str:
    """Write beside ``path`` then rename: a reader never sees half a file."""
    temporary = f"{path}.part-{secrets.token_hex(4)}"
    try:
        with open(temporary, "xb") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path
