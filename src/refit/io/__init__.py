"""Store adapters: ``open_store`` picks the backend from a URI."""

from __future__ import annotations

from typing import Any

from refit.io.base import Blob, Store, validate_key
from refit.io.local import LocalStore
from refit.io.s3 import BATCH_TIMEOUTS, SERVING_TIMEOUTS, S3Store, S3Timeouts, make_s3_client

__all__ = [
    "BATCH_TIMEOUTS",
    "SERVING_TIMEOUTS",
    "Blob",
    "LocalStore",
    "S3Store",
    "S3Timeouts",
    "Store",
    "open_location",
    "open_store",
    "validate_key",
]


def open_store(
    uri: str, client: Any = None, endpoint_url: str | None = None, timeouts: S3Timeouts = BATCH_TIMEOUTS
) -> Store:
    """A store for ``uri``: ``s3://bucket/prefix`` or a local folder (``file://`` allowed).

    ``timeouts`` applies to a client built here (S3 only): :data:`SERVING_TIMEOUTS` for a
    serving process's capture store, the patient default for pipeline steps.
    """
    if uri.startswith("s3://"):
        return S3Store(uri, client or make_s3_client(endpoint_url=endpoint_url, timeouts=timeouts))
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return LocalStore(uri)


def open_location(uri: str, default: Store, client: Any = None) -> tuple[Store, str]:
    """Split a source reference into (store, key-or-pattern).

    ``s3://b/p/x.parquet`` and absolute paths get their own store; anything else is a key
    (or glob) in ``default``.
    """
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        if isinstance(default, S3Store) and client is None:
            client = default.client
        return open_store(f"s3://{bucket}", client=client), key
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if uri.startswith("/"):
        return LocalStore("/"), uri.lstrip("/")
    return default, uri


def store_from_settings(settings: Any = None) -> Store:
    """The store named by ``REFIT_STORE`` (default ``./.refit``)."""
    from refit.config import Settings

    settings = settings or Settings()
    return open_store(settings.store, endpoint_url=settings.s3_endpoint_url)
