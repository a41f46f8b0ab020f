"""Serving a scikit-learn model never imports torch, nor the scikit-learn it does not use (seconds per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from refit.io.local import LocalStore
from refit.model import read_artifact, save_model
from refit.registry import Registry
from refit.training.search import select_candidate
from tests.unit.training_frames import churn_frame, make_config, split

LOAD_AND_PREDICT = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    import refit.model
    assert "torch" not in sys.modules, "import refit.model imported torch"
    loaded = refit.model.load(sys.argv[1])  # a path, or a registry reference (REFIT_STORE)
    proba = loaded.predict_proba(pd.read_parquet(sys.argv[2]))[:, 1]
    # skops' default trust list walks every scikit-learn subpackage; refit never uses it
    unused = [m for m in ("sklearn.gaussian_process", "sklearn.mixture", "sklearn.neural_network") if m in sys.modules]
    # ... and names every ufunc by scanning every loaded module for it: skipped, and the helper restored
    import skops.io._trusted_types as trusted, skops.io._utils as utils
    ufuncs = len(trusted.SCIPY_UFUNC_TYPE_NAMES) + len(trusted.NUMPY_UFUNC_TYPE_NAMES)
    restored = utils.get_public_type_names.__qualname__ == "get_public_type_names"
    print(json.dumps({"torch": "torch" in sys.modules, "unused": unused, "ufuncs": ufuncs, "restored": restored,
                      "proba": proba.tolist()}))
    """
)


@pytest.mark.slow  # a fresh Python process
def test_loading_and_scoring_a_sklearn_model_does_not_import_torch(tmp_path: Path) -> None:
    train, val = split(churn_frame(400))
    config = make_config("churn", candidates=[{"family": "hist_gradient_boosting", "params": {"max_iter": 15}}])
    result = select_candidate(train, val, config, None, "", torch.device("cpu"))
    store = LocalStore(tmp_path / "store")
    uri = save_model(store, "m", result.best, config, result.trials)
    Registry(store).register("churn", artifact_files=read_artifact(store, "m"))
    Registry(store).promote("churn", 1)
    val.to_parquet(tmp_path / "val.parquet")
    for source in (uri, "churn@champion"):
        done = subprocess.run(
            [sys.executable, "-c", LOAD_AND_PREDICT, source, str(tmp_path / "val.parquet")],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "REFIT_STORE": str(tmp_path / "store")},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        out = json.loads(done.stdout)
        assert out["torch"] is False and out["unused"] == [] and out["ufuncs"] == 0 and out["restored"]
        np.testing.assert_allclose(out["proba"], result.best.predict_proba(val)[:, 1], atol=1e-9, rtol=0)
