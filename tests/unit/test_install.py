"""The install: what `make` targets need, and the serving side's `refit[capture]` extra on its own.

The demo and the fast lane need Python packages only; the system packages the browser and
PostgreSQL tests use are installed by `make test` (as root) and otherwise named with the way to
install them. `refit[capture]` in a clean venv writes captures and serves a scikit-learn model
without torch, Prefect or Evidently installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from refit.capture import PREDICTION_COLUMN, read_captures
from refit.io.local import LocalStore
from refit.model import read_artifact, save_model
from refit.registry import Registry
from refit.training.search import select_candidate
from tests import browser, postgres
from tests.unit.training_frames import CHURN_FEATURES, churn_frame, make_config, split

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "prefect", "evidently")  # what the serving side must not need


def _make(*args: str, user: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    assert make is not None, "make is not installed (the README's commands are make targets)"
    prefix = ["runuser", "-u", user, "--"] if user else []
    return subprocess.run([*prefix, make, "-s", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_demo_and_the_fast_lane_never_install_system_packages() -> None:
    # -n -B: every recipe line make would run from scratch, run none
    for target in ("demo", "test-fast", "setup", "lint"):
        plan = _make("-n", "-B", target)
        assert plan.returncode == 0, plan.stderr
        assert "pip install" in plan.stdout  # the plan is the real one: it installs the project
        assert "apt-get" not in plan.stdout, f"make {target} would run apt-get:\n{plan.stdout}"
    plan = _make("-n", "-B", "test")
    assert plan.returncode == 0, plan.stderr
    assert "apt-get install" in plan.stdout  # make test (CI, as root) installs what its tests use


def test_without_root_system_deps_says_how_and_installs_nothing() -> None:
    # a Chromium path that is not there, as a user who is not root (nobody, when this runs as root)
    if os.geteuid() == 0:
        where = Path(tempfile.mkdtemp(prefix="refit-make-"))
        try:
            shutil.copy(ROOT / "Makefile", where / "Makefile")
            shutil.copy(ROOT / "constraints.txt", where / "constraints.txt")
            where.chmod(0o755)
            done = _make("system-deps", "CHROMIUM=/nonexistent/chromium", user="nobody", cwd=where)
        finally:
            shutil.rmtree(where)
    else:
        done = _make("system-deps", "CHROMIUM=/nonexistent/chromium")
    assert done.returncode == 0, done.stderr  # never fails the make that asked (make test goes on)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith("make: not installed: chromium")
    assert "run 'sudo make system-deps' (Debian: apt-get install chromium" in lines[0]


def test_a_missing_browser_or_postgres_fails_saying_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as caught:
        browser.chromium_path(str(tmp_path / "chromium"))
    assert str(caught.value) == (
        f"the browser tests need Chromium at {tmp_path / 'chromium'}, not installed: {browser.HOW_TO_ENABLE}"
    )
    assert "sudo make system-deps" in browser.HOW_TO_ENABLE and "apt-get install chromium" in browser.HOW_TO_ENABLE
    with pytest.raises(RuntimeError, match=r"need the server's initdb, not installed: run 'sudo make system-deps'"):
        postgres.pg_bin(path=str(tmp_path), debian=tmp_path)
    (tmp_path / "15" / "bin").mkdir(parents=True)
    (tmp_path / "15" / "bin" / "initdb").touch()
    assert postgres.pg_bin(path=str(tmp_path / "none"), debian=tmp_path) == tmp_path / "15" / "bin"


SERVE_AND_CAPTURE = textwrap.dedent(
    """
    import importlib.util, json, sys
    import pandas as pd
    import refit.model
    from refit.capture import CaptureWriter
    from refit.io import LocalStore

    artifact, frame, captures = sys.argv[1:4]
    features = pd.read_parquet(frame)
    by_path = refit.model.load(artifact)
    by_ref = refit.model.load("churn@champion")  # the registry in REFIT_STORE
    proba = by_path.predict_proba(features)[:, 1]
    with CaptureWriter(LocalStore(captures), "churn", label_column="churned") as writer:
        writer.log(features, proba, model_version="1", request_ids=[f"r{i}" for i in range(len(features))],
                   timestamps=pd.Timestamp("2026-11-30 12:00"))
        writer.log_labels([f"r{i}" for i in range(len(features))], (proba > 0.5).astype("int64"))
    stats = writer.stats
    print(json.dumps({
        "proba": proba.tolist(),
        "same_by_ref": bool((by_ref.predict_proba(features)[:, 1] == proba).all()),
        "written": [stats.rows_written, stats.labels_written],
        "imported": sorted(m for m in HEAVY if m in sys.modules),
        "installed": sorted(m for m in HEAVY if importlib.util.find_spec(m) is not None),
    }))
    """
)


def _copy_project(dest: Path) -> Path:
    """The files a wheel is built from (not .venv, .git or stores)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("src", "refit_cli", "flows", "tasks", "schemas", "deployments"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    return dest


@pytest.mark.slow  # builds a wheel and a venv, installs refit[capture] into it (about a minute)
def test_the_capture_extra_serves_a_sklearn_model_without_torch_prefect_or_evidently(tmp_path: Path) -> None:
    # the model, made here by refit's own training and save path, registered as the champion
    train, val = split(churn_frame(300))
    config = make_config("churn", candidates=[{"family": "hist_gradient_boosting", "params": {"max_iter": 10}}])
    result = select_candidate(train, val, config, None, "", torch.device("cpu"))
    store = LocalStore(tmp_path / "store")
    uri = save_model(store, "m", result.best, config, result.trials)
    Registry(store).register("churn", artifact_files=read_artifact(store, "m"))
    Registry(store).promote("churn", 1)
    features = val[CHURN_FEATURES].reset_index(drop=True)
    features.to_parquet(tmp_path / "features.parquet")

    # a clean venv with only refit[capture]: the wheel built here (no build isolation), its
    # dependencies at the versions constraints.txt pins
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    started = time.monotonic()
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
         str(_copy_project(tmp_path / "project"))],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("refit-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile",
         "-c", str(ROOT / "constraints.txt"), f"{wheel}[capture]"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    install_s = time.monotonic() - started

    started = time.monotonic()
    served = subprocess.run(
        [str(python), "-I", "-c", f"HEAVY = {HEAVY!r}\n{SERVE_AND_CAPTURE}", uri, str(tmp_path / "features.parquet"),
         str(tmp_path / "captures")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**env, "REFIT_STORE": str(tmp_path / "store")},
    )  # fmt: skip
    assert served.returncode == 0, served.stderr[-3000:]
    serve_s = time.monotonic() - started
    out = json.loads(served.stdout)
    assert out["installed"] == [] and out["imported"] == [], out
    np.testing.assert_allclose(out["proba"], result.best.predict_proba(val)[:, 1], atol=1e-9, rtol=0)
    assert out["same_by_ref"] is True
    assert out["written"] == [len(features), len(features)]

    # what the serving venv wrote is what the pipeline reads
    window = read_captures(
        LocalStore(tmp_path / "captures"), "churn", timestamp_column="event_time", request_id_column="request_id",
        target="churned",
    )  # fmt: skip
    assert window.rows == len(features)
    joined = window.labelled().sort_values("request_id", key=lambda s: s.str[1:].astype(int)).reset_index(drop=True)
    pd.testing.assert_frame_equal(joined[CHURN_FEATURES], features, check_dtype=False)
    np.testing.assert_allclose(joined[PREDICTION_COLUMN], out["proba"], atol=0, rtol=0)
    assert (joined["churned"].to_numpy() == (np.asarray(out["proba"]) > 0.5)).all()

    # the refit command is the pipeline's: here it says so in one line, not a traceback
    command = subprocess.run([str(venv / "bin" / "refit"), "--help"], capture_output=True, text=True, timeout=60)
    assert command.returncode == 1
    assert re.fullmatch(
        r"refit: the command needs the pipeline extra \((typer|prefect|torch)[^ ]* is not installed\): "
        r"pip install 'refit\[pipeline\]'\n",
        command.stderr,
    ), command.stderr
    print(f"refit[capture] venv: built and installed in {install_s:.0f} s, served and captured in {serve_s:.0f} s")
