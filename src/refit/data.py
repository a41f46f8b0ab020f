"""Reading a run's input data and validating it, with the quarantine written to the store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from refit.config import PipelineConfig
from refit.contracts import import_object
from refit.errors import DataError, NoSuchBucketError, NotFoundError
from refit.fingerprint import DatasetFingerprint, fingerprint_frame
from refit.io import Store, open_location
from refit.io.frames import FORMATS, read_frame, write_frame
from refit.io.layout import LAYOUT
from refit.timestamps import utc_timestamp
from refit.validation import ValidationResult, check_frame_shape, enforce, schema_of, text_columns, validate_frame


@dataclass(frozen=True)
class SourceFile:
    store: Store
    key: str
    #: A local path looked for first, and not there (named too when the key is not found either).
    also_tried: str | None = None

    @property
    def uri(self) -> str:
        return self.store.uri_for(self.key)


def resolve_sources(store: Store, sources: list[str]) -> list[SourceFile]:
    """Expand keys, URIs and globs into files; a pattern that matches nothing is an error."""
    files: list[SourceFile] = []
    for ref in sources:
        src_store, pattern = open_location(ref, store)
        keys = [k for k in src_store.glob(pattern) if k.endswith(FORMATS)]
        if not keys:
            raise DataError(f"no data files match {ref!r} in {src_store.uri}")
        files.extend(SourceFile(src_store, k) for k in keys)
    return files


def read_sources(files: list[SourceFile], schema_model: Any) -> tuple[pd.DataFrame, pd.Series]:
    """Read every file (each checked for frame-level faults under its own name) and concatenate.

    Returns the rows and, aligned with them, the URI of the file each row came from.
    """
    frames, origins = [], []
    text = text_columns(schema_model)
    for f in files:
        try:
            df = read_frame(f.store, f.key, text)
        except NotFoundError as exc:
            tried = f" (nor a file {f.also_tried})" if f.also_tried and not isinstance(exc, NoSuchBucketError) else ""
            raise DataError(f"{exc}{tried}") from None
        check_frame_shape(df, schema_model, f.uri)
        frames.append(df)
        origins.append(pd.Series([f.uri] * len(df), dtype="category"))
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    return frame, pd.concat(origins, ignore_index=True).astype(str) if len(origins) > 1 else origins[0].astype(str)


def schema_for(config: PipelineConfig, kind: str = "training") -> Any:
    """The contract rows of ``kind`` are validated against: the declared schema, with the
    target's labels held to ``dataset.classes`` when the config declares them."""
    if kind == "training":
        return _with_declared_classes(import_object(config.dataset.schema_path), config)
    if kind == "capture":
        if not config.dataset.capture_schema:
            raise DataError("the config has no dataset.capture_schema")
        return _with_declared_classes(import_object(config.dataset.capture_schema), config)
    raise ValueError(f"unknown schema kind {kind!r}")


def _with_declared_classes(schema_model: Any, config: PipelineConfig) -> Any:
    """``schema_model`` with an ``isin`` rule on the target for ``dataset.classes``: a label
    outside them is quarantined, the reason naming the key (missing labels stay allowed where
    the schema allows them, as in captures before the label arrives)."""
    ds = config.dataset
    if ds.classes is None:
        return schema_model
    import pandera.pandas as pa

    schema = schema_of(schema_model)
    if ds.target not in schema.columns:
        return schema
    checks = schema.columns[ds.target].checks
    if any(c.name == "isin" and set((c.statistics or {}).get("allowed_values", ())) == set(ds.classes) for c in checks):
        return schema  # the schema says the same already: one rule, not the same failure twice
    rule = pa.Check.isin(list(ds.classes), error=f"isin dataset.classes {list(ds.classes)}")
    return schema.update_column(ds.target, checks=[*checks, rule])


def label_rules(config: PipelineConfig) -> Any:
    """The training contract's rules for the target alone (its dtype, the schema's checks on it,
    ``dataset.classes``): what a drift check holds the labels it joins to, as training holds the
    same captures' labels (a label ``"urgent"`` outside the classes, ``-500`` minutes where the
    schema says ``ge=0``, is quarantined with its rule instead of being judged). Other columns
    pass as they are."""
    import pandera.pandas as pa

    schema = schema_of(schema_for(config, "training"))
    target = config.dataset.target  # in the schema: the config's load checked it (refit.contracts)
    return pa.DataFrameSchema({target: schema.columns[target]}, coerce=schema.coerce, name=f"{schema.name} (label)")


@dataclass(frozen=True)
class ValidatedData:
    """A handle to validated data: where it is and what it is (small enough for Prefect)."""

    uri: str
    key: str
    fingerprint: DatasetFingerprint
    rows: int
    invalid_rows: int
    quarantine_uri: str | None
    summary_uri: str
    #: Valid rows left out because their timestamp is after the run's ``as_of``.
    later_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "key": self.key,
            "fingerprint": self.fingerprint.to_dict(),
            "rows": self.rows,
            "invalid_rows": self.invalid_rows,
            "quarantine_uri": self.quarantine_uri,
            "summary_uri": self.summary_uri,
            "later_rows": self.later_rows,
        }


#: A sortable UTC time stamp to the microsecond: run ids, quarantine and report keys begin with one.
RUN_STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"


def run_stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime(RUN_STAMP_FORMAT)


def stamp_time(value: str) -> datetime | None:
    """The time a :func:`run_stamp`, or a run id that begins with one, was made; None if it is neither."""
    try:
        return datetime.strptime(value.split("-", 1)[0], RUN_STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def write_quarantine(store: Store, dataset: str, result: ValidationResult, stamp: str) -> tuple[str | None, str]:
    """Write the rejected rows (if any) and the JSON summary; return their URIs."""
    keys = LAYOUT.quarantine(dataset, stamp)
    quarantine_uri = None
    if len(result.quarantine):
        quarantine_uri = write_frame(store, keys.rows, result.quarantine)
    summary = result.summary.to_dict() | {"quarantine_uri": quarantine_uri}
    summary_key = keys.summary
    store.put_bytes(summary_key, json.dumps(summary, indent=2, default=str).encode())
    return quarantine_uri, store.uri_for(summary_key)


def validate_and_quarantine(
    store: Store,
    frame: pd.DataFrame,
    origins: str | pd.Series,
    schema_model: Any,
    dataset: str,
    max_invalid_fraction: float,
) -> tuple[ValidationResult, str | None, str]:
    """Validate, always write quarantine + summary, then stop the run if too many rows are bad.
    ``origins``: the file each row came from, or one name for all (``validate_frame``'s ``source``)."""
    result = validate_frame(frame, schema_model, source=origins, max_invalid_fraction=max_invalid_fraction)
    stamp = run_stamp()
    quarantine_uri, summary_uri = write_quarantine(store, dataset, result, stamp)
    if quarantine_uri:
        result = ValidationResult(
            valid=result.valid,
            quarantine=result.quarantine,
            summary=_with_uri(result.summary, quarantine_uri),
        )
    enforce(result.summary)
    return result, quarantine_uri, summary_uri


def _with_uri(summary: Any, uri: str) -> Any:
    from dataclasses import replace

    return replace(summary, quarantine_uri=uri)


def locate(store: Store, path: str) -> SourceFile:
    """A file given by the user: an s3:// URI, an existing local path, or a key in the store."""
    import os

    if path.startswith(("s3://", "file://")) or os.path.isabs(path):
        src_store, key = open_location(path, store)
        return SourceFile(src_store, key)
    if os.path.exists(path):
        src_store, key = open_location(os.path.abspath(path), store)
        return SourceFile(src_store, key)
    return SourceFile(store, path, also_tried=os.path.abspath(path))


def validate_file(store: Store, config: PipelineConfig, path: str, kind: str = "training") -> dict[str, Any]:
    """Validate one file; quarantine and summary go to the store. Frame-level faults raise."""
    schema_model = schema_for(config, kind)
    src = locate(store, path)
    frame, origins = read_sources([src], schema_model)
    result = validate_frame(
        frame, schema_model, source=origins, max_invalid_fraction=config.validation.max_invalid_fraction
    )
    quarantine_uri, summary_uri = write_quarantine(store, config.dataset.name, result, run_stamp())
    summary = _with_uri(result.summary, quarantine_uri) if quarantine_uri else result.summary
    out = summary.to_dict() | {
        "file": src.uri,
        "summary_uri": summary_uri,
        "fingerprint": fingerprint_frame(result.valid).to_dict(),
    }
    if not summary.passed:
        out["error"] = summary.one_line()
    return out


def read_training_rows(
    store: Store, config: PipelineConfig, extra: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """The configured sources plus ``extra`` rows (e.g. labelled captures), and where each row
    came from; read, not validated, nothing written."""
    frame, origins = read_sources(resolve_sources(store, config.dataset.sources), schema_for(config, "training"))
    if extra is not None and len(extra):
        frame = pd.concat([frame, extra.drop(columns=["_refit_source"], errors="ignore")], ignore_index=True)
        origins = pd.concat(
            [origins, extra.get("_refit_source", pd.Series(["captures"] * len(extra))).astype(str)], ignore_index=True
        )
    return frame, origins


def stage_validated(
    store: Store,
    config: PipelineConfig,
    run_id: str,
    extra: pd.DataFrame | None = None,
    as_of: datetime | None = None,
) -> tuple[ValidatedData, ValidationResult]:
    """Read the configured sources (plus ``extra`` rows, e.g. labelled captures), validate them,
    quarantine bad rows, stop when too many are bad, and stage the valid rows in the run's folder
    (:meth:`refit.io.layout.StoreLayout.run`) for the next step.

    ``as_of``: only rows whose ``dataset.timestamp_column`` is at or before it are staged (a
    retrain as of then trains on what was known then; the rest are counted in ``later_rows``).
    """
    schema_model = schema_for(config, "training")
    frame, origins = read_training_rows(store, config, extra)
    result, quarantine_uri, summary_uri = validate_and_quarantine(
        store, frame, origins, schema_model, config.dataset.name, config.validation.max_invalid_fraction
    )
    valid, later = result.valid, 0
    if as_of is not None:
        # a row without a time is not known to be later: kept (validation judged its nullability)
        known = ~(pd.to_datetime(valid[config.dataset.timestamp_column], utc=True) > utc_timestamp(as_of)).to_numpy()
        later = int((~known).sum())
        if later:
            valid = valid[known].reset_index(drop=True)
    key = LAYOUT.run(config.dataset.name, run_id).validated
    uri = write_frame(store, key, valid)
    handle = ValidatedData(
        uri=uri,
        key=key,
        fingerprint=fingerprint_frame(valid),
        rows=len(valid),
        invalid_rows=result.summary.invalid_rows,
        quarantine_uri=quarantine_uri,
        summary_uri=summary_uri,
        later_rows=later,
    )
    return handle, result
