"""Multiclass with string labels through the plain retrain runner: a first model registered
with its overall and per-segment metrics, a second run gated against it by the paired bootstrap
(per-segment intervals), the champion's decay judged on a window, and the dossier in the
metric's words. Config load refused multiclass before, and string classes with it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from refit.config_loader import load_config
from refit.io import LocalStore
from refit.io.frames import read_frame
from refit.metrics import align_classes
from refit.monitoring import champion_decay, load_reference
from refit.pipeline import load_version, read_bytes
from refit.recipe import RetrainOptions, run_retrain

pytestmark = pytest.mark.slow  # the smoke test loads each candidate in a child process

SCHEMA = """
import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series
from typing import Annotated


class Insects(pa.DataFrameModel):
    trap_id: Series[str]
    at: Series[Annotated[pd.DatetimeTZDtype, "ns", "UTC"]]
    wing: Series[float]
    body: Series[float]
    site: Series[str]
    kind: Series[str] = pa.Field(isin=["ant", "bee", "wasp"])

    class Config:
        coerce = True
        strict = True
"""
CLASSES = np.array(["ant", "bee", "wasp"])


def _rows(n: int, seed: int, noise: float = 0.8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)
    site = rng.choice(["meadow", "forest"], n)
    return pd.DataFrame(
        {
            "trap_id": [f"t{seed}-{i}" for i in range(n)],
            "at": pd.Timestamp("2026-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86400 * 30, n), unit="s"),
            "wing": (kind + rng.normal(0, noise, n)).round(4),
            "body": (np.where(kind == 2, 1.0, 0.0) + rng.normal(0, noise, n)).round(4),
            "site": site,
            "kind": CLASSES[kind],
        }
    )


def test_string_multiclass_trains_gates_registers_and_decays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "insect_schemas.py").write_text(SCHEMA)
    store = LocalStore(tmp_path / "store")
    store.put_bytes("data/base.csv", _rows(700, 1).to_csv(index=False).encode())
    config = {
        "dataset": {
            "name": "insects",
            "sources": ["data/*.csv"],
            "schema": "insect_schemas:Insects",
            "target": "kind",
            "task": "multiclass",
            "classes": ["wasp", "ant", "bee"],  # declared, not sorted: every step keeps this order
            "id_column": "trap_id",
            "timestamp_column": "at",
            "segments": [{"column": "site"}],
        },
        "training": {"candidates": [{"family": "linear"}], "window_days": None},
        "gate": {"min_segment_size": 40, "bootstrap_resamples": 200},
        "drift": {"decay_min_rows": 50, "decay_resamples": 200},
    }
    path = tmp_path / "insects.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(path)  # refused before: "no metric judges a multiclass task yet"
    assert cfg.gate.primary_metric == "macro_roc_auc"  # the registry's default for the task

    first = run_retrain(store, cfg, RetrainOptions(reason="first"))
    assert first.promotion is not None and first.evaluation is not None and first.evaluation.decision.first_run
    version = first.version
    assert {"macro_roc_auc", "log_loss", "accuracy"} <= set(version.metrics)
    assert version.metrics["macro_roc_auc"] > 0.75 and version.metrics["accuracy"] > 0.5
    assert set(version.segment_metrics) == {"site=forest", "site=meadow"}
    # registration stores each value's bootstrap standard error, overall and per segment, for decay
    assert 0 < version.metrics["macro_roc_auc_se"] < 0.1  # type: ignore[operator]
    assert all(0 < m["macro_roc_auc_se"] < 0.2 for m in version.segment_metrics.values())  # type: ignore[operator]
    champion = load_version(store, version)
    assert champion.classes == ["wasp", "ant", "bee"]  # the artifact stores the declared class order
    test = read_frame(store, first.need("splits").keys["test"])
    _, y, (proba,) = align_classes(test["kind"].to_numpy(), [(champion.classes, champion.predict_proba(test))])
    assert version.metrics["macro_roc_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))

    store.put_bytes("data/more.csv", _rows(400, 2).to_csv(index=False).encode())
    second = run_retrain(store, cfg, RetrainOptions(reason="more data"))
    assert second.evaluation is not None
    decision = second.evaluation.decision
    assert not decision.first_run and decision.outcome in ("PROMOTE", "REJECT", "INCONCLUSIVE")
    assert decision.metric == "macro_roc_auc" and decision.ci_low is not None and decision.ci_high is not None
    test = read_frame(store, second.need("splits").keys["test"])
    _, y, (proba,) = align_classes(test["kind"].to_numpy(), [(champion.classes, champion.predict_proba(test))])
    assert decision.champion_value == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    gated = [s for s in decision.segments if s.gated]
    assert {s.scope for s in gated} == {"site=forest", "site=meadow"}
    assert all(s.ci_low is not None and s.ci_high is not None and s.ci_low <= s.ci_high for s in gated)
    dossier = read_bytes(store, second.evaluation.dossier["markdown"]).decode()
    assert "macro ROC AUC (one-vs-rest)" in dossier and "site=meadow" in dossier

    # decay of the serving champion on a production window, in the gate's metric and segments
    reference = load_reference(store, cfg)
    same = champion_decay(store, cfg, reference, _rows(300, 3))
    assert same.metric == "macro_roc_auc" and not same.decayed and same.n_labelled == 300
    assert {s.segment for s in same.segments} == {"site=forest", "site=meadow"}
    assert same.overall.registered == pytest.approx(reference.registered_metrics["overall"])
    assert same.overall.registered_se == reference.registered_se["overall"] > 0  # the champion's, stored
    noisy = champion_decay(store, cfg, reference, _rows(300, 4, noise=3.0))  # the features stop telling kinds apart
    assert noisy.decayed and noisy.overall.drop is not None and noisy.overall.drop > 0.1

    # `refit models diff` re-scores both versions on one holdout, paired, in the same metric
    from refit.registry import Registry
    from refit.scoring import rescore_versions, store_holdout

    registry = Registry(store)
    v1, v2 = sorted(registry.list_versions("insects"), key=lambda v: v.version)[:2]
    loaded = registry.load_model("insects", v1), registry.load_model("insects", v2)
    diff = rescore_versions(*loaded, store_holdout(store, cfg), cfg)
    assert diff["metric"] == "macro_roc_auc" and diff["overall"]["a"] > 0.75 and diff["overall"]["b"] > 0.75
    assert {row["scope"] for row in diff["segments"]} == {"site=forest", "site=meadow"}

    # replay's live metrics and captures: the serving and first models against the class prior
    from refit.replay import _baseline_score, _live_metrics, _ModelCache

    models = _ModelCache(store, "multiclass")
    window = _rows(300, 5)
    serving = Registry(store).champion("insects")
    live, frozen, naive = _live_metrics(cfg, window, models, serving, 1, _baseline_score(store, first))
    _, y, (proba,) = align_classes(window["kind"].to_numpy(), [(champion.classes, champion.predict_proba(window))])
    assert frozen == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    assert naive == pytest.approx(0.5) and live is not None and live > 0.75  # a constant prior ranks nothing
    assert set(models.predictions(serving, window)) <= set(CLASSES)  # captures hold the predicted class
