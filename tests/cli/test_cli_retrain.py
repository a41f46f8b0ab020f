"""`refit retrain` and `refit drift` as a user types them: each runs a flow in a process of its own.

Apart from tests/cli/test_cli_models.py (whose commands run in this process) and one scope per
test (SPLIT_MODULES in tests/conftest.py): each test starts one to three `refit` processes, so
both xdist workers share them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refit import recipe
from refit.config_loader import load_config
from refit.io import open_store
from tests.cli.test_cli_models import run
from tests.flows.helpers import make_project


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    config, store = make_project(tmp_path, rows=5000)
    return tmp_path, config, store


@pytest.fixture
def champion_project(project):  # type: ignore[no-untyped-def]
    """``project`` with version 1 registered and champion (one test uses it: no module scope)."""
    folder, config, store = project
    assert recipe.run_retrain(store, load_config(config)).need("version").version == 1
    return folder, config, open_store(str(folder / "store"))


def test_retrain_and_drift_from_the_cli(project, prefect_api: str) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = project
    first = run(["retrain", "--json"], folder, api=prefect_api)
    assert first.returncode == 0, first.stderr[-2000:]
    result = json.loads(first.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "PROMOTE" and result["version"] == 1
    no_reason = run(["retrain", "--force"], folder)
    assert no_reason.returncode == 1 and "force=true needs a reason" in no_reason.stderr
    gen = run(
        [
            "generate",
            "production",
            "--batches",
            "3",
            "--rows-per-batch",
            "400",
            "--drift",
            "covariate",
            "--strength",
            "1.5",
        ],
        folder,
    )
    assert gen.returncode == 0, gen.stderr
    drift = run(["drift", "--window-hours", "400", "--json"], folder, api=prefect_api)
    assert drift.returncode == 3, drift.stderr[-2000:]  # the governor triggers: exit 3
    report = json.loads(drift.stdout.strip().splitlines()[-1])
    # the generator's covariate drift moves charges, tenure, support tickets and the channel mix
    moved = {"monthly_charges", "tenure_months", "support_tickets", "channel", "total_charges", "prediction"}
    assert report["drift_detected"] is True, report
    assert {"monthly_charges", "tenure_months"} <= set(report["drifted_columns"]) <= moved, report
    assert report["decision"] == "trigger" and "no listener started a retrain" in report["retrain"]
    history = json.loads(run(["drift", "history", "--json"], folder).stdout)
    assert [d["decision"]["action"] for d in history["decisions"]] == ["trigger"]


@pytest.mark.slow
def test_retrain_dry_run_refuses_a_tampered_champion(champion_project, tmp_path: Path, prefect_api: str) -> None:  # type: ignore[no-untyped-def]
    """The filed scenarios, as a user meets them: `refit retrain --dry-run` loads the champion.
    An edited preprocessing.json with its manifest recomputed no longer loads as version 1 (the
    registry's sha); a version with no recorded sha still gets the skops allow-list, and a
    DataSource gadget in it is refused without deleting the folder it names."""
    from refit.registry import Registry
    from tests.unit.test_model_trust import data_source_gadget, replant

    # the project's latency limit is generous: the smoke test must not stop the run before it loads the champion
    folder, _, store = champion_project
    artifact = store.root / "registry/churn/versions/1/artifact"
    pristine = {f.name: f.read_bytes() for f in artifact.iterdir()}

    prep = json.loads(pristine["preprocessing.json"])
    prep["centers"] = [c + 5.0 for c in prep["centers"]]
    replant(artifact, "preprocessing.json", json.dumps(prep).encode())
    out = run(["retrain", "--dry-run"], folder, api=prefect_api)
    assert out.returncode == 1  # (Prefect logs the failed task's traceback; refit's own error is one line)
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and last.endswith(
        "manifest.json does not match the sha256 recorded for it (by the registry for a version, by "
        "training for a run's candidate): the artifact was altered after it was written"
    )

    for name, data in pristine.items():
        (artifact / name).write_bytes(data)
    key = store.root / "registry/churn/versions/1/version.json"
    legacy = json.loads(key.read_text())
    del legacy["manifest_sha256"]  # registered before refit recorded it
    key.write_text(json.dumps(legacy))
    target = tmp_path / "precious"  # outside the project's store
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    estimator = Registry(store).load_model("churn", 1).fitted.estimator
    replant(artifact, "model.skops", data_source_gadget(estimator, target))
    out = run(["retrain", "--dry-run"], folder, api=prefect_api)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last == "error: model.skops references types refit does not trust: numpy.lib.npyio.DataSource"
    assert (target / "keep.txt").read_text() == "keep"


def test_train_and_retrain_use_the_capture_window_of_the_config(tmp_path: Path, prefect_api: str) -> None:
    """`refit train` and `refit retrain` join the same labelled captures: those of the last
    training.window_days of the YAML (train used to take all of them, retrain the last 30 days)."""
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from refit.demo import write_production_data

    config_path, store = make_project(tmp_path, rows=3000, training={"window_days": 35})
    cfg = load_config(config_path)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for days_ago, seed in ((50, 6), (20, 5)):
        for part in (tmp_path / "store" / "captures").rglob("requests/**/*.parquet"):
            older = pd.read_parquet(part)  # each call numbers its customers from the same offset
            older["customer_id"] += 1_000_000
            older.to_parquet(part)
        start = (hour - timedelta(days=days_ago)).isoformat()
        write_production_data(store, cfg, batches=2, rows_per_batch=400, start=start, seed=seed)

    def rows_within(days: float) -> int:
        options = recipe.RetrainOptions(window_days=days)
        return int(recipe.run_retrain(store, cfg, options, until="load-and-validate").need("data").rows)

    in_window, everything = rows_within(35), rows_within(10_000)
    assert 3000 < in_window < everything  # both batches carry labels: the window decides

    trained = run(["train", "--json"], tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    retrained = run(["retrain", "--dry-run", "--json"], tmp_path, api=prefect_api)
    assert retrained.returncode == 0, retrained.stderr[-2000:]
    train_data = json.loads(trained.stdout)["data"]
    retrain_data = json.loads(retrained.stdout.strip().splitlines()[-1])["data"]
    assert train_data["window_days"] == retrain_data["window_days"] == 35
    assert sum(train_data["rows"].values()) == sum(retrain_data["rows"].values()) == in_window
    assert train_data["fingerprint"] == retrain_data["fingerprint"]
