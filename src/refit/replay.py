"""Replay a labelled history through refit, window by window, as the deployments would have run it.

A user tunes thresholds on their own history before turning the schedule on: given a config
(its ``dataset.sources`` are the data the first model trains on) and production rows with
event times and labels, :func:`replay` walks the history in windows on a scratch store. For
each window it

1. serves the rows with the champion of that moment and captures them (requests, and labels
   arriving at their ``label_time``, or ``label_delay`` after the request);
2. runs the drift check as of the window's end (drift, decay on the labels known by then, the
   governor on the window's clock), exactly the steps of the drift-check flow;
3. when the governor says trigger, runs the retrain recipe as of the same time (captures up to
   then, labels known then), gate and promotion included;

and records the serving champion's metric on the window's labels beside the first model,
never replaced, and a naive baseline (the base data's mean, positive rate or class shares), so the timeline
shows what refit's decisions were worth. Plain Python: no Prefect, no server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from refit.config import PipelineConfig
from refit.contracts import schema_columns
from refit.errors import DataError, RefitError
from refit.io import Store
from refit.io.layout import LAYOUT
from refit.metrics import get_metric, metric_value

#: A window of the timeline is one of these, in order.
_NO_DATA = "no data"


@dataclass(frozen=True)
class ReplayWindow:
    """What happened in one window, and what the models were worth on its labels."""

    index: int
    start: datetime
    end: datetime
    rows: int
    labelled: int
    serving_version: int | None
    serving_metric: float | None
    frozen_metric: float | None
    baseline_metric: float | None
    drift_detected: bool = False
    drift_share: float | None = None
    drifted_columns: list[str] = field(default_factory=list)
    decay_detected: bool = False
    decayed_segments: list[str] = field(default_factory=list)
    labels_known: int = 0
    decision: str = _NO_DATA
    reason: str = ""
    detail: str = ""
    retrain_outcome: str | None = None
    retrain_headline: str | None = None
    gain: float | None = None
    gain_ci: tuple[float | None, float | None] | None = None
    failed_segments: list[str] = field(default_factory=list)
    new_version: int | None = None
    champion_after: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        out["gain_ci"] = None if self.gain_ci is None else list(self.gain_ci)
        return out


@dataclass(frozen=True)
class ReplayResult:
    """The timeline of a replay."""

    model: str
    metric: str
    higher_is_better: bool
    window: timedelta
    first_version: int
    windows: list[ReplayWindow]

    @property
    def triggers(self) -> list[int]:
        """Indices of the windows whose drift check triggered a retrain."""
        return [w.index for w in self.windows if w.decision == "trigger"]

    @property
    def promotions(self) -> list[int]:
        """Indices of the windows whose retrain was promoted."""
        return [w.index for w in self.windows if w.retrain_outcome == "PROMOTE"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "window_hours": self.window.total_seconds() / 3600,
            "first_version": self.first_version,
            "triggers": self.triggers,
            "promotions": self.promotions,
            "windows": [w.to_dict() for w in self.windows],
        }

    def to_markdown(self) -> str:
        direction = "higher" if self.higher_is_better else "lower"
        lines = [
            f"# Replay of {self.model}: {len(self.windows)} windows of {_span(self.window)}",
            "",
            f"{self.metric} on each window's labels ({direction} is better): the champion serving then, "
            f"the first model (v{self.first_version}) never replaced, and a naive baseline.",
            "",
            "| # | window end | rows | labelled | serving | serving | first model | baseline | drift share"
            " | drifted | decay | governor | retrain | champion after |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for w in self.windows:
            retrain = ""
            if w.retrain_outcome is not None:
                retrain = w.retrain_outcome
                if w.gain is not None:
                    lo, hi = w.gain_ci or (None, None)
                    retrain += f" {w.gain:+.4g} [{_num(lo)}, {_num(hi)}]"
            lines.append(
                f"| {w.index} | {w.end:%Y-%m-%d %H:%M} | {w.rows:,} | {w.labelled:,} | "
                f"{'' if w.serving_version is None else f'v{w.serving_version}'} | {_num(w.serving_metric)} | "
                f"{_num(w.frozen_metric)} | {_num(w.baseline_metric)} | {_num(w.drift_share)} | "
                f"{', '.join(w.drifted_columns) or ''} | {', '.join(w.decayed_segments) or ''} | "
                f"{w.decision} ({w.reason}) | {retrain} | "
                f"{'' if w.champion_after is None else f'v{w.champion_after}'} |"
            )
        lines += ["", f"Triggers in windows {self.triggers or 'none'}; promotions in {self.promotions or 'none'}.", ""]
        return "\n".join(lines)

    def plot_png(self) -> bytes:
        """The three metric lines over the windows, with the triggers and the gate's outcomes."""
        import io

        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.dates import AutoDateFormatter, AutoDateLocator, date2num
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 4.5), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ends = date2num([w.end for w in self.windows])  # type: ignore[no-untyped-call]
        for attr, label, style in (
            ("serving_metric", "serving champion", "-o"),
            ("frozen_metric", f"first model (v{self.first_version})", "--"),
            ("baseline_metric", "naive baseline", ":"),
        ):
            values = [np.nan if getattr(w, attr) is None else getattr(w, attr) for w in self.windows]
            ax.plot(ends, values, style, label=label, markersize=3)
        colors = {"PROMOTE": "#1b7837", "REJECT": "#c51b7d", "INCONCLUSIVE": "#999999", "SMOKE_FAILED": "#c51b7d"}
        for w in self.windows:
            if w.decision == "trigger":
                ax.axvline(
                    float(date2num(w.end)),  # type: ignore[no-untyped-call]
                    color=colors.get(w.retrain_outcome or "", "#e08214"),
                    linestyle="--",
                    linewidth=1,
                )
        for outcome, color in colors.items():
            if any(w.retrain_outcome == outcome for w in self.windows):
                ax.plot([], [], "--", color=color, label=f"retrain: {outcome}")
        ax.set_ylabel(self.metric + (" (higher is better)" if self.higher_is_better else " (lower is better)"))
        ax.set_title(f"Replay of {self.model}: windows of {_span(self.window)}")
        locator = AutoDateLocator()  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(AutoDateFormatter(locator))  # type: ignore[no-untyped-call]
        ax.legend(fontsize=8, loc="best")
        fig.autofmt_xdate()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()

    def save(self, store: Store) -> dict[str, str]:
        """Write the timeline (JSON, Markdown, PNG) into the replay's store; returns their URIs."""
        import json

        out = {}
        for suffix, data in (
            ("json", json.dumps(self.to_dict(), indent=2, default=str).encode()),
            ("md", self.to_markdown().encode()),
            ("png", self.plot_png()),
        ):
            key = LAYOUT.replay_timeline(self.model, suffix)
            store.put_bytes(key, data)
            out[suffix] = store.uri_for(key)
        return out


def _num(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _span(window: timedelta) -> str:
    hours = window.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours % 24 == 0 else f"{hours:g} hours"


def parse_window(text: str, *, allow_zero: bool = False) -> timedelta:
    """``7d``, ``36h`` (or a number of hours) -> a timedelta of whole hours, at least one unless
    ``allow_zero`` (a label delay may be nothing)."""
    value = text.strip().lower()
    unit = 24 if value.endswith("d") else 1
    number = value.rstrip("dh")
    try:
        hours = float(number) * unit
    except ValueError:
        raise RefitError(f"{text!r}: expected a duration such as 7d or 36h") from None
    if hours != int(hours) or hours < (0 if allow_zero else 1):
        raise RefitError(f"{text!r}: a whole number of hours{'' if allow_zero else ', at least one'}")
    return timedelta(hours=hours)


def replay(
    store: Store,
    config: PipelineConfig,
    history: pd.DataFrame,
    *,
    window: timedelta,
    start: datetime | None = None,
    end: datetime | None = None,
    label_delay: timedelta = timedelta(0),
    on_window: Callable[[ReplayWindow], None] | None = None,
) -> ReplayResult:
    """Replay ``history`` on ``store`` (a scratch store holding the config's base data).

    Args:
        store: Where the replay reads the base data and writes everything (captures, runs,
            registry, ledger, timeline). It must hold no registered version of the model yet.
        config: The pipeline config, as the deployments would use it.
        history: Labelled production rows: the training schema's columns (id, event time,
            features, target), optionally the request id and ``label_time`` columns.
        window: The drift check's window, and the step between checks (whole hours).
        start: First window's start (default: the first event time, at midnight UTC).
        end: Last window ends at or after this (default: just after the last event time).
        label_delay: When ``label_time`` is absent, a label arrives this long after its request.
        on_window: Called with each window's record as it is done (progress).
    """
    from refit import monitoring
    from refit.recipe import RetrainOptions, run_retrain
    from refit.registry import Registry

    ds = config.dataset
    history = _checked_history(history, config, label_delay)
    times = history[ds.timestamp_column]
    first = pd.Timestamp(start).tz_convert(UTC) if start is not None else times.min().floor("D")
    last = pd.Timestamp(end).tz_convert(UTC) if end is not None else times.max() + pd.Timedelta(microseconds=1)
    if Registry(store).list_versions(ds.name):
        raise RefitError(f"{store.uri} already holds versions of {ds.name}: a replay starts on an empty store")
    hours = _whole_hours(window)

    initial = _first_model(store, config, first)
    first_version = int(initial.version.version)
    models = _ModelCache(store, ds.task, ds.positive_class)
    baseline = _baseline_score(store, initial)
    metric = config.gate.primary_metric
    timeline: list[ReplayWindow] = []
    reference = None  # the serving champion's, kept while it serves (its model, predictions, nulls)
    t = first
    while t < last:
        w_end = t + pd.Timedelta(window)
        rows = history[(times >= t) & (times < w_end)]
        serving = Registry(store).champion(ds.name)
        live, frozen, naive = _live_metrics(config, rows, models, serving, first_version, baseline)
        record = ReplayWindow(
            index=len(timeline),
            start=t.to_pydatetime(),
            end=w_end.to_pydatetime(),
            rows=len(rows),
            labelled=int(rows[ds.target].notna().sum()),
            serving_version=int(serving.version),
            serving_metric=live,
            frozen_metric=frozen,
            baseline_metric=naive,
        )
        if len(rows):
            _capture(store, config, rows, models.predictions(serving, rows), serving.version)
            if reference is None or reference.version != serving.version:
                reference = monitoring.load_reference(store, config)
            record = _check_and_retrain(
                store, config, record, hours, reference, monitoring, run_retrain, RetrainOptions
            )
        else:
            record = _replace(record, reason="no captures in this window", champion_after=int(serving.version))
        timeline.append(record)
        if on_window is not None:
            on_window(record)
        t = w_end
    m = get_metric(metric)
    return ReplayResult(ds.name, metric, m.higher_is_better, window, first_version, timeline)


def _whole_hours(window: timedelta) -> int:
    """The window in whole hours, at least one: what the drift check's window can be."""
    hours = int(window.total_seconds() // 3600)
    if hours < 1 or timedelta(hours=hours) != window:
        raise RefitError(f"window {window}: a whole number of hours, at least one")
    return hours


def _first_model(store: Store, config: PipelineConfig, first: pd.Timestamp) -> Any:
    """The retrain on what was known at ``first``: the replay's first champion (it must be promoted)."""
    from refit.recipe import RetrainOptions, run_retrain

    initial = run_retrain(
        store,
        config,
        RetrainOptions(as_of=first.to_pydatetime(), reason="replay: the first model", tags={"trigger": "replay"}),
    )
    if initial.promotion is None:
        raise RefitError(f"replay: the first model was not promoted ({_headline(initial)})")
    return initial


def _replace(record: ReplayWindow, **changes: Any) -> ReplayWindow:
    from dataclasses import replace

    return replace(record, **changes)


def _headline(run: Any) -> str:
    if run.evaluation is not None:
        return str(run.evaluation.decision.headline)
    if run.smoke is not None and not run.smoke.passed:
        return "smoke test failed: " + "; ".join(run.smoke.reasons)
    return "no evaluation"


def _checked_history(history: pd.DataFrame, config: PipelineConfig, label_delay: timedelta) -> pd.DataFrame:
    """The history, sorted by event time, with a request id and a label time for every row."""
    from refit.capture import LABEL_TIME_COLUMN

    ds = config.dataset
    missing = [c for c in (ds.timestamp_column, ds.target, ds.id_column) if c not in history.columns]
    if missing:
        raise DataError(f"the replay history has no column(s) {', '.join(missing)}")
    out = history.copy()
    out[ds.timestamp_column] = pd.to_datetime(out[ds.timestamp_column], utc=True)
    if out[ds.timestamp_column].isna().any():
        raise DataError(f"the replay history has rows without {ds.timestamp_column}")
    out = out.sort_values(ds.timestamp_column, kind="stable").reset_index(drop=True)
    if ds.request_id_column not in out.columns:
        out[ds.request_id_column] = [f"replay-{i:09d}" for i in range(len(out))]
    if LABEL_TIME_COLUMN in out.columns:
        out[LABEL_TIME_COLUMN] = pd.to_datetime(out[LABEL_TIME_COLUMN], utc=True)
    else:
        out[LABEL_TIME_COLUMN] = out[ds.timestamp_column] + pd.Timedelta(label_delay)
    return out


class _ModelCache:
    """Each registered version loaded once (through the registry's integrity check)."""

    def __init__(self, store: Store, task: str, positive_class: str | None = None) -> None:
        self.store = store
        self.task = task
        self.positive_class = positive_class
        self._models: dict[int, Any] = {}

    def model(self, version: Any) -> Any:
        from refit.pipeline import load_version

        number = int(version.version)
        if number not in self._models:
            self._models[number] = load_version(self.store, version)
        return self._models[number]

    def scores(self, version: Any, rows: pd.DataFrame) -> np.ndarray:
        from refit.pipeline import scores

        return scores(self.model(version), rows, self.task, self.positive_class)

    def predictions(self, version: Any, rows: pd.DataFrame) -> np.ndarray:
        from refit.pipeline import capture_predictions

        return capture_predictions(self.model(version), rows, self.task, self.positive_class)


@dataclass(frozen=True)
class _ClassPrior:
    """The naive multiclass model: every row gets the class frequencies of the training target."""

    classes: list[Any]
    frequencies: np.ndarray

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        return np.tile(self.frequencies, (len(df), 1))


def _baseline_score(store: Store, run: Any) -> Any:
    """The naive model: the mean of the first model's training target (the positive rate for
    binary), or for multiclass its class frequencies (:class:`_ClassPrior`)."""
    from refit.io.frames import read_frame

    ds = run.config.dataset
    train = read_frame(store, run.need("splits").keys["train"])
    if ds.task == "multiclass":  # in the models' class order (dataset.class_order)
        classes = ds.class_order(train[ds.target])
        shares = train[ds.target].astype(str).value_counts(normalize=True)
        return _ClassPrior(classes, shares.reindex([str(c) for c in classes]).to_numpy(dtype=np.float64))
    return float(pd.to_numeric(pd.Series(ds.gate_labels(train[ds.target]))).mean())


def _live_metrics(
    config: PipelineConfig, rows: pd.DataFrame, models: _ModelCache, serving: Any, first: int, baseline: Any
) -> tuple[float | None, float | None, float | None]:
    """The metric of the serving champion, the first model and the baseline on the window's labels."""
    from refit.pipeline import gate_inputs
    from refit.registry import Registry

    ds = config.dataset
    labelled = rows[rows[ds.target].notna()]
    if labelled.empty:
        return None, None, None
    metric = config.gate.primary_metric
    frozen = Registry(models.store).get_version(ds.name, first)
    if ds.task == "multiclass":  # the three in one class order (gate_inputs), the prior as a model
        y, (live, kept, naive) = gate_inputs(ds, labelled, [models.model(serving), models.model(frozen), baseline])
        return (
            metric_value(metric, y, live, task=ds.task),
            metric_value(metric, y, kept, task=ds.task),
            metric_value(metric, y, naive, task=ds.task),
        )
    y = pd.to_numeric(pd.Series(ds.gate_labels(labelled[ds.target]))).to_numpy(dtype=np.float64)
    return (
        metric_value(metric, y, models.scores(serving, labelled)),
        metric_value(metric, y, models.scores(frozen, labelled)),
        metric_value(metric, y, np.full(len(y), baseline)),
    )


def _capture(store: Store, config: PipelineConfig, rows: pd.DataFrame, predictions: np.ndarray, version: int) -> None:
    """The window's rows as serving captures them: requests now, labels when they arrive."""
    from refit.capture import LABEL_TIME_COLUMN, MODEL_VERSION_COLUMN, PREDICTION_COLUMN, write_labels, write_requests

    ds = config.dataset
    requests = rows.drop(columns=[ds.target, LABEL_TIME_COLUMN]).assign(
        **{PREDICTION_COLUMN: predictions, MODEL_VERSION_COLUMN: str(version)}
    )
    if ds.capture_schema is not None:
        declared = schema_columns(ds.capture_schema)
        requests = requests[[c for c in declared if c in requests.columns]]
    write_requests(store, ds.name, requests, timestamp_column=ds.timestamp_column)
    labels = rows.loc[rows[ds.target].notna(), [ds.request_id_column, ds.target, LABEL_TIME_COLUMN]]
    if len(labels):
        write_labels(store, ds.name, labels.reset_index(drop=True))


def _check_and_retrain(
    store: Store,
    config: PipelineConfig,
    record: ReplayWindow,
    hours: int,
    reference: Any,
    monitoring: Any,
    run_retrain: Any,
    options: Any,
) -> ReplayWindow:
    """The drift-check flow's steps as of the window's end (against ``reference``, the serving
    champion's), then the retrain recipe when triggered."""
    as_of = record.end
    window = monitoring.load_capture_window(store, config, as_of=as_of, window_hours=hours)
    current = monitoring.validate_captures(store, config, window).valid
    report = monitoring.compute_drift_and_decay(store, config, reference, current, window)
    outcome = monitoring.ask_governor(store, config, reference, report)
    monitoring.record_drift_check(store, config, report, outcome)
    record = _replace(
        record,
        drift_detected=report.drift_detected,
        drift_share=float(report.result.drift_share),
        drifted_columns=list(report.result.drifted_columns),
        decay_detected=report.decay_detected,
        decayed_segments=list(report.decay.decayed_segments) if report.decay is not None else [],
        labels_known=report.labelled_rows,
        decision=outcome.action,
        reason=outcome.reason,
        detail=outcome.detail,
        champion_after=reference.version,
    )
    if not outcome.trigger:
        return record
    run = run_retrain(
        store,
        config,
        options(as_of=as_of, reason=f"replay: {outcome.detail}", tags={"trigger": "drift"}),
    )
    if run.evaluation is None:
        return _replace(record, retrain_outcome="SMOKE_FAILED", retrain_headline=_headline(run))
    decision = run.evaluation.decision
    return _replace(
        record,
        retrain_outcome=str(decision.outcome),
        retrain_headline=str(decision.headline),
        gain=decision.gain,
        gain_ci=(decision.ci_low, decision.ci_high),
        failed_segments=[c.scope for c in decision.checks if c.name == "segment_regression" and c.passed is False],
        new_version=None if run.version is None else int(run.version.version),
        champion_after=int(run.version.version) if run.promotion is not None else reference.version,
    )
