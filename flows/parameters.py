"""What every flow run is told first: which config, and which store."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RunParameters(BaseModel):
    """The fields every flow's parameters start with (the Prefect UI renders them first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config_path: str = Field("refit.yaml", description="Pipeline config (YAML), as seen by the worker.")
    store: str | None = Field(
        None,
        description="Store URI (a folder, or s3://bucket/prefix) this run reads and writes "
        "(empty: REFIT_STORE of the worker, else ./.refit).",
    )
