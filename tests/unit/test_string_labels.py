"""Binary labels as strings (Yes/No) with dataset.positive_class: trained, gated (paired
bootstrap against a champion), registered and judged for decay in the positive class's terms.
They used to pass validation, training and the smoke test, then crash the gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from refit.config_loader import load_config
from refit.io import LocalStore
from refit.io.frames import read_frame
from refit.pipeline import load_version, scores
from refit.recipe import RetrainOptions, run_retrain

pytestmark = pytest.mark.slow  # the smoke test loads each candidate in a child process

SCHEMA = """
import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series
from typing import Annotated


class Renewals(pa.DataFrameModel):
    account: Series[str]
    at: Series[Annotated[pd.DatetimeTZDtype, "ns", "UTC"]]
    usage: Series[float]
    plan: Series[str]
    renewed: Series[str] = pa.Field(isin=["Yes", "No"])

    class Config:
        coerce = True
        strict = True
"""


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    usage = rng.normal(0, 1, n)
    plan = rng.choice(["basic", "pro"], n)
    p_no = 1 / (1 + np.exp(-(2.5 * usage + np.where(plan == "pro", -0.5, 0.5))))  # heavy users do NOT renew
    return pd.DataFrame(
        {
            "account": [f"a{seed}-{i}" for i in range(n)],
            "at": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86400 * 60, n), unit="s"),
            "usage": usage.round(4),
            "plan": plan,
            "renewed": np.where(rng.random(n) < p_no, "No", "Yes"),
        }
    )


def test_string_labels_train_gate_and_register_in_the_positive_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "renewal_schemas.py").write_text(SCHEMA)
    store = LocalStore(tmp_path / "store")
    store.put_bytes("data/base.csv", _rows(2400, 1).to_csv(index=False).encode())
    config = {
        "dataset": {
            "name": "renewals",
            "sources": ["data/*.csv"],
            "schema": "renewal_schemas:Renewals",
            "target": "renewed",
            "task": "binary",
            "positive_class": "No",  # the second of the sorted classes is "Yes": the gate must not take it
            "id_column": "account",
            "timestamp_column": "at",
            "segments": [{"column": "plan"}],
        },
        "training": {"candidates": [{"family": "linear"}], "window_days": None},
        "gate": {"min_segment_size": 100},
    }
    path = tmp_path / "renewals.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(path)

    first = run_retrain(store, cfg, RetrainOptions(reason="first"))
    assert first.promotion is not None and first.evaluation is not None
    # ROC AUC of P("No") against renewed == "No": far above chance (the "Yes" column would give 1 - AUC)
    auc = first.evaluation.candidate_metrics["roc_auc"]
    assert auc is not None and auc > 0.8
    model = load_version(store, first.version)
    frame = _rows(200, 9)
    # the classes are kept negative first, so P("No") is the second column as for 0/1 labels
    assert model.classes == ["Yes", "No"]
    assert np.array_equal(scores(model, frame, "binary", "No"), scores(model, frame, "binary"))
    assert np.allclose(scores(model, frame, "binary", "No") + model.predict_proba(frame)[:, 0], 1.0)

    store.put_bytes("data/more.csv", _rows(1200, 2).to_csv(index=False).encode())
    second = run_retrain(store, cfg, RetrainOptions(reason="more data"))
    decision = second.evaluation.decision if second.evaluation is not None else None
    assert decision is not None and not decision.first_run  # the paired bootstrap against the champion ran
    assert decision.champion_value is not None and decision.champion_value > 0.8
    assert {s.scope for s in decision.segments} == {"plan=basic", "plan=pro"}
    assert decision.ci_low is not None and decision.ci_high is not None

    # `refit models diff` re-scores both versions on one holdout in the positive class's terms
    from refit.registry import Registry
    from refit.scoring import rescore_versions, store_holdout

    registry = Registry(store)
    before = store.list("")
    holdout = store_holdout(store, cfg)
    assert store.list("") == before  # made in memory: no run folder, no quarantine written
    # ... and the very rows a retrain on the same data tests on
    pd.testing.assert_frame_equal(holdout.frame, read_frame(store, second.need("splits").keys["test"]))
    assert holdout.fingerprint == second.need("splits").fingerprints["test"].sha256
    diff = rescore_versions(registry.load_model("renewals", 1), registry.load_model("renewals", 2), holdout, cfg)
    assert diff["metric"] == "roc_auc"
    assert diff["overall"]["a"] > 0.8 and diff["overall"]["b"] > 0.8  # 1 - AUC if "Yes" were scored

    # `refit models diff` without a project config: each version loaded once (B's config read
    # from the loaded model), nothing written to the store
    from typer.testing import CliRunner

    from refit_cli.main import app

    loads: list[int] = []
    real_load = Registry.load_model

    def counted(self: Registry, name: str, version: Any, **kwargs: Any) -> Any:
        loads.append(version if isinstance(version, int) else version.version)
        return real_load(self, name, version, **kwargs)

    monkeypatch.setattr(Registry, "load_model", counted)
    monkeypatch.setenv("REFIT_STORE", str(tmp_path / "store"))
    result = CliRunner().invoke(app, ["models", "diff", "renewals", "1", "2", "--json", "--config", "absent.yaml"])
    assert result.exit_code == 0, result.output
    assert sorted(loads) == [1, 2] and store.list("") == before
    assert json.loads(result.stdout)["rescored"]["overall"] == diff["overall"]
