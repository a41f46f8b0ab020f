"""The registry pins each version's artifact: the manifest's sha256 is recorded in the immutable
version record, and every load through the registry checks it, so an edited file with a
recomputed manifest does not load as that version. Versions registered before the record
existed still load, and say that they were not verified against it."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from refit import pipeline
from refit.errors import RegistryError
from refit.io.local import LocalStore
from refit.model import ModelArtifactError, load, read_artifact, save_model
from refit.registry import Registry
from refit.training.search import select_candidate
from tests.unit.training_frames import churn_frame, make_config, split


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], pd.DataFrame]:
    """The files of one real artifact (hist_gradient_boosting on churn) and validation rows."""
    train, val = split(churn_frame(400))
    config = make_config("churn", candidates=[{"family": "hist_gradient_boosting", "params": {"max_iter": 15}}])
    result = select_candidate(train, val, config, None, "", torch.device("cpu"))
    store = LocalStore(tmp_path_factory.mktemp("artifact"))
    save_model(store, "m", result.best, config, result.trials)
    return read_artifact(store, "m"), val


def tamper_preprocessing(folder: Path) -> None:
    """Shift every numeric centre and recompute the manifest: the files agree with each other."""
    prep = json.loads((folder / "preprocessing.json").read_text())
    prep["centers"] = [c + 5.0 for c in prep["centers"]]
    data = json.dumps(prep).encode()
    (folder / "preprocessing.json").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["preprocessing.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_register_records_the_manifest_sha(local_store: LocalStore, artifact) -> None:  # type: ignore[no-untyped-def]
    files, val = artifact
    mv = Registry(local_store).register("churn", artifact_files=files)
    assert mv.manifest_sha256 == hashlib.sha256(files["manifest.json"]).hexdigest()
    stored = json.loads(local_store.get_bytes("registry/churn/versions/1/version.json"))
    assert stored["manifest_sha256"] == mv.manifest_sha256
    loaded = Registry(local_store).load_model("churn", 1)
    assert loaded.pinned is True and loaded.manifest_sha256 == mv.manifest_sha256
    assert loaded.predict_proba(val).shape == (len(val), 2)
    with pytest.raises(RegistryError, match="does not match the manifest.json given"):
        Registry(local_store).register("churn", artifact_files=files, manifest_sha256="0" * 64)


def test_an_edited_file_with_a_recomputed_manifest_is_refused(
    local_store: LocalStore,
    artifact,  # type: ignore[no-untyped-def]
) -> None:
    files, val = artifact
    reg = Registry(local_store)
    reg.register("churn", artifact_files=files)
    reg.promote("churn", 1, expected_current=None)
    before = reg.load_model("churn", 1).predict_proba(val)
    folder = local_store.root / "registry/churn/versions/1/artifact"
    tamper_preprocessing(folder)
    # the artifact is self-consistent: on its own it loads and predicts differently
    changed = load(str(folder)).predict_proba(val)
    assert not np.allclose(changed, before)
    message = r"manifest.json does not match the sha256 recorded for it \(by the registry for a version"
    with pytest.raises(ModelArtifactError, match=message):
        reg.load_model("churn", 1)
    with pytest.raises(ModelArtifactError, match=message):  # the path retrain, drift and the demo use
        pipeline.load_version(local_store, reg.resolve("churn@champion"))
    with pytest.raises(RegistryError, match="churn:1: manifest.json does not match the sha256 recorded"):
        reg.read_artifact("churn", 1, "preprocessing.json")


def test_a_file_edited_without_recomputing_the_manifest_is_refused_by_read_artifact(
    local_store: LocalStore,
    artifact,  # type: ignore[no-untyped-def]
) -> None:
    files, _ = artifact
    reg = Registry(local_store)
    reg.register("churn", artifact_files=files)
    (local_store.root / "registry/churn/versions/1/artifact/model.json").write_text("{}")
    with pytest.raises(RegistryError, match="churn:1: model.json does not match its sha256 in the registered manifest"):
        reg.read_artifact("churn", 1, "model.json")
    assert reg.read_artifact("churn", 1, "config.json") == files["config.json"]


def test_a_referenced_artifact_is_pinned_too(local_store: LocalStore, tmp_path: Path, artifact) -> None:  # type: ignore[no-untyped-def]
    files, _ = artifact
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    reg = Registry(local_store)
    sha = hashlib.sha256(files["manifest.json"]).hexdigest()
    reg.register("churn", artifact_uri=str(folder), manifest_sha256=sha)
    assert reg.load_model("churn", 1).pinned is True
    tamper_preprocessing(folder)
    with pytest.raises(ModelArtifactError, match=r"does not match the sha256 recorded for it \(by the registry"):
        reg.load_model("churn", 1)
    with pytest.raises(RegistryError, match="64 lowercase hex digits"):
        reg.register("churn", artifact_uri=str(folder), manifest_sha256="abc")


def test_a_version_registered_before_the_record_loads_and_says_so(
    local_store: LocalStore,
    artifact,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    files, val = artifact
    reg = Registry(local_store)
    reg.register("churn", artifact_files=files)
    key = "registry/churn/versions/1/version.json"
    legacy = json.loads(local_store.get_bytes(key))
    del legacy["manifest_sha256"]  # what refit wrote before this field existed
    (local_store.root / key).write_text(json.dumps(legacy))
    assert reg.get_version("churn", 1).manifest_sha256 is None
    with caplog.at_level(logging.WARNING, logger="refit.registry"):
        loaded = pipeline.load_version(local_store, reg.get_version("churn", 1))
    assert loaded.pinned is False
    assert "churn:1 was registered without a manifest sha256" in caplog.text
    assert loaded.predict_proba(val).shape == (len(val), 2)


@pytest.mark.slow  # a whole retrain: the smoke test loads the candidate in a child process
@pytest.mark.parametrize("before", ["evaluate-candidate", "register-model"])
def test_a_candidate_altered_after_training_is_neither_judged_nor_registered(tmp_path: Path, before: str) -> None:
    """Evaluation and registration read the candidate from the run folder anew: one edited
    (files and manifest recomputed) between training and either step was judged, or registered
    after the gate had judged the original. Both reads are pinned to the manifest training wrote."""
    from contextlib import contextmanager

    from refit.config_loader import load_config
    from refit.recipe import RetrainOptions, run_retrain
    from tests.flows.helpers import make_project

    config_path, store = make_project(tmp_path, rows=1500)
    cfg = load_config(config_path)
    cfg = cfg.model_copy(
        update={"training": cfg.training.model_copy(update={"candidates": cfg.training.candidates[:1]})}
    )
    altered: list[str] = []

    @contextmanager
    def tamper_before(step: str):  # type: ignore[no-untyped-def]
        if step == before:
            folder = next(Path(store.root).glob("runs/*/*/candidate"))
            tamper_preprocessing(folder)
            altered.append(str(folder))
        yield

    with pytest.raises(ModelArtifactError, match=r"recorded for it \(by the registry for a version, by training"):
        run_retrain(store, cfg, RetrainOptions(reason="first"), around=tamper_before)
    assert altered and Registry(store).list_models() == []  # nothing registered
