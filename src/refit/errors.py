"""Exceptions refit raises. Each message is one line a user can act on."""

from __future__ import annotations


class RefitError(Exception):
    """Base class: everything refit raises on purpose."""


class ConfigError(RefitError):
    """A configuration file or setting is invalid."""


class StoreError(RefitError):
    """A store operation failed."""


class NotFoundError(StoreError):
    """The key (or bucket) does not exist."""


class NoSuchBucketError(NotFoundError):
    """The S3 bucket does not exist."""


class AccessDeniedError(StoreError):
    """Credentials do not allow the operation."""


class PreconditionFailedError(StoreError):
    """A conditional write lost: the key exists, or changed since it was read."""


class InvalidKeyError(StoreError, ValueError):
    """A key is not a safe relative path."""


class DataError(RefitError):
    """Input data cannot be read or fails its contract."""


class ValidationFailedError(DataError):
    """Validation stopped the run (too many bad rows, or a frame-level fault)."""


class RegistryError(RefitError):
    """A model-registry request cannot be served: unknown model, alias or version, or a bad ref."""


class ConflictError(RegistryError):
    """Another writer moved an alias since it was read: re-read and retry."""
