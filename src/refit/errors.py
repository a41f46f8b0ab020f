"""Exceptions refit raises. Each message is one line a user can act on."""

from __future__ import annotations


class RefitError(Exception):
    """Base class: everything refit raises on purpose."""


class ConfigError(RefitError):
    """A configuration file or setting is invalid."""


class StoreError(RefitError):
    """A store operation failed.

    ``transient`` says whether the same call may succeed if simply retried (a flaky endpoint,
    an I/O hiccup) or will fail the same way until someone acts (a read-only or full disk,
    a missing key, denied credentials). Task retries read it; nothing else decides.
    """

    transient: bool = True

    def __init__(self, message: str = "", *, transient: bool | None = None) -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient


class NotFoundError(StoreError):
    """The key (or bucket) does not exist."""

    transient = False


class NoSuchBucketError(NotFoundError):
    """The S3 bucket does not exist."""


class AccessDeniedError(StoreError):
    """Credentials do not allow the operation."""

    transient = False


class PreconditionFailedError(StoreError):
    """A conditional write lost: the key exists, or changed since it was read."""

    transient = False


class InvalidKeyError(StoreError, ValueError):
    """A key is not a safe relative path."""

    transient = False


class DataError(RefitError):
    """Input data cannot be read or fails its contract."""


class ValidationFailedError(DataError):
    """Validation stopped the run (too many bad rows, or a frame-level fault)."""


class RegistryError(RefitError):
    """A model-registry request cannot be served: unknown model, alias or version, or a bad ref."""


class ConflictError(RegistryError):
    """Another writer moved an alias since it was read: re-read and retry."""


class ModelArtifactError(RefitError):
    """A model artifact is missing, damaged, or holds something refit will not load."""


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (libraries' messages run long); its type if empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
