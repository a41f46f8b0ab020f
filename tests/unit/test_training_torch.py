"""The MLP and its training loop: learning, determinism, early stopping, checkpoints, AMP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from refit.config import TrainingConfig
from refit.device import AutocastSettings
from refit.errors import ConfigError
from refit.io.local import LocalStore
from refit.preprocessing import Preprocessor, infer_columns
from refit.training import CheckpointSink, TrainingError, run_key
from refit.training.torch_mlp import predict_torch, train_torch
from refit.training.torch_net import TabularMLP, embedding_dim, resolve_params
from tests.unit.training_frames import CHURN_FEATURES, churn_frame, multiclass_frame, regression_frame, split

CPU = torch.device("cpu")


def arrays(df, features, target, classes=None):  # type: ignore[no-untyped-def]
    train, val = split(df)
    pre = Preprocessor.fit(train, *infer_columns(train, features))
    xn, xc = pre.transform(train)
    xnv, xcv = pre.transform(val)
    y, yv = train[target].to_numpy(), val[target].to_numpy()
    if classes is not None:
        y = np.searchsorted(classes, y)
        yv = np.searchsorted(classes, yv)
    return pre, (xn, xc, y, xnv, xcv, yv)


@pytest.fixture(scope="module")
def churn():  # type: ignore[no-untyped-def]
    return arrays(churn_frame(800), CHURN_FEATURES, "churned")


def cfg(**kw) -> TrainingConfig:  # type: ignore[no-untyped-def]
    return TrainingConfig(**{"max_epochs": 4, "batch_size": 128, "patience": 10, "num_threads": 1, "seed": 3, **kw})


def test_embedding_dims_and_architecture() -> None:
    assert [embedding_dim(c) for c in (2, 3, 10, 100)] == [1, 2, 5, 16]
    model = TabularMLP(5, [4, 40], [32, 16], 0.1, 3)
    assert [e.embedding_dim for e in model.embeddings] == [2, 16]
    out = model(torch.zeros(7, 5), torch.zeros(7, 2, dtype=torch.int64))
    assert out.shape == (7, 3)
    assert TabularMLP.from_arch(model.arch).arch == model.arch


def test_params_resolution() -> None:
    p = resolve_params({"hidden": "64-32", "max_epochs": 9}, cfg())
    assert p["hidden"] == [64, 32] and p["max_epochs"] == 9 and p["batch_size"] == 128
    assert resolve_params({"width": 64, "depth": 3}, cfg())["hidden"] == [64, 32, 16]
    assert resolve_params({}, cfg())["hidden"] == [128, 64]
    assert resolve_params({}, cfg(max_grad_norm=None))["max_grad_norm"] is None
    with pytest.raises(ConfigError, match="unknown torch_mlp params: lr_max"):
        resolve_params({"lr_max": 1}, cfg())


def test_binary_learns_and_reports_history(churn) -> None:  # type: ignore[no-untyped-def]
    pre, data = churn
    seen = []
    result = train_torch(*data, "binary", 2, {"hidden": [32]}, cfg(), CPU, on_epoch=seen.append,
                         cardinalities=pre.cardinalities)  # fmt: skip
    assert result.epochs_run == 4 and len(result.history) == 4 and [r["epoch"] for r in seen] == [1, 2, 3, 4]
    row = result.history[-1]
    for key in ("train_loss", "val_loss", "val_roc_auc", "lr", "epoch_s", "samples_per_s"):
        assert np.isfinite(row[key]), key
    assert seen[0]["max_epochs"] == 4
    assert result.val_metrics["roc_auc"] > 0.7
    assert result.samples_per_s > 0 and result.peak_memory_bytes > 0 and result.device.startswith("cpu")
    assert result.resumed_from_epoch is None and result.data_placement == "resident"
    proba = result.predict_output(data[3], data[4])
    assert proba.shape == (len(data[5]), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_lr_schedule_is_stepped_per_batch(churn) -> None:  # type: ignore[no-untyped-def]
    pre, data = churn
    result = train_torch(*data, "binary", 2, {"hidden": [8], "schedule": "cosine", "warmup_fraction": 0.1},
                         cfg(max_epochs=3), CPU)  # fmt: skip
    lrs = [r["lr"] for r in result.history]
    assert lrs[0] > lrs[1] > lrs[2]  # cosine decay after a short warmup, per batch
    assert lrs[2] < 1e-4


def test_same_seed_same_predictions(churn) -> None:  # type: ignore[no-untyped-def]
    _, data = churn
    a = train_torch(*data, "binary", 2, {"hidden": [16]}, cfg(max_epochs=2), CPU)
    b = train_torch(*data, "binary", 2, {"hidden": [16]}, cfg(max_epochs=2), CPU)
    c = train_torch(*data, "binary", 2, {"hidden": [16]}, cfg(max_epochs=2, seed=4), CPU)
    pa, pb, pc = (r.predict_output(data[3], data[4]) for r in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(pa, pc)


def test_early_stopping_restores_best_weights(churn) -> None:  # type: ignore[no-untyped-def]
    _, data = churn
    # A huge learning rate without a decaying schedule overshoots quickly; patience 1 stops it.
    result = train_torch(*data, "binary", 2, {"hidden": [16], "lr": 0.3, "schedule": "cosine", "warmup_fraction": 0.0},
                         cfg(max_epochs=30, patience=1), CPU)  # fmt: skip
    assert result.stopped_early and result.epochs_run < 30
    assert result.epochs_run == result.best_epoch + 1
    best_loss = min(r["val_loss"] for r in result.history)
    proba = result.predict_output(data[3], data[4])[:, 1]
    y = data[5]
    eps = 1e-12
    val_loss = -np.mean(y * np.log(proba + eps) + (1 - y) * np.log(1 - proba + eps))
    assert val_loss == pytest.approx(best_loss, abs=1e-5)
    assert result.history[result.best_epoch - 1]["val_loss"] == best_loss


def test_multiclass() -> None:
    classes = np.array(["high", "low", "mid"])
    pre, data = arrays(multiclass_frame(600), ["x", "z", "color"], "label", classes)
    result = train_torch(*data, "multiclass", 3, {"hidden": [32], "lr": 1e-2}, cfg(max_epochs=10, batch_size=64), CPU,
                         cardinalities=pre.cardinalities)  # fmt: skip
    proba = result.predict_output(data[3], data[4])
    assert proba.shape == (len(data[5]), 3)
    assert result.val_metrics["accuracy"] > 0.65
    assert result.val_metrics["log_loss"] < np.log(3)


def test_regression_trains_on_standardised_target() -> None:
    pre, data = arrays(regression_frame(600), ["a", "b", "kind"], "y")
    result = train_torch(*data, "regression", 0, {"hidden": [32], "lr": 1e-2}, cfg(max_epochs=10, batch_size=64), CPU)
    assert result.target_mean == pytest.approx(float(np.mean(data[2])))
    assert result.target_std == pytest.approx(float(np.std(data[2])))
    pred = result.predict_output(data[3], data[4])
    assert pred.shape == (len(data[5]),)
    assert result.val_metrics["rmse"] < 0.5 * float(np.std(data[5]))  # far better than the mean
    assert np.sqrt(np.mean((pred - data[5]) ** 2)) == pytest.approx(result.val_metrics["rmse"], rel=1e-5)


def test_non_finite_loss_is_a_training_error() -> None:
    _, data = arrays(regression_frame(200), ["a", "b", "kind"], "y")
    xn, xc, y, *val = data
    y = y.copy()
    y[3] = np.nan
    with pytest.raises(TrainingError, match="loss became nan"):
        train_torch(xn, xc, y, *val, "regression", 0, {"hidden": [4]}, cfg(max_epochs=1), CPU)


def test_streamed_placement_matches_resident(churn) -> None:  # type: ignore[no-untyped-def]
    _, data = churn
    a = train_torch(*data, "binary", 2, {"hidden": [16]}, cfg(max_epochs=2), CPU, data_placement="resident")
    b = train_torch(*data, "binary", 2, {"hidden": [16]}, cfg(max_epochs=2), CPU, data_placement="streamed")
    assert b.data_placement == "streamed"
    np.testing.assert_array_equal(a.predict_output(data[3], data[4]), b.predict_output(data[3], data[4]))


def test_autocast_and_grad_scaler_are_used_when_told(churn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The CUDA code path (autocast + GradScaler), exercised on the CPU with bf16."""
    _, data = churn
    dtypes = set()

    def hook(module, args, output):  # type: ignore[no-untyped-def]
        if isinstance(module, torch.nn.Linear) and module.training:
            dtypes.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        sink = CheckpointSink(LocalStore(tmp_path), "ck")
        amp = AutocastSettings(enabled=True, dtype=torch.bfloat16, use_grad_scaler=True)
        result = train_torch(*data, "binary", 2, {"hidden": [16]}, cfg(max_epochs=2), CPU, sink, amp=amp)
    finally:
        handle.remove()
    assert dtypes == {torch.bfloat16}
    assert np.isfinite(result.history[-1]["val_loss"])
    state = sink.load_latest()
    assert state is not None and state["scaler"]["scale"] > 0 and "_growth_tracker" in state["scaler"]


def _uninterrupted_and_resumed(data, tmp_path, **kw):  # type: ignore[no-untyped-def]
    params = {"hidden": [16], "dropout": 0.2}
    config = cfg(max_epochs=6, **kw)
    full = train_torch(*data, "binary", 2, params, config, CPU, CheckpointSink(LocalStore(tmp_path / "a"), "ck"))

    def stop_after_three(row):  # type: ignore[no-untyped-def]
        if row["epoch"] == 3:
            raise KeyboardInterrupt("simulated crash")

    sink = CheckpointSink(LocalStore(tmp_path / "b"), "checkpoints/run")
    with pytest.raises(KeyboardInterrupt):
        train_torch(*data, "binary", 2, params, config, CPU, sink, stop_after_three)
    resumed = train_torch(*data, "binary", 2, params, config, CPU, sink)
    return full, resumed, sink


def test_resume_after_crash_matches_uninterrupted_run(churn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, data = churn
    full, resumed, sink = _uninterrupted_and_resumed(data, tmp_path)
    assert resumed.resumed_from_epoch == 3 and full.resumed_from_epoch is None
    assert resumed.epochs_run == full.epochs_run == 6
    assert resumed.best_epoch == full.best_epoch
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    np.testing.assert_array_equal(full.predict_output(data[3], data[4]), resumed.predict_output(data[3], data[4]))
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in full.history]
    # Store layout: the pointer names the newest checkpoint; older ones are pruned.
    keys = sink.store.list("checkpoints/run/")
    assert keys == ["checkpoints/run/epoch-0005.pt", "checkpoints/run/epoch-0006.pt", "checkpoints/run/latest.json"]
    assert json.loads(sink.store.get_bytes("checkpoints/run/latest.json"))["epoch"] == 6
    # A finished run resumes straight to its result.
    again = train_torch(*data, "binary", 2, {"hidden": [16], "dropout": 0.2}, cfg(max_epochs=6), CPU, sink)
    assert again.resumed_from_epoch == 6 and again.epochs_run == 6
    np.testing.assert_array_equal(again.predict_output(data[3], data[4]), full.predict_output(data[3], data[4]))


def test_checkpoint_of_another_run_or_damaged_is_ignored(churn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, data = churn
    sink = CheckpointSink(LocalStore(tmp_path), "ck")
    train_torch(*data, "binary", 2, {"hidden": [8]}, cfg(max_epochs=1), CPU, sink)
    other = train_torch(*data, "binary", 2, {"hidden": [12]}, cfg(max_epochs=1), CPU, sink)
    assert other.resumed_from_epoch is None  # different architecture: not resumed
    path = sink.store.local_path("ck/epoch-0001.pt")
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    assert sink.load_latest() is None
    fresh = train_torch(*data, "binary", 2, {"hidden": [12]}, cfg(max_epochs=1), CPU, sink)
    assert fresh.resumed_from_epoch is None


def test_checkpoint_sink_clear(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sink = CheckpointSink(LocalStore(tmp_path), "x/y", keep_last=1)
    for epoch in (1, 2):
        sink.save(epoch, {"w": torch.ones(2) * epoch})
    assert sink.store.list("x/") == ["x/y/epoch-0002.pt", "x/y/latest.json"]
    assert torch.equal(sink.load_latest()["w"], torch.full((2,), 2.0))
    sink.clear()
    assert sink.store.list("x/") == [] and sink.load_latest() is None


def test_run_key_is_stable_and_short() -> None:
    assert run_key("data", {"b": 1, "a": 2}, 3) == run_key("data", {"a": 2, "b": 1}, 3)
    assert run_key("data", {"a": 1}, 3) != run_key("data", {"a": 1}, 4)
    assert len(run_key("x")) == 16


def test_predict_torch_in_chunks_matches_one_pass(churn) -> None:  # type: ignore[no-untyped-def]
    pre, data = churn
    model = TabularMLP(data[0].shape[1], pre.cardinalities, [8], 0.0, 1).eval()
    one = predict_torch(model, data[3], data[4], "binary", chunk=10_000)
    many = predict_torch(model, data[3], data[4], "binary", chunk=7)
    np.testing.assert_allclose(one, many, atol=1e-7)


def test_batch_size_adapts_to_the_data_unless_set() -> None:
    from refit.config import AUTO_BATCH_MAX, auto_batch_size

    assert TrainingConfig().batch_size is None
    assert [auto_batch_size(n) for n in (100, 1000, 10_000, 1_000_000, None)] == [8, 20, 200, AUTO_BATCH_MAX, 2048]
    assert resolve_params({}, TrainingConfig(), rows=1000)["batch_size"] == 20
    assert resolve_params({}, TrainingConfig(batch_size=512), rows=1000)["batch_size"] == 512  # the YAML's
    assert resolve_params({"batch_size": 64}, TrainingConfig(batch_size=512), rows=1000)["batch_size"] == 64


def test_small_data_learns_with_the_default_batch_size() -> None:
    """1,000 rows with the YAML's defaults: a fixed batch of 2048 gave one optimizer step per
    epoch and a model no better than the mean; the adapted batch gives 50."""
    pre, data = arrays(regression_frame(1200), ["a", "b", "kind"], "y")
    assert 800 <= len(data[2]) <= 1100
    result = train_torch(*data, "regression", 0, {"hidden": [32]}, TrainingConfig(max_epochs=8, num_threads=1), CPU)
    assert result.params["batch_size"] == len(data[2]) // 50
    assert result.val_metrics["rmse"] < 0.5 * float(np.std(data[5]))
