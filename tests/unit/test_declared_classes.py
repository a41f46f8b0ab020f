"""``dataset.classes``: string multiclass labels in one declared order, from validation (a label
outside them is quarantined, the reason naming the key) through training (the model's class
order) to the gate's and decay's class alignment and the replay's naive prior."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.typing.pandas import Series

from refit.data import schema_for
from refit.errors import DataError
from refit.metrics import align_classes, metric_value
from refit.pipeline import gate_inputs
from refit.replay import _ClassPrior
from refit.training.search import prepare_data
from refit.validation import validate_frame
from tests.unit.training_frames import make_config, multiclass_frame, split

ORDER = ["low", "mid", "high"]  # not sorted: sorted is high, low, mid


class Readings(pa.DataFrameModel):
    """The multiclass frame of training_frames as a training schema (labels: any string)."""

    x: Series[float]
    z: Series[float]
    color: Series[str]
    label: Series[str] = pa.Field(nullable=True)

    class Config:
        coerce = True
        strict = True


def _config(classes: list[str] | None = ORDER) -> object:
    cfg = make_config("multiclass")
    dataset = cfg.dataset.model_copy(update={"classes": classes, "schema_path": f"{__name__}:Readings"})
    return cfg.model_copy(update={"dataset": dataset})


def test_the_model_learns_the_declared_order_and_refuses_labels_outside_it() -> None:
    train, val = split(multiclass_frame(200))
    assert prepare_data(train, val, _config(None)).classes == ["high", "low", "mid"]  # undeclared: sorted
    data = prepare_data(train, val, _config())
    assert data.classes == ORDER
    assert (data.y == pd.Index(ORDER).get_indexer(train["label"])).all()
    bad = train.copy()
    bad.loc[3, "label"] = "extreme"
    with pytest.raises(DataError, match=r"label: label\(s\) extreme not in dataset.classes \['low', 'mid', 'high'\]"):
        prepare_data(bad, val, _config())


def test_a_declared_class_missing_from_training_keeps_the_others_in_order() -> None:
    cfg = _config(["none", *ORDER])
    assert cfg.dataset.class_order(["high", "low", "high", None]) == ["low", "high"]  # type: ignore[attr-defined]


def test_validation_quarantines_labels_outside_the_declared_classes_with_the_key() -> None:
    rows = multiclass_frame(20).astype({"label": object})
    rows.loc[[2, 5], "label"] = ["extreme", "Low"]
    rows.loc[7, "label"] = None  # a capture before its label arrives: allowed as the schema allows it
    result = validate_frame(rows, schema_for(_config()), source="data/readings.csv", max_invalid_fraction=0.5)  # type: ignore[arg-type]
    assert result.quarantine["_refit_row"].tolist() == [2, 5]
    assert result.quarantine["_refit_errors"].tolist() == [
        "label: isin dataset.classes ['low', 'mid', 'high'] (got extreme)",
        "label: isin dataset.classes ['low', 'mid', 'high'] (got Low)",
    ]
    assert len(result.valid) == 18
    # without the declaration the same schema takes any string
    assert len(validate_frame(rows, schema_for(_config(None)), source="x").valid) == 20  # type: ignore[arg-type]


class ListedReadings(Readings):  # type: ignore[misc,valid-type]
    label: Series[str] = pa.Field(nullable=True, isin=["high", "mid", "low"])  # the same set


def test_a_schema_that_lists_the_classes_itself_gives_one_rule_not_two() -> None:
    """A bad label was quarantined, and counted in the summary, under both the schema's own
    ``isin`` and the one ``dataset.classes`` adds, when both name the same classes."""
    cfg = _config()
    listed = cfg.dataset.model_copy(update={"schema_path": f"{__name__}:ListedReadings"})  # type: ignore[attr-defined]
    cfg = cfg.model_copy(update={"dataset": listed})  # type: ignore[attr-defined]
    rows = multiclass_frame(20).astype({"label": object})
    rows.loc[2, "label"] = "extreme"
    result = validate_frame(rows, schema_for(cfg), source="data/readings.csv", max_invalid_fraction=0.5)  # type: ignore[arg-type]
    assert result.quarantine["_refit_errors"].tolist() == ["label: isin(['high', 'mid', 'low']) (got extreme)"]
    assert [f.rule for f in result.summary.failures] == ["isin(['high', 'mid', 'low'])"]


def test_gate_inputs_put_labels_and_every_models_columns_in_the_declared_order() -> None:
    cfg = _config()
    rows = multiclass_frame(300)
    shares = rows["label"].value_counts(normalize=True)
    # two naive models whose own class orders differ (the replay's prior), and a third that knows 'mid' only
    a = _ClassPrior(["high", "low", "mid"], shares.reindex(["high", "low", "mid"]).to_numpy())
    b = _ClassPrior(["mid", "high", "low"], shares.reindex(["mid", "high", "low"]).to_numpy())
    y, (pa_, pb) = gate_inputs(cfg.dataset, rows, [a, b])  # type: ignore[attr-defined]
    assert (y == pd.Index(ORDER).get_indexer(rows["label"])).all()
    assert np.allclose(pa_[0], shares.reindex(ORDER)) and np.allclose(pb, pa_)
    # the order changes no metric: the same numbers as in the first model's own order
    _, y0, _ = align_classes(rows["label"].to_numpy(), [(a.classes, a.predict_proba(rows))])
    noisy = np.clip(pa_ + np.random.default_rng(0).normal(0, 0.05, pa_.shape), 0.01, None)
    noisy /= noisy.sum(1, keepdims=True)
    noisy0 = noisy[:, [ORDER.index(c) for c in a.classes]]
    for metric in ("macro_roc_auc", "log_loss", "accuracy"):
        assert metric_value(metric, y, noisy, task="multiclass") == pytest.approx(
            metric_value(metric, y0, noisy0, task="multiclass")
        )
