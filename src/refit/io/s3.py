"""S3 store through boto3: conditional writes with ``IfNoneMatch`` / ``IfMatch``.

The client is injected; :func:`make_s3_client` builds one from the standard AWS environment
(credentials, region, ``AWS_ENDPOINT_URL``) with boto3's ``standard`` retry mode and the
timeouts of :data:`BATCH_TIMEOUTS` (patient: a pipeline step would rather wait than fail) or
:data:`SERVING_TIMEOUTS` (quick: the capture writer spills and backs off instead of waiting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from refit.errors import (
    AccessDeniedError,
    InvalidKeyError,
    NoSuchBucketError,
    NotFoundError,
    PreconditionFailedError,
    StoreError,
)
from refit.io.base import Blob, Store, validate_key, validate_prefix


def _addressable(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKeyError:
        return False
    return True


@dataclass(frozen=True)
class S3Timeouts:
    """How long one S3 call may take.

    Attributes:
        connect_s: Seconds to open a connection.
        read_s: Seconds to wait for each read of the answer.
        max_attempts: Attempts per call, the first included (boto3's ``standard`` mode backs
            off between them). A call to an endpoint that accepts connections and never answers
            takes about ``max_attempts * (read_s + 1)`` (a PUT first waits 1 s for ``100
            Continue``), one that cannot be reached ``max_attempts * connect_s``.
    """

    connect_s: float
    read_s: float
    max_attempts: int


BATCH_TIMEOUTS = S3Timeouts(connect_s=5, read_s=60, max_attempts=6)
"""Pipeline steps: a slow store is waited for."""

SERVING_TIMEOUTS = S3Timeouts(connect_s=2, read_s=3, max_attempts=2)
"""The serving path (the capture writer's store): a hung endpoint costs ~8 s per call, not 6 minutes."""


def make_s3_client(
    endpoint_url: str | None = None, region: str | None = None, timeouts: S3Timeouts = BATCH_TIMEOUTS
) -> Any:
    """A boto3 S3 client from the standard environment, with standard retries and ``timeouts``."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": timeouts.max_attempts},
        connect_timeout=timeouts.connect_s,
        read_timeout=timeouts.read_s,
    )
    session = boto3.session.Session(region_name=region)
    return session.client("s3", endpoint_url=endpoint_url or None, config=config)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, prefix.strip("/")


class S3Store(Store):
    """A store under ``s3://bucket/prefix``."""

    def __init__(self, uri: str, client: Any) -> None:
        self.bucket, self.prefix = split_s3_uri(uri)
        self.uri = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.client = client

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str) -> str:
        # No validation here: ``key`` may be a listing prefix such as ``data/``.
        return f"{self.uri}/{key}" if key else self.uri

    def _error(self, exc: Exception, key: str, action: str) -> StoreError:
        from botocore.exceptions import BotoCoreError, ClientError

        where = self._where(key)
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return NoSuchBucketError(f"no such bucket: s3://{self.bucket} ({action} {where})")
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFoundError(f"not found: {where}")
            if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return AccessDeniedError(f"access denied: {action} {where} ({code})")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
                return PreconditionFailedError(f"precondition failed: {action} {where} ({code})")
            message = " ".join(str(err.get("Message", "")).split())
            # 5xx, throttling and timeouts may pass on a retry; other 4xx answers will not
            transient = status is None or status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES
            return StoreError(f"S3 error on {action} {where}: {code} {message}".strip(), transient=transient)
        if isinstance(exc, BotoCoreError):
            return StoreError(f"S3 unreachable on {action} {where}: {' '.join(str(exc).split())}")
        return StoreError(f"S3 error on {action} {where}: {' '.join(str(exc).split())}")

    def get(self, key: str) -> Blob:
        full = self._key(key)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=full)
            return Blob(data=resp["Body"].read(), version=resp["ETag"])
        except Exception as exc:
            raise self._error(exc, key, "get") from None

    def _put(self, key: str, data: bytes, action: str, **conditions: str) -> str:
        full = self._key(key)
        try:
            resp = self.client.put_object(Bucket=self.bucket, Key=full, Body=data, **conditions)
            return str(resp["ETag"])
        except Exception as exc:
            error = self._error(exc, key, action)
            if isinstance(error, PreconditionFailedError) and _retried(exc):
                landed = self._landed(key, data)
                if landed is not None:
                    return landed
            raise error from None

    def _landed(self, key: str, data: bytes) -> str | None:
        """After a retried conditional PUT failed its condition: the version of the object when it
        holds exactly ``data`` (the first attempt landed, its response was lost), else None.

        boto3 retries a PUT whose response never came (a dropped connection, a timeout); the
        retry then fails its own ``IfNoneMatch`` / ``IfMatch`` against the first attempt's
        object, and without this check a write that happened would be reported as lost.
        """
        try:
            blob = self.get(key)
        except NotFoundError:
            return None
        return blob.version if blob.data == data else None

    def put_bytes(self, key: str, data: bytes) -> str:
        return self._put(key, data, "put")

    def put_if_absent(self, key: str, data: bytes) -> str:
        return self._put(key, data, "put-if-absent", IfNoneMatch="*")

    def put_if_unchanged(self, key: str, data: bytes, version: str) -> str:
        try:
            return self._put(key, data, "put-if-unchanged", IfMatch=version)
        except NotFoundError as exc:
            if isinstance(exc, NoSuchBucketError):
                raise
            # S3 answers IfMatch on a missing key with 404 NoSuchKey: the version is stale.
            raise PreconditionFailedError(
                f"precondition failed: put-if-unchanged {self._where(key)} (it no longer exists)"
            ) from None

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        except Exception as exc:
            raise self._error(exc, prefix, "list") from None
        # only what a key can name: the S3 console's "Create folder" leaves a zero-byte object
        # "prefix/" (and other tools write "a//b"); listed, its read failed and stopped whatever
        # walked the prefix (the webhook's outbox, the registry's history)
        return sorted(k for k in keys if _addressable(k))

    def browse_url(self, uri: str) -> str:
        """The object's page in the AWS console; on any other S3 endpoint (MinIO, Ceph, a local
        server), the object's path-style URL on that endpoint, which its own console or a signed
        client opens. Never a presigned URL: links land in artifacts, which must hold no secrets."""
        from urllib.parse import quote

        bucket, _, key = uri.removeprefix("s3://").partition("/")
        endpoint = str(getattr(getattr(self.client, "meta", None), "endpoint_url", "") or "")
        if not endpoint or endpoint.rstrip("/").endswith(".amazonaws.com"):
            return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={quote(key)}"
        return f"{endpoint.rstrip('/')}/{bucket}/{quote(key)}"

    def size(self, key: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._error(exc, key, "head") from None
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        full = self._key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=full)
            return True
        except Exception as exc:
            err = self._error(exc, key, "head")
        if not isinstance(err, NotFoundError):
            raise err
        # HEAD has no body, so a missing bucket is a bare 404 too: tell the two apart.
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            bucket_err = self._error(exc, "", "head")
            if isinstance(bucket_err, NotFoundError):
                raise NoSuchBucketError(f"no such bucket: s3://{self.bucket} (head {self._where(key)})") from None
        return False

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            raise self._error(exc, key, "delete") from None


_TRANSIENT_CODES = frozenset({"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "InternalError"})


def _retried(exc: Exception) -> bool:
    """Whether boto3 sent the request more than once before this error response."""
    response = getattr(exc, "response", None) or {}
    return bool(response.get("ResponseMetadata", {}).get("RetryAttempts", 0))
