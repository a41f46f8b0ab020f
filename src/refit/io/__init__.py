"""Store adapters: ``open_store`` picks the backend from a URI."""

from __future__ import annotations

from pathlib import Path
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
    "resolve_store_uri",
    "store_from_settings",
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


def resolve_store_uri(explicit: str | None = None, settings: Any = None) -> str:
    """Which store a run or a command uses: the one rule, applied once where the run starts.

    ``explicit`` (a flow's ``store`` parameter, what a CLI command or the webhook was started
    with) wins; when it is empty, ``REFIT_STORE`` (:class:`refit.config.Settings`), whose default
    is ``./.refit``. A local folder comes back absolute (``file://`` dropped), so the URI names
    the same store in a worker or a served deployment that runs in another folder.
    """
    uri = (explicit or "").strip()
    if not uri:
        from refit.config import Settings

        uri = (settings or Settings()).store
    if uri.startswith("s3://"):
        return uri
    return str(Path(uri.removeprefix("file://")).expanduser().resolve())


def store_from_settings(settings: Any = None, uri: str | None = None) -> Store:
    """The store at ``uri`` (empty: :func:`resolve_store_uri`'s choice), S3 through the settings'
    endpoint (``REFIT_S3_ENDPOINT_URL``, else ``AWS_ENDPOINT_URL``): the store is named by the
    caller, the way to reach S3 belongs to the machine."""
    from refit.config import Settings

    settings = settings or Settings()
    return open_store(resolve_store_uri(uri, settings), endpoint_url=settings.s3_endpoint_url)
