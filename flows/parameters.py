"""What every flow run is told first: which config, and which store."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from prefect import Task


class RunParameters(BaseModel):
    """The fields every flow's parameters start with (the Prefect UI renders them first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config_path: str = Field("refit.yaml", description="Pipeline config (YAML), as seen by the worker.")
    store: str | None = Field(
        None,
        description="Store URI (a folder, or s3://bucket/prefix) this run reads and writes "
        "(empty: REFIT_STORE of the worker, else ./.refit).",
    )


P = TypeVar("P", bound=RunParameters)


def merge_defaults(params: P, defaults: dict[str, Any]) -> P:
    """``params`` with every field the run did not set taken from ``defaults`` (its deployment's).

    Prefect merges a run's parameters into its deployment's at the top level only, so
    ``prefect deployment run ... -p params='{"reason": "x"}'`` would replace the deployment's
    whole ``params`` and silently drop its ``config_path``, ``store`` and ``window_days``. A field
    the run names wins; the UI's Custom run sends every field, so nothing changes there.
    """
    known = {k: v for k, v in defaults.items() if k in type(params).model_fields and k not in params.model_fields_set}
    if not known:
        return params
    return type(params).model_validate(known | params.model_dump(include=params.model_fields_set))


def with_deployment_defaults(params: P) -> P:
    """:func:`merge_defaults` with the ``params`` this run's deployment declares (none outside one)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import deployment

    deployment_id = deployment.id
    if deployment_id is None:
        return params
    with get_client(sync_client=True) as client:
        declared = client.read_deployment(deployment_id).parameters.get("params")
    return merge_defaults(params, declared) if isinstance(declared, dict) else params


T = TypeVar("T", bound="Task[Any, Any]")


class RunBudget:
    """The YAML's timeouts applied through Prefect's ``timeout_seconds``, step by step.

    Each step gets its own limit, cut to what is left of the whole run's (``timeouts.retrain_s``
    or ``drift_check_s``): a deployment's flow is loaded from its entrypoint, so the run's limit
    cannot ride on the flow's decorator; it rides on its steps. A step that would start after the
    run's time is up fails the run at once.
    """

    def __init__(self, run_s: float, what: str) -> None:
        self.what = what
        self.run_s = run_s
        self.deadline = time.monotonic() + run_s

    def step(self, task: T, limit_s: float) -> T:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{self.what} ran past its {self.run_s:g} s (timeouts in the config); stopped")
        return task.with_options(timeout_seconds=min(limit_s, left))  # type: ignore[return-value]

    def report(self, task: T, limit_s: float) -> T:
        """A step that reports what the run already decided (a summary, tracking): it gets its own
        limit even when the run's time is up, because failing now would not undo a promotion and
        would announce a model that was promoted as a failed run."""
        left = self.deadline - time.monotonic()
        return task.with_options(timeout_seconds=min(limit_s, left) if left > 0 else limit_s)  # type: ignore[return-value]
