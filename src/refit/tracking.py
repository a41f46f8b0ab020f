"""Experiment tracking on MLflow: the only module that imports ``mlflow`` (an import-linter
contract keeps it so), returning our own :class:`TrackingReport`.

Off unless ``tracking.mlflow_uri`` (YAML) or ``MLFLOW_TRACKING_URI`` is set. Each retrain is
one MLflow run in the dataset's experiment, tagged with refit's run id, the trigger, the git
commit and (under Prefect) the flow run; each trial of the search is a nested run with its
params, per-epoch metrics as steps, train time, peak memory and device; the splits are the
run's dataset inputs (refit's fingerprints and row counts); the dossier, the trials table and
the model folder are artifacts; the gate's decision and gains are metrics and tags.

refit's registry stays the source of truth. :func:`mirror_registry` copies it into MLflow's
Model Registry: every refit version becomes a model version (tagged ``refit.version``, created
in refit's order, so the numbers match when only refit writes there) and every refit alias,
``champion`` first, points where refit's does. It is idempotent and catches up: a version
registered while MLflow was down is mirrored by the next tracked run.

Nothing here fails or blocks a retrain: an unreachable server is given up on after one try
per request (``timeout_s``), costs one warning line, and the run goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refit.errors import first_line
from refit.url_credentials import redact, scrub

if TYPE_CHECKING:
    from refit.config import PipelineConfig, TrackingConfig
    from refit.io.base import Store
    from refit.pipeline import CandidateHandle, EvaluationHandle, SplitHandles

log = logging.getLogger("refit.tracking")

RUN_ID_TAG = "refit.run_id"
KIND_TAG = "refit.kind"
VERSION_TAG = "refit.version"
PARENT_TAG = "mlflow.parentRunId"
_MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_MAX_PARAM = 6000


def tracking_uri(config: PipelineConfig) -> str | None:
    """``tracking.mlflow_uri`` of the config, else ``MLFLOW_TRACKING_URI``, else None (off)."""
    return config.tracking.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def tracking_enabled(config: PipelineConfig) -> bool:
    return tracking_uri(config) is not None


@dataclass(frozen=True)
class TrackingReport:
    """What reached MLflow in one tracked retrain (``error`` says what did not)."""

    uri: str | None
    experiment_id: str | None = None
    run_id: str | None = None
    trials: int = 0
    mirrored: list[int] = field(default_factory=list)
    aliases: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RetrainRecord:
    """One retrain as the tracker sees it: plain values, built from its handles by :func:`track_run`."""

    run_id: str
    model: str
    started_at: datetime | None
    tags: dict[str, str]
    params: dict[str, Any]
    datasets: dict[str, dict[str, Any]]  # split name -> {uri, sha256, rows, columns}
    trials: list[dict[str, Any]]
    best_trial: int | None
    metrics: dict[str, float | None]
    decision: dict[str, Any] | None
    artifact_key: str | None
    dossier_keys: list[str]
    columns: dict[str, tuple[str, bool]] = field(default_factory=dict)  # the data contract: kind, nullable


@contextmanager
def _mlflow_env(cfg: TrackingConfig) -> Iterator[None]:
    """One try per request, ``timeout_s`` each, no URLs printed on stdout (``--json`` stays one
    object); the user's own MLFLOW_* settings win. Restored afterwards."""
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(cfg.timeout_s))),
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    saved = {k: os.environ.get(k) for k in wanted}
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mlflow's schema-inference hints on dataset inputs
            yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _probe(uri: str, timeout_s: float) -> None:
    """Fail fast (one short request) when an HTTP tracking server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=min(timeout_s, 5.0)) as response:  # noqa: S310
        response.read()


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def track_retrain(store: Store, config: PipelineConfig, record: RetrainRecord) -> TrackingReport:
    """Log ``record`` as one MLflow run with nested trials, then mirror the registry.

    Never raises: what could not reach MLflow is one warning and ``error`` on the report.
    """
    uri = tracking_uri(config)
    if uri is None:
        return TrackingReport(uri=None, error="tracking is off (no tracking.mlflow_uri nor MLFLOW_TRACKING_URI)")
    shown = redact(uri)
    experiment_id = run_id = None
    trials = 0
    try:
        with _mlflow_env(config.tracking):
            _probe(uri, config.tracking.timeout_s)
            client = _client(uri)
            experiment_id = _experiment(client, config.tracking.experiment or config.dataset.name)
            run_id, trials = _log_retrain(client, experiment_id, store, record)
            mirrored, aliases = mirror_registry(client, store, record.model, experiment_id)
    except Exception as exc:  # MLflow down, or refusing: the retrain goes on
        message = scrub(f"{type(exc).__name__}: {first_line(exc)}", uri)
        log.warning(
            "MLflow tracking at %s failed (%s); the retrain goes on, the next tracked run catches up the mirror",
            shown,
            message,
        )
        return TrackingReport(uri=shown, experiment_id=experiment_id, run_id=run_id, trials=trials, error=message)
    log.info("tracked run %s in MLflow at %s (%d trials; mirrored versions %s)", run_id, shown, trials, mirrored)
    return TrackingReport(
        uri=shown, experiment_id=experiment_id, run_id=run_id, trials=trials, mirrored=mirrored, aliases=aliases
    )


def track_run(
    store: Store,
    config: PipelineConfig,
    run_id: str,
    splits: SplitHandles,
    candidate: CandidateHandle,
    smoke: Any = None,
    evaluation: EvaluationHandle | None = None,
    version: Any = None,
    tags: dict[str, str] | None = None,
) -> TrackingReport:
    """Log this retrain to MLflow and mirror the registry (:func:`track_retrain`); never raises.

    The retrain's handles become one :class:`RetrainRecord`: what each is called in MLflow
    (params, ``val_``/``test_`` metrics, tags, dataset inputs) is decided here."""
    from refit.contracts import column_kinds
    from refit.data import stamp_time
    from refit.model import git_commit

    decision = None if evaluation is None else evaluation.decision.model_dump(mode="json")
    outcome = "SMOKE_FAILED" if smoke is not None and not smoke.passed else (decision or {}).get("outcome", "")
    all_tags = {
        "mlflow.source.git.commit": git_commit() or "",
        "refit.outcome": str(outcome),
        "refit.store": store.uri,
        **({"refit.version": str(version.version)} if version is not None else {}),
        **(tags or {}),
    }
    lineage = splits.lineage()
    params = {
        "family": candidate.family,
        **{f"candidate.{k}": v for k, v in candidate.params.items()},
        "seed": config.training.seed,
        "primary_metric": candidate.primary_metric,
        "device": candidate.device,
    }
    metrics: dict[str, float | None] = {
        **{f"val_{k}": v for k, v in candidate.validation_metrics.items()},
        **({} if evaluation is None else {f"test_{k}": v for k, v in evaluation.candidate_metrics.items()}),
        "train_s": candidate.train_s,
        "samples_per_s": candidate.samples_per_s,
        "peak_memory_mb": candidate.peak_memory_mb,
        **{f"rows_{name}": fp.rows for name, fp in splits.fingerprints.items()},
    }
    dossier = (
        [] if evaluation is None else [u.removeprefix(store.uri.rstrip("/") + "/") for u in evaluation.dossier.values()]
    )
    record = RetrainRecord(
        run_id=run_id,
        model=config.dataset.name,
        started_at=stamp_time(run_id),
        tags=all_tags,
        params=params,
        datasets={
            name: {
                "uri": store.uri_for(key),
                "sha256": lineage[name]["sha256"],
                "rows": lineage[name]["rows"],
                "columns": lineage[name]["columns"],
            }
            for name, key in splits.keys.items()
        },
        columns=column_kinds(config.dataset.schema_path),
        trials=candidate.trials,
        best_trial=candidate.best_trial,
        metrics=metrics,
        decision=decision,
        artifact_key=candidate.artifact_key,
        dossier_keys=dossier,
    )
    return track_retrain(store, config, record)


def _experiment(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # another run created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def _find_runs(client: Any, experiment_id: str, refit_run_id: str, kind: str) -> list[Any]:
    query = f"tags.`{RUN_ID_TAG}` = '{refit_run_id}' and tags.`{KIND_TAG}` = '{kind}'"
    return list(client.search_runs([experiment_id], query, max_results=10))


def _millis(at: datetime | None) -> int:
    return int((at.timestamp() if at is not None else time.time()) * 1000)


def _log_retrain(client: Any, experiment_id: str, store: Store, record: RetrainRecord) -> tuple[str, int]:
    """The retrain's run and its nested trial runs; a finished one (a retried task) is kept as is."""
    for old in _find_runs(client, experiment_id, record.run_id, "retrain"):
        if old.info.status == "FINISHED":
            return str(old.info.run_id), len(record.trials)
        client.delete_run(old.info.run_id)  # a half-logged attempt: log it again, whole
    tags = {RUN_ID_TAG: record.run_id, KIND_TAG: "retrain", **record.tags}
    run = client.create_run(experiment_id, start_time=_millis(record.started_at), tags=tags, run_name=record.run_id)
    parent = str(run.info.run_id)
    _log_values(client, parent, record.params, record.metrics)
    _log_decision(client, parent, record.decision)
    _log_datasets(client, parent, record)
    for trial in record.trials:
        _log_trial(client, experiment_id, parent, record, trial)
    _log_files(client, parent, store, record)
    client.set_terminated(parent, "FINISHED")
    return parent, len(record.trials)


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_MAX_PARAM]


def _metric_name(name: str) -> str:
    """MLflow allows letters, digits, ``_ - . / :`` and spaces in a metric name."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "_-./: ") else "_" for c in name)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _log_values(client: Any, run_id: str, params: Mapping[str, Any], metrics: Mapping[str, Any], step: int = 0) -> None:
    from mlflow.entities import Metric, Param

    now = _millis(None)
    ps = [Param(_metric_name(str(k)), _param_text(v)) for k, v in params.items()]
    ms = [
        Metric(_metric_name(str(k)), number, now, step)
        for k, v in metrics.items()
        if (number := _number(v)) is not None
    ]
    for i in range(0, max(len(ps), len(ms)), 100):
        client.log_batch(run_id, metrics=ms[i : i + 100], params=ps[i : i + 100])


def _log_decision(client: Any, run_id: str, decision: Mapping[str, Any] | None) -> None:
    """The gate: outcome and headline as tags; overall and per-segment gains with intervals as metrics."""
    if not decision:
        return
    for key in ("outcome", "gate_outcome", "forced", "headline", "metric"):
        if decision.get(key) is not None:
            client.set_tag(run_id, f"refit.gate.{key}", str(decision[key])[:5000])
    overall = {
        f"gate.{k}": decision.get(k)
        for k in ("candidate_value", "champion_value", "gain", "ci_low", "ci_high", "n_rows")
    }
    segments: dict[str, Any] = {}
    for seg in decision.get("segments", []):
        scope = f"{seg['segment']}={seg['value']}"
        for k in ("gain", "ci_low", "ci_high", "candidate", "champion"):
            segments[f"segment.{scope}.{k}"] = seg.get(k)
    _log_values(client, run_id, {}, {**overall, **segments})


#: refit's column kinds (``refit.contracts``) as MLflow column types.
_MLFLOW_TYPES = {"bool": "boolean", "int": "long", "float": "double", "datetime": "datetime", "text": "string"}


def _log_datasets(client: Any, run_id: str, record: RetrainRecord) -> None:
    """Each split as a dataset input, from what the run already knows (nothing is read again):
    its URI, refit's fingerprint and row count, and the data contract's columns as its schema."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.entities import Dataset, DatasetInput, InputTag

    colspec = [
        {"type": _MLFLOW_TYPES[kind], "name": name, "required": not nullable}
        for name, (kind, nullable) in record.columns.items()
    ]
    inputs = []
    for name, ds in record.datasets.items():
        source = resolve_dataset_source(ds["uri"])
        dataset = Dataset(
            name=f"{record.model}-{name}",
            digest=ds["sha256"][:32],
            source_type=source._get_source_type(),
            source=source.to_json(),
            schema=json.dumps({"mlflow_colspec": colspec}) if colspec else None,
            profile=json.dumps({"num_rows": ds["rows"], "num_elements": ds["rows"] * ds["columns"]}),
        )
        tags = [
            InputTag("mlflow.data.context", name),
            InputTag("refit.sha256", ds["sha256"]),
            InputTag("refit.rows", str(ds["rows"])),
        ]
        inputs.append(DatasetInput(dataset, tags=tags))
    client.log_inputs(run_id, datasets=inputs)


def _log_trial(client: Any, experiment_id: str, parent: str, record: RetrainRecord, trial: Mapping[str, Any]) -> None:
    """A nested run: params, final validation metrics, and each epoch's metrics as a step."""
    from mlflow.entities import Metric

    index = trial.get("index")
    tags = {
        PARENT_TAG: parent,
        RUN_ID_TAG: record.run_id,
        KIND_TAG: "trial",
        "refit.trial": str(index),
        "refit.family": str(trial.get("family")),
        "refit.status": str(trial.get("status")),
        "refit.best": str(index == record.best_trial).lower(),
        "refit.device": str(trial.get("device") or "cpu"),
    }
    if trial.get("error"):
        tags["refit.error"] = str(trial["error"])[:5000]
    run = client.create_run(experiment_id, tags=tags, run_name=f"{trial.get('family')} trial {index}")
    child = str(run.info.run_id)
    peak = trial.get("peak_memory_bytes")
    summary = {
        **{f"val_{k}": v for k, v in (trial.get("metrics") or {}).items()},
        "train_s": trial.get("train_s"),
        "wall_s": trial.get("wall_s"),
        "samples_per_s": trial.get("samples_per_s"),
        "peak_memory_mb": None if peak is None else peak / 2**20,
        "epochs": trial.get("epochs"),
        "best_epoch": trial.get("best_epoch"),
    }
    params = {"family": trial.get("family"), **(trial.get("resolved_params") or trial.get("params") or {})}
    now = _millis(None)
    history = []
    for i, row in enumerate(trial.get("history") or []):
        step = int(row.get("epoch", row.get("iteration", i + 1)))
        for key, value in row.items():
            number = _number(value)
            if key not in ("epoch", "iteration") and number is not None:
                history.append(Metric(_metric_name(key), number, now, step))
    curves = {m.key for m in history}  # a metric with a curve is not logged a second time at step 0
    _log_values(client, child, params, {k: v for k, v in summary.items() if _metric_name(k) not in curves})
    for i in range(0, len(history), _MAX_BATCH):
        client.log_batch(child, metrics=history[i : i + _MAX_BATCH])
    client.set_terminated(child, "FINISHED" if trial.get("status") == "ok" else "FAILED")


def _log_files(client: Any, run_id: str, store: Store, record: RetrainRecord) -> None:
    """The dossier (Markdown, JSON, PNG), the trials table and the model folder."""
    from refit.model import read_artifact

    with tempfile.TemporaryDirectory(prefix="refit-mlflow-") as tmp:
        root = Path(tmp)
        (root / "trials").mkdir()
        (root / "trials" / "trials.json").write_text(json.dumps(record.trials, indent=2, default=str))
        if record.dossier_keys:
            (root / "dossier").mkdir()
            for key in record.dossier_keys:
                (root / "dossier" / key.rsplit("/", 1)[-1]).write_bytes(store.get_bytes(key))
        if record.artifact_key is not None:
            (root / "model").mkdir()
            for name, data in read_artifact(store, record.artifact_key).items():
                (root / "model" / name).write_bytes(data)
        for folder in sorted(p.name for p in root.iterdir()):
            client.log_artifacts(run_id, str(root / folder), folder)


# --- the registry mirror ---------------------------------------------------------------------


def mirror_registry(client: Any, store: Store, name: str, experiment_id: str) -> tuple[list[int], dict[str, int]]:
    """Copy refit's versions and aliases of ``name`` into MLflow's Model Registry.

    Returns the refit versions mirrored now and the aliases as they stand in refit. A version
    whose retrain was never tracked (MLflow was down) gets a catch-up run holding its model.
    """
    from refit.registry import Registry

    registry = Registry(store)
    versions = registry.list_versions(name)
    if not versions:
        return [], {}
    if not _registered_model_exists(client, name):
        try:
            client.create_registered_model(name, tags={"refit.source": "refit registry mirror"})
        except Exception:
            if not _registered_model_exists(client, name):
                raise
    present = _mirrored_versions(client, name)
    mirrored = []
    for mv in versions:
        if mv.version in present:
            continue
        run_id = _run_for_version(client, experiment_id, registry, mv)
        created = client.create_model_version(
            name,
            source=f"runs:/{run_id}/model",
            run_id=run_id,
            tags={
                VERSION_TAG: str(mv.version),
                RUN_ID_TAG: str(mv.run_id or ""),
                "refit.manifest_sha256": str(mv.manifest_sha256 or ""),
                "refit.outcome": str(mv.tags.get("outcome", "")),
            },
            description=mv.description or f"refit {mv.ref}, registered {mv.created_at.isoformat()} by {mv.author}",
        )
        present[mv.version] = str(created.version)
        mirrored.append(mv.version)
    aliases = registry.aliases(name)
    _mirror_aliases(client, name, aliases, present)
    return mirrored, aliases


def _registered_model_exists(client: Any, name: str) -> bool:
    return bool(client.search_registered_models(filter_string=f"name = '{name}'", max_results=1))


def _mirrored_versions(client: Any, name: str) -> dict[int, str]:
    """refit version -> MLflow version, read from the ``refit.version`` tags."""
    out = {}
    for mv in client.search_model_versions(f"name = '{name}'", max_results=10_000):
        tag = (mv.tags or {}).get(VERSION_TAG)
        if tag is not None and str(tag).isdigit():
            out[int(tag)] = str(mv.version)
    return out


def _run_for_version(client: Any, experiment_id: str, registry: Any, mv: Any) -> str:
    """The tracked retrain that registered ``mv``, else a catch-up run holding its model."""
    if mv.run_id:
        for kind in ("retrain", "catch-up"):
            for run in _find_runs(client, experiment_id, mv.run_id, kind):
                if run.info.status == "FINISHED":
                    return str(run.info.run_id)
    tags = {RUN_ID_TAG: str(mv.run_id or f"{mv.name}:{mv.version}"), KIND_TAG: "catch-up", VERSION_TAG: str(mv.version)}
    run = client.create_run(
        experiment_id, start_time=_millis(mv.created_at), tags=tags, run_name=f"{mv.ref} (mirrored later)"
    )
    run_id = str(run.info.run_id)
    _log_values(client, run_id, mv.params, mv.metrics)
    with tempfile.TemporaryDirectory(prefix="refit-mlflow-") as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        for file in mv.artifact_files:
            (folder / file).write_bytes(registry.read_artifact(mv.name, mv.version, file))
        client.log_artifacts(run_id, str(folder), "model")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _mirror_aliases(client: Any, name: str, aliases: Mapping[str, int], present: Mapping[int, str]) -> None:
    """MLflow's aliases of ``name`` become refit's: set where refit has them, removed where it has not."""
    model = client.get_registered_model(name)
    current = dict(getattr(model, "aliases", {}) or {})
    for alias, version in aliases.items():
        target = present.get(version)
        if target is not None and str(current.get(alias)) != target:
            try:
                client.set_registered_model_alias(name, alias, target)
            except Exception as exc:  # e.g. MLflow reserves "latest" and "v<N>": the others still move
                log.warning("MLflow refused alias %r of %s: %s", alias, name, first_line(exc))
    for alias in set(current) - set(aliases):
        client.delete_registered_model_alias(name, alias)
