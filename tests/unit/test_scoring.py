"""Loading a registered version by reference, and scoring checks against the training schema."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import refit.model
from refit import scoring
from refit.errors import DataError, RegistryError
from refit.io.local import LocalStore
from refit.model import read_artifact, save_model
from refit.registry import Registry, is_model_ref
from refit.training.search import select_candidate
from tests.unit.training_frames import CHURN_FEATURES, churn_frame, make_config, split


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, pd.DataFrame, np.ndarray]:
    """A store whose registry holds two versions of ``m``; version 1 is champion."""
    store = LocalStore(tmp_path_factory.mktemp("scoring") / "store")
    train, val = split(churn_frame(400))
    config = make_config("churn", candidates=[{"family": "hist_gradient_boosting", "params": {"max_iter": 15}}])
    result = select_candidate(train, val, config, None, "", torch.device("cpu"))
    save_model(store, "cand", result.best, config, result.trials)
    reg = Registry(store)
    for _ in range(2):
        reg.register("m", artifact_files=read_artifact(store, "cand"))
    reg.promote("m", 1)
    return store, val, result.best.predict_proba(val)


def test_model_refs_are_told_from_paths() -> None:
    assert is_model_ref("churn@champion") and is_model_ref("churn:3") and is_model_ref("my.model-2@staging")
    assert is_model_ref("churn@Bad")  # a reference with a bad alias: resolving it says so
    for not_ref in ("churn", "./churn@x", "s3://bucket/a", "/tmp/a:b", "runs/m@x", "@champion"):
        assert not is_model_ref(not_ref), not_ref


def test_load_a_reference_in_one_call(registered, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    store, val, expected = registered
    by_arg = refit.model.load("m@champion", registry=store)
    assert by_arg.pinned and by_arg.uri.endswith("registry/m/versions/1/artifact")
    np.testing.assert_allclose(by_arg.predict_proba(val), expected, atol=1e-12)
    monkeypatch.setenv("REFIT_STORE", str(store.root))  # the default: the store of the settings
    assert refit.model.load("m:2").uri.endswith("registry/m/versions/2/artifact")
    with pytest.raises(RegistryError, match="m has no alias 'staging'"):
        refit.model.load("m@staging")


def test_predict_frame_appends_predictions_and_probabilities(registered) -> None:  # type: ignore[no-untyped-def]
    store, val, expected = registered
    model = refit.model.load("m@champion", registry=store)
    out = scoring.predict_frame(model, val.drop(columns=["churned"]), "val.csv")
    assert list(out.columns[-3:]) == ["prediction", "proba_0", "proba_1"]
    np.testing.assert_allclose(out["proba_1"], expected[:, 1], atol=1e-12)
    assert (out["prediction"] == np.where(expected[:, 1] > expected[:, 0], 1, 0)).all()


def test_bad_input_fails_on_one_line_naming_file_column_and_rule(registered) -> None:  # type: ignore[no-untyped-def]
    store, val, _ = registered
    model = refit.model.load("m@champion", registry=store)
    with pytest.raises(DataError) as missing:
        model.check_input(val.drop(columns=["plan", "age"]), "in.csv")
    assert str(missing.value) == (
        "in.csv: missing feature column(s) 'plan', 'age' (rule: every column of the training schema is required)"
    )
    bad = val.copy()
    bad["age"] = bad["age"].astype(object)
    bad.loc[bad.index[4], "age"] = "forty"
    with pytest.raises(DataError) as typed:
        model.check_input(bad, "in.parquet")
    assert "\n" not in str(typed.value)
    assert str(typed.value).startswith("in.parquet: column 'age' row 5 is 'forty' (rule: numeric, trained as float64)")
    assert list(model.check_input(val, "ok.csv").columns) == CHURN_FEATURES


def test_read_input_and_write_output_round_trip(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]})
    for name in ("out.csv", "out.parquet"):
        scoring.write_output(df, tmp_path / "deep" / name)
        pd.testing.assert_frame_equal(scoring.read_input(tmp_path / "deep" / name), df)
    with pytest.raises(DataError, match="no such file"):
        scoring.read_input(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="unsupported file type"):
        scoring.write_output(df, tmp_path / "out.txt")


def test_a_boolean_feature_takes_the_spellings_training_read(registered) -> None:  # type: ignore[no-untyped-def]
    """Training's validation reads yes/no for a boolean column; `refit predict` refused them
    ("rule: numeric, trained as bool"): one home for the spellings (refit.booleans) serves both."""
    store, val, expected = registered
    model = refit.model.load("m@champion", registry=store)
    spelled = val.copy()
    spelled["autopay"] = np.where(val["autopay"], "Yes", "no").astype(object)
    np.testing.assert_allclose(model.predict_proba(spelled), expected, atol=1e-12)
    # a model whose training data had a missing flag records the column as pandas' nullable "boolean"
    nullable = dict(model.input_schema, columns=[dict(c) for c in model.input_schema["columns"]])
    next(c for c in nullable["columns"] if c["name"] == "autopay")["dtype"] = "boolean"
    np.testing.assert_allclose(replace(model, input_schema=nullable).predict_proba(spelled), expected, atol=1e-12)
    spelled.loc[spelled.index[2], "autopay"] = "maybe"
    with pytest.raises(DataError) as info:
        model.check_input(spelled, "rows.csv")
    assert str(info.value) == (
        "rows.csv: column 'autopay' row 3 is 'maybe' (rule: not true/false, yes/no or 1/0, trained as bool); "
        "1 such row(s)"
    )
