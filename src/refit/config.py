"""Configuration: where things live (``Settings``) and what a run does (``PipelineConfig``).

``Settings`` comes from the environment (prefix ``REFIT_``). ``PipelineConfig`` comes from a
YAML file (``refit.yaml`` at the repo root configures the demo; :mod:`refit.config_loader`
reads it) and is frozen: it is the record of what a run did and is stored beside every model.
Nothing here touches the disk or the network at import time.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from refit.metrics import (
    DEFAULT_METRIC,
    METRICS,
    TOLERANCE_DEFAULTS,
    Task,
    check_task_metric,
    combined_tolerance,
    tolerance_defaults,
)
from refit.records import Record
from refit.url_credentials import refuse_credentials

DEFAULT_CONFIG_FILE = "refit.yaml"

_S = TypeVar("_S", bound=BaseModel)


class Settings(BaseSettings):
    """Where refit keeps things. Read from ``REFIT_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="REFIT_", extra="ignore")

    store: str = Field("./.refit", description="Local folder or s3://bucket/prefix for everything refit writes.")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (else AWS_ENDPOINT_URL / AWS default).")
    webhook_secret: SecretStr | None = Field(None, description="HMAC secret of the drift-alert webhook.")
    webhook_token: SecretStr | None = Field(None, description="Optional bearer token of the webhook.")
    author: str | None = Field(None, description="Who a registry change is recorded as (default: the OS user).")


_UNIT = TOLERANCE_DEFAULTS["unit"]  # a section read on its own (no metric known) uses these


def _with_metric_defaults(section: _S, metric: str) -> _S:
    """``section`` with each threshold it leaves unset taken from the metric's scale."""
    update = {
        name: value
        for name, value in tolerance_defaults(metric).items()
        if name in type(section).model_fields and name not in section.model_fields_set
    }
    return section.model_copy(update=update) if update else section


class _Section(Record):
    model_config = ConfigDict(populate_by_name=True)


class SegmentSpec(_Section):
    """A segment column: categorical, or numeric cut at explicit bin edges."""

    column: str
    bins: list[float] | None = Field(None, description="Numeric columns: increasing bin edges.")
    labels: list[str] | None = Field(None, description="Optional names of the bins (one fewer than edges).")

    @model_validator(mode="after")
    def _check_bins(self) -> SegmentSpec:
        if self.bins is not None:
            if len(self.bins) < 2 or any(b >= a for a, b in zip(self.bins[1:], self.bins[:-1], strict=False)):
                raise ValueError("bins must be at least two strictly increasing edges")
            if self.labels is not None and len(self.labels) != len(self.bins) - 1:
                raise ValueError("labels must have one fewer entry than bins")
        elif self.labels is not None:
            raise ValueError("labels need bins")
        return self


class DatasetConfig(_Section):
    """What the data is and where it comes from."""

    name: str = Field(description="Model name in the registry; also names captures and quarantine.")
    sources: list[str] = Field(
        min_length=1, description="Keys in the store, or URIs (s3://, absolute paths), globs allowed."
    )
    schema_path: str = Field(alias="schema", description="Training-row schema, as module:Class.")
    capture_schema: str | None = Field(None, description="Production-capture schema, as module:Class.")
    request_id_column: str = Field("request_id", description="Joins captured requests with late labels.")
    target: str
    task: Task = Field(
        description="binary (0/1 or boolean labels; strings with positive_class), multiclass (integer "
        "classes, or string classes declared in dataset.classes) or regression."
    )
    id_column: str
    timestamp_column: str
    segments: list[SegmentSpec] = Field(default_factory=list)
    segment_crossings: list[list[str]] = Field(
        default_factory=list, description="Pairs (or more) of segment columns to also evaluate crossed."
    )
    features: list[str] | None = Field(
        None, description="Feature columns; default: every schema column but id, timestamp and target."
    )
    positive_class: str | None = Field(
        None,
        description="binary with string labels (Yes/No): the label that counts as positive (1) for every "
        "metric, the gate and decay; 0/1 and boolean labels need none.",
    )

    classes: list[str] | list[int] | None = Field(
        None,
        description="multiclass: the classes in their declared order (required for string labels, optional "
        "for integer ones); models, the gate, decay and the dossier use this order, and a label outside "
        "it is quarantined.",
    )

    @model_validator(mode="after")
    def _check_classes(self) -> DatasetConfig:
        if self.classes is None:
            return self
        if self.task != "multiclass":
            raise ValueError(f"dataset.classes: only a multiclass task takes declared classes (task {self.task})")
        keys = [str(c) for c in self.classes]
        if len(keys) < 2 or len(set(keys)) != len(keys):
            raise ValueError(f"dataset.classes: at least two distinct classes (got {self.classes})")
        return self

    def class_order(self, observed: Any) -> list[Any]:
        """The classes a multiclass model learns from ``observed`` labels, in one order: the
        declared ``classes`` that occur (their declared values and order), else the observed
        ones sorted. A label outside the declared classes is a :class:`refit.errors.DataError`
        (validation quarantines such rows before training sees them)."""
        import numpy as np
        import pandas as pd

        seen = [v.item() if isinstance(v, np.generic) else v for v in pd.unique(pd.Series(observed).dropna())]
        if self.classes is None:
            return sorted(seen, key=lambda v: (str(type(v)), v))
        declared = {str(c): c for c in self.classes}
        unknown = sorted({str(v) for v in seen} - set(declared))
        if unknown:
            from refit.errors import DataError

            raise DataError(
                f"{self.target}: label(s) {', '.join(unknown[:5])} not in dataset.classes {list(self.classes)}"
            )
        present = {str(v) for v in seen}
        return [c for c in self.classes if str(c) in present]

    def gate_labels(self, values: Any) -> Any:
        """The labels every metric judges: for ``binary`` with a ``positive_class``, 1 where the
        label is that class and 0 elsewhere; the values as they are otherwise."""
        import numpy as np

        if self.task != "binary" or self.positive_class is None:
            return np.asarray(values)
        return (np.asarray(values).astype(str) == self.positive_class).astype(np.uint8)

    @field_validator("task", mode="before")
    @classmethod
    def _earlier_task_name(cls, value: object) -> object:
        # configs written before the one task vocabulary (and stored beside older versions) said
        # "classification" for what is now "binary": read them as that, never as an error
        return "binary" if value == "classification" else value


class ValidationConfig(_Section):
    max_invalid_fraction: float = Field(0.01, ge=0.0, le=1.0, description="Stop the run above this.")
    max_invalid_capture_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="A drift check stops above this share of invalid captured requests (they are quarantined "
        "either way): a few bad requests must not blind monitoring; most of them bad is a serving fault.",
    )


class SplitConfig(_Section):
    method: Literal["hash", "time"] = "hash"
    validation_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    salt: str = Field("refit", description="Changing the salt reshuffles which rows land in which split.")


class CandidateSpec(_Section):
    """One model family and its search space (lists are grids, {low, high[, log]} are ranges)."""

    family: Literal["torch_mlp", "hist_gradient_boosting", "linear"]
    params: dict[str, Any] = Field(default_factory=dict)
    search: Literal["grid", "random", "optuna"] = Field(
        "grid",
        description="grid (lists, in order), random (lists and ranges, seeded) or optuna (TPE, seeded; "
        "torch trials pruned on the per-epoch validation metric).",
    )
    budget: int = Field(4, ge=1, description="Most trials for this family.")
    time_budget_s: float | None = Field(
        None, gt=0, description="optuna: ask for no new trial after this many seconds (None: the budget only)."
    )


#: The torch MLP's batch size when neither the YAML nor the candidate sets one: as large as
#: leaves at least AUTO_BATCH_MIN_STEPS optimizer steps per epoch, within [AUTO_BATCH_MIN,
#: AUTO_BATCH_MAX]. A fixed 2048 gave a 1,000-row dataset one step per epoch and a model that
#: never learned; at 100,000 rows and more the batch is 2048 as before.
AUTO_BATCH_MIN_STEPS = 50
AUTO_BATCH_MIN = 8
AUTO_BATCH_MAX = 2048


def auto_batch_size(rows: int | None) -> int:
    """The batch size for ``rows`` training rows (None, unknown: :data:`AUTO_BATCH_MAX`)."""
    if rows is None:
        return AUTO_BATCH_MAX
    return max(AUTO_BATCH_MIN, min(AUTO_BATCH_MAX, rows // AUTO_BATCH_MIN_STEPS))


class TrainingConfig(_Section):
    seed: int = 42
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    candidates: list[CandidateSpec] = Field(
        default_factory=lambda: [
            CandidateSpec(family="hist_gradient_boosting"),
            CandidateSpec(family="torch_mlp"),
        ]
    )
    max_epochs: int = Field(30, ge=1)
    batch_size: int | None = Field(
        None,
        ge=1,
        description="torch MLP rows per step; None: adapted to the data (at least 50 steps per epoch, "
        "at most 2048 rows; refit.config.auto_batch_size).",
    )
    patience: int = Field(4, ge=1)
    smoke_sample_rows: int = Field(2000, ge=10)
    smoke_max_ms_per_1k_rows: float = Field(2000.0, gt=0)
    mixed_precision: bool = Field(True, description="On CUDA: autocast to bf16 (else fp16 + GradScaler).")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping (None: off).")
    eval_batch_size: int = Field(65536, ge=1, description="Rows per no-grad evaluation chunk.")
    device_data_budget_mb: float = Field(
        4096.0, ge=0, description="Training data larger than this stays in pinned host memory (CUDA)."
    )
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch default).")
    checkpoint: bool = Field(True, description="Write a resumable checkpoint after every epoch.")
    window_days: float | None = Field(
        30.0, ge=0, description="Labelled captures of the last N days join the base data (null: all of them)."
    )
    search_storage: str | None = Field(
        None,
        description="search: optuna: a PostgreSQL database (postgresql://user@host:5432/db) where every worker "
        "training the same candidates on the same data shares one study per family; None: each study is its "
        "own, in memory. No password in the URL (it is stored with the model): use PGPASSWORD or ~/.pgpass.",
    )

    @field_validator("search_storage")
    @classmethod
    def _check_search_storage(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgresql+psycopg2"):
            raise ValueError(f"must be a postgresql:// URL, got scheme {parts.scheme or '(none)'!r}")
        refuse_credentials(value, "PGPASSWORD or ~/.pgpass")
        return value


class GateConfig(_Section):
    """When a candidate replaces the champion. Gains are measured in the metric's "better" direction.

    REJECT on evidence of harm (a value threshold, the leakage guard, a significant overall or
    per-segment loss beyond tolerance); PROMOTE on evidence of benefit (the overall gain's lower
    confidence bound clears the required improvement); INCONCLUSIVE otherwise. See
    ``refit.evaluation.decide_gate`` for the exact rules.
    """

    primary_metric: str = Field(
        DEFAULT_METRIC["binary"],
        description="Selects the candidate, gates it, and judges decay; one of refit.metrics.METRICS. "
        "Default: the task's (refit.metrics.DEFAULT_METRIC: roc_auc for binary, macro_roc_auc for multiclass, "
        "rmse for regression).",
    )
    higher_is_better: bool | None = Field(None, description="Optional; must agree with the metric's direction.")
    floor: float | None = Field(None, description="The candidate's primary metric must be at least this.")
    ceiling: float | None = Field(None, description="... and at most this (for error metrics).")
    min_improvement: float = Field(0.0, ge=0.0, description="Overall gain required (absolute, CI lower bound).")
    min_relative_improvement: float = Field(
        0.0, ge=0.0, description="Overall gain required, as a fraction of |champion| (CI lower bound)."
    )
    max_regression: float = Field(
        0.0, ge=0.0, description="Overall loss tolerated: a loss significantly beyond it rejects."
    )
    max_segment_regression: float | None = Field(
        _UNIT["max_segment_regression"],
        ge=0.0,
        description="Per-segment loss tolerated (metric units): a loss significantly beyond it rejects. "
        "Default by the metric's scale (refit.metrics.TOLERANCE_DEFAULTS): 0.02 for AUC-like metrics, "
        "unset for RMSE/MAE (relative instead).",
    )
    max_relative_segment_regression: float | None = Field(
        _UNIT["max_relative_segment_regression"],
        ge=0.0,
        description="Per-segment loss tolerated as a fraction of the champion's overall value "
        "(default 0.05 for RMSE/MAE); with both set, the larger tolerance applies.",
    )
    min_segment_size: int = Field(200, ge=1, description="Smaller segments are reported, not gated.")
    max_improvement: float | None = Field(
        _UNIT["max_improvement"],
        gt=0.0,
        description="A larger overall gain (metric units) rejects: the leakage guard. Default 0.2 for "
        "AUC-like metrics, unset for RMSE/MAE; null disables.",
    )
    max_relative_improvement: float | None = Field(
        _UNIT["max_relative_improvement"],
        gt=0.0,
        description="A gain larger than this fraction of the champion's value rejects (default 0.8 for "
        "RMSE/MAE: the error cut by four fifths); with both set, either rejects.",
    )
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Two-sided level of every interval.")
    bootstrap_resamples: int = Field(1000, ge=100)
    seed: int = Field(0, description="Seed of the bootstrap resamples.")
    evaluate_on: Literal["holdout", "recent", "both"] = Field(
        "holdout",
        description="Which rows the gate judges: the whole holdout; the test rows of the last recent_days "
        "(production as it is now; fewer than recent_min_rows fall back to the holdout, saying so); or both "
        "(REJECT on either, PROMOTE on both).",
    )
    recent_days: float = Field(30.0, gt=0, description="evaluate_on recent/both: the window, in event time.")
    recent_min_rows: int = Field(200, ge=1, description="evaluate_on recent/both: fewer recent test rows fall back.")
    holm: bool = Field(True, description="Holm-Bonferroni across the gated segments' regression tests.")
    holm_scope: Literal["segmentation", "all"] = Field(
        "segmentation", description="Correct within each segmentation (region; region×plan), or across all segments."
    )

    def segment_tolerance(self, champion: float | None) -> float:
        """The per-segment loss tolerated against a champion whose overall value is ``champion``."""
        return combined_tolerance(self.max_segment_regression, self.max_relative_segment_regression, champion)

    def improvement_limit(self, champion: float | None) -> float | None:
        """The largest overall gain believed (the leakage guard); None when the guard is off."""
        limits = [] if self.max_improvement is None else [self.max_improvement]
        if self.max_relative_improvement is not None and champion is not None:
            limits.append(self.max_relative_improvement * abs(champion))
        return min(limits) if limits else None

    @model_validator(mode="after")
    def _check_metric(self) -> GateConfig:
        if self.primary_metric not in METRICS:
            raise ValueError(f"unknown primary_metric {self.primary_metric!r}; known: {', '.join(METRICS)}")
        known = METRICS[self.primary_metric].higher_is_better
        if self.higher_is_better is not None and self.higher_is_better != known:
            word = "higher" if known else "lower"
            raise ValueError(f"{self.primary_metric} is {word}-is-better; drop higher_is_better or fix it")
        if self.floor is not None and self.ceiling is not None and self.floor > self.ceiling:
            raise ValueError("floor must not exceed ceiling")
        return self


class DriftConfig(_Section):
    """How drift is checked (``refit.drift``) and when it may trigger a retrain (``refit.policy``).

    Methods are named explicitly per column type (Evidently's stat-test names) because
    Evidently's automatic choice depends on the number of rows (KS / chi-square up to 1,000,
    Wasserstein / Jensen-Shannon above), so a sampled check and a full one could otherwise use
    different tests. The defaults are distances, which do not grow more sensitive with the
    sample size the way p-values do: the verdict on a sample matches the one on the full data.
    With ``threshold_mode: calibrated`` (default) their thresholds come from the reference's own
    null distribution for the window's size, and ``alpha`` bounds the false-alarm rate.
    """

    window_hours: int | None = Field(24, ge=1)
    window_rows: int | None = Field(None, ge=1)
    drift_share: float = Field(
        0.3, gt=0.0, le=1.0, description="Dataset drift when at least this share of features drift."
    )
    num_method: str = Field("wasserstein", description="Evidently stat test for numerical features.")
    cat_method: str = Field("jensenshannon", description="Evidently stat test for categorical features.")
    num_threshold: float | None = Field(None, description="None: the method's default (0.1 for wasserstein).")
    cat_threshold: float | None = Field(None, description="None: the method's default (0.1 for jensenshannon).")
    column_methods: dict[str, str] = Field(default_factory=dict, description="Per-column method overrides.")
    column_thresholds: dict[str, float] = Field(
        default_factory=dict, description="Per-column threshold overrides (threshold_mode: fixed)."
    )
    threshold_mode: Literal["calibrated", "fixed"] = Field(
        "calibrated",
        description="calibrated: each column's threshold for a window of n rows comes from the reference "
        "(the null distribution of its score between samples of n and of the reference drawn from it), "
        "and a window drifts when Holm rejects any column at alpha. fixed: Evidently's semantics "
        "(the thresholds above, a share of drifted columns).",
    )
    alpha: float = Field(
        0.01,
        gt=0.0,
        le=0.5,
        description="calibrated: the probability that a window drawn from the reference alarms "
        "(family-wise, Holm across the columns).",
    )
    calibration_draws: int = Field(
        1000,
        ge=100,
        description="calibrated: null draws per column and window size (raised to 2 x columns / alpha, so Holm "
        "can reject at all).",
    )
    calibrate_at_promotion: bool = Field(
        True,
        description="calibrated: draw a new champion's nulls for a full window when it is promoted (the retrain's "
        "calibrate-drift step; about 1 to 3 s per numeric column), so its first check draws nothing. false: the "
        "first check draws them. Its column kinds are stored at promotion either way.",
    )
    categorical_columns: list[str] = Field(
        default_factory=list, description="Columns tested as categories whatever their dtype."
    )
    new_value_threshold: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="threshold_mode fixed: a column constant in the reference drifts when at least this share of "
        "the window's values are ones the reference never had (calibrated: its null decides).",
    )
    categorical_max_values: int = Field(
        10,
        ge=2,
        description="A column of whole numbers with at most this many distinct reference values (0/1 flags, "
        "counts of devices) is tested as categories.",
    )
    report_html: Literal["on-change", "always", "never"] = Field(
        "on-change",
        description="When a check stores Evidently's HTML report: when its decision differs from the previous "
        "check's (and on the first check of a champion), on every check, or never (refit drift --report forces one).",
    )
    sample_size: int = Field(
        20_000, ge=1000, description="Rows drawn from each of reference and current (larger windows are sampled)."
    )
    stratify_by: str | None = Field(
        None, description="Sample within strata of this column: 24 time buckets if datetime, else its values."
    )
    cooldown_hours: float = Field(6.0, ge=0.0)
    k_of_n: tuple[int, int] = Field((1, 1), description="Trigger when k of the last n windows drift.")
    daily_cap: int = Field(3, ge=1, description="Most triggers per UTC day.")
    decay_tolerance: float | None = Field(
        _UNIT["decay_tolerance"],
        ge=0.0,
        description="Largest metric drop allowed (metric units). Default by the gate metric's scale: "
        "0.05 for AUC-like metrics, unset for RMSE/MAE (relative instead).",
    )
    decay_relative_tolerance: float | None = Field(
        _UNIT["decay_relative_tolerance"],
        ge=0.0,
        description="Largest drop allowed as a fraction of the registered value (default 0.10 for "
        "RMSE/MAE); with both set, the larger applies.",
    )
    decay_min_rows: int = Field(100, ge=1, description="Fewest labelled rows to judge decay in a segment.")
    decay_confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Level of the decay intervals: a drop must clear the tolerance at it."
    )
    decay_resamples: int = Field(500, ge=100, description="Bootstrap resamples of the window's metric.")
    decay_holm: bool = Field(True, description="Holm-Bonferroni within each segmentation's decay tests.")

    def decay_limit(self, registered: float | None) -> float:
        """The drop tolerated from a registered value."""
        return combined_tolerance(self.decay_tolerance, self.decay_relative_tolerance, registered)

    @model_validator(mode="after")
    def _check_k_of_n(self) -> DriftConfig:
        k, n = self.k_of_n
        if not 1 <= k <= n:
            raise ValueError("k_of_n must be (k, n) with 1 <= k <= n")
        return self


class RetentionConfig(_Section):
    """What is kept of what runs and checks leave behind: the one home for retention.

    ``refit models gc`` removes run folders, temp files and the drift calibrations of versions
    that no longer hold an alias; the drift check prunes its HTML reports by the ``drift_reports*``
    settings each time it stores one. Committed versions are never removed, nor a run folder a
    committed version refers to (its run id, dossier or artifact): that is the version's lineage.
    """

    runs_days: float = Field(
        7.0,
        gt=0,
        description="A run folder (runs/<model>/<run_id>/) no committed version refers to is removed "
        "this many days after the run started (the time in its run id).",
    )
    tmp_files_hours: float = Field(
        1.0,
        ge=0.25,
        description="Temp files of the local store's atomic writes (.name.tmp) that a killed process left "
        "are removed once this many hours old; younger ones may be writes in flight.",
    )
    drift_reports: int = Field(
        200, ge=1, description="Most drift-check HTML reports kept per model (oldest removed first)."
    )
    drift_reports_days: float = Field(
        90.0, gt=0, description="Drift-check HTML reports older than this are removed (check results, JSON, stay)."
    )
    drift_reports_max_mb: float = Field(
        500.0, gt=0, description="Size cap of a model's stored drift-check HTML reports; oldest removed first."
    )


class TimeoutsConfig(_Section):
    """How long Prefect lets a run and its steps go on before it stops them (seconds).

    A hung step (a stalled store mount, a stuck training) must not hold the one-retrain slot
    forever while queued runs pile up behind it: a timed-out step fails its run, which frees it.
    """

    training_s: float = Field(
        4 * 3600.0, gt=0, description="The train-candidates step: every family's search and final fit."
    )
    step_s: float = Field(
        1800.0, gt=0, description="Every other step (load and validate, split, smoke test, evaluate, register, ...)."
    )
    retrain_s: float = Field(6 * 3600.0, gt=0, description="A whole retrain run (a deployment's or the CLI's).")
    drift_check_s: float = Field(1800.0, gt=0, description="A whole drift-check run.")


class TrackingConfig(_Section):
    """Experiment tracking on MLflow (``refit.tracking``): off unless a tracking URI is set.

    Tracking never fails nor blocks a retrain: when MLflow cannot be reached the run logs one
    warning and goes on, and the next tracked run catches the registry mirror up.
    """

    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking server, e.g. http://127.0.0.1:5000 (else MLFLOW_TRACKING_URI; neither: off).",
    )
    experiment: str | None = Field(None, description="MLflow experiment (default: the dataset's name).")

    @field_validator("mlflow_uri")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value is not None:
            refuse_credentials(
                value,
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), or the whole URI "
                "in MLFLOW_TRACKING_URI, none of which is stored",
            )
        return value

    timeout_s: float = Field(
        30.0, gt=0, description="Per request to MLflow; a dead server is given up on after one try."
    )


class PipelineConfig(_Section):
    """What one run does. Frozen: stored beside every model it produces."""

    dataset: DatasetConfig
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    gate: GateConfig = Field(default_factory=GateConfig, validate_default=True)
    drift: DriftConfig = Field(default_factory=DriftConfig, validate_default=True)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("gate")
    @classmethod
    def _gate_judges_the_task(cls, gate: GateConfig, info: ValidationInfo) -> GateConfig:
        """A gate naming no metric takes the task's default; one that could not judge the task is refused at load."""
        dataset = info.data.get("dataset")
        if dataset is not None:
            if "primary_metric" not in gate.model_fields_set and dataset.task in DEFAULT_METRIC:
                gate = gate.model_copy(update={"primary_metric": DEFAULT_METRIC[dataset.task]})
            check_task_metric(dataset.task, gate.primary_metric)
        return _with_metric_defaults(gate, gate.primary_metric)

    @field_validator("drift")
    @classmethod
    def _decay_in_the_gates_metric(cls, drift: DriftConfig, info: ValidationInfo) -> DriftConfig:
        """Decay is judged in the gate's metric: its unset tolerances follow that metric's scale."""
        gate = info.data.get("gate")
        return drift if gate is None else _with_metric_defaults(drift, gate.primary_metric)

    @property
    def feature_columns(self) -> list[str]:
        """The model's input columns, from the config or else from the schema."""
        if self.dataset.features is not None:
            return list(self.dataset.features)
        from refit.contracts import schema_columns

        skip = {self.dataset.id_column, self.dataset.timestamp_column, self.dataset.target}
        return [c for c in schema_columns(self.dataset.schema_path) if c not in skip]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
