"""The drift-check flow on a multiclass champion with string labels: decay is judged in the gate's
multiclass metric (macro one-vs-rest ROC AUC), per segment, on the labelled captures."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from flows.drift_check import DriftCheckParameters, drift_check
from refit import pipeline, recipe
from refit.capture import LABEL_TIME_COLUMN, MODEL_VERSION_COLUMN, PREDICTION_COLUMN, write_labels, write_requests
from refit.config_loader import load_config
from refit.io import open_store
from refit.io.layout import LAYOUT
from refit.metrics import align_classes
from refit.registry import Registry
from tests.unit.test_multiclass_retrain import _rows

SCHEMAS = """
import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series
from typing import Annotated, Optional

UTC = Annotated[pd.DatetimeTZDtype, "ns", "UTC"]


class Features(pa.DataFrameModel):
    wing: Series[float]
    body: Series[float]
    site: Series[str]

    class Config:
        coerce = True
        strict = True


class Insects(Features):
    trap_id: Series[str]
    at: Series[UTC]
    kind: Series[str]


class InsectCaptures(Features):
    trap_id: Series[str]
    at: Series[UTC]
    request_id: Series[str] = pa.Field(unique=True)
    prediction: Series[str] = pa.Field(nullable=True)
    model_version: Series[str] = pa.Field(nullable=True)
    kind: Optional[Series[str]] = pa.Field(nullable=True)
"""
NAME = "insects"
AS_OF = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multiclass champion (declared string classes) trained by the plain steps, once."""
    folder = tmp_path_factory.mktemp("multiclass-drift")
    (folder / "insect_drift_schemas.py").write_text(SCHEMAS)
    raw = {
        "dataset": {
            "name": NAME,
            "sources": ["data/*.csv"],
            "schema": "insect_drift_schemas:Insects",
            "capture_schema": "insect_drift_schemas:InsectCaptures",
            "target": "kind",
            "task": "multiclass",
            "classes": ["wasp", "ant", "bee"],
            "id_column": "trap_id",
            "timestamp_column": "at",
            "segments": [{"column": "site"}],
        },
        "training": {
            "candidates": [{"family": "linear"}],
            "window_days": None,
            "smoke_sample_rows": 200,
            "smoke_max_ms_per_1k_rows": 1e6,
        },
        "gate": {"min_segment_size": 40, "bootstrap_resamples": 200},
        # decay is what this test judges: fixed drift thresholds draw no null distributions
        "drift": {"decay_min_rows": 50, "decay_resamples": 200, "threshold_mode": "fixed", "cooldown_hours": 0},
    }
    path = folder / "insects.yaml"
    path.write_text(yaml.safe_dump(raw))
    store = open_store(str(folder / "store"))
    store.put_bytes("data/base.csv", _rows(900, 1).to_csv(index=False).encode())
    saved = list(sys.path)
    try:
        run = recipe.run_retrain(store, load_config(path), recipe.RetrainOptions(reason="first"))
    finally:
        sys.path[:] = saved
    assert run.promotion is not None
    return path


def _capture(store: object, config: object, rows: pd.DataFrame, tag: str) -> None:
    """Serve ``rows`` with the champion and capture them: requests, then their labels."""
    model = pipeline.load_version(store, Registry(store).champion(NAME))  # type: ignore[arg-type]
    rows = rows.assign(
        at=AS_OF - timedelta(hours=12),
        request_id=[f"{tag}-{i}" for i in range(len(rows))],
        **{LABEL_TIME_COLUMN: AS_OF - timedelta(hours=1)},
    )
    requests = rows.drop(columns=["kind", LABEL_TIME_COLUMN]).assign(
        **{
            PREDICTION_COLUMN: pipeline.capture_predictions(model, rows, "multiclass"),
            MODEL_VERSION_COLUMN: "1",
        }
    )
    write_requests(store, NAME, requests, timestamp_column="at")  # type: ignore[arg-type]
    write_labels(store, NAME, rows[["request_id", "kind", LABEL_TIME_COLUMN]])  # type: ignore[arg-type]


def test_multiclass_decay_is_judged_in_macro_roc_auc_per_segment(
    champion: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    config = load_config(champion)
    store = open_store(str(champion.parent / "store"))
    # the meadow traps' features stop telling the kinds apart; the forest's still do
    meadow = _rows(600, 4, noise=3.0).query("site == 'meadow'")
    forest = _rows(600, 5).query("site == 'forest'")
    window = pd.concat([meadow, forest], ignore_index=True)
    _capture(store, config, window, "w1")

    result = drift_check(
        DriftCheckParameters(config_path=str(champion), store=store.uri, window_hours=24, as_of=AS_OF, report=False)
    )
    assert result.labelled_rows == len(window)
    assert result.decay_detected and "site=meadow" in result.decayed_segments
    assert "site=forest" not in result.decayed_segments
    assert result.decision == "trigger" and "performance decayed in" in result.detail

    [key] = store.list(LAYOUT.drift_history(NAME))
    decay = json.loads(store.get_bytes(key))["decay"]
    assert decay["metric"] == "macro_roc_auc" and decay["higher_is_better"] is True
    version = Registry(store).champion(NAME)
    model = pipeline.load_version(store, version)
    segments = {s["segment"]: s for s in [decay["overall"], *decay["segments"]]}
    assert set(segments) == {"overall", "site=forest", "site=meadow"}
    for scope, rows in (("overall", window), ("site=meadow", meadow), ("site=forest", forest)):
        _, y, (proba,) = align_classes(rows["kind"].to_numpy(), [(model.classes, model.predict_proba(rows))])
        judged = segments[scope]
        assert judged["current"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
        registered = version.segment_metrics.get(scope, version.metrics)["macro_roc_auc"]
        assert judged["registered"] == pytest.approx(registered)
        assert judged["n_rows"] == len(rows)
    assert segments["site=meadow"]["decayed"] and not segments["site=forest"]["decayed"]
    assert segments["site=meadow"]["current"] < 0.7 < segments["site=forest"]["current"]
    assert np.isfinite(segments["site=meadow"]["ci_low"]) and segments["site=meadow"]["ci_high"] < 0.75
