"""Drift and performance decay of a production window against the model's reference data.

Evidently runs behind :mod:`refit.compat.evidently`, the only module that imports it (lazily,
inside the functions that run it: the import costs seconds and most callers only need the
result types or the history). This package returns our own typed results, so an Evidently
upgrade changes that module and nothing else.

How a check runs:

1. Both frames are cut to a bounded sample (``cfg.sample_size`` rows each), drawn with a seed
   and stratified by ``cfg.stratify_by`` when it is set (24 equal time buckets for a datetime
   column, the values of any other column), so a million-row window costs what 20,000 rows
   cost and every hour (or segment) keeps its share of the sample.
2. Every column gets a kind (categorical: strings, booleans, declared columns, whole numbers
   with few values) and an explicit method (``cfg.num_method`` / ``cfg.cat_method``,
   overridden by ``cfg.column_methods``; a column constant in the reference: the bounded
   new-value test). Evidently's automatic choice depends on the row count, so it is never used.
3. :func:`check_drift`, the one entry point, scores each column. ``threshold_mode:
   calibrated`` (default): the score of :func:`refit.drift.null.score_counts` (Evidently's stat
   test) gets a p-value from the null distribution of that score for a window of the same size
   drawn from the reference (cached per champion and size bucket, :class:`StoreNullCache`),
   and Holm across the features at ``cfg.alpha`` decides. ``fixed``: Evidently's stat tests at
   the configured thresholds and the drift-share rule.
4. :func:`render_report` renders Evidently's ``DataDriftPreset`` report of the same samples at
   the thresholds the verdict used, only when the report is stored (it is most of a check's
   time); the flow stores it when the decision changes (``refit.monitoring.record_drift_check``).

The modules, in the order a check uses them: :mod:`~refit.drift.records` (the typed results),
:mod:`~refit.drift.caches`, :mod:`~refit.drift.sampling`, :mod:`~refit.drift.kinds`,
:mod:`~refit.drift.plan`, :mod:`~refit.drift.null` (scores and their null distributions),
:mod:`~refit.drift.calibration` (the verdicts), :mod:`~refit.drift.check` (the entry point and
the report) and :mod:`~refit.drift.history` (what is stored per check). Import from
``refit.drift``: the names below are its public API.
"""

from __future__ import annotations

from refit.drift.caches import MemoryNullCache, NullCache, ReferenceCache, StoreNullCache
from refit.drift.calibration import calibrate
from refit.drift.check import check_drift, render_report
from refit.drift.history import (
    append_drift_history,
    latest_drift_record,
    plot_drift_history,
    prune_reports,
    read_drift_history,
)
from refit.drift.kinds import column_kind, reference_kinds
from refit.drift.records import ColumnDrift, DriftCheck, DriftResult, score_ratio
from refit.drift.sampling import NUMERIC_STRATA, TIME_BUCKETS, stratified_sample_positions

__all__ = [
    "ColumnDrift",
    "DriftCheck",
    "DriftResult",
    "MemoryNullCache",
    "NUMERIC_STRATA",
    "NullCache",
    "ReferenceCache",
    "StoreNullCache",
    "TIME_BUCKETS",
    "append_drift_history",
    "calibrate",
    "check_drift",
    "column_kind",
    "latest_drift_record",
    "plot_drift_history",
    "prune_reports",
    "read_drift_history",
    "reference_kinds",
    "render_report",
    "score_ratio",
    "stratified_sample_positions",
]
