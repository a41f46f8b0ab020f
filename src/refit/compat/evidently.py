"""Evidently behind one module: every call refit makes into it, and the shortcuts among them.

``refit.drift`` decides what to test (samples, methods, thresholds) and what the results mean;
this module runs the tests. Evidently is imported inside the functions (the import costs
seconds; importing ``refit.drift`` must not pay it).

Two shortcuts reach past Evidently's public API, and are taken only while the installed
Evidently is in :data:`TESTED` and has what they use (:func:`internals_available`):

* the stat-test registry of the ``evidently.legacy`` namespace, to look up a method's default
  threshold and to run a column's test directly, without the per-column plots of a report
  (seconds on a wide frame);
* reading the drift report from its serialised form (``Snapshot.dict()`` and its metric type
  strings), which also yields Evidently's own drifted-column count to cross-check.

Otherwise the public path gives the same numbers, slower: a ``Report`` of one ``ValueDrift``
metric per column, its results looked up by metric id in ``Snapshot.metric_results`` (and a
one-column report on a small frame for a method's default threshold).
``tests/unit/test_compat_evidently.py`` checks both paths against each other.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import pandas as pd

from refit import compat

#: Evidently versions the shortcuts are tested with: at least the first, older than the second.
TESTED = ("0.7.23", "0.8")

ColumnKind = Literal["numerical", "categorical"]
#: Per column: (score, drifted).
Verdicts = dict[str, tuple[float, bool]]

_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"


@functools.cache
def internals_available() -> bool:
    """Is the installed Evidently one the shortcuts know? Decided once per process."""
    if not compat.version_in_range("evidently", *TESTED):
        return False
    try:
        from evidently.legacy.calculations.stattests.registry import get_registered_stattest, get_stattest
        from evidently.legacy.core import ColumnType
    except ImportError:
        compat.log.warning("evidently.legacy is gone: refit runs Evidently's public API (slower)")
        return False
    return callable(get_registered_stattest) and callable(get_stattest) and hasattr(ColumnType, "Numerical")


@functools.cache
def engine_version() -> str:
    """``"evidently <version>"``, as drift results record it."""
    return f"evidently {compat.installed_version('evidently')}"  # from the metadata: no import


@contextmanager
def _quiet() -> Iterator[None]:
    # Evidently 0.7 calls pandas APIs that warn about future pandas behaviour, and its
    # performance presets ask scikit-learn for metrics of its own small groups (R^2 of a group of
    # one row), which warn on the user's terminal about a part of the report it leaves empty.
    from sklearn.exceptions import UndefinedMetricWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        yield


def _dataset(frame: pd.DataFrame, kinds: Mapping[str, ColumnKind]) -> Any:
    from evidently import DataDefinition, Dataset

    definition = DataDefinition(
        numerical_columns=[c for c in frame.columns if kinds[c] == "numerical"],
        categorical_columns=[c for c in frame.columns if kinds[c] == "categorical"],
    )
    return Dataset.from_pandas(frame, data_definition=definition)


def _value_drift(column: str, method: str, threshold: float | None) -> Any:
    from evidently.metrics import ValueDrift

    return ValueDrift(column=column, method=method, threshold=threshold)


def _run(items: list[Any], reference: pd.DataFrame, current: pd.DataFrame, kinds: Mapping[str, ColumnKind]) -> Any:
    from evidently import Report

    with _quiet():
        return Report(items, include_tests=True).run(_dataset(current, kinds), _dataset(reference, kinds))


def _verdicts_by_id(snapshot: Any, metrics: Mapping[str, Any]) -> Verdicts:
    """Per column (score, drifted) of its ``ValueDrift`` metric, looked up by metric id."""
    out: Verdicts = {}
    for column, metric in metrics.items():
        result = snapshot.metric_results[metric.get_metric_id()]
        tests = [t for t in result.tests if t.id == "drift"]
        if not tests:
            raise RuntimeError(f"Evidently returned no drift verdict for column {column!r}")
        out[column] = (float(result.value), str(getattr(tests[0].status, "value", tests[0].status)) == "FAIL")
    return out


# --------------------------------------------------------------------------------------------
# A method's default threshold


@functools.cache
def _probe_threshold(method: str, kind: ColumnKind) -> float:
    """The threshold a ``ValueDrift`` metric resolves for ``method`` when given none."""
    values: list[Any] = list(np.linspace(0.0, 1.0, 20)) if kind == "numerical" else ["a", "b"] * 10
    frame = pd.DataFrame({"probe": pd.Series(values, dtype="float64" if kind == "numerical" else object)})
    try:
        snapshot = _run([_value_drift("probe", method, None)], frame, frame, {"probe": kind})
    except Exception as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return float(snapshot.tests_results[0].metric_config.params["threshold"])


def default_threshold(method: str, kind: ColumnKind) -> float:
    """The default threshold of Evidently's stat test ``method`` for a ``kind`` column.

    Raises:
        ValueError: Evidently has no such test for that kind of column.
    """
    if not internals_available():
        return _probe_threshold(method, kind)
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
    return float(get_registered_stattest(method, column_type).default_threshold)


# --------------------------------------------------------------------------------------------
# Stat tests without a report


def run_stattests(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[str, ColumnKind],
    methods: Mapping[str, str],
    thresholds: Mapping[str, float],
) -> Verdicts:
    """Per column of ``reference`` (score, drifted), by the stat tests ``DataDriftPreset`` runs.

    The same registered Evidently test, threshold and cleaning (infinities and missing values
    dropped) as ``get_one_column_drift``, which each of the preset's ``ValueDrift`` metrics
    calls; the preset adds plotly widgets for every column, which cost seconds and are only
    needed for the HTML report.
    """
    columns = list(reference.columns)
    if not internals_available():
        metrics = {c: _value_drift(c, methods[c], thresholds[c]) for c in columns}
        return _verdicts_by_id(_run(list(metrics.values()), reference, current, kinds), metrics)
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    out: Verdicts = {}
    for column in columns:
        kind = ColumnType.Numerical if kinds[column] == "numerical" else ColumnType.Categorical
        ref = reference[column].dropna()
        cur = current[column].dropna()
        test = get_stattest(ref, cur, kind, methods[column])
        outcome = test(ref, cur, kind, thresholds[column])
        out[column] = (float(outcome.drift_score), bool(outcome.drifted))
    return out


# --------------------------------------------------------------------------------------------
# The report


def _read_serialised(snapshot: Any) -> tuple[Verdicts, tuple[int, float] | None]:
    """Per column (score, drifted) from ValueDrift, and (count, share) from DriftedColumnsCount."""
    data = snapshot.dict()
    failed = {t["metric_config"]["metric_id"]: t["status"] == "FAIL" for t in data["tests"] if t.get("id") == "drift"}
    per_column: Verdicts = {}
    counted: tuple[int, float] | None = None
    for metric in data["metrics"]:
        kind = metric["config"]["type"]
        if kind == _VALUE_DRIFT:
            column = metric["config"]["column"]
            if metric["id"] not in failed:
                raise RuntimeError(f"Evidently returned no drift verdict for column {column!r}")
            per_column[column] = (float(metric["value"]), failed[metric["id"]])
        elif kind == _DRIFTED_COLUMNS_COUNT:
            counted = (int(metric["value"]["count"]), float(metric["value"]["share"]))
    return per_column, counted


def run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[str, ColumnKind],
    methods: Mapping[str, str],
    thresholds: Mapping[str, float],
    features: Sequence[str],
    prediction: str | None,
    drift_share: float,
) -> tuple[Verdicts, tuple[int, float] | None, str]:
    """Run ``DataDriftPreset`` on ``features`` and ``ValueDrift`` on ``prediction``.

    Returns:
        Per column (score, drifted); Evidently's (drifted count, share) of the features when
        it could be read (None on the public path); the HTML report.
    """
    from evidently.presets import DataDriftPreset

    items: list[Any] = []
    if features:
        items.append(
            DataDriftPreset(
                columns=list(features),
                drift_share=drift_share,
                per_column_method={c: methods[c] for c in features},
                per_column_threshold={c: thresholds[c] for c in features},
            )
        )
    if prediction:
        items.append(_value_drift(prediction, methods[prediction], thresholds[prediction]))
    snapshot = _run(items, reference, current, kinds)
    tested = [*features, *([prediction] if prediction else [])]
    if internals_available():
        per_column, counted = _read_serialised(snapshot)
        if set(per_column) == set(tested):
            return per_column, counted, snapshot.get_html_str(as_iframe=False)
        # the serialised form is not the one this module reads: look the results up instead
    per_column = _verdicts_by_id(snapshot, {c: _value_drift(c, methods[c], thresholds[c]) for c in tested})
    return per_column, None, snapshot.get_html_str(as_iframe=False)


def render_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[str, ColumnKind],
    methods: Mapping[str, str],
    thresholds: Mapping[str, float],
    features: Sequence[str],
    prediction: str | None,
    drift_share: float,
) -> tuple[Verdicts, str]:
    """The HTML of ``DataDriftPreset`` on ``features`` (and one column's drift for
    ``prediction``), and the per-column (score, drifted) it shows.

    The shortcut runs the preset's two widgets only: ``DataDriftPreset`` of 0.7 renders its
    page from the legacy ``DatasetDriftMetric`` and ``DataDriftTable``, after computing every
    column's ``ValueDrift`` with plots of its own that the page never shows (each stat test three
    times, each column's plots twice, about half of a report's time). The legacy report of those
    two metrics is the same page without the duplicates (and without the test list, which
    repeats the table). Otherwise :func:`run_report`'s page.
    """
    if not internals_available():
        public, _, page = run_report(reference, current, kinds, methods, thresholds, features, prediction, drift_share)
        return public, page
    from evidently.legacy.metrics import ColumnDriftMetric, DataDriftTable, DatasetDriftMetric
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report as LegacyReport

    columns = [*features, *([prediction] if prediction else [])]
    stattests = {c: methods[c] for c in features}
    limits = {c: thresholds[c] for c in features}
    table = (
        DataDriftTable(columns=list(features), per_column_stattest=stattests, per_column_stattest_threshold=limits)
        if features
        else None
    )
    metrics: list[Any] = []
    if table is not None:  # what DataDriftPreset.render draws its page from, in its order
        dataset = DatasetDriftMetric(
            columns=list(features),
            drift_share=drift_share,
            per_column_stattest=stattests,
            per_column_stattest_threshold=limits,
        )
        metrics += [dataset, table]
    column = ColumnDriftMetric(prediction, methods[prediction], thresholds[prediction]) if prediction else None
    if column is not None:
        metrics.append(column)
    mapping = ColumnMapping(
        target=None,
        prediction=None,
        numerical_features=[c for c in columns if kinds[c] == "numerical"],
        categorical_features=[c for c in columns if kinds[c] == "categorical"],
    )
    report = LegacyReport(metrics=metrics)
    with _quiet():
        report.run(reference_data=reference[columns], current_data=current[columns], column_mapping=mapping)
        html = report.get_html()
    verdicts: Verdicts = {}
    if table is not None:
        for name, drift in table.get_result().drift_by_columns.items():
            verdicts[name] = (float(drift.drift_score), bool(drift.drift_detected))
    if column is not None and prediction is not None:
        found = column.get_result()
        verdicts[prediction] = (float(found.drift_score), bool(found.drift_detected))
    if set(verdicts) != set(columns):
        raise RuntimeError(f"Evidently's drift report judged {sorted(verdicts)}, not {sorted(columns)}")
    return verdicts, html


# --------------------------------------------------------------------------------------------
# The report's size

#: Evidently's dashboard script is inlined in every report (about 3.5 MB in 0.7); larger than
#: this, a script is that bundle.
_BUNDLE_MIN_CHARS = 1_000_000


def split_bundle(html: str) -> tuple[str, str | None, str | None]:
    """The report without its inlined dashboard script, the script's file name, and the script.

    Every report inlines the same script; stored once beside the reports and loaded by a
    relative ``<script src>``, a report is its data only (well under 1 MB). Returns the report
    unchanged and None twice when no such script is found."""
    import re

    from evidently import __version__

    for match in re.finditer(r"<script>(.*?)</script>", html, flags=re.S):
        if len(match.group(1)) >= _BUNDLE_MIN_CHARS and "drawDashboard" in match.group(1):
            name = f"evidently-{__version__}.js"
            page = html[: match.start()] + f'<script src="{name}"></script>' + html[match.end() :]
            return page, name, match.group(1)
    return html, None, None


# --------------------------------------------------------------------------------------------
# Performance on the labelled rows


def performance_frame(task: str, y: Any, scores: Any, classes: Sequence[Any] | None = None) -> pd.DataFrame | None:
    """The labelled rows as :func:`run_performance_report` reads them: ``target`` and
    ``prediction`` (binary: 0/1 and the positive class's probability; regression: the values);
    multiclass: ``target`` and ``prediction`` as class names and one probability column per class
    of ``classes`` (the order of ``y``'s indices and of the ``(n, K)`` ``scores``' columns). None
    when a class is named like one of those two columns (the report is left out, decay is not).
    Rows without a label (NaN in ``y``: a nullable target) or with a non-finite score are left
    out, as decay leaves them out."""
    y, scores = np.asarray(y, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    keep = ~np.isnan(y) & (np.isfinite(scores).all(axis=1) if scores.ndim == 2 else np.isfinite(scores))
    y, scores = y[keep], scores[keep]
    if task != "multiclass":
        return pd.DataFrame({"target": y, "prediction": scores})
    names = [str(c) for c in classes or []]
    if {"target", "prediction"} & set(names) or len(set(names)) != len(names):
        return None
    frame = pd.DataFrame(scores, columns=names)
    labels = np.asarray(names, dtype=object)
    frame["target"] = labels[y.astype(np.int64)]
    frame["prediction"] = labels[frame[names].to_numpy().argmax(axis=1)]
    return frame


def run_performance_report(
    frame: pd.DataFrame, task: str, target: str, prediction: str
) -> tuple[dict[str, float], str]:
    """``ClassificationPreset`` (binary: ``target`` 0/1, ``prediction`` the positive class's
    probability; multiclass: class names, and every other column a class's probability, as
    :func:`performance_frame` writes them) or ``RegressionPreset`` on ``frame`` alone (no
    reference: the registered metrics are what decay compares with).

    Returns:
        Evidently's headline values by metric name (``RocAuc``, ``Accuracy``, ``RMSE``, ...) and
        the HTML report.
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Regression, Report
    from evidently.presets import ClassificationPreset, RegressionPreset

    if task == "multiclass":
        probas = [c for c in frame.columns if c not in (target, prediction)]
        definition = DataDefinition(
            classification=[
                MulticlassClassification(target=target, prediction_labels=prediction, prediction_probas=probas)
            ]
        )
        preset: Any = ClassificationPreset()
    elif task == "binary":  # 0/1 as integers: float labels make Evidently score the probabilities as labels
        frame = frame.assign(**{target: np.asarray(frame[target]).astype(np.int64)})
        definition = DataDefinition(
            classification=[BinaryClassification(target=target, prediction_probas=prediction, pos_label=1)]
        )
        preset = ClassificationPreset()
    else:
        definition = DataDefinition(regression=[Regression(target=target, prediction=prediction)])
        preset = RegressionPreset()
    with _quiet():
        snapshot = Report([preset]).run(Dataset.from_pandas(frame, data_definition=definition), None)
    values: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        value = metric["value"]
        if isinstance(value, int | float):
            values[metric["config"]["type"].rsplit(":", 1)[-1]] = float(value)
    return values, snapshot.get_html_str(as_iframe=False)
