"""Preprocessing: fitted on training rows only, plain JSON, unknown bucket for categories."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from refit.errors import DataError
from refit.preprocessing import Preprocessor, infer_columns


@pytest.fixture
def train() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "num": [1.0, 2.0, 3.0, 4.0, np.nan],
            "const": [5, 5, 5, 5, 5],
            "count": pd.array([1, 2, None, 4, 5], dtype="Int64"),
            "flag": [True, False, True, True, False],
            "color": ["red", "blue", None, "red", "green"],
            "size": pd.Categorical(["s", "m", "m", "l", "s"]),
        }
    )


def fit(train: pd.DataFrame) -> Preprocessor:
    numeric, categorical = infer_columns(train)
    return Preprocessor.fit(train, numeric, categorical, clip=3.0)


def test_infer_columns_by_dtype(train: pd.DataFrame) -> None:
    assert infer_columns(train) == (["num", "const", "count", "flag"], ["color", "size"])
    assert infer_columns(train, ["size", "num"]) == (["num"], ["size"])


def test_infer_columns_rejects_datetimes_and_missing_columns(train: pd.DataFrame) -> None:
    train["when"] = pd.Timestamp("2024-01-01")
    with pytest.raises(DataError, match="'when' has unsupported dtype"):
        infer_columns(train)
    with pytest.raises(DataError, match="missing from the frame: nope"):
        infer_columns(train, ["nope"])


def test_numeric_statistics_come_from_training_rows(train: pd.DataFrame) -> None:
    pre = fit(train)
    # num: finite values 1..4 -> median 2.5, IQR 3.25 - 1.75 = 1.5
    assert pre.medians[0] == 2.5 and pre.centers[0] == 2.5 and pre.scales[0] == 1.5
    # const: IQR 0 -> scale 1
    assert pre.scales[1] == 1.0
    # flag (bool): imputed with its median, not centred or scaled
    assert (pre.centers[3], pre.scales[3]) == (0.0, 1.0)
    assert pre.missing_indicators == ["num", "count"]
    assert pre.numeric_feature_names == ["num", "const", "count", "flag", "num__missing", "count__missing"]


def test_transform_imputes_scales_clips_and_flags_missing(train: pd.DataFrame) -> None:
    pre = fit(train)
    test = pd.DataFrame(
        {
            "num": [np.nan, 100.0, 4.0],
            "const": [5, 6, 5],
            "count": [np.nan, 3.0, 1.0],
            "flag": [True, False, True],
            "color": ["red", "purple", np.nan],
            "size": ["xl", "m", "s"],
            "extra": [1, 2, 3],
        }
    )
    x_num, x_cat = pre.transform(test)
    assert x_num.dtype == np.float32 and x_cat.dtype == np.int64
    np.testing.assert_allclose(x_num[:, 0], [0.0, 3.0, 1.0])  # median-imputed, clipped at 3, (4-2.5)/1.5
    np.testing.assert_allclose(x_num[:, 1], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(x_num[:, 3], [1.0, 0.0, 1.0])  # bool stays 0/1
    np.testing.assert_allclose(x_num[:, 4], [1.0, 0.0, 0.0])  # num__missing
    np.testing.assert_allclose(x_num[:, 5], [1.0, 0.0, 0.0])  # count__missing
    # vocab sorted: color [blue, green, red] -> red = 3; unseen and NaN -> 0
    assert pre.vocab["color"] == ["blue", "green", "red"]
    assert x_cat[:, 0].tolist() == [3, 0, 0]
    assert pre.vocab["size"] == ["l", "m", "s"]
    assert x_cat[:, 1].tolist() == [0, 2, 3]
    assert pre.cardinalities == [4, 4]


def test_json_round_trip_transforms_identically(train: pd.DataFrame) -> None:
    pre = fit(train)
    text = json.dumps(pre.to_dict())
    again = Preprocessor.from_dict(json.loads(text))
    a, b = pre.transform(train), again.transform(train)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_from_dict_rejects_unknown_format(train: pd.DataFrame) -> None:
    data = fit(train).to_dict() | {"format_version": 99}
    with pytest.raises(DataError, match="format version 99"):
        Preprocessor.from_dict(data)


def test_transform_errors_name_the_column(train: pd.DataFrame) -> None:
    pre = fit(train)
    with pytest.raises(DataError, match="missing feature columns: size"):
        pre.transform(train.drop(columns=["size"]))
    bad = train.assign(num=["a", "b", "c", "d", "e"])
    with pytest.raises(DataError, match="'num' must be numeric"):
        pre.transform(bad)


def test_numeric_strings_and_integer_categories_are_accepted(train: pd.DataFrame) -> None:
    pre = Preprocessor.fit(pd.DataFrame({"n": [1.0, 2.0, 3.0], "c": [10, 20, 10]}), ["n"], ["c"])
    x_num, x_cat = pre.transform(pd.DataFrame({"n": ["2", "3", None], "c": [20, 30, 10]}))
    np.testing.assert_allclose(x_num[:, 0], [0.0, 1.0, 0.0])
    assert x_cat[:, 0].tolist() == [2, 0, 1]


def test_max_categories_keeps_most_frequent() -> None:
    df = pd.DataFrame({"c": ["a", "b", "b", "c", "c", "c", "d"]})
    pre = Preprocessor.fit(df, [], ["c"], max_categories=2)
    assert pre.vocab["c"] == ["b", "c"]
    assert pre.transform(df)[1][:, 0].tolist() == [0, 1, 1, 2, 2, 2, 0]


def test_fit_on_empty_frame_is_an_error() -> None:
    with pytest.raises(DataError, match="empty"):
        Preprocessor.fit(pd.DataFrame({"n": []}), ["n"], [])
