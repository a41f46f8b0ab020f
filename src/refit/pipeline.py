"""The retrain steps as plain functions: each reads through the store, makes its core calls,
writes its outputs, and returns a small handle. Prefect tasks wrap these one-to-one
(``tasks/``). The recipe, which steps run in which order and when one is skipped, is written
once, in :data:`refit.recipe.RETRAIN_STEPS`: :func:`refit.recipe.run_retrain` runs it for
``refit train``, the benchmarks and the tests, and the retrain flow composes the same steps
through its tasks (a flow test checks that both run the same step names in the same order).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from refit.config import PipelineConfig
from refit.data import ValidatedData, run_stamp, stage_validated
from refit.errors import DataError, NotFoundError, RefitError
from refit.fingerprint import DatasetFingerprint, fingerprint_frame
from refit.io import Store
from refit.io.frames import read_frame, release_arrow_memory, write_frame
from refit.io.layout import LAYOUT, RunKeys
from refit.splits import SPLIT_NAMES, assign_splits, split_part

if TYPE_CHECKING:  # imported where used: the smoke test and the registry load heavier modules
    from refit.registry import AliasEvent, ModelVersion
    from refit.smoke import SmokeReport

REFERENCE_SAMPLE_ROWS = 50_000


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20261124T153000123456Z-1a2b3c4d``."""
    return f"{run_stamp(now)}-{uuid.uuid4().hex[:8]}"


def run_keys(config: PipelineConfig, run_id: str) -> RunKeys:
    """The run's folder in the store, ``runs/<model>/<run_id>/`` (:data:`refit.io.layout.LAYOUT`)."""
    return LAYOUT.run(config.dataset.name, run_id)


# ---------------------------------------------------------------------------------------------
# load + validate


def labelled_captures(
    store: Store, config: PipelineConfig, window_days: float | None = None, as_of: datetime | None = None
) -> pd.DataFrame:
    """The production captures a retrain adds to the base data: labelled, inside the window.

    ``as_of`` trains on what was known then: captures with an event time in the ``window_days``
    before it, and only the labels that had arrived by it (default: now, every label)."""
    from refit.capture import load_labelled_captures
    from refit.contracts import schema_columns

    end = as_of or datetime.now(UTC)
    since = None if window_days is None else pd.Timestamp(end - timedelta(days=window_days))
    ds = config.dataset
    return load_labelled_captures(
        store,
        ds.name,
        target=ds.target,
        request_id_column=ds.request_id_column,
        timestamp_column=ds.timestamp_column,
        columns=schema_columns(ds.schema_path),
        since=since,
        until=None if as_of is None else pd.Timestamp(as_of),
        known_at=None if as_of is None else pd.Timestamp(as_of),
    )


def load_and_validate(
    store: Store,
    config: PipelineConfig,
    run_id: str,
    window_days: float | None = None,
    as_of: datetime | None = None,
) -> ValidatedData:
    """Base data plus labelled production captures (inside the window, :func:`labelled_captures`),
    validated and staged; with ``as_of``, only rows dated at or before it (what was known then)."""
    captures = labelled_captures(store, config, window_days, as_of)
    handle, _ = stage_validated(store, config, run_id, extra=captures, as_of=as_of)
    return handle


# ---------------------------------------------------------------------------------------------
# split


@dataclass(frozen=True)
class SplitHandles:
    """Where the three splits are, and what they are."""

    keys: dict[str, str]
    fingerprints: dict[str, DatasetFingerprint]
    data: ValidatedData

    @property
    def rows(self) -> dict[str, int]:
        return {k: fp.rows for k, fp in self.fingerprints.items()}

    def lineage(self) -> dict[str, dict[str, Any]]:
        out = {"validated": self.data.fingerprint.to_dict()}
        out.update({name: fp.to_dict() for name, fp in self.fingerprints.items()})
        return out


def split_codes(frame: pd.DataFrame, config: PipelineConfig) -> np.ndarray:
    """Each row's split (a code of :data:`refit.splits.SPLIT_NAMES`); an empty split is an error."""
    sc = config.split
    codes = assign_splits(
        frame,
        method=sc.method,
        id_column=config.dataset.id_column,
        timestamp_column=config.dataset.timestamp_column,
        validation_fraction=sc.validation_fraction,
        test_fraction=sc.test_fraction,
        salt=sc.salt,
    )
    counts = np.bincount(codes, minlength=len(SPLIT_NAMES))
    for code, name in SPLIT_NAMES.items():
        if counts[code] == 0:
            raise RefitError(f"the {name} split is empty ({len(frame)} rows in all): more data is needed")
    return codes


def split_data(store: Store, config: PipelineConfig, data: ValidatedData, run_id: str) -> SplitHandles:
    """Deterministic train/validation/test split of the staged rows, each written and fingerprinted."""
    frame = read_frame(store, data.key)
    codes = split_codes(frame, config)
    keys, fps = {}, {}
    # One split in memory at a time, beside the staged frame (not all three at once).
    for code, name in SPLIT_NAMES.items():
        part = split_part(frame, codes, code)
        key = run_keys(config, run_id).split(name)
        write_frame(store, key, part)
        keys[name], fps[name] = key, fingerprint_frame(part)
        del part
    del frame
    release_arrow_memory()
    return SplitHandles(keys=keys, fingerprints=fps, data=data)


# ---------------------------------------------------------------------------------------------
# train


@dataclass(frozen=True)
class CandidateHandle:
    """The trained candidate: its artifact in the store and what the search found."""

    artifact_key: str
    artifact_uri: str
    family: str
    params: dict[str, Any]
    validation_metrics: dict[str, Any]
    primary_metric: str
    trials: list[dict[str, Any]]
    device: str
    train_s: float
    samples_per_s: float | None
    peak_memory_mb: float | None
    best_trial: int | None = None
    #: The sha256 of the artifact's manifest as training wrote it: evaluation and registration
    #: read the candidate pinned to it, so the version registered is the one the gate judged.
    manifest_sha256: str | None = None


def _prepared_splits(store: Store, config: PipelineConfig, splits: SplitHandles) -> Any:
    from refit.training.search import prepare_data

    try:
        return prepare_data(
            read_frame(store, splits.keys["train"]), read_frame(store, splits.keys["validation"]), config
        )
    finally:
        release_arrow_memory()  # the frames' columns


def train_candidates(
    store: Store,
    config: PipelineConfig,
    splits: SplitHandles,
    run_id: str,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> CandidateHandle:
    """Search every configured family; save the best as a self-contained artifact."""
    from refit.device import resolve_device
    from refit.model import write_model
    from refit.seeds import seed_everything
    from refit.training.search import search_candidates

    seed_everything(config.training.seed)
    device = resolve_device(config.training.device)
    run_folder = run_keys(config, run_id)
    start = time.perf_counter()
    # The frames are dropped once encoded (they would double the peak memory of training).
    data = _prepared_splits(store, config, splits)
    result = search_candidates(data, config, store, run_folder.folder, device, on_epoch=on_epoch)
    del data
    wall = time.perf_counter() - start
    best = result.best_trial
    info = {"device": str(device), "search_wall_s": wall, "data": splits.lineage()}
    key = run_folder.candidate
    uri, manifest_sha256 = write_model(
        store,
        key,
        result.best,
        config,
        trials=result.trials,
        metrics={"validation": best.metrics},
        info=info,
        overwrite=True,
    )
    env = result.best.info
    return CandidateHandle(
        artifact_key=key,
        artifact_uri=uri,
        family=best.family,
        params=dict(best.resolved_params or best.params),
        validation_metrics=dict(best.metrics),
        primary_metric=result.primary_metric,
        trials=[t.to_dict() for t in result.trials],
        device=str(device),
        train_s=wall,
        samples_per_s=best.samples_per_s,
        peak_memory_mb=env.get("peak_memory_mb"),
        best_trial=best.index,
        manifest_sha256=manifest_sha256,
    )


# ---------------------------------------------------------------------------------------------
# smoke test


def smoke_test_candidate(
    store: Store, config: PipelineConfig, splits: SplitHandles, candidate: CandidateHandle
) -> SmokeReport:
    """Load the artifact in a fresh process and check its outputs on held-out rows."""
    from refit.smoke import smoke_test

    test_df = read_frame(store, splits.keys["test"])
    n = min(config.training.smoke_sample_rows, len(test_df))
    sample = test_df.sample(n=n, random_state=config.training.seed) if n < len(test_df) else test_df
    return smoke_test(
        candidate.artifact_uri,
        sample[config.feature_columns],
        config.training.smoke_max_ms_per_1k_rows,
        config.dataset.task,
    )


# ---------------------------------------------------------------------------------------------
# evaluate


@dataclass(frozen=True)
class EvaluationHandle:
    decision: Any  # refit.evaluation.GateDecision
    champion_version: int | None
    dossier: dict[str, str] = field(default_factory=dict)
    candidate_metrics: dict[str, Any] = field(default_factory=dict)
    segment_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def promote(self) -> bool:
        return bool(self.decision.promote)

    @property
    def outcome(self) -> str:
        return str(self.decision.outcome)


def scores(model: Any, df: pd.DataFrame, task: str, positive_class: str | None = None) -> np.ndarray:
    """What the gate compares: P(positive class) for binary, values for regression, the
    ``(n, K)`` probabilities in the model's class order for multiclass (compare models, or
    score labels, through :func:`gate_inputs`, which puts them in one class order).

    The positive class is ``dataset.positive_class`` when the labels are strings (a model's
    classes are sorted, so "No" < "Yes" and the positive one may be either), else the second.
    """
    if task == "regression":
        return np.asarray(model.predict(df), dtype=np.float64)
    proba = np.asarray(model.predict_proba(df), dtype=np.float64)
    if not (proba.ndim == 2 and proba.shape[1] == 2):
        return proba
    column = 1
    if positive_class is not None:
        classes = [str(c) for c in (model.classes or [])]
        if positive_class not in classes:
            raise DataError(f"dataset.positive_class {positive_class!r} is not a class of the model ({classes})")
        column = classes.index(positive_class)
    return proba[:, column]


def capture_predictions(model: Any, df: pd.DataFrame, task: str, positive_class: str | None = None) -> np.ndarray:
    """One prediction per row, as captures hold them: the gate's score (:func:`scores`), or for
    multiclass the predicted class (a capture column holds one value, not K probabilities)."""
    if task == "multiclass":
        return np.asarray(model.predict(df))
    return scores(model, df, task, positive_class)


def gate_inputs(dataset: Any, df: pd.DataFrame, models: list[Any]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The labels of ``df`` and each model's scores on it, as the gate's metrics read them.

    Binary and regression: ``dataset.gate_labels`` and :func:`scores`. Multiclass: the labels
    as class indices into one class order and every model's ``(n, K)`` probabilities in that
    order (:func:`refit.metrics.align_classes`: ``dataset.classes`` when declared, then the first
    model's classes, then the others', then labels no model knows), so two models with different
    classes, or a class new in production, are compared on the same columns. Missing labels are NaN.
    """
    if dataset.task != "multiclass":
        y = np.asarray(dataset.gate_labels(df[dataset.target]))
        return y, [scores(m, df, dataset.task, dataset.positive_class) for m in models]
    _, y, mats = multiclass_inputs(dataset, df, models)
    return y, mats


def multiclass_inputs(
    dataset: Any, df: pd.DataFrame, models: list[Any]
) -> tuple[list[Any], np.ndarray, list[np.ndarray]]:
    """:func:`gate_inputs` of a multiclass dataset with the class order it used first (the
    columns of every matrix, :func:`refit.metrics.align_classes`)."""
    from refit.metrics import align_classes

    outputs = [(list(m.classes or []), scores(m, df, dataset.task)) for m in models]
    return align_classes(df[dataset.target].to_numpy(), outputs, order=dataset.classes)


def load_version(store: Store, version: Any) -> Any:
    """Load a registered version's model through the registry, which checks the artifact's
    manifest against the sha256 it recorded at registration (:meth:`Registry.load_model`)."""
    from refit.registry import Registry

    return Registry(store).load_model(version.name, version)


def champion_version(store: Store, model_name: str) -> Any | None:
    from refit.errors import RegistryError
    from refit.registry import Registry

    try:
        return Registry(store).champion(model_name)
    except (RegistryError, NotFoundError):
        return None


def evaluate_candidate(
    store: Store,
    config: PipelineConfig,
    splits: SplitHandles,
    candidate: CandidateHandle,
    run_id: str,
    force: bool = False,
    reason: str | None = None,
) -> EvaluationHandle:
    """Score candidate and champion on the same test rows; run the gate; write the dossier."""
    from refit.decay import se_key
    from refit.dossier import write_dossier
    from refit.evaluation.recent import judge
    from refit.metrics import compute_metrics
    from refit.model import load

    ds = config.dataset
    test_df = read_frame(store, splits.keys["test"])
    models = [load(store, candidate.artifact_key, manifest_sha256=candidate.manifest_sha256)]
    champion = champion_version(store, ds.name)
    if champion is not None:
        models.append(load_version(store, champion))
    y, judged = gate_inputs(ds, test_df, models)
    cand_scores = judged[0]
    champ_scores = judged[1] if champion is not None else None
    # the rows gate.evaluate_on names: the holdout, its most recent window, or both
    decision = judge(ds.task, y, cand_scores, champ_scores, test_df, config.gate, ds, force=force, force_reason=reason)
    # registration records the whole holdout whichever rows the gate judged, with standard errors
    seg_metrics = registered_metrics(test_df, y, cand_scores, config)
    overall = seg_metrics.pop("overall")
    del test_df
    release_arrow_memory()
    context = {
        "model_name": ds.name,
        "candidate_version": f"candidate of run {run_id}",
        "champion_version": champion.version if champion else None,
        "data": {name: {"fingerprint": fp["sha256"], "rows": fp["rows"]} for name, fp in splits.lineage().items()},
        "config": config.to_dict(),
        "run_id": run_id,
        "candidate": {"artifact_uri": candidate.artifact_uri, "family": candidate.family, "params": candidate.params},
    }
    prefix = run_keys(config, run_id).dossier
    write_dossier(decision, context, out=store, prefix=prefix)
    uris = {
        name: store.uri_for(f"{prefix}dossier.{ext}")
        for name, ext in (("json", "json"), ("markdown", "md"), ("png", "png"))
    }
    se = se_key(config.gate.primary_metric)
    metrics = compute_metrics(ds.task, y, cand_scores) | {se: overall[se]}
    return EvaluationHandle(
        decision=decision,
        champion_version=champion.version if champion else None,
        dossier=uris,
        candidate_metrics=metrics,
        segment_metrics=seg_metrics,
    )


def registered_metrics(
    test_df: pd.DataFrame, y: np.ndarray, cand_scores: np.ndarray, config: PipelineConfig
) -> dict[str, dict[str, Any]]:
    """``"overall"`` and every segment value of the holdout: ``{"n", <metric>, <metric>_se}``,
    the standard error from the gate's bootstrap kernels, resamples and seed
    (``refit.decay.registered_errors``), so decay can tell a lucky registered value from a drop."""
    from refit.decay import registered_errors
    from refit.evaluation import segment_labels

    gate = config.gate
    segments = segment_labels(test_df.reset_index(drop=True), config.dataset)
    return registered_errors(
        config.dataset.task, gate.primary_metric, y, cand_scores, segments, gate.bootstrap_resamples, gate.seed
    )


# ---------------------------------------------------------------------------------------------
# register + promote


def register_candidate(
    store: Store,
    config: PipelineConfig,
    splits: SplitHandles,
    candidate: CandidateHandle,
    evaluation: EvaluationHandle,
    run_id: str,
    reason: str | None = None,
    tags: dict[str, str] | None = None,
) -> ModelVersion:
    """Copy the artifact into a new immutable registry version with its full lineage."""
    from refit.model import git_commit, read_artifact
    from refit.registry import Registry

    files = read_artifact(store, candidate.artifact_key, candidate.manifest_sha256)
    train_df = read_frame(store, splits.keys["train"])
    n = min(REFERENCE_SAMPLE_ROWS, len(train_df))
    reference = train_df.sample(n=n, random_state=config.training.seed) if n < len(train_df) else train_df
    del train_df
    release_arrow_memory()
    decision = evaluation.decision
    return Registry(store).register(
        config.dataset.name,
        artifact_files=files,
        datasets=splits.lineage(),
        params={"family": candidate.family, **candidate.params},
        metrics={k: v for k, v in evaluation.candidate_metrics.items() if v is not None},
        segment_metrics=evaluation.segment_metrics,
        decision=decision.model_dump(mode="json"),
        dossier_uris=tuple(evaluation.dossier.values()),
        compared_with=evaluation.champion_version,
        tags={"outcome": str(decision.outcome), **(tags or {})},
        description=reason or "",
        reference_sample=reference,
        git_commit=git_commit(),
        run_id=run_id,
    )


#: How many times a promotion that lost the champion's compare-and-swap judges its candidate
#: again against the champion that won (each loss means another run promoted meanwhile).
MAX_REJUDGEMENTS = 3


@dataclass(frozen=True)
class PromotionHandle:
    """What the promote step did: the alias move (None when the candidate, judged again against
    a champion another run promoted meanwhile, did not win), the evaluation that decided it, and
    the champions it was judged against again."""

    event: AliasEvent | None
    evaluation: EvaluationHandle
    rejudged_against: tuple[int | None, ...] = ()


def promote_version(
    store: Store,
    config: PipelineConfig,
    version: int,
    evaluation: EvaluationHandle,
    splits: SplitHandles,
    candidate: CandidateHandle,
    run_id: str,
    reason: str | None = None,
) -> PromotionHandle:
    """Move ``champion`` by compare-and-swap from the champion the candidate was compared with.

    When another run moved the champion since (two retrains promoting at once, on two workers),
    the swap is refused and the candidate is judged again, on the same holdout with the same
    gate, against the champion that is now serving; it is promoted only if it wins that too (a
    forced run stays forced). Up to :data:`MAX_REJUDGEMENTS` times, then the conflict is raised.
    A decision is never applied to a champion it was not made against.
    """
    from refit.errors import ConflictError
    from refit.registry import Registry

    registry = Registry(store)
    rejudged: list[int | None] = []
    while True:
        decision = evaluation.decision
        if not decision.promote:
            return PromotionHandle(None, evaluation, tuple(rejudged))
        why = reason or decision.headline
        if rejudged:
            why = f"{why} (judged again against v{evaluation.champion_version}, promoted by another run meanwhile)"
        try:
            event = registry.promote(
                config.dataset.name,
                version,
                expected_current=evaluation.champion_version,
                reason=why,
                forced=bool(decision.forced),
            )
            return PromotionHandle(event, evaluation, tuple(rejudged))
        except ConflictError:
            if len(rejudged) >= MAX_REJUDGEMENTS:
                raise
        evaluation = evaluate_candidate(
            store, config, splits, candidate, run_id, force=bool(decision.forced), reason=reason
        )
        rejudged.append(evaluation.champion_version)


def read_bytes(store: Store, uri: str) -> bytes:
    """Read an object given by its URI in ``store``."""
    return store.get_bytes(uri.removeprefix(store.uri.rstrip("/") + "/"))


def read_text(store: Store, uri: str) -> str:
    """Read a text object given by its URI in ``store``."""
    return read_bytes(store, uri).decode()
