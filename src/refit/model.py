"""The model artifact: one folder in a store that holds everything needed to predict.

Files: the weights (``model.safetensors`` for the MLP, ``model.skops`` for scikit-learn),
``model.json`` (family, task, classes, target scaling, MLP architecture),
``preprocessing.json``, ``input_schema.json``, ``config.json``, ``metrics.json``,
``trials.json``, ``environment.json`` and, written last, ``manifest.json`` with the sha256 of
every other file (:mod:`refit.model_files` reads the JSON ones back). :func:`load` checks
every hash before it parses anything, and never unpickles: safetensors holds only tensors, and
skops loads only the exact types refit's own scikit-learn families produce
(:data:`refit.skops_compat.SKOPS_ALLOWED_TYPES`), with the estimator's class checked against
the family ``model.json`` names.

The manifest certifies the other files, but nothing in the folder certifies the manifest: the
registry records its sha256 when a version is registered, and :func:`load` checks it when given
(``manifest_sha256=``), so an edited file with a recomputed manifest does not load as that version.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from refit.booleans import lossless_bool
from refit.errors import DataError, InvalidKeyError, ModelArtifactError, NotFoundError, first_line
from refit.io.base import Store
from refit.jsonable import to_jsonable
from refit.model_files import InputSchemaJson, ModelJson, PreprocessingJson, parse_json, parse_object
from refit.preprocessing import Preprocessor
from refit.skops_compat import SKOPS_ALLOWED_TYPES, load_skops
from refit.training.common import Task

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TORCH_WEIGHTS = "model.safetensors"
SKOPS_WEIGHTS = "model.skops"
JSON_FILES = (
    "model.json",
    "preprocessing.json",
    "input_schema.json",
    "config.json",
    "metrics.json",
    "trials.json",
    "environment.json",
)


@dataclass
class FittedModel:
    """A trained model with its preprocessing: predicts from a raw feature frame."""

    family: str
    task: Task
    preprocessor: Preprocessor
    feature_columns: list[str]
    feature_dtypes: dict[str, str]
    classes: list[Any] | None = None
    target: str | None = None
    estimator: Any = None
    torch_model: Any = None
    arch: dict[str, Any] | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    val_metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def output(self, df: pd.DataFrame) -> np.ndarray:
        """Probabilities ``[n, K]`` (classification) or values ``[n]`` (regression)."""
        x_num, x_cat = self.preprocessor.transform(df)
        if self.torch_model is not None:
            from refit.training.torch_mlp import predict_torch

            return predict_torch(self.torch_model, x_num, x_cat, self.task, self.target_mean, self.target_std)
        from refit.training.sklearn_models import predict_sklearn

        return predict_sklearn(self.estimator, x_num, x_cat, self.task)

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            raise ModelArtifactError("predict_proba: this is a regression model")
        return self.output(df)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Class labels (as trained) for classifiers, values for regression."""
        out = self.output(df)
        if self.task == "regression":
            return out
        classes = np.asarray(self.classes, dtype=object if _mixed(self.classes) else None)
        return np.asarray(classes[np.argmax(out, axis=1)])

    def describe(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "family": self.family,
            "task": self.task,
            "classes": self.classes,
            "target": self.target,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "architecture": self.arch,
            "params": to_jsonable(self.params),
            "weights": TORCH_WEIGHTS if self.torch_model is not None else SKOPS_WEIGHTS,
        }


def _mixed(classes: Sequence[Any] | None) -> bool:
    return bool(classes) and len({type(c) for c in classes or []}) > 1


def _json_bytes(value: Any) -> bytes:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=True, allow_nan=False).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The current git commit, or None outside a repository or without git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def environment_info(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Package versions, platform and git commit, plus ``extra`` (device, timings, memory)."""
    packages: dict[str, str | None] = {}
    for name in ("numpy", "pandas", "torch", "scikit-learn", "skops", "safetensors", "pyarrow"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "git_commit": git_commit(),
        **(extra or {}),
    }


def _weights_bytes(fitted: FittedModel) -> tuple[str, bytes]:
    if fitted.torch_model is not None:
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous() for k, v in fitted.torch_model.state_dict().items()}
        return TORCH_WEIGHTS, save(state, metadata={"format": "refit-tabular-mlp"})
    if fitted.estimator is None:
        raise ModelArtifactError("nothing to save: the fitted model has neither torch weights nor an estimator")
    from refit.skops_compat import skops_io

    return SKOPS_WEIGHTS, skops_io().dumps(fitted.estimator)


def _join(prefix: str, name: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


def save_model(store: Store, prefix: str, fitted: FittedModel, config: Any, *args: Any, **kwargs: Any) -> str:
    """:func:`write_model` (the same arguments), returning the artifact's URI only."""
    return write_model(store, prefix, fitted, config, *args, **kwargs)[0]


def write_model(
    store: Store,
    prefix: str,
    fitted: FittedModel,
    config: Any,
    trials: Sequence[Any] = (),
    metrics: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> tuple[str, str]:
    """Write the artifact folder under ``prefix``; the manifest goes last. Returns its URI and the
    sha256 of the manifest as written: the run pins every later read of the candidate to it
    (:func:`load`, :func:`read_artifact`), so what the gate judged is what gets registered.

    Args:
        store: Where to write.
        prefix: The artifact folder (e.g. ``models/churn/candidates/<run>``).
        fitted: The model to save.
        config: The run's PipelineConfig (or an already plain dict).
        trials: Every search trial (objects with ``to_dict()`` or dicts).
        metrics: Final metrics (e.g. validation / test); the training history is added.
        info: Run facts for environment.json (device, train time, peak memory, samples/s).
        overwrite: Replace an existing complete artifact instead of refusing.
    """
    manifest_key = _join(prefix, MANIFEST)
    if not overwrite and store.exists(manifest_key):
        raise ModelArtifactError(f"a model already exists at {store.uri_for(manifest_key)}")
    weights_name, weights = _weights_bytes(fitted)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    schema_path = (config_dict.get("dataset") or {}).get("schema")
    input_schema = {
        "columns": [{"name": c, "dtype": fitted.feature_dtypes.get(c, "unknown")} for c in fitted.feature_columns],
        "numeric": fitted.preprocessor.numeric,
        "categorical": fitted.preprocessor.categorical,
        "schema": schema_path,
    }
    files: dict[str, bytes] = {
        weights_name: weights,
        "model.json": _json_bytes(fitted.describe()),
        "preprocessing.json": _json_bytes(fitted.preprocessor.to_dict()),
        "input_schema.json": _json_bytes(input_schema),
        "config.json": _json_bytes(config_dict),
        "metrics.json": _json_bytes(
            {"history": fitted.history, "validation": fitted.val_metrics, "final": metrics or {}}
        ),
        "trials.json": _json_bytes([t.to_dict() if hasattr(t, "to_dict") else t for t in trials]),
        "environment.json": _json_bytes(environment_info({**fitted.info, **(info or {})})),
    }
    for name, data in files.items():
        store.put_bytes(_join(prefix, name), data)
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "family": fitted.family,
        "task": fitted.task,
        "files": {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in sorted(files.items())},
    }
    manifest_bytes = _json_bytes(manifest)
    store.put_bytes(manifest_key, manifest_bytes)
    return (store.uri_for(prefix.strip("/")) if prefix.strip("/") else store.uri), _sha256(manifest_bytes)


@dataclass
class LoadedModel:
    """A model read back from an artifact. Validates inputs against the stored schema."""

    uri: str
    fitted: FittedModel
    manifest: dict[str, Any]
    input_schema: dict[str, Any]
    metrics: dict[str, Any]
    config: dict[str, Any]
    trials: list[dict[str, Any]]
    environment: dict[str, Any]
    manifest_sha256: str = ""
    #: True when the manifest matched a sha256 recorded outside the artifact (the registry's
    #: version record); False when only the artifact's own manifest vouched for its files.
    pinned: bool = False

    @property
    def family(self) -> str:
        return self.fitted.family

    @property
    def task(self) -> Task:
        return self.fitted.task

    @property
    def classes(self) -> list[Any] | None:
        return self.fitted.classes

    def check_input(self, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        """The feature columns of ``df`` after checking them against the input schema.

        Rules: every feature column the model was trained on is present; a numeric feature holds
        numbers (or is empty); a boolean one the spellings training read (``refit.booleans``:
        ``yes``/``no``, ``true``/``false``, 0/1), read as booleans. Errors are one line naming
        ``source``, the column, the row and the rule.
        """
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
        schema = self.input_schema
        columns = [c["name"] for c in schema["columns"]]
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(
                f"{source}: missing feature column(s) {', '.join(repr(c) for c in missing)} "
                "(rule: every column of the training schema is required)"
            )
        dtypes = {c["name"]: c.get("dtype", "?") for c in schema["columns"]}
        out = df[columns]
        for col in schema.get("numeric", []):
            values = df[col]
            if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
                continue
            if dtypes[col] in ("bool", "boolean"):  # the spellings training's validation reads (refit.booleans)
                read, [(bad_mask, rule)] = lossless_bool(values, "bool")
                bad, rule = pd.Series(bad_mask, index=values.index), rule.split(": ", 1)[1]
                out = out.assign(**{col: read})
            else:
                bad, rule = pd.to_numeric(values, errors="coerce").isna() & values.notna(), "numeric"
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"{source}: column {col!r} row {row + 1} is {values.iloc[row]!r} "
                    f"(rule: {rule}, trained as {dtypes[col]}); {int(bad.sum())} such row(s)"
                )
        return out

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return self.fitted.predict(self.check_input(df))

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        return self.fitted.predict_proba(self.check_input(df))

    def output(self, df: pd.DataFrame) -> np.ndarray:
        return self.fitted.output(self.check_input(df))


def _resolve(source: str | Store, prefix: str | None, client: Any) -> tuple[Store, str]:
    if not isinstance(source, str):
        return source, (prefix or "").strip("/")
    from refit.io import LocalStore, open_location

    if prefix is not None:
        from refit.io import open_store

        return open_store(source, client=client), prefix.strip("/")
    if source.startswith("s3://"):
        return open_location(source.rstrip("/"), LocalStore("."), client=client)
    path = Path(source[len("file://") :] if source.startswith("file://") else source).expanduser().resolve()
    return LocalStore(path), ""


def manifest_digest(files: dict[str, bytes]) -> str | None:
    """The sha256 of an artifact's ``manifest.json`` (what the registry records), if it has one."""
    data = files.get(MANIFEST)
    return None if data is None else _sha256(data)


def read_artifact(store: Store, prefix: str, manifest_sha256: str | None = None) -> dict[str, bytes]:
    """Every file of the artifact, each checked against the manifest's sha256.

    With ``manifest_sha256`` (recorded by the registry), the manifest itself must match it
    first: the manifest alone only catches accidents, since whoever edits a file can
    recompute it.
    """
    where = store.uri_for(_join(prefix, MANIFEST))
    try:
        manifest_bytes = store.get_bytes(_join(prefix, MANIFEST))
    except NotFoundError:
        raise ModelArtifactError(f"no model at {where.rsplit('/', 1)[0]}: {MANIFEST} not found") from None
    if manifest_sha256 is not None and _sha256(manifest_bytes) != manifest_sha256:
        raise ModelArtifactError(
            f"{where} does not match the sha256 recorded for it (by the registry for a version, by "
            "training for a run's candidate): the artifact was altered after it was written"
        )
    try:
        manifest = json.loads(manifest_bytes)
        entries = manifest["files"]
        ok = isinstance(entries, dict) and all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in entries.values()
        )
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ModelArtifactError(f"{where} is not a valid manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelArtifactError(f"{where}: unsupported artifact format {manifest.get('format_version')!r}")
    needed = set(JSON_FILES)
    missing = sorted(needed - set(entries))
    if missing or not ({TORCH_WEIGHTS, SKOPS_WEIGHTS} & set(entries)):
        raise ModelArtifactError(f"{where} does not list {', '.join(missing) or 'the weights'}")
    files = {MANIFEST: manifest_bytes}
    for name, entry in entries.items():
        key = _join(prefix, name)  # validates the name: a manifest cannot point outside its folder
        try:
            data = store.get_bytes(key)
        except NotFoundError:
            raise ModelArtifactError(f"model file {name} is missing from {store.uri_for(key)}") from None
        if _sha256(data) != entry["sha256"]:
            raise ModelArtifactError(
                f"model file {name} does not match its sha256 in the manifest (damaged or altered): "
                f"{store.uri_for(key)}"
            )
        files[name] = data
    return files


def load(
    source: str | Store,
    prefix: str | None = None,
    *,
    client: Any = None,
    device: str = "cpu",
    manifest_sha256: str | None = None,
    registry: Store | None = None,
) -> LoadedModel:
    """Load an artifact from a registry reference (``churn@champion``, ``churn:3``), a local
    path, a ``file://`` or ``s3://`` URI, or ``(store, prefix)``.

    A reference is resolved in the registry on ``registry`` (default: the store of the
    ``REFIT_*`` settings) and loaded pinned to the manifest sha256 it recorded.

    Every file's hash is checked before anything is parsed; a mismatch is a
    :class:`ModelArtifactError` and nothing is deserialised. ``manifest_sha256`` (the
    registry's record of this version) pins the manifest itself; the result says whether it
    was pinned (:attr:`LoadedModel.pinned`). Malformed JSON files are a
    :class:`ModelArtifactError` too, never a ``KeyError`` or ``TypeError``.
    """
    if isinstance(source, str) and prefix is None and _is_model_ref(source):
        return _load_registered(source, registry, client, device)
    store, prefix = _resolve(source, prefix, client)
    try:
        files = read_artifact(store, prefix, manifest_sha256)  # all hashes verified here, before any parsing
    except InvalidKeyError as exc:
        raise ModelArtifactError(f"the manifest lists a file outside the artifact: {exc}") from None
    manifest = parse_object(MANIFEST, files[MANIFEST])
    info = parse_json("model.json", files["model.json"], ModelJson)
    prep = parse_json("preprocessing.json", files["preprocessing.json"], PreprocessingJson)
    schema = parse_json("input_schema.json", files["input_schema.json"], InputSchemaJson)
    metrics = parse_object("metrics.json", files["metrics.json"])
    config = parse_object("config.json", files["config.json"])
    environment = parse_object("environment.json", files["environment.json"])
    trials = parse_json("trials.json", files["trials.json"])
    if not isinstance(trials, list):
        raise ModelArtifactError(f"trials.json is malformed: expected a JSON list, got {type(trials).__name__}")
    fitted = _fitted_model(files, info, prep, schema, metrics, device)
    return LoadedModel(
        uri=store.uri_for(prefix) if prefix else store.uri,
        fitted=fitted,
        manifest=manifest,
        input_schema=schema.model_dump(),
        metrics=metrics,
        config=config,
        trials=trials,
        environment=environment,
        manifest_sha256=_sha256(files[MANIFEST]),
        pinned=manifest_sha256 is not None,
    )


def _fitted_model(
    files: dict[str, bytes],
    info: ModelJson,
    prep: PreprocessingJson,
    schema: InputSchemaJson,
    metrics: dict[str, Any],
    device: str,
) -> FittedModel:
    """The model the parsed files describe, once they are checked to agree with each other."""
    columns = [c.name for c in schema.columns]
    if (schema.numeric, schema.categorical) != (prep.numeric, prep.categorical):
        raise ModelArtifactError("input_schema.json and preprocessing.json disagree on the numeric/categorical columns")
    unknown = sorted(set(prep.numeric + prep.categorical) - set(columns))
    if unknown:
        raise ModelArtifactError(f"preprocessing.json uses columns the input schema lacks: {', '.join(unknown)}")
    history, validation = metrics.get("history", []), metrics.get("validation", {})
    if not isinstance(history, list) or not isinstance(validation, dict):
        raise ModelArtifactError("metrics.json is malformed: history must be a list and validation an object")
    try:
        preprocessor = Preprocessor.from_dict(prep.model_dump())
    except DataError as exc:
        raise ModelArtifactError(f"preprocessing.json: {exc}") from None
    fitted = FittedModel(
        family=info.family,
        task=info.task,
        preprocessor=preprocessor,
        feature_columns=columns,
        feature_dtypes={c.name: c.dtype for c in schema.columns},
        classes=info.classes,
        target=info.target,
        target_mean=float(info.target_mean or 0.0),
        target_std=float(info.target_std or 1.0),
        arch=info.architecture,
        params=info.params or {},
        history=history,
        val_metrics=validation,
    )
    if info.weights == TORCH_WEIGHTS and TORCH_WEIGHTS in files:
        fitted.torch_model = _load_torch(files[TORCH_WEIGHTS], fitted, device)
    elif info.weights == SKOPS_WEIGHTS and SKOPS_WEIGHTS in files:
        fitted.estimator = load_skops(files[SKOPS_WEIGHTS], info.family, info.task)
    else:
        raise ModelArtifactError(f"unknown weights format {info.weights!r}")
    return fitted


def _is_model_ref(source: str) -> bool:
    from refit.registry.records import is_model_ref

    return is_model_ref(source) and not Path(source).exists()


def _load_registered(ref: str, registry: Store | None, client: Any, device: str) -> LoadedModel:
    from refit.io import store_from_settings
    from refit.registry import Registry

    reg = Registry(registry if registry is not None else store_from_settings())
    version = reg.resolve(ref)
    return reg.load_model(version.name, version, client=client, device=device)


def _load_torch(weights: bytes, fitted: FittedModel, device: str) -> Any:
    import torch
    from safetensors.torch import load as load_safetensors

    from refit.training.torch_net import TabularMLP

    if fitted.family != "torch_mlp":
        raise ModelArtifactError(f"model.json names family {fitted.family!r} but holds torch weights")
    if not fitted.arch:
        raise ModelArtifactError("torch model without an architecture in model.json")
    try:
        model = TabularMLP.from_arch(fitted.arch)
        model.load_state_dict(load_safetensors(weights), strict=True)
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise ModelArtifactError(f"weights do not fit the stored architecture: {first_line(exc)}") from None
    return model.to(torch.device(device)).eval()


def frame_dtypes(df: pd.DataFrame, columns: Sequence[str]) -> dict[str, str]:
    """Column -> dtype name, for the input schema."""
    return {c: str(df[c].dtype) for c in columns}


__all__ = [
    "SKOPS_ALLOWED_TYPES",
    "FittedModel",
    "LoadedModel",
    "ModelArtifactError",
    "environment_info",
    "frame_dtypes",
    "git_commit",
    "load",
    "load_skops",
    "manifest_digest",
    "read_artifact",
    "save_model",
]
