"""Batch scoring with a registered model, and re-scoring two versions on one data set.

``refit predict NAME@ALIAS --input FILE --output FILE`` and ``refit models diff`` call these.
Input files are checked against the training schema the model artifact records
(``input_schema.json``) before any row is scored; a bad file fails on one line that names
the file, the column and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from refit.errors import DataError
from refit.io.frames import frame_bytes, parse_frame

#: The columns ``refit predict`` adds to the input rows.
PREDICTION_COLUMN = "prediction"
PROBA_PREFIX = "proba_"


def read_input(path: str | Path) -> pd.DataFrame:
    """A CSV or parquet file as a frame (one-line :class:`DataError` naming the file otherwise)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    return parse_frame(p.read_bytes(), str(p))


def predict_frame(model: Any, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
    """``df`` with the model's ``prediction`` (and one ``proba_<class>`` per class) appended."""
    features = model.check_input(df, source)
    out = df.copy()
    if model.task == "regression":
        out[PREDICTION_COLUMN] = np.asarray(model.fitted.predict(features))
        return out
    proba = np.asarray(model.fitted.predict_proba(features), dtype=np.float64)
    classes = list(model.classes or range(proba.shape[1]))
    out[PREDICTION_COLUMN] = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
    for i, cls in enumerate(classes):
        out[f"{PROBA_PREFIX}{cls}"] = proba[:, i]
    return out


def write_output(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV or parquet (by the extension), atomically."""
    p = Path(path)
    data = frame_bytes(df, str(p))
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(p)
    return p


@dataclass(frozen=True)
class DiffData:
    """The rows both versions were scored on, and where they came from."""

    frame: pd.DataFrame
    source: str
    fingerprint: str
    uri: str | None = None


def rescore_versions(a: Any, b: Any, data: DiffData, config: Any) -> dict[str, Any]:
    """Score loaded models ``a`` and ``b`` (each :class:`refit.model.LoadedModel`, loaded once by
    the caller) on the same rows and compare them by a paired bootstrap.

    The comparison is the gate's (``refit.evaluation.paired_bootstrap``, with the config's
    metric, resamples, confidence and seed), overall and per configured segment;
    ``difference`` is b - a in the metric's own units.
    """
    from refit.evaluation import paired_bootstrap, segment_labels
    from refit.pipeline import gate_inputs

    ds, gate = config.dataset, config.gate
    df = data.frame
    if ds.target not in df.columns:
        raise DataError(f"{data.source}: missing target column {ds.target!r} (rule: re-scoring needs labels)")
    for model in (b, a):  # b first: multiclass compares in b's class order (pipeline.gate_inputs)
        model.check_input(df, data.source)  # one line naming the data's source, before scoring
    y, (b_scores, a_scores) = gate_inputs(ds, df, [b, a])
    boot = paired_bootstrap(
        ds.task,
        gate.primary_metric,
        y,
        b_scores,
        a_scores,
        segment_labels(df, ds) if ds.segments else None,
        n_resamples=gate.bootstrap_resamples,
        confidence=gate.confidence,
        seed=gate.seed,
    )

    def row(c: Any) -> dict[str, Any]:
        return {
            "scope": c.scope,
            "n": c.n,
            "a": c.champion,
            "b": c.candidate,
            "difference": c.difference,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "p_value": c.p_value,
        }

    return {
        "metric": boot.metric,
        "confidence": boot.confidence,
        "n_resamples": boot.n_resamples,
        "data": {"source": data.source, "uri": data.uri, "rows": len(df), "fingerprint": data.fingerprint},
        "overall": row(boot.overall),
        "segments": [row(c) for c in boot.segments],
    }


def file_data(path: str | Path) -> DiffData:
    """A labelled file as the data two versions are re-scored on."""
    from refit.fingerprint import fingerprint_frame

    df = read_input(path)
    return DiffData(frame=df, source=f"file {path}", fingerprint=fingerprint_frame(df).sha256, uri=str(path))


def store_holdout(store: Any, config: Any, keep: bool = False) -> DiffData:
    """The test split of the store's current data, loaded, validated and split exactly as a
    retrain would, in memory (``refit.recipe.holdout_split``): nothing is written. With
    ``keep``, the steps run as a retrain's first two and leave their run folder (staged rows,
    quarantine, splits) in the store, to look at later."""
    from refit.recipe import holdout_split, run_retrain

    if not keep:
        frame, fingerprint = holdout_split(store, config)
        return DiffData(
            frame=frame, source="the holdout (test split) of the store's current data", fingerprint=fingerprint.sha256
        )
    from refit.io.frames import read_frame

    run = run_retrain(store, config, until="split-data")
    splits = run.need("splits")
    key = splits.keys["test"]
    return DiffData(
        frame=read_frame(store, key),
        source=f"the holdout (test split) of the store's current data, run {run.run_id}: {store.uri_for(key)}",
        fingerprint=splits.fingerprints["test"].sha256,
        uri=store.uri_for(key),
    )
