"""Config: the demo file loads; mistakes name the key and the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from refit.config import PipelineConfig, Settings
from refit.config_loader import load_config, parse_config
from refit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = {
    "dataset": {
        "name": "churn",
        "sources": ["datasets/churn/base/*.parquet"],
        "schema": "schemas.churn:ChurnTrainingSchema",
        "target": "churned",
        "task": "binary",
        "id_column": "customer_id",
        "timestamp_column": "event_time",
    }
}


def test_demo_config_loads_and_derives_features() -> None:
    cfg = load_config(ROOT / "refit.yaml")
    assert cfg.dataset.name == "churn"
    assert cfg.dataset.task == "binary"
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


@pytest.mark.parametrize(
    ("task", "gate", "message"),
    [
        (
            "regression",
            {"primary_metric": "roc_auc"},
            "roc_auc does not judge a regression task; choose from rmse, mae, r2, mape",
        ),
        ("regression", {"primary_metric": "pr_auc"}, "pr_auc does not judge a regression task"),
        ("binary", {"primary_metric": "rmse"}, "rmse does not judge a binary task; choose from roc_auc"),
        (
            "multiclass",
            {"primary_metric": "pr_auc"},
            "pr_auc does not judge a multiclass task; choose from macro_roc_auc, log_loss, accuracy",
        ),
        ("multiclass", {"primary_metric": "rmse"}, "rmse does not judge a multiclass task"),
    ],
)
def test_a_task_the_gate_cannot_judge_is_refused_at_load(task: str, gate: dict[str, str], message: str) -> None:
    raw = dict(MINIMAL, dataset=dict(MINIMAL["dataset"], task=task), gate=gate)
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "x.yaml")
    text = str(info.value)
    assert "\n" not in text and text.startswith("x.yaml: invalid value for 'gate'") and message in text


def test_a_config_written_before_the_task_vocabulary_still_loads() -> None:
    """``classification`` (configs and stored versions from before ``binary``) reads as binary."""
    raw = dict(MINIMAL, dataset=dict(MINIMAL["dataset"], task="classification"))
    assert parse_config(raw, "x.yaml").dataset.task == "binary"


def test_a_metric_of_the_task_loads() -> None:
    regression = dict(MINIMAL, dataset=dict(MINIMAL["dataset"], task="regression"), gate={"primary_metric": "mae"})
    assert parse_config(regression, "x.yaml").gate.primary_metric == "mae"
    assert parse_config(dict(MINIMAL, gate={"primary_metric": "pr_auc"}), "x.yaml").gate.primary_metric == "pr_auc"


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ("pandas:DataFrame", "it is a class DataFrame, not a pandera DataFrameModel subclass"),
        ("schemas.churn:REGIONS", "it is a list, not a pandera DataFrameModel subclass"),
        ("schemas.base:not_in_future", "it is a function, not a pandera DataFrameModel subclass"),
        ("pandera.pandas:DataFrameModel", "it is a class DataFrameModel, not a pandera DataFrameModel subclass"),
        ("os:system", "'os' is a standard-library module"),
        ("this:s", "'this' is a standard-library module"),
        ("os.path:join", "'os.path' is a standard-library module"),
    ],
)
def test_schema_must_be_a_dataframe_model(schema: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    from refit.contracts import import_object, import_schema

    raw = demo_raw()
    raw["dataset"]["schema"] = schema
    cfg = parse_config(raw)
    for load in (lambda: cfg.feature_columns, lambda: import_schema(schema), lambda: import_object(schema)):
        with pytest.raises(ConfigError) as err:
            load()
        msg = str(err.value)
        assert msg.startswith(f"{schema!r} is not a schema: ") and says in msg and "\n" not in msg
    assert capsys.readouterr().out == ""  # "this" was refused before it could print the Zen of Python


def test_schema_subclasses_are_accepted() -> None:
    from refit.contracts import import_schema
    from schemas.base import BaseSchema
    from schemas.churn import ChurnCaptureSchema
    from tests.fixtures.housing import HousingSchema

    assert import_schema("schemas.churn:ChurnCaptureSchema") is ChurnCaptureSchema
    assert issubclass(import_schema("tests.fixtures.housing:HousingSchema"), BaseSchema)
    assert HousingSchema is import_schema("tests.fixtures.housing:HousingSchema")


def test_schema_module_that_fails_on_import_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_schema_mod.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from refit.contracts import import_schema

    with pytest.raises(ConfigError, match=r"^cannot import 'broken_schema_mod' \(from 'broken_schema_mod:X'\): boom$"):
        import_schema("broken_schema_mod:X")


def demo_raw() -> dict[str, Any]:
    """The demo config as a mapping, to vary one key (it tracks the config's current vocabulary)."""
    raw: dict[str, Any] = yaml.safe_load((ROOT / "refit.yaml").read_text())
    return raw


ALIAS_BOMB = """
training:
  candidates:
    - family: linear
      params:
        a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
        b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
        d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
        e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
        f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
        g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
        h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
        i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_yaml_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    """A billion laughs (10**9 values through nine levels of aliases) loads in milliseconds as
    shared lists and then burns minutes in whatever walks it (the config is dumped beside every
    model): it must stop at load, on one line, at once."""
    import time

    path = tmp_path / "bomb.yaml"
    path.write_text(yaml.safe_dump({"dataset": demo_raw()["dataset"]}) + ALIAS_BOMB)  # valid but for the bomb
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert time.perf_counter() - start < 5.0  # expanding the bomb would take minutes
    msg = str(err.value)
    assert msg == f"{path}: refusing this YAML: it expands to more than 10,000 values (aliases counted in full)"


def test_yaml_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump({"dataset": demo_raw()["dataset"]}) + "training:\n  candidates: &loop [*loop]\n")
    with pytest.raises(ConfigError, match="refusing this YAML: it has an alias inside its own anchor"):
        load_config(path)


def test_yaml_anchors_of_a_real_config_still_load(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        yaml.safe_dump({"dataset": demo_raw()["dataset"]})
        + "training:\n  candidates:\n"
        + "    - {family: linear, params: &shared {C: [0.1, 1.0, 10.0]}, budget: 3}\n"
        + "    - {family: hist_gradient_boosting, params: *shared}\n"
        + "  seed: &seed 7\ngate:\n  seed: *seed\n"
    )
    cfg = load_config(path)
    assert [c.params for c in cfg.training.candidates] == [{"C": [0.1, 1.0, 10.0]}] * 2
    assert cfg.training.seed == 7 and cfg.gate.seed == 7


def test_a_gate_naming_no_metric_takes_the_tasks_default() -> None:
    """A user's regression config needs no roc_auc override: rmse unless the YAML names another."""
    regression = dict(MINIMAL, dataset=dict(MINIMAL["dataset"], task="regression"))
    assert parse_config(regression, "x.yaml").gate.primary_metric == "rmse"
    assert parse_config(dict(regression, gate={"min_improvement": 0.1}), "x.yaml").gate.primary_metric == "rmse"
    assert parse_config(MINIMAL, "x.yaml").gate.primary_metric == "roc_auc"
