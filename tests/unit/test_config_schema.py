"""A config is checked against its schemas at load: a mistake costs a second, not a training run."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from refit.config_loader import load_config
from refit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

# A user's own schema module, beside their YAML, in a package the interpreter does not know.
BIKES = """
import pandera.pandas as pa
from pandera.typing.pandas import Series


class BikeRides(pa.DataFrameModel):
    ride_id: Series[int]
    hour_start: Series[pa.DateTime]
    station: Series[str]
    temperature: Series[float]
    rides: Series[float]
    busy: Series[str] = pa.Field(isin=["Yes", "No"])


class BikeCaptures(pa.DataFrameModel):
    request_id: Series[str]
    ride_id: Series[int]
    hour_start: Series[pa.DateTime]
    station: Series[str]
    temperature: Series[float]
"""


def _project(tmp_path: Path, package: str, **dataset: Any) -> Path:
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "bikes.py").write_text(BIKES)
    raw = {
        "dataset": {
            "name": "bikes",
            "sources": ["rides.csv"],
            "schema": f"{package}.bikes:BikeRides",
            "capture_schema": f"{package}.bikes:BikeCaptures",
            "target": "rides",
            "task": "regression",
            "id_column": "ride_id",
            "timestamp_column": "hour_start",
            "features": ["station", "temperature"],
        }
    }
    raw["dataset"].update(dataset)
    path = tmp_path / "bikes.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def fresh_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave sys.path as it was (load_config makes the config's folder importable)."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_a_schema_module_beside_the_config_loads_without_pythonpath(tmp_path: Path, fresh_path: None) -> None:
    cfg = load_config(_project(tmp_path, "myschemas_a"))
    assert cfg.dataset.target == "rides"
    assert cfg.feature_columns == ["station", "temperature"]


def test_string_labels_load_with_their_positive_class(tmp_path: Path, fresh_path: None) -> None:
    cfg = load_config(_project(tmp_path, "myschemas_p", target="busy", task="binary", positive_class="Yes"))
    assert cfg.dataset.positive_class == "Yes" and cfg.gate.primary_metric == "roc_auc"
    assert cfg.dataset.gate_labels(["Yes", "No", "No", "Yes"]).tolist() == [1, 0, 0, 1]
    # numbers and booleans are judged as they are
    (tmp_path / "n").mkdir()
    assert load_config(_project(tmp_path / "n", "myschemas_q")).dataset.gate_labels([1.5, 2.0]).tolist() == [1.5, 2.0]


def test_string_classes_load_as_multiclass_and_a_metric_it_lacks_is_refused(tmp_path: Path, fresh_path: None) -> None:
    """Refused before ("no metric judges a multiclass task yet"): now the registry's default
    judges it, and a metric nothing can judge it with is one line naming the file."""
    cfg = load_config(_project(tmp_path, "myschemas_m", target="busy", task="multiclass", classes=["No", "Yes"]))
    assert cfg.dataset.task == "multiclass" and cfg.gate.primary_metric == "macro_roc_auc"
    raw = yaml.safe_load((tmp_path / "bikes.yaml").read_text())
    raw["gate"] = {"primary_metric": "pr_auc"}
    (tmp_path / "bikes.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "bikes.yaml")
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'bikes.yaml'}: invalid value for 'gate'") and "\n" not in msg
    assert "pr_auc does not judge a multiclass task; choose from macro_roc_auc, log_loss, accuracy" in msg


def test_a_missing_schema_module_says_where_modules_are_looked_for(tmp_path: Path, fresh_path: None) -> None:
    path = _project(tmp_path, "myschemas_b", schema="nowhere_pkg.bikes:BikeRides")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "No module named 'nowhere_pkg'" in msg and "config file's folder" in msg and "PYTHONPATH" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("override", "says"),
    [
        (
            {"target": "ridez"},
            "dataset.target: column 'ridez' is not in schema myschemas_{n}.bikes:BikeRides (did you mean 'rides'?)",
        ),
        ({"id_column": "id"}, "dataset.id_column: column 'id' is not in schema"),
        ({"timestamp_column": "hour"}, "dataset.timestamp_column: column 'hour' is not in schema"),
        ({"segments": [{"column": "stations"}]}, "dataset.segments[0].column: column 'stations' is not in schema"),
        (
            {"segments": [{"column": "station"}], "segment_crossings": [["station", "weather"]]},
            "dataset.segment_crossings[0]: column 'weather' is not in schema",
        ),
        ({"features": ["station", "temp"]}, "dataset.features[1]: column 'temp' is not in schema"),
        (
            {"segments": [{"column": "station", "bins": [0, 1, 2]}]},
            "dataset.segments[0].bins: column 'station' is declared str",
        ),
        (
            {"target": "busy", "task": "binary"},
            "dataset.positive_class: column 'busy' holds string labels (str in myschemas_{n}.bikes:BikeRides); "
            "name the label that counts as positive, e.g. positive_class: 'Yes'",
        ),
        (  # not a label the schema allows: every run trained, then stopped at the split
            {"target": "busy", "task": "binary", "positive_class": "yes"},
            "dataset.positive_class: 'yes' is not a label column 'busy' allows in myschemas_{n}.bikes:BikeRides "
            "(isin ['Yes', 'No']); name one of them",
        ),
        (
            {"target": "busy", "task": "multiclass", "positive_class": "Yes"},
            "dataset.positive_class: only a binary task with string labels takes one (task multiclass",
        ),
        (  # string classes in no declared order: refused (a sorted order moves with the data)
            {"target": "busy", "task": "multiclass"},
            "dataset.classes: column 'busy' holds string labels (str in myschemas_{n}.bikes:BikeRides); "
            "declare the classes in order, e.g. classes: [low, mid, high]",
        ),
        (
            {"target": "busy", "task": "multiclass", "classes": ["Yes", "No", "Maybe"]},
            "dataset.classes: Maybe not allowed by column 'busy' in myschemas_{n}.bikes:BikeRides (isin ",
        ),
        (
            {"target": "busy", "task": "multiclass", "classes": [1, 2]},
            "dataset.classes: 1 does not fit column 'busy' (str in myschemas_{n}.bikes:BikeRides); declare strings",
        ),
        ({"classes": ["a", "b"]}, "dataset.classes: only a multiclass task takes declared classes (task regression)"),
        (
            {"positive_class": "Yes"},
            "dataset.positive_class: only a binary task with string labels takes one (task regression, 'rides' "
            "declared float64); remove it",
        ),
        (
            {"target": "busy", "task": "regression"},
            "dataset.target: column 'busy' is declared str in myschemas_{n}.bikes:BikeRides, and task regression "
            "needs int or float labels",
        ),
        (
            {"features": ["station", "rides"]},
            "dataset.features: column 'rides' is not in schema myschemas_{n}.bikes:BikeCaptures",
        ),
        (
            {"request_id_column": "req"},
            "dataset.request_id_column: column 'req' is not in schema myschemas_{n}.bikes:BikeCaptures",
        ),
    ],
)
def test_a_column_the_schema_lacks_is_refused_at_load_in_one_line(
    tmp_path: Path, fresh_path: None, override: dict[str, Any], says: str, request: pytest.FixtureRequest
) -> None:
    n = request.node.callspec.indices["override"]
    path = _project(tmp_path, f"myschemas_{n}", **copy.deepcopy(override))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ")
    assert says.format(n=n) in msg
    assert "\n" not in msg


def test_the_config_check_lets_the_capture_schema_leave_the_target_out(tmp_path: Path, fresh_path: None) -> None:
    # BikeCaptures has no 'rides' column: requests are logged before their label exists
    assert load_config(_project(tmp_path, "myschemas_c")).dataset.capture_schema == "myschemas_c.bikes:BikeCaptures"


def test_the_demo_config_passes_its_schema_check() -> None:
    assert load_config(ROOT / "refit.yaml").dataset.name == "churn"
