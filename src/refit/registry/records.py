"""The registry's records: a version's metadata, an alias move, a comparison (JSON in the store)."""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field, field_validator

from refit.errors import RegistryError
from refit.fingerprint import DatasetFingerprint
from refit.jsonable import finite_or_none
from refit.records import TolerantRecord

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ALIAS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
#: ``NAME``, ``NAME@ALIAS`` or ``NAME:VERSION``: how a registered version is referred to.
MODEL_REF = re.compile(r"(?P<name>[^@:]+)(?:@(?P<alias>[^@:]+)|:(?P<version>[^@:]+))?")


def is_model_ref(text: str) -> bool:
    """Whether ``text`` names a registered version explicitly (``NAME@ALIAS`` or ``NAME:VERSION``)
    rather than a path or URI: no slash, and an ``@`` or a ``:`` after a valid model name."""
    if "/" in text or "\\" in text:
        return False
    m = MODEL_REF.fullmatch(text.strip())
    return bool(m and (m["alias"] or m["version"]) and _MODEL_NAME.fullmatch(m["name"]))


class DatasetRecord(TolerantRecord):
    """The fingerprint of one dataset a version was trained or evaluated on."""

    sha256: str
    rows: int
    columns: int | None = None


class ModelVersion(TolerantRecord):
    """The immutable metadata of one registered version (``version.json``)."""

    schema_version: int = 1
    name: str
    version: int
    created_at: datetime
    author: str
    git_commit: str | None = None
    run_id: str | None = Field(None, description="Registering twice with one run id returns the first version.")
    artifact_uri: str
    artifact_files: list[str] = Field(default_factory=list, description="Files kept under versions/<n>/artifact/.")
    datasets: dict[str, DatasetRecord] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict, description="Overall; NaN is stored as null.")
    segment_metrics: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    decision: dict[str, Any] | str | None = Field(None, description="The gate decision (outcome, checks, segments).")
    dossier_uris: list[str] = Field(default_factory=list)
    compared_with: int | None = Field(None, description="The champion version this one was evaluated against.")
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    reference_uri: str | None = Field(None, description="The drift reference sample (parquet).")
    manifest_sha256: str | None = Field(
        None,
        description="sha256 of the artifact's manifest.json at registration: every load through the "
        "registry checks it. None: registered before refit recorded it (files checked against their "
        "own manifest only).",
    )

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics_finite(cls, value: Any) -> Any:
        return {str(k): finite_or_none(v) for k, v in value.items()} if isinstance(value, Mapping) else value

    @field_validator("segment_metrics", mode="before")
    @classmethod
    def _segments_finite(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        return {str(s): {str(k): finite_or_none(v) for k, v in m.items()} for s, m in value.items()}

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class AliasEvent(TolerantRecord):
    """One alias move in the append-only history."""

    seq: int
    event_id: str
    name: str
    alias: str
    action: Literal["set", "remove", "rollback"]
    from_version: int | None
    to_version: int | None
    at: datetime
    author: str
    reason: str = ""
    forced: bool = Field(False, description="Moved without checking where the alias pointed.")


class MetricDelta(TolerantRecord):
    metric: str
    a: float | None
    b: float | None
    delta: float | None = Field(description="b - a; None when either side is missing.")


class VersionDiff(TolerantRecord):
    """Metrics of two versions side by side, overall and per segment."""

    name: str
    a: int
    b: int
    overall: list[MetricDelta]
    segments: dict[str, list[MetricDelta]]

    def to_frame(self) -> pd.DataFrame:
        """One row per (segment, metric); the overall rows have segment ``None``."""
        rows: list[tuple[str | None, str, float | None, float | None, float | None]]
        rows = [(None, d.metric, d.a, d.b, d.delta) for d in self.overall]
        rows += [(seg, d.metric, d.a, d.b, d.delta) for seg, ds in self.segments.items() for d in ds]
        return pd.DataFrame(rows, columns=["segment", "metric", "a", "b", "delta"])


def default_author() -> str:
    """``REFIT_AUTHOR``, else the OS user, else ``unknown``."""
    env = os.environ.get("REFIT_AUTHOR", "").strip()
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers)
        return "unknown"


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise RegistryError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (starting with a letter or digit)"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS_NAME.fullmatch(alias):
        raise RegistryError(
            f"invalid alias {alias!r}: use lowercase letters, digits, '_' or '-', starting with a letter"
        )
    return alias


def dataset_record(value: DatasetRecord | DatasetFingerprint | Mapping[str, Any]) -> DatasetRecord:
    if isinstance(value, DatasetFingerprint):
        return DatasetRecord(sha256=value.sha256, rows=value.rows, columns=value.columns)
    return DatasetRecord.model_validate(value)


def record_json(model: BaseModel) -> bytes:
    return model.model_dump_json(indent=2).encode()


def show_version(version: int | None) -> str:
    return "(unset)" if version is None else str(version)


def metric_deltas(a: Mapping[str, float | None], b: Mapping[str, float | None]) -> list[MetricDelta]:
    out = []
    for metric in sorted(set(a) | set(b)):
        va, vb = a.get(metric), b.get(metric)
        out.append(MetricDelta(metric=metric, a=va, b=vb, delta=None if va is None or vb is None else vb - va))
    return out
