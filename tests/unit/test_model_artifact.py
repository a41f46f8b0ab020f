"""The model artifact: files, hashes, trusted loading, input checks, fresh-process reload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from refit.errors import DataError
from refit.io.local import LocalStore
from refit.model import ModelArtifactError, load, load_skops, save_model
from refit.training.search import SearchResult, select_candidate
from tests.unit.training_frames import churn_frame, make_config, multiclass_frame, regression_frame, split

CPU = torch.device("cpu")
FILES = {
    "config.json", "environment.json", "input_schema.json", "manifest.json", "metrics.json",
    "model.json", "preprocessing.json", "trials.json",
}  # fmt: skip


def search(family: str, kind: str = "churn") -> tuple[SearchResult, pd.DataFrame, object]:
    frame = {"churn": churn_frame, "multiclass": multiclass_frame, "regression": regression_frame}[kind]
    train, val = split(frame(400))
    params = {"torch_mlp": {"max_epochs": 2, "hidden": [[16]]}, "hist_gradient_boosting": {"max_iter": 15}}
    config = make_config(kind, candidates=[{"family": family, "params": params.get(family, {})}])
    return select_candidate(train, val, config, None, "", CPU), val, config


@pytest.fixture(scope="module")
def torch_churn():  # type: ignore[no-untyped-def]
    return search("torch_mlp")


@pytest.fixture(scope="module")
def hgb_churn():  # type: ignore[no-untyped-def]
    return search("hist_gradient_boosting")


def save(store, prefix, result_val_config, **kw):  # type: ignore[no-untyped-def]
    result, _, config = result_val_config
    return save_model(store, prefix, result.best, config, result.trials, {"test_auc": 0.5}, {"who": "test"}, **kw)


@pytest.mark.parametrize("fixture", ["torch_churn", "hgb_churn"])
def test_round_trip_predicts_the_same(fixture: str, request, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, val, config = triple = request.getfixturevalue(fixture)
    store = LocalStore(tmp_path)
    uri = save(store, "models/churn/v1", triple)
    assert uri == str(tmp_path / "models/churn/v1")
    weights = "model.safetensors" if result.best.family == "torch_mlp" else "model.skops"
    assert {k.rsplit("/", 1)[1] for k in store.list("models/churn/v1/")} == FILES | {weights}
    loaded = load(uri)
    features = val.drop(columns=["churned", "customer_id"])
    np.testing.assert_allclose(loaded.predict_proba(features), result.best.predict_proba(val), atol=1e-12)
    np.testing.assert_array_equal(loaded.predict(features), result.best.predict(val))
    assert loaded.family == result.best.family and loaded.task == "binary" and loaded.classes == [0, 1]
    # the same artifact through (store, prefix)
    np.testing.assert_array_equal(load(store, "models/churn/v1").predict(val), loaded.predict(val))


def test_artifact_contents(torch_churn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, _, config = torch_churn
    store = LocalStore(tmp_path)
    save(store, "m", torch_churn)
    read = lambda name: json.loads(store.get_bytes(f"m/{name}"))  # noqa: E731
    manifest = read("manifest.json")
    assert set(manifest["files"]) == (FILES - {"manifest.json"}) | {"model.safetensors"}
    import hashlib

    for name, entry in manifest["files"].items():
        assert hashlib.sha256(store.get_bytes(f"m/{name}")).hexdigest() == entry["sha256"]
    schema = read("input_schema.json")
    assert [c["name"] for c in schema["columns"]] == config.feature_columns
    assert {c["name"]: c["dtype"] for c in schema["columns"]}["autopay"] == "bool"
    assert schema["schema"] == "schemas.churn:ChurnTrainingSchema"
    assert read("config.json") == json.loads(json.dumps(config.to_dict()))
    metrics = read("metrics.json")
    assert len(metrics["history"]) == 2 and metrics["final"] == {"test_auc": 0.5}
    assert "roc_auc" in metrics["validation"]
    assert [t["family"] for t in read("trials.json")] == ["torch_mlp"]
    env = read("environment.json")
    # the installed distribution's version: PyPI's CUDA build says 2.13.0 where torch.__version__ is 2.13.0+cu130
    assert env["packages"]["torch"] == metadata.version("torch") and env["who"] == "test"
    assert torch.__version__.startswith(env["packages"]["torch"].partition("+")[0])
    assert "git_commit" in env and env["device"].startswith("cpu") and env["samples_per_s"] > 0
    assert env["peak_memory_bytes"] > 0 and env["train_s"] > 0
    model = read("model.json")
    assert model["architecture"]["hidden"] == [16] and model["weights"] == "model.safetensors"


def test_refuses_to_overwrite_unless_asked(hgb_churn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path)
    save(store, "m", hgb_churn)
    with pytest.raises(ModelArtifactError, match="already exists"):
        save(store, "m", hgb_churn)
    save(store, "m", hgb_churn, overwrite=True)


def test_tampered_file_fails_before_anything_is_deserialised(hgb_churn, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path)
    uri = save(store, "m", hgb_churn)
    path = tmp_path / "m" / "model.skops"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    import skops.io

    parsed = []
    real_loads = json.loads

    def spy(data, *a, **k):  # type: ignore[no-untyped-def]
        parsed.append(data)
        return real_loads(data, *a, **k)

    monkeypatch.setattr(skops.io, "loads", lambda *a, **k: pytest.fail("deserialised a tampered file"))
    monkeypatch.setattr(json, "loads", spy)
    with pytest.raises(ModelArtifactError, match=r"model file model.skops does not match its sha256"):
        load(uri)
    assert parsed == [store.get_bytes("m/manifest.json")]  # only the manifest was read as JSON


def test_tampered_json_and_missing_files(torch_churn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path)
    uri = save(store, "m", torch_churn)
    (tmp_path / "m" / "preprocessing.json").write_text("{}")
    with pytest.raises(ModelArtifactError, match="preprocessing.json does not match its sha256"):
        load(uri)
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(ModelArtifactError, match="model.safetensors is missing"):
        load(uri)
    with pytest.raises(ModelArtifactError, match="no model at .*manifest.json not found"):
        load(str(tmp_path / "nothing-here"))


def test_untrusted_types_are_refused(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    data = sio.dumps(FunctionTransformer(func=os.getcwd))
    with pytest.raises(ModelArtifactError, match="does not trust: .*getcwd"):
        load_skops(data)


def test_input_is_checked_against_the_stored_schema(torch_churn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, val, _ = torch_churn
    loaded = load(save(LocalStore(tmp_path), "m", torch_churn))
    with pytest.raises(DataError, match=r"input: missing feature column\(s\) 'plan', 'age' \(rule: every column"):
        loaded.predict(val.drop(columns=["age", "plan"]))
    with pytest.raises(DataError, match=r"input: column 'tenure_months' row 1 is 'many' \(rule: numeric"):
        loaded.predict(val.assign(tenure_months="many"))
    shuffled = val[list(reversed(val.columns))].assign(unrelated="x")
    np.testing.assert_array_equal(loaded.predict_proba(shuffled), loaded.predict_proba(val))


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_multiclass_labels_and_regression_values(kind: str, tmp_path: Path) -> None:
    result, val, config = triple = search("torch_mlp", kind)
    loaded = load(save(LocalStore(tmp_path), "m", triple))
    if kind == "multiclass":
        assert loaded.classes == ["high", "low", "mid"]
        assert set(loaded.predict(val)) <= {"high", "low", "mid"}
        np.testing.assert_allclose(loaded.predict_proba(val), result.best.predict_proba(val), atol=1e-12)
    else:
        np.testing.assert_allclose(loaded.predict(val), result.best.predict(val), atol=1e-9)
        assert abs(float(np.mean(loaded.predict(val))) - 100.0) < 10  # de-standardised
        with pytest.raises(ModelArtifactError, match="regression"):
            loaded.predict_proba(val)


def test_s3_round_trip(hgb_churn, s3_store, s3_client) -> None:  # type: ignore[no-untyped-def]
    result, val, _ = hgb_churn
    uri = save(s3_store, "models/churn/v2", hgb_churn)
    assert uri == f"{s3_store.uri}/models/churn/v2"
    by_uri = load(uri, client=s3_client)
    by_store = load(s3_store, "models/churn/v2")
    np.testing.assert_array_equal(by_uri.predict_proba(val), result.best.predict_proba(val))
    np.testing.assert_array_equal(by_store.predict(val), result.best.predict(val))


RELOAD = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    from refit.model import load
    out = {}
    for uri in sys.argv[2:]:
        out[uri] = load(uri).predict_proba(pd.read_parquet(sys.argv[1]))[:, 1].tolist()
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_fresh_process_predicts_the_same(torch_churn, hgb_churn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path / "store")
    uris = {save(store, name, triple): triple for name, triple in (("t", torch_churn), ("h", hgb_churn))}
    _, val, _ = torch_churn
    sample = tmp_path / "val.parquet"
    val.to_parquet(sample)
    proc = subprocess.run([sys.executable, "-c", RELOAD, str(sample), *uris], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    for uri, (result, _, _) in uris.items():
        np.testing.assert_allclose(out[uri], result.best.predict_proba(val)[:, 1], atol=1e-6, rtol=0)
