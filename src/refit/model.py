"""The model artifact: one folder in a store that holds everything needed to predict.

Files: the weights (``model.safetensors`` for the MLP, ``model.skops`` for scikit-learn),
``model.json`` (family, task, classes, target scaling, MLP architecture),
``preprocessing.json``, ``input_schema.json``, ``config.json``, ``metrics.json``,
``trials.json``, ``environment.json`` and, written last, ``manifest.json`` with the sha256 of
every other file. :func:`load` checks every hash before it parses anything, and never
unpickles: safetensors holds only tensors, and skops loads only allow-listed types.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
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

from refit.errors import DataError, NotFoundError, RefitError
from refit.io.base import Store
from refit.preprocessing import Preprocessor
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

#: Functions (not classes) a scikit-learn artifact may reference. Classes are allowed when
#: they live in sklearn, numpy or scipy; anything else stops the load.
_TRUSTED_CALLABLES = frozenset({"functools.partial", "sklearn.utils.validation.check_array"})
_TRUSTED_ROOTS = ("sklearn", "numpy", "scipy")


class ModelArtifactError(RefitError):
    """A model artifact is missing, damaged, or holds something refit will not load."""


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
        return np.asarray(self.classes, dtype=object if _mixed(self.classes) else None)[np.argmax(out, axis=1)]

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
            "params": _jsonable(self.params),
            "weights": TORCH_WEIGHTS if self.torch_model is not None else SKOPS_WEIGHTS,
        }


def _mixed(classes: Sequence[Any] | None) -> bool:
    return bool(classes) and len({type(c) for c in classes or []}) > 1


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars -> python, NaN/inf -> None)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(_jsonable(value), indent=2, sort_keys=True, allow_nan=False).encode()


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
    import skops.io as sio

    return SKOPS_WEIGHTS, sio.dumps(fitted.estimator)


def _join(prefix: str, name: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


def save_model(
    store: Store,
    prefix: str,
    fitted: FittedModel,
    config: Any,
    trials: Sequence[Any] = (),
    metrics: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> str:
    """Write the artifact folder under ``prefix``; the manifest goes last. Returns its URI.

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
    store.put_bytes(manifest_key, _json_bytes(manifest))
    return store.uri_for(prefix.strip("/")) if prefix.strip("/") else store.uri


def _is_trusted_type(name: str) -> bool:
    if name in _TRUSTED_CALLABLES:
        return True
    module_name, _, attr = name.rpartition(".")
    if module_name.split(".")[0] not in _TRUSTED_ROOTS:
        return False
    try:
        obj = getattr(importlib.import_module(module_name), attr, None)
    except ImportError:
        return False
    return isinstance(obj, type)


def load_skops(data: bytes) -> Any:
    """Load a skops estimator, refusing any type outside the allow-list."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise ModelArtifactError(f"model.skops is not a readable skops file: {exc}") from None
    refused = sorted(t for t in untrusted if not _is_trusted_type(t))
    if refused:
        raise ModelArtifactError(f"model.skops references types refit does not trust: {', '.join(refused)}")
    return sio.loads(data, trusted=list(untrusted))


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

    @property
    def family(self) -> str:
        return self.fitted.family

    @property
    def task(self) -> Task:
        return self.fitted.task

    @property
    def classes(self) -> list[Any] | None:
        return self.fitted.classes

    def check_input(self, df: pd.DataFrame) -> pd.DataFrame:
        """The feature columns of ``df`` after checking them against the input schema."""
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
        columns = [c["name"] for c in self.input_schema["columns"]]
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(f"input is missing {len(missing)} feature column(s): {', '.join(missing)}")
        for col in self.input_schema.get("numeric", []):
            dtype = df[col].dtype
            if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
                continue
            try:
                pd.to_numeric(df[col])
            except (TypeError, ValueError):
                raise DataError(f"column {col!r} must be numeric, got dtype {dtype}") from None
        return df[columns]

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


def read_artifact(store: Store, prefix: str) -> dict[str, bytes]:
    """Every file of the artifact, each checked against the manifest's sha256."""
    where = store.uri_for(_join(prefix, MANIFEST))
    try:
        manifest_bytes = store.get_bytes(_join(prefix, MANIFEST))
    except NotFoundError:
        raise ModelArtifactError(f"no model at {where.rsplit('/', 1)[0]}: {MANIFEST} not found") from None
    try:
        manifest = json.loads(manifest_bytes)
        entries = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise ModelArtifactError(f"{where} is not a valid manifest") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelArtifactError(f"{where}: unsupported artifact format {manifest.get('format_version')!r}")
    needed = set(JSON_FILES)
    missing = sorted(needed - set(entries))
    if missing or not ({TORCH_WEIGHTS, SKOPS_WEIGHTS} & set(entries)):
        raise ModelArtifactError(f"{where} does not list {', '.join(missing) or 'the weights'}")
    files = {MANIFEST: manifest_bytes}
    for name, entry in entries.items():
        try:
            data = store.get_bytes(_join(prefix, name))
        except NotFoundError:
            raise ModelArtifactError(
                f"model file {name} is missing from {store.uri_for(_join(prefix, name))}"
            ) from None
        if _sha256(data) != entry.get("sha256"):
            raise ModelArtifactError(
                f"model file {name} does not match its sha256 in the manifest (damaged or altered): "
                f"{store.uri_for(_join(prefix, name))}"
            )
        files[name] = data
    return files


def load(source: str | Store, prefix: str | None = None, *, client: Any = None, device: str = "cpu") -> LoadedModel:
    """Load an artifact from a local path, a ``file://`` or ``s3://`` URI, or ``(store, prefix)``.

    Every file's hash is checked before anything is parsed; a mismatch is a
    :class:`ModelArtifactError` and nothing is deserialised.
    """
    store, prefix = _resolve(source, prefix, client)
    files = read_artifact(store, prefix)  # all hashes verified here, before any parsing
    parsed = {name: json.loads(files[name]) for name in (MANIFEST, *JSON_FILES)}
    info = parsed["model.json"]
    preprocessor = Preprocessor.from_dict(parsed["preprocessing.json"])
    schema = parsed["input_schema.json"]
    columns = [c["name"] for c in schema["columns"]]
    fitted = FittedModel(
        family=info["family"],
        task=info["task"],
        preprocessor=preprocessor,
        feature_columns=columns,
        feature_dtypes={c["name"]: c["dtype"] for c in schema["columns"]},
        classes=info.get("classes"),
        target=info.get("target"),
        target_mean=float(info.get("target_mean") or 0.0),
        target_std=float(info.get("target_std") or 1.0),
        arch=info.get("architecture"),
        params=info.get("params") or {},
        history=parsed["metrics.json"].get("history", []),
        val_metrics=parsed["metrics.json"].get("validation", {}),
    )
    if info.get("weights") == TORCH_WEIGHTS:
        import torch
        from safetensors.torch import load as load_safetensors

        from refit.training.torch_mlp import TabularMLP

        if TORCH_WEIGHTS not in files or not fitted.arch:
            raise ModelArtifactError("torch model without weights or architecture")
        model = TabularMLP.from_arch(fitted.arch)
        try:
            model.load_state_dict(load_safetensors(files[TORCH_WEIGHTS]), strict=True)
        except (RuntimeError, ValueError) as exc:
            raise ModelArtifactError(
                f"weights do not fit the stored architecture: {str(exc).splitlines()[0]}"
            ) from None
        fitted.torch_model = model.to(torch.device(device)).eval()
    elif info.get("weights") == SKOPS_WEIGHTS and SKOPS_WEIGHTS in files:
        fitted.estimator = load_skops(files[SKOPS_WEIGHTS])
    else:
        raise ModelArtifactError(f"unknown weights format {info.get('weights')!r}")
    return LoadedModel(
        uri=store.uri_for(prefix) if prefix else store.uri,
        fitted=fitted,
        manifest=parsed[MANIFEST],
        input_schema=schema,
        metrics=parsed["metrics.json"],
        config=parsed["config.json"],
        trials=parsed["trials.json"],
        environment=parsed["environment.json"],
    )


def frame_dtypes(df: pd.DataFrame, columns: Sequence[str]) -> dict[str, str]:
    """Column -> dtype name, for the input schema."""
    return {c: str(df[c].dtype) for c in columns}


__all__ = [
    "FittedModel",
    "LoadedModel",
    "ModelArtifactError",
    "environment_info",
    "frame_dtypes",
    "git_commit",
    "load",
    "read_artifact",
    "save_model",
]
