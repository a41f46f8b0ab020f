"""A training process killed with SIGKILL resumes from its last checkpoint, to the same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

EPOCHS = 6

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import torch
    from refit.config import TrainingConfig
    from refit.io.local import LocalStore
    from refit.training import CheckpointSink
    from refit.training.torch_mlp import train_torch

    store_dir, out_path, sleep_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    rng = np.random.default_rng(0)
    n = 600
    x_num = rng.normal(size=(n, 4)).astype(np.float32)
    x_cat = rng.integers(0, 3, size=(n, 2)).astype(np.int64)
    y = ((x_num[:, 0] + (x_cat[:, 0] == 1) + rng.normal(scale=0.5, size=n)) > 0).astype(np.int64)
    cfg = TrainingConfig(max_epochs=EPOCHS, batch_size=64, patience=100, num_threads=1, seed=5)

    def on_epoch(row):
        print(f"epoch {row['epoch']}", flush=True)
        time.sleep(sleep_s)

    sink = CheckpointSink(LocalStore(store_dir), "checkpoints/probe")
    result = train_torch(x_num[:450], x_cat[:450], y[:450], x_num[450:], x_cat[450:], y[450:], "binary", 2,
                         {"hidden": [16], "dropout": 0.2}, cfg, torch.device("cpu"), sink, on_epoch,
                         cardinalities=[3, 3])
    proba = result.predict_output(x_num, x_cat)
    json.dump({"resumed_from_epoch": result.resumed_from_epoch, "epochs": result.epochs_run,
               "proba": proba[:, 1].tolist()}, open(out_path, "w"))
    print("done", flush=True)
    """
).replace("EPOCHS", str(EPOCHS))


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(script: Path, store: Path, out: Path, sleep_s: float = 0.0) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run(
        [sys.executable, str(script), str(store), str(out), str(sleep_s)],
        capture_output=True, text=True, timeout=300, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_to_the_same_weights(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    store = tmp_path / "store"

    proc = subprocess.Popen(
        [sys.executable, str(script), str(store), str(tmp_path / "killed.json"), "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    deadline = time.monotonic() + 240
    seen = 0
    assert proc.stdout is not None
    while seen < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("epoch "):
            seen = int(line.split()[1])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert seen >= 2, proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.json").exists()

    resumed = _run(script, store, tmp_path / "resumed.json")
    fresh = _run(script, tmp_path / "other-store", tmp_path / "fresh.json")

    assert resumed["resumed_from_epoch"] >= 2
    assert fresh["resumed_from_epoch"] is None
    assert resumed["epochs"] == fresh["epochs"] == EPOCHS
    np.testing.assert_allclose(resumed["proba"], fresh["proba"], atol=1e-6, rtol=0)
