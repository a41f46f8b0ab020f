"""The I/O tasks' retry policy, on a real Prefect API: a transient store fault is retried, a permanent one is not."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow

import tasks.retrain as retrain_tasks
from refit.config_loader import load_config
from refit.data import ValidatedData
from refit.errors import AccessDeniedError, DataError, NotFoundError, PreconditionFailedError, StoreError
from refit.io import LocalStore, Store
from refit.io.base import Blob
from tasks.common import IO_RETRY_COUNT, transient_store_error
from tests.flows.helpers import make_project


class FaultyStore(Store):
    """A local store whose first ``failures`` listings raise ``error``."""

    def __init__(self, inner: LocalStore, error: StoreError, failures: int) -> None:
        self.inner, self.error, self.failures = inner, error, failures
        self.uri = inner.uri
        self.listings = 0

    def list(self, prefix: str = "") -> list[str]:
        self.listings += 1
        if self.listings <= self.failures:
            raise self.error
        return self.inner.list(prefix)

    def get(self, key: str) -> Blob:
        return self.inner.get(key)

    def put_bytes(self, key: str, data: bytes) -> str:
        return self.inner.put_bytes(key, data)

    def put_if_absent(self, key: str, data: bytes) -> str:
        return self.inner.put_if_absent(key, data)

    def put_if_unchanged(self, key: str, data: bytes, version: str) -> str:
        return self.inner.put_if_unchanged(key, data, version)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def run_load_and_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: FaultyStore) -> ValidatedData:
    config_path, _ = make_project(tmp_path, rows=2000)
    config = load_config(config_path)
    monkeypatch.setattr(retrain_tasks, "open_run_store", lambda uri: store)

    @flow(name="load-only")
    def load_only() -> ValidatedData:
        return retrain_tasks.load_and_validate(store.uri, config, "run-1", None)

    return load_only()


def test_a_transient_store_fault_is_retried_and_the_step_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FaultyStore(
        LocalStore(tmp_path / "store"), StoreError("cannot list: Input/output error (EIO)", transient=True), failures=1
    )
    handle = run_load_and_validate(tmp_path, monkeypatch, store)
    assert handle.rows == 2000
    assert store.listings > 1  # the first attempt failed on its first listing, the second went on


def test_a_permanent_store_fault_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    error = StoreError("cannot list: No space left on device (ENOSPC)", transient=False)
    store = FaultyStore(LocalStore(tmp_path / "store"), error, failures=IO_RETRY_COUNT + 1)
    with pytest.raises(StoreError, match="ENOSPC"):
        run_load_and_validate(tmp_path, monkeypatch, store)
    assert store.listings == 1  # not retried


def test_a_transient_fault_that_persists_fails_after_the_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = StoreError("S3 unreachable on list s3://b/datasets/", transient=True)
    store = FaultyStore(LocalStore(tmp_path / "store"), error, failures=100)
    with pytest.raises(StoreError, match="unreachable"):
        run_load_and_validate(tmp_path, monkeypatch, store)
    assert store.listings == IO_RETRY_COUNT + 1


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (StoreError("S3 unreachable on get s3://b/k"), True),
        (StoreError("cannot write /s/k: Input/output error (EIO)", transient=True), True),
        (StoreError("cannot write /s/k: No space left on device (ENOSPC)", transient=False), False),
        (NotFoundError("not found: /s/k"), False),
        (AccessDeniedError("access denied"), False),
        (PreconditionFailedError("precondition failed"), False),
        (DataError("bad rows"), False),
    ],
)
def test_tasks_retry_only_transient_store_errors(error: Exception, retried: bool) -> None:
    """The retry condition itself, for every kind of store fault (the tests above run three through Prefect)."""

    class FailedState:
        def result(self) -> None:
            raise error

    assert transient_store_error(None, None, FailedState()) is retried
