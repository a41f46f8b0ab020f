"""The store is chosen once per run and passed down: a flow given ``store`` writes there, never to REFIT_STORE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.drift_check import DriftCheckParameters, drift_check
from flows.retrain import RetrainParameters, retrain
from refit import pipeline
from refit.config_loader import load_config
from refit.data import run_stamp
from refit.demo import write_production_data
from refit.io.layout import LAYOUT
from refit.registry import Registry
from tasks.common import open_run_store
from tests.flows.helpers import make_project

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def test_flows_read_and_write_the_store_they_are_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "project").mkdir()
    config_path, store = make_project(tmp_path / "project", rows=4000)
    elsewhere = tmp_path / "env-store"
    monkeypatch.setenv("REFIT_STORE", str(elsewhere))
    monkeypatch.chdir(tmp_path)  # and not ./.refit either
    given = store.uri
    before = set(store.list())

    result = retrain(RetrainParameters(config_path=str(config_path), store=given))
    assert result.store == given and result.outcome == "PROMOTE" and result.version == 1
    written = set(store.list()) - before
    run = LAYOUT.run("churn", result.run_id)
    assert {run.validated, *(run.split(name) for name in ("train", "validation", "test"))} <= written
    assert any(k.startswith(run.candidate + "/") for k in written)
    assert any(k.startswith(run.dossier) for k in written) and result.dossier["markdown"].startswith(given)
    assert any(k.startswith("quarantine/churn/") and k.endswith("summary.json") for k in written)
    assert Registry(store).champion("churn").version == 1
    assert result.artifact_uri.startswith(given)

    model = pipeline.load_version(store, Registry(store).champion("churn"))
    write_production_data(
        store,
        load_config(config_path),
        batches=3,
        rows_per_batch=400,
        start=(NOW - timedelta(hours=3)).isoformat(),
        seed=5,
        predict=lambda df: pipeline.scores(model, df, "binary"),
        model_version="1",
    )
    check = drift_check(DriftCheckParameters(config_path=str(config_path), store=given, window_hours=24, now=NOW))
    assert check.store == given and check.champion_version == 1 and check.current_rows == 1200
    [history] = store.list(LAYOUT.drift_history("churn"))
    check_id = history.rsplit("-", 1)[-1].removesuffix(".json")  # the report and its JSON share it
    assert check.report_uri == store.uri_for(LAYOUT.drift_report("churn", f"{run_stamp(NOW)}-{check_id}"))
    assert store.list(LAYOUT.governor_ledger("churn"))

    assert not elsewhere.exists(), "nothing may reach the REFIT_STORE of the environment"
    assert not (tmp_path / ".refit").exists()


def test_an_empty_store_parameter_falls_back_to_refit_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "project").mkdir()
    config_path, store = make_project(tmp_path / "project", rows=4000)
    monkeypatch.setenv("REFIT_STORE", str(tmp_path / "project" / "store"))
    result = retrain(RetrainParameters(config_path=str(config_path), store="", dry_run=True))
    assert result.store == store.uri and result.outcome == "PROMOTE"
    assert store.exists(LAYOUT.run("churn", result.run_id).validated)


def test_a_task_opens_exactly_the_store_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFIT_STORE", str(tmp_path / "env-store"))
    assert open_run_store(str(tmp_path / "given")).uri == str(tmp_path / "given")
    with pytest.raises(ValueError, match="store URI"):
        open_run_store("")  # never a quiet fallback to the environment inside a task
