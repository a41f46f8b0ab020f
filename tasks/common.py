"""What every refit task shares: opening the store from a handle, and which errors are worth a retry."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from refit.errors import StoreError
from refit.io import Store, store_from_settings


def open_run_store(store_uri: str) -> Store:
    """Exactly the store the flow chose (:func:`refit.io.resolve_store_uri`, once per run).

    Tasks receive it as a URI (a handle), never as a client object, and never look for one in
    the environment: a run that wrote anywhere else than its flow said would be a silent split.
    """
    if not store_uri:
        raise ValueError("a task needs its run's store URI: the flow resolves it once and passes it down")
    return store_from_settings(uri=store_uri)


def transient_store_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only I/O faults that may pass (a flaky endpoint), never bad data, missing keys or full disks."""
    try:
        state.result()
    except StoreError as exc:
        return exc.transient
    except Exception:
        return False
    return False


P = ParamSpec("P")
R = TypeVar("R")

#: How often an I/O step is retried after a transient store error, and how long apart (s).
IO_RETRY_COUNT = 2
IO_RETRY_DELAY_S = 2


def io_task(name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A step that reads or writes the store: retried on transient store errors, never cached.

    One home for the retry policy of every I/O task (spelled out, so each task keeps its
    parameter and return types for the type checker).
    """
    return task(
        name=name,
        cache_policy=NO_CACHE,
        retries=IO_RETRY_COUNT,
        retry_delay_seconds=IO_RETRY_DELAY_S,
        retry_condition_fn=transient_store_error,
    )


# --- artifacts: what the Prefect UI shows ---------------------------------------------------------


def artifact_key(model: str, kind: str) -> str:
    """One key per model and kind of artifact, so the UI's Artifacts page keeps each one's history.

    Prefect keys allow lowercase letters, digits and dashes only.
    """
    return re.sub(r"[^a-z0-9-]+", "-", f"{model}-{kind}".lower()).strip("-")


def store_link(store: Store, uri: str) -> tuple[str, str]:
    """(link, text) for an object of ``store``: the link a person can open (``Store.browse_url``:
    ``file://`` locally, the AWS console or the store's own S3 endpoint), the URI as the text
    (paste it into ``aws s3 cp``)."""
    text = uri if uri.startswith("s3://") else str(Path(uri.removeprefix("file://")).resolve())
    return store.browse_url(uri), text


def flat_rows(values: Mapping[str, Any], prefix: str = "") -> list[dict[str, str]]:
    """A nested result as ``item``/``value`` rows with dotted names: no Python reprs in a table."""
    rows: list[dict[str, str]] = []
    for name, value in values.items():
        item = f"{prefix}{name}"
        if isinstance(value, Mapping):
            rows.extend(flat_rows(value, prefix=f"{item}.") if value else [{"item": item, "value": ""}])
        elif isinstance(value, (list, tuple)):
            rows.append({"item": item, "value": ", ".join(_cell(v) for v in value)})
        else:
            rows.append({"item": item, "value": _cell(value)})
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)
