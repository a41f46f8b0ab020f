"""What every refit task shares: opening the store from a handle, and which errors are worth a retry."""

from __future__ import annotations

from typing import Any

from refit.errors import StoreError
from refit.io import Store, open_store, store_from_settings


def open_run_store(store_uri: str | None) -> Store:
    """Tasks receive the store as a URI (a handle), never as a client object."""
    return open_store(store_uri) if store_uri else store_from_settings()


def transient_store_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only I/O faults that may pass (a flaky endpoint), never bad data, missing keys or full disks."""
    try:
        state.result()
    except StoreError as exc:
        return exc.transient
    except Exception:
        return False
    return False
