"""Config: the demo file loads; mistakes name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from refit.config import PipelineConfig, Settings, load_config, parse_config
from refit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = {
    "dataset": {
        "name": "churn",
        "sources": ["datasets/churn/base/*.parquet"],
        "schema": "schemas.churn:ChurnTrainingSchema",
        "target": "churned",
        "task": "classification",
        "id_column": "customer_id",
        "timestamp_column": "event_time",
    }
}


def test_demo_config_loads_and_derives_features() -> None:
    cfg = load_config(ROOT / "refit.yaml")
    assert cfg.dataset.name == "churn"
    assert cfg.dataset.task == "classification"
    assert [s.column for s in cfg.dataset.segments] == ["region", "plan", "tenure_months"]
    assert cfg.dataset.segments[2].bins == [0, 6, 24, 240]
    features = cfg.feature_columns
    assert "churned" not in features and "customer_id" not in features and "event_time" not in features
    assert {"region", "plan", "monthly_charges", "autopay"} <= set(features)


def test_config_is_frozen_and_round_trips() -> None:
    cfg = parse_config(MINIMAL)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        cfg.dataset.target = "x"  # type: ignore[misc]
    again = PipelineConfig.model_validate(cfg.to_dict())
    assert again == cfg
    assert cfg.to_dict()["dataset"]["schema"] == "schemas.churn:ChurnTrainingSchema"


def test_unknown_key_names_key_file_and_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "dataset:\n  name: x\n  sources: [a.csv]\n  schema: m:C\n  targt: y\n  target: y\n"
        "  task: regression\n  id_column: id\n  timestamp_column: ts\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "unknown key 'dataset.targt'" in msg and "did you mean 'target'" in msg
    assert "\n" not in msg


def test_unknown_top_level_section(tmp_path: Path) -> None:
    raw = dict(MINIMAL, trainig={"seed": 1})
    with pytest.raises(ConfigError, match=r"unknown key 'trainig' \(did you mean 'training'\?\)"):
        parse_config(raw, "x.yaml")


def test_missing_and_invalid_values() -> None:
    raw = {"dataset": {k: v for k, v in MINIMAL["dataset"].items() if k != "target"}}
    with pytest.raises(ConfigError, match="x.yaml: missing required key 'dataset.target'"):
        parse_config(raw, "x.yaml")
    bad_task = {"dataset": dict(MINIMAL["dataset"], task="ranking")}
    with pytest.raises(ConfigError, match="invalid value for 'dataset.task'"):
        parse_config(bad_task, "x.yaml")
    bad_fraction = dict(MINIMAL, validation={"max_invalid_fraction": 1.5})
    with pytest.raises(ConfigError, match="validation.max_invalid_fraction"):
        parse_config(bad_fraction, "x.yaml")
    bad_bins = {"dataset": dict(MINIMAL["dataset"], segments=[{"column": "t", "bins": [3, 1]}])}
    with pytest.raises(ConfigError, match="increasing"):
        parse_config(bad_bins, "x.yaml")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(scalar)


def test_bad_schema_import_path() -> None:
    cfg = parse_config({"dataset": dict(MINIMAL["dataset"], schema="schemas.churn:Nope")})
    with pytest.raises(ConfigError, match="has no 'Nope'"):
        _ = cfg.feature_columns
    cfg = parse_config({"dataset": dict(MINIMAL["dataset"], schema="no_such_module:X")})
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        _ = cfg.feature_columns


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFIT_STORE", raising=False)
    assert Settings().store == "./.refit"
    monkeypatch.setenv("REFIT_STORE", "s3://bucket/prefix")
    monkeypatch.setenv("REFIT_WEBHOOK_SECRET", "s3cret")
    s = Settings()
    assert s.store == "s3://bucket/prefix"
    assert "s3cret" not in repr(s) and s.webhook_secret is not None
    assert s.webhook_secret.get_secret_value() == "s3cret"
