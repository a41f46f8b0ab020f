"""The drift-check flow against a real Prefect API, on generated production traffic."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from deployments.definitions import DRIFT_CHECK_HOURLY, build_deployments
from deployments.settings import DeploymentSettings
from flows.drift_check import DriftCheckParameters, drift_check
from refit import drift, monitoring, pipeline, recipe
from refit.config_loader import load_config
from refit.demo import write_production_data
from refit.io import open_store
from refit.io.layout import LAYOUT
from refit.model import load
from refit.policy import Ledger
from tests.flows.helpers import make_project

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def champion_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose store holds a champion (trained with the plain steps: no Prefect needed)."""
    folder = tmp_path_factory.mktemp("drift-project")
    config_path, store = make_project(folder, rows=8000)
    run = recipe.run_retrain(store, load_config(config_path))
    assert run.promotion is not None
    return folder


@pytest.fixture
def project(champion_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    folder = tmp_path / "p"
    shutil.copytree(champion_project, folder)
    monkeypatch.setenv("REFIT_STORE", str(folder / "store"))
    return folder / "refit.yaml", open_store(str(folder / "store"))


def traffic(config_path: Path, store, *, start: datetime, **kwargs) -> dict:  # type: ignore[no-untyped-def]
    cfg = load_config(config_path)
    model = load(store, "registry/churn/versions/1/artifact")
    return write_production_data(
        store,
        cfg,
        start=start.isoformat(),
        seed=21,
        model_version="1",
        predict=lambda df: pipeline.scores(model, df, "binary"),
        **kwargs,
    )


def test_no_drift_gives_no_retrain(project, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    config, store = project
    traffic(config, store, start=NOW - timedelta(hours=6), batches=6, rows_per_batch=800, drift="none")
    calls: list[dict] = []
    real = drift.check_drift

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append({"prediction_column": args[3], "report": kwargs["report"]})
        return real(*args, **kwargs)

    monkeypatch.setattr(drift, "check_drift", spy)
    result = drift_check(DriftCheckParameters(config_path=str(config), window_hours=24, as_of=NOW))
    # the flow runs the one drift entry point once (what benchmarks/drift.py times); the HTML of
    # the champion's first check is rendered from that same check's samples and thresholds
    assert calls == [{"prediction_column": "prediction", "report": False}]
    assert result.drift_detected is False and result.decision == "none"
    assert result.current_rows == 4800 and result.drift_share < 0.3
    assert result.event_emitted is False and result.retrain.startswith("no retrain")
    html = Path(result.report_uri)
    assert html.suffix == ".html" and 100_000 < html.stat().st_size < 1_000_000
    assert "refit decision: none" in html.read_text()
    # calibrated against nulls drawn once for this champion and stored for the next checks
    assert store.list(LAYOUT.drift_calibration("churn", 1, 0).rsplit("/", 1)[0] + "/")
    [key] = store.list(LAYOUT.drift_history("churn"))
    body = json.loads(store.get_bytes(key))
    assert body["decision"]["action"] == "none" and body["result"]["threshold_mode"] == "calibrated"
    # the next check decides the same: its evidence is the JSON, no second HTML
    again = drift_check(DriftCheckParameters(config_path=str(config), window_hours=24, as_of=NOW + timedelta(hours=1)))
    assert again.decision == "none" and again.report_uri.endswith(".json")
    assert len([k for k in store.list(LAYOUT.drift_reports("churn")) if k.endswith(".html")]) == 1


def test_covariate_drift_is_detected_and_triggers_once(project) -> None:  # type: ignore[no-untyped-def]
    config, store = project
    traffic(
        config, store, start=NOW - timedelta(hours=6), batches=6, rows_per_batch=800, drift="covariate", strength=1.5
    )
    result = drift_check(DriftCheckParameters(config_path=str(config), window_hours=24, as_of=NOW))
    assert result.drift_detected is True and result.drift_share >= 0.3
    assert {"monthly_charges", "tenure_months"} <= set(result.drifted_columns)
    assert result.decision == "trigger" and result.event_emitted is True
    assert "no listener started a retrain" in result.retrain  # nothing is served in this test
    # the same window again: de-duplicated; later windows (with new rows) inside the cooldown: suppressed
    again = drift_check(DriftCheckParameters(config_path=str(config), window_hours=24, as_of=NOW))
    assert again.decision == "suppress" and again.reason == "duplicate"
    cfg = load_config(config)
    reference = monitoring.load_reference(store, cfg)
    window = monitoring.load_capture_window(store, cfg, as_of=NOW, window_hours=24)
    report = monitoring.compute_drift_and_decay(store, cfg, reference, window.frame, window)
    outcomes = [
        monitoring.ask_governor(
            store,
            cfg,
            reference,
            report.__class__(
                **{**report.__dict__, "window_end": NOW + timedelta(minutes=10 * i), "evidence": f"rows-{i}"}
            ),
            now=NOW + timedelta(minutes=10 * i),
        )
        for i in range(1, 11)
    ]
    assert [o.action for o in outcomes] == ["suppress"] * 10
    assert {o.reason for o in outcomes} == {"cooldown"}
    decisions = [e.decision.action for e in Ledger(store, "churn").entries()]
    assert decisions.count("trigger") == 1 and len(decisions) == 12


def test_a_replay_of_past_weeks_decides_on_the_windows_clock(project) -> None:  # type: ignore[no-untyped-def]
    """Two drifted weeks of last month, checked today as of their own ends: each triggers. On the
    wall clock, the second came minutes after the first and sat inside its cooldown."""
    config, store = project
    ends = [NOW - timedelta(days=21), NOW - timedelta(days=14)]
    for end in ends:
        traffic(
            config,
            store,
            start=end - timedelta(hours=6),
            batches=6,
            rows_per_batch=400,
            drift="covariate",
            strength=1.5,
        )
    results = [drift_check(DriftCheckParameters(config_path=str(config), window_hours=24, as_of=end)) for end in ends]
    assert [r.drift_detected for r in results] == [True, True]
    assert [(r.decision, r.reason) for r in results] == [("trigger", "drift"), ("trigger", "drift")]
    entries = Ledger(store, "churn").entries()
    assert [e.decision.at for e in entries] == ends  # the governor's clock is the window's


def test_the_same_rows_checked_again_later_are_the_same_evidence(project) -> None:  # type: ignore[no-untyped-def]
    """With no cooldown, a re-run ten minutes later (other window bounds, the same rows) used to
    trigger a second retrain on the same evidence."""
    config, store = project
    raw = yaml.safe_load(config.read_text())
    raw["drift"]["cooldown_hours"] = 0
    config.write_text(yaml.safe_dump(raw))
    traffic(
        config, store, start=NOW - timedelta(hours=6), batches=6, rows_per_batch=400, drift="covariate", strength=1.5
    )
    first = drift_check(DriftCheckParameters(config_path=str(config), window_hours=24, as_of=NOW))
    later = drift_check(
        DriftCheckParameters(config_path=str(config), window_hours=24, as_of=NOW + timedelta(minutes=10))
    )
    assert first.decision == "trigger" and first.current_rows == later.current_rows == 2400
    assert (later.decision, later.reason) == ("suppress", "duplicate")


def test_concept_drift_triggers_on_decay_without_feature_drift(project) -> None:  # type: ignore[no-untyped-def]
    config, store = project
    start = NOW - timedelta(days=21)
    produced = traffic(
        config,
        store,
        start=start,
        batches=8,
        rows_per_batch=1500,
        drift="concept",
        segment={"region": "south"},
        strength=2.0,
    )
    assert produced["labels"] > 10_000
    result = drift_check(DriftCheckParameters(config_path=str(config), window_hours=24 * 22, as_of=NOW))
    assert result.drift_detected is False  # the inputs look the same ...
    assert result.decay_detected is True and "region=south" in result.decayed_segments  # ... the outcomes do not
    assert not any(s.startswith("region=") and s != "region=south" for s in result.decayed_segments)
    assert result.decision == "trigger" and result.labelled_rows > 10_000
    # what the user opens says why: the stored report names the decayed segment with its interval
    page = Path(result.report_uri).read_text()
    assert "refit decision: trigger" in page and "decay in region=south: roc_auc " in page
    assert "95% interval [" in page.split("decay in region=south: ", 1)[1].split("</b>", 1)[0]


def test_a_quiet_window_is_a_completed_check_that_says_no_data(project) -> None:  # type: ignore[no-untyped-def]
    """An hour without captures used to fail the hourly deployment with a traceback."""
    config, store = project
    state = drift_check(DriftCheckParameters(config_path=str(config), window_hours=1, as_of=NOW), return_state=True)
    assert state.is_completed()
    result = state.result()
    assert (result.decision, result.reason, result.current_rows) == ("none", "no-data", 0)
    assert result.detail.startswith(f"no captured requests for churn between {NOW - timedelta(hours=1):%Y-%m-%d %H:%M}")
    assert result.retrain == "no retrain: no captured requests in the window" and not result.event_emitted
    assert Ledger(store, "churn").entries() == []  # nothing was judged, nothing recorded


def test_drift_flow_validates_captures(project) -> None:  # type: ignore[no-untyped-def]
    config, store = project
    traffic(config, store, start=NOW - timedelta(hours=3), batches=3, rows_per_batch=500, drift="none")
    first = next((Path(store.uri) / "captures/churn/requests").rglob("*.parquet"))
    bad = pd.read_parquet(first)
    bad.loc[:, "prediction"] = 7.0  # a serving bug: probabilities out of range
    bad["request_id"] = "bad-" + bad["request_id"]
    bad.to_parquet(first.parent / "bad.parquet")
    # a share of bad requests under validation.max_invalid_capture_fraction (0.5): quarantined, and
    # the check goes on with the rest (training's 1% stopped every check of the window)
    result = drift_check(DriftCheckParameters(config_path=str(config), window_hours=24, as_of=NOW))
    assert any(k.startswith("quarantine/churn-captures/") for k in store.list("quarantine/"))
    assert result.current_rows == 1500 and not result.drift_detected
    # past it (most of the window bad: a serving fault) the check stops, naming the rule
    raw = yaml.safe_load(config.read_text())
    raw.setdefault("validation", {})["max_invalid_capture_fraction"] = 0.1
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(Exception, match="prediction"):
        drift_check(DriftCheckParameters(config_path=str(config), window_hours=24, as_of=NOW))


def test_labels_outside_the_contract_are_quarantined_not_judged(project) -> None:  # type: ignore[no-untyped-def]
    """A label training would quarantine (``churned`` is 0 or 1) is not fed to decay either: a
    labelling bug wrote 7 for 300 requests, which judged as a class used to make decay fire."""
    from refit.capture import CaptureWriter

    config, store = project
    traffic(config, store, start=NOW - timedelta(days=21), batches=6, rows_per_batch=800, drift="none")
    cfg = load_config(config)
    window = monitoring.load_capture_window(store, cfg, as_of=NOW, window_hours=24 * 22)
    labelled = window.labelled()
    assert len(labelled) > 1000
    ids = labelled["request_id"].iloc[:300].tolist()
    with CaptureWriter.for_config(store, cfg) as writer:
        writer.log_labels(ids, [7] * len(ids), label_time=NOW - timedelta(minutes=5))
    result = drift_check(DriftCheckParameters(config_path=str(config), window_hours=24 * 22, as_of=NOW))
    assert result.labelled_rows == len(labelled) - 300
    assert result.decay_detected is False and result.decision == "none"
    [rows] = [k for k in store.list("quarantine/churn-labels/") if k.endswith(".parquet")]
    quarantined = pd.read_parquet(Path(store.uri) / rows)
    assert sorted(quarantined["request_id"]) == sorted(ids) and set(quarantined["churned"]) == {7}
    assert quarantined["_refit_errors"].str.startswith("churned: isin").all(), quarantined["_refit_errors"][:3]
    assert quarantined["_refit_source"].str.contains("/captures/churn/labels/").all()
    # past validation.max_invalid_capture_fraction the check stops, naming the rule, and the
    # rows it stopped on are kept all the same
    raw = yaml.safe_load(config.read_text())
    raw.setdefault("validation", {})["max_invalid_capture_fraction"] = 0.01
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(Exception, match=r"churned isin.*rejected rows kept at .*/quarantine/churn-labels/"):
        drift_check(DriftCheckParameters(config_path=str(config), window_hours=24 * 22, as_of=NOW))
    assert len([k for k in store.list("quarantine/churn-labels/") if k.endswith(".parquet")]) == 2


def test_the_hourly_deployment_reads_the_window_from_the_config(project, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """drift-check-hourly declares no window of its own: its run reads drift.window_hours from the
    YAML, as ``refit drift`` does (the flow's own default of 24 h used to win)."""
    config, store = project
    raw = yaml.safe_load(config.read_text())
    raw["drift"]["window_hours"] = 72
    config.write_text(yaml.safe_dump(raw))
    # traffic of 60 to 57 hours ago only: inside the YAML's 72 h, outside the flow's old 24 h
    produced = traffic(config, store, start=NOW - timedelta(hours=60), batches=3, rows_per_batch=500, drift="none")
    for name in ("REFIT_DRIFT_WINDOW_HOURS", "REFIT_WINDOW_DAYS"):
        monkeypatch.delenv(name, raising=False)
    [hourly] = [
        d for d in build_deployments(DeploymentSettings(config_path=str(config))) if d.name == DRIFT_CHECK_HOURLY
    ]
    seen: list[int | None] = []
    real = monitoring.load_capture_window

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["window_hours"])
        return real(*args, **kwargs)

    monkeypatch.setattr(monitoring, "load_capture_window", spy)
    result = drift_check(**hourly.parameters)  # what a scheduled run of the deployment does
    assert seen == [72]
    assert result.current_rows == produced["rows"] == 1500  # 24 h would have found no capture at all
