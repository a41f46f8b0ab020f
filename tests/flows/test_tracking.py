"""Experiment tracking against a real `mlflow server`: a retrain (through the flow) read back
through MlflowClient; a server stopped during a retrain, restarted, and caught up by the next
run; artifacts of an S3 store on the S3 test server."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from flows.retrain import RetrainParameters, retrain
from refit import pipeline, recipe
from refit.config_loader import load_config
from refit.io.layout import LAYOUT, RunKeys
from refit.model import git_commit
from refit.registry import Registry
from refit.splits import SPLIT_NAMES
from refit.tracking import mirror_registry
from tests.conftest import MlflowServer
from tests.flows.helpers import make_project, write_config

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


def _stop_at(server: MlflowServer, at_step: str) -> Callable[[str], AbstractContextManager[None]]:
    """An ``around`` hook for ``run_retrain`` that stops ``server`` as step ``at_step`` begins."""

    @contextmanager
    def around(step: str) -> Iterator[None]:
        if step == at_step:
            server.stop()
        yield

    return around


def test_mlflow_stopped_mid_retrain_never_fails_it_and_the_next_run_catches_the_mirror_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server is stopped while the retrain runs, restarted on the same backend store, and
    the next run mirrors what was registered meanwhile.

    The stop is made deterministic by the recipe's ``around`` hook: the server goes down as
    ``train-candidates`` begins (after the run has loaded and split its data), so training,
    the gate, registration, promotion and ``track-run`` all run against a stopped server. A
    thread stopping it "at some point" would sometimes land before the run starts or after
    tracking ends, and prove nothing on those runs.
    """
    name = "churn-outage"
    (tmp_path / "mlflow").mkdir()
    server = MlflowServer(tmp_path / "mlflow").start()
    try:
        config_path, store = make_project(
            tmp_path, rows=2000, dataset={"name": name}, tracking={"mlflow_uri": server.url}
        )
        live = load_config(config_path)
        first = recipe.run_retrain(store, live)
        assert first.tracking.ok and first.tracking.mirrored == [1]

        with caplog.at_level(logging.WARNING, logger="refit.tracking"):
            outage = recipe.run_retrain(
                store,
                live,
                recipe.RetrainOptions(force=True, reason="hotfix during the outage"),
                around=_stop_at(server, "train-candidates"),
            )
        assert server.proc is None  # it was stopped during the run, and stayed down
        assert outage.steps[-4:] == ["register-model", "promote-model", "calibrate-drift", "track-run"]
        assert outage.version.version == 2 and Registry(store).aliases(name) == {"champion": 2}
        assert not outage.tracking.ok and "Connection refused" in outage.tracking.error
        warned = [r.getMessage() for r in caplog.records if r.name == "refit.tracking"]
        caplog.clear()
        assert len(warned) == 1 and "the retrain goes on" in warned[0] and "\n" not in warned[0]

        server.start()  # the same port and backend store: MLflow is back, with what it had
        client = MlflowClient(server.url, registry_uri=server.url)
        assert client.get_model_version_by_alias(name, "champion").tags["refit.version"] == "1"  # stale
        assert len(client.search_model_versions(f"name = '{name}'")) == 1

        Registry(store).set_alias(name, "latest", 1, reason="a name MLflow reserves")
        caught_up = recipe.run_retrain(store, live, recipe.RetrainOptions(dry_run=True))
        assert caught_up.tracking.ok and caught_up.tracking.mirrored == [2]
        assert any("MLflow refused alias 'latest'" in r.getMessage() for r in caplog.records)
        versions = {v.tags["refit.version"]: v for v in client.search_model_versions(f"name = '{name}'")}
        assert sorted(versions) == ["1", "2"] and versions["2"].version == "2"
        champion = client.get_model_version_by_alias(name, "champion")
        assert champion.version == "2" and champion.tags["refit.run_id"] == outage.run_id
        backfill = client.get_run(champion.run_id)
        assert backfill.data.tags["refit.kind"] == "catch-up" and backfill.data.tags["refit.run_id"] == outage.run_id
        assert {a.path for a in client.list_artifacts(champion.run_id, "model")} >= {"model/manifest.json"}

        # idempotent: mirroring again creates nothing
        assert mirror_registry(client, store, name, caught_up.tracking.experiment_id) == (
            [],
            {"champion": 2, "latest": 1},
        )
        assert len(client.search_model_versions(f"name = '{name}'")) == 2
    finally:
        server.stop()


def _drop_splits_before_tracking(store: Any, run: RunKeys) -> Callable[[str], AbstractContextManager[None]]:
    """An ``around`` hook that deletes the run's split files as ``track-run`` begins: tracking
    must log the datasets from what the run already has, not read whole splits again."""

    @contextmanager
    def around(step: str) -> Iterator[None]:
        if step == "track-run":
            for split in SPLIT_NAMES.values():
                store.delete(run.split(split))
        yield

    return around


def client_run(url: str, run_id: str | None) -> Any:
    assert run_id is not None
    return MlflowClient(url).get_run(run_id)


def test_the_artifacts_of_a_retrain_on_an_s3_store_go_to_the_s3_server(
    s3_endpoint: str, s3_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mlflow server --artifacts-destination s3://...`` on the S3 test server: a retrain on an
    S3 store logs its artifacts through the tracking server into the bucket, and MlflowClient
    reads them back."""
    from refit.demo import write_base_data
    from refit.io.s3 import S3Store

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # the smoke test's child process opens the S3 store too
    name = "churn-s3"
    bucket = f"refit-mlflow-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    (tmp_path / "mlflow").mkdir()
    server = MlflowServer(
        tmp_path / "mlflow", artifacts=f"s3://{bucket}/mlartifacts", env={"MLFLOW_S3_ENDPOINT_URL": s3_endpoint}
    ).start()
    try:
        store = S3Store(f"s3://{bucket}/refit", s3_client)
        config = load_config(write_config(tmp_path, dataset={"name": name}, tracking={"mlflow_uri": server.url}))
        write_base_data(store, config, rows=1500, seed=0)
        run_id = pipeline.new_run_id()
        keys = LAYOUT.run(name, run_id)
        run = recipe.run_retrain(store, config, run_id=run_id, around=_drop_splits_before_tracking(store, keys))
        assert not any(store.exists(keys.split(split)) for split in SPLIT_NAMES.values())
        assert run.version is not None, f"not registered: {run.steps}, smoke {run.smoke}"
        assert run.tracking.ok and run.version.version == 1
        # the splits as dataset inputs, from what the run knew (their files were gone by then)
        datasets = {
            d.dataset.name: d.dataset for d in client_run(server.url, run.tracking.run_id).inputs.dataset_inputs
        }
        train = datasets[f"{name}-train"]
        assert json.loads(train.profile)["num_rows"] == run.splits.rows["train"]
        assert train.source_type == "s3" and json.loads(train.source)["uri"].startswith(f"s3://{bucket}/refit/runs/")
        schema = {c["name"]: c for c in json.loads(train.schema)["mlflow_colspec"]}
        assert schema["churned"]["type"] == "long" and schema["age"]["required"] is False

        client = MlflowClient(server.url, registry_uri=server.url)
        run_id = run.tracking.run_id
        listed = {a.path for folder in ("dossier", "model", "trials") for a in client.list_artifacts(run_id, folder)}
        assert {"dossier/dossier.md", "dossier/dossier.png", "model/manifest.json", "trials/trials.json"} <= listed
        manifest = client.download_artifacts(run_id, "model/manifest.json", str(tmp_path))
        assert Path(manifest).read_bytes() == Registry(store).read_artifact(name, 1, "manifest.json")
        in_bucket = {
            o["Key"].split("/artifacts/", 1)[-1]
            for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="mlartifacts/")
            for o in page.get("Contents", [])
        }
        assert {"model/manifest.json", "dossier/dossier.png", "trials/trials.json"} <= in_bucket
        champion = client.get_model_version_by_alias(name, "champion")
        assert champion.run_id == run_id and champion.tags["refit.version"] == "1"
    finally:
        server.stop()
