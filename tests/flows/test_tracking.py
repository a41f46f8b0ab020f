"""Experiment tracking against a real `mlflow server`: a retrain (through the flow) read back
through MlflowClient, and a retrain while MLflow is down, caught up by the next run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from flows.retrain import RetrainParameters, retrain
from refit import pipeline
from refit.config import load_config
from refit.model import git_commit
from refit.registry import Registry
from tests.conftest import free_port
from tests.flows.helpers import make_project

TRAINING = {
    "seed": 3,
    "max_epochs": 3,
    "patience": 10,
    "candidates": [
        {"family": "hist_gradient_boosting", "params": {"max_iter": [30]}, "budget": 1},
        {"family": "torch_mlp", "params": {"hidden": [[16]]}, "budget": 1},
    ],
}


def _runs(client: MlflowClient, experiment: str, query: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    return list(client.search_runs([exp.experiment_id], query))


def test_a_retrain_is_one_mlflow_run_with_nested_trials_datasets_artifacts_and_the_champion(
    mlflow_server: str, tmp_path: Path
) -> None:
    name = "churn-tracked"
    config, store = make_project(
        tmp_path, rows=2500, dataset={"name": name}, training=TRAINING, tracking={"mlflow_uri": mlflow_server}
    )
    state = retrain(RetrainParameters(config_path=str(config), store=str(tmp_path / "store")), return_state=True)
    result = state.result()
    assert result.outcome == "PROMOTE" and result.version == 1

    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    (run,) = _runs(client, name, f"tags.`refit.run_id` = '{result.run_id}' and tags.`refit.kind` = 'retrain'")
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["prefect.flow_run_id"] == str(state.state_details.flow_run_id)
    assert tags["refit.trigger"] == "manual" and tags["mlflow.source.git.commit"] == git_commit()
    assert tags["refit.gate.outcome"] == "PROMOTE" and tags["refit.version"] == "1"
    version = Registry(store).get_version(name, 1)
    assert metrics["test_roc_auc"] == pytest.approx(version.metrics["roc_auc"])
    assert metrics["gate.candidate_value"] == pytest.approx(version.decision["candidate_value"])
    assert run.data.params["family"] == result.candidate["family"]

    # the splits as dataset inputs, with refit's fingerprints and row counts
    inputs = {
        {t.key: t.value for t in d.tags}["mlflow.data.context"]: {t.key: t.value for t in d.tags}
        for d in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"train", "validation", "test"}
    for split, tag in inputs.items():
        assert tag["refit.sha256"] == version.datasets[split].sha256
        assert tag["refit.rows"] == str(version.datasets[split].rows)

    # one nested run per trial; the MLP's epochs as metric steps, equal to its trial record
    trials = _runs(client, name, f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert sorted(t.data.tags["refit.family"] for t in trials) == ["hist_gradient_boosting", "torch_mlp"]
    mlp = next(t for t in trials if t.data.tags["refit.family"] == "torch_mlp")
    assert mlp.data.params["hidden"] == "[16]" and mlp.data.tags["refit.device"].startswith("cpu")
    assert mlp.data.metrics["train_s"] > 0 and mlp.data.metrics["peak_memory_mb"] > 0
    recorded = next(t for t in Registry(store).load_model(name, 1).trials if t["family"] == "torch_mlp")
    history = client.get_metric_history(mlp.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (row["epoch"], pytest.approx(row["val_loss"])) for row in recorded["history"]
    ]
    assert len(history) == recorded["epochs"] == 3

    # the dossier, the trials table and the model folder
    def files(path: str) -> set[str]:
        return {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run.info.run_id, path)}

    assert {"dossier.md", "dossier.json", "dossier.png"} <= files("dossier")
    assert {"manifest.json", "model.json", "trials.json"} <= files("model")
    trials_file = client.download_artifacts(run.info.run_id, "trials/trials.json", str(tmp_path))
    assert len(json.loads(Path(trials_file).read_text())) == 2

    # the registered version mirrored, champion on it
    champion = client.get_model_version_by_alias(name, "champion")
    assert (champion.version, champion.tags["refit.version"]) == ("1", "1")
    assert champion.run_id == run.info.run_id and champion.source == f"runs:/{run.info.run_id}/model"


def test_mlflow_down_never_fails_a_retrain_and_the_next_run_catches_the_mirror_up(
    mlflow_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = "churn-outage"
    config_path, store = make_project(
        tmp_path, rows=2000, dataset={"name": name}, tracking={"mlflow_uri": mlflow_server}
    )
    live = load_config(config_path)
    first = pipeline.run_retrain(store, live)
    assert first.tracking.ok and first.tracking.mirrored == [1]

    down = live.model_copy(
        update={"tracking": live.tracking.model_copy(update={"mlflow_uri": f"http://127.0.0.1:{free_port()}"})}
    )
    with caplog.at_level(logging.WARNING, logger="refit.tracking"):
        outage = pipeline.run_retrain(
            store, down, pipeline.RetrainOptions(force=True, reason="hotfix during the outage")
        )
    assert outage.steps[-4:] == ["register-model", "promote-model", "calibrate-drift", "track-run"]
    assert outage.version.version == 2 and Registry(store).aliases(name) == {"champion": 2}
    assert not outage.tracking.ok and "Connection refused" in outage.tracking.error
    warned = [r.getMessage() for r in caplog.records if r.name == "refit.tracking"]
    caplog.clear()
    assert len(warned) == 1 and "the retrain goes on" in warned[0] and "\n" not in warned[0]

    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    assert client.get_model_version_by_alias(name, "champion").tags["refit.version"] == "1"  # stale while down

    Registry(store).set_alias(name, "latest", 1, reason="a name MLflow reserves")
    caught_up = pipeline.run_retrain(store, live, pipeline.RetrainOptions(dry_run=True))
    assert caught_up.tracking.ok and caught_up.tracking.mirrored == [2]
    assert any("MLflow refused alias 'latest'" in r.getMessage() for r in caplog.records)
    versions = {v.tags["refit.version"]: v for v in client.search_model_versions(f"name = '{name}'")}
    assert sorted(versions) == ["1", "2"] and versions["2"].version == "2"
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.version == "2"
    backfill = client.get_run(champion.run_id)
    assert backfill.data.tags["refit.kind"] == "catch-up" and backfill.data.tags["refit.run_id"] == outage.run_id
    assert {a.path for a in client.list_artifacts(champion.run_id, "model")} >= {"model/manifest.json"}

    again = pipeline.run_retrain(store, live, pipeline.RetrainOptions(dry_run=True))
    assert again.tracking.ok and again.tracking.mirrored == []  # idempotent: nothing twice
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
