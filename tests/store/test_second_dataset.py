"""A new dataset needs only a schema module and a YAML file: nothing in refit changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from refit.config_loader import load_config
from refit.data import stage_validated
from refit.errors import ValidationFailedError
from refit.io.frames import read_frame, write_frame
from refit.splits import assign_splits, split_frame
from tests.fixtures.housing import HOUSING_YAML, housing_rows


@pytest.fixture
def housing_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "housing.yaml"
    path.write_text(HOUSING_YAML)
    return load_config(path)


def test_regression_dataset_loads_validates_and_splits(store, housing_config) -> None:  # type: ignore[no-untyped-def]
    cfg = housing_config
    assert cfg.dataset.task == "regression"
    assert cfg.feature_columns == ["neighbourhood", "bedrooms", "area_m2", "year_built", "has_garden"]
    df = housing_rows(600)
    df.loc[5, "area_m2"] = -3.0  # one bad row: quarantined, under the 5% limit
    write_frame(store, "external/housing/a.csv", df.iloc[:300])
    write_frame(store, "external/housing/b.csv", df.iloc[300:])
    handle, result = stage_validated(store, cfg, run_id="r1")
    assert handle.rows == 599 and handle.invalid_rows == 1
    assert result.quarantine["_refit_source"].iloc[0].endswith("external/housing/a.csv")
    staged = read_frame(store, handle.key)
    assert len(staged) == 599 and staged["listed_at"].dt.tz is not None
    codes = assign_splits(
        staged,
        method=cfg.split.method,
        id_column=cfg.dataset.id_column,
        timestamp_column=cfg.dataset.timestamp_column,
        validation_fraction=cfg.split.validation_fraction,
        test_fraction=cfg.split.test_fraction,
        salt=cfg.split.salt,
    )
    parts = split_frame(staged, codes)
    assert min(len(p) for p in parts.values()) > 50


def test_regression_dataset_stops_with_one_line_naming_file(store, housing_config) -> None:  # type: ignore[no-untyped-def]
    df = housing_rows(100)
    df.loc[:9, "neighbourhood"] = "moon"
    write_frame(store, "external/housing/a.csv", df)
    with pytest.raises(ValidationFailedError) as err:
        stage_validated(store, housing_config, run_id="r2")
    msg = str(err.value)
    assert "external/housing/a.csv" in msg and "neighbourhood isin" in msg and "x10" in msg and "\n" not in msg
    # nothing lost: the quarantine holds the ten rows with reasons
    [rows_key] = [k for k in store.list("quarantine/housing/") if k.endswith("rows.parquet")]
    quarantined = read_frame(store, rows_key)
    assert len(quarantined) == 10 and quarantined["_refit_errors"].str.contains("neighbourhood").all()
