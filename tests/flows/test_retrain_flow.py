"""The retrain flow against a real Prefect API: first run, promotion, rejection, crash, force, dry run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.retrain import RetrainParameters, RetrainResult, retrain
from refit import pipeline, recipe
from refit.config_loader import load_config
from refit.io import open_store
from refit.io.frames import read_frame
from refit.registry import Registry
from tests.flows.helpers import make_project, write_config


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    config, store = make_project(tmp_path, rows=6000)
    monkeypatch.setenv("REFIT_STORE", str(tmp_path / "store"))
    return config, store


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RetrainResult]:
    """The flow's first run on a new project, once for this module: its folder and its result.

    Tests that need a champion start from a copy of this folder (``champion_project``).
    """
    folder = tmp_path_factory.mktemp("first-run")
    config, _ = make_project(folder, rows=6000)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFIT_STORE", str(folder / "store"))
        result = retrain(RetrainParameters(config_path=str(config), reason="first"))
    return folder, result


@pytest.fixture
def champion_project(first_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A copy of the first run's project, its version 1 the champion."""
    folder = tmp_path / "p"
    shutil.copytree(first_run[0], folder)
    monkeypatch.setenv("REFIT_STORE", str(folder / "store"))
    return folder / "refit.yaml", open_store(str(folder / "store"))


def test_first_run_without_champion_promotes_and_records_lineage(first_run) -> None:  # type: ignore[no-untyped-def]
    folder, result = first_run
    store = open_store(str(folder / "store"))
    assert result.outcome == "PROMOTE" and result.version == 1
    assert result.champion_before is None and result.champion_after == 1
    assert result.headline.startswith("PROMOTED: first model")
    reg = Registry(store)
    assert reg.aliases("churn") == {"champion": 1}
    version = reg.get_version("churn", 1)
    assert version.datasets["validated"].rows == 6000
    assert {"train", "validation", "test"} <= set(version.datasets)
    assert version.tags["trigger"] == "manual" and version.compared_with is None
    assert version.params["family"] == "hist_gradient_boosting"
    assert 0.6 < version.metrics["roc_auc"] < 0.9
    assert "region=south" in version.segment_metrics
    sample = reg.reference("churn", 1)
    assert len(sample) > 3000 and "monthly_charges" in sample.columns
    for uri in result.dossier.values():
        assert Path(uri).is_file()
    assert result.smoke_test["passed"] is True


def test_clearly_better_candidate_is_promoted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weak = {
        "training": {"candidates": [{"family": "linear", "params": {"C": [1e-5]}, "budget": 1}]},
        "gate": {"max_improvement": None},
    }
    config, store = make_project(tmp_path, rows=8000, **weak)
    monkeypatch.setenv("REFIT_STORE", str(tmp_path / "store"))
    first = retrain(RetrainParameters(config_path=str(config)))
    assert first.champion_after == 1
    strong = write_config(tmp_path, gate={"max_improvement": None})
    second = retrain(RetrainParameters(config_path=str(strong)))
    assert second.outcome == "PROMOTE", second.headline
    assert second.champion_before == 1 and second.champion_after == 2
    decision = Registry(store).get_version("churn", 2).decision
    assert decision["gain"] > 0 and decision["ci_low"] > 0
    history = Registry(store).history("churn")
    assert [(e.from_version, e.to_version) for e in history] == [(None, 1), (1, 2)]


@pytest.mark.parametrize("rival", ["strong", "weak-forced"])
def test_a_promotion_that_loses_the_race_is_judged_again_against_the_new_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rival: str
) -> None:
    """Two retrains promoting at once (two workers): while this run is between its gate (against
    v1) and its promotion, another run promotes v3. The compare-and-swap refuses this run's move,
    and its candidate is judged again against v3: a rival as good as it keeps the champion (the
    run completes, not promoted); a worse rival, promoted by force, is replaced from v3."""
    weak = {
        "training": {"candidates": [{"family": "linear", "params": {"C": [1e-5]}, "budget": 1}]},
        "gate": {"max_improvement": None},
    }
    weak_config, store = make_project(tmp_path, rows=8000, **weak)
    monkeypatch.setenv("REFIT_STORE", str(tmp_path / "store"))
    assert retrain(RetrainParameters(config_path=str(weak_config))).champion_after == 1
    weak_loaded = load_config(weak_config)
    strong = write_config(tmp_path, gate={"max_improvement": None})  # overwrites refit.yaml: the runs below read it

    original, raced = pipeline.promote_version, []

    def another_run_promotes_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not raced:  # this run's promotion: the rival registers v3 and promotes it from v1 first
            raced.append(True)
            if rival == "strong":
                other = recipe.run_retrain(store, load_config(strong))
            else:
                other = recipe.run_retrain(store, weak_loaded, recipe.RetrainOptions(force=True, reason="rival"))
            assert other.promotion is not None and other.need("version").version == 3
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "promote_version", another_run_promotes_first)
    state = retrain(RetrainParameters(config_path=str(strong)), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    reg = Registry(store)
    assert result.version == 2 and result.champion_before == 3, result
    assert [v.version for v in reg.list_versions("churn")] == [1, 2, 3]
    assert reg.get_version("churn", 2).compared_with == 1  # registered after its first gate
    moves = [(e.from_version, e.to_version) for e in reg.history("churn")]
    if rival == "strong":  # the same data, seed and recipe: no better than v3, so v3 stays
        assert result.outcome != "PROMOTE" and result.champion_after == 3, result.headline
        assert moves == [(None, 1), (1, 3)]
    else:
        assert result.outcome == "PROMOTE" and result.champion_after == 2, result.headline
        assert moves == [(None, 1), (1, 3), (3, 2)]
        assert "judged again against v3" in reg.history("churn")[-1].reason


def test_tiny_data_is_inconclusive_and_champion_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, store = make_project(tmp_path, rows=700, gate={"min_segment_size": 50})
    monkeypatch.setenv("REFIT_STORE", str(tmp_path / "store"))
    retrain(RetrainParameters(config_path=str(config)))
    second = retrain(RetrainParameters(config_path=str(config)))
    assert second.outcome == "INCONCLUSIVE", second.headline
    assert second.version == 2 and second.champion_after == 1
    assert Registry(store).aliases("churn")["champion"] == 1


def test_crash_between_register_and_promote_leaves_registry_consistent(champion_project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    config, store = champion_project
    assert Registry(store).aliases("churn") == {"champion": 1}

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("worker died between register and promote")

    monkeypatch.setattr(pipeline, "promote_version", crash)
    with pytest.raises(RuntimeError, match="worker died"):
        retrain(RetrainParameters(config_path=str(config), force=True, reason="crash test"))
    reg = Registry(store)
    assert [v.version for v in reg.list_versions("churn")] == [1, 2]
    assert reg.aliases("churn") == {"champion": 1}  # never pointing at a half-done promotion
    monkeypatch.undo()
    monkeypatch.setenv("REFIT_STORE", str(Path(config).parent / "store"))
    rerun = retrain(RetrainParameters(config_path=str(config), force=True, reason="rerun after crash"))
    assert rerun.version == 3 and rerun.champion_after == 3
    assert reg.aliases("churn") == {"champion": 3}
    event = reg.rollback("churn", reason="undo the forced promotion")
    assert (event.from_version, event.to_version) == (3, 1)
    assert reg.aliases("churn") == {"champion": 1}


def test_force_needs_reason_and_is_recorded(champion_project) -> None:  # type: ignore[no-untyped-def]
    config, store = champion_project
    with pytest.raises(ValidationError, match="force=true needs a reason"):
        RetrainParameters(config_path=str(config), force=True)
    forced = retrain(RetrainParameters(config_path=str(config), force=True, reason="hotfix for incident 42"))
    assert forced.forced is True and forced.champion_after == forced.version == 2
    assert forced.headline.startswith("FORCED PROMOTION (reason: hotfix for incident 42)")
    [_, event] = Registry(store).history("churn")
    assert event.forced is True and "hotfix for incident 42" in event.reason


def test_dry_run_registers_nothing(project) -> None:  # type: ignore[no-untyped-def]
    config, store = project
    result = retrain(RetrainParameters(config_path=str(config), dry_run=True))
    assert result.dry_run and result.version is None and result.outcome == "PROMOTE"
    assert Registry(store).list_models() == []
    candidate = read_frame(store, next(k for k in store.list("runs/churn/") if k.endswith("split/test.parquet")))
    assert len(candidate) > 500


def test_better_overall_but_worse_in_one_segment_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A candidate trained on data poisoned by concept drift in region=south (premium plan) is
    better overall than a small-data champion, but clearly worse for south: REJECT, champion stays."""
    from refit.datasets import generate_base, generate_production, to_training_frame
    from refit.io import open_store
    from refit.io.frames import write_frame

    config = write_config(
        tmp_path,
        split={"method": "time", "validation_fraction": 0.15, "test_fraction": 0.2},
        training={"candidates": [{"family": "hist_gradient_boosting", "params": {"max_iter": [100]}, "budget": 1}]},
        gate={"bootstrap_resamples": 1000},
    )
    store = open_store(str(tmp_path / "store"))
    monkeypatch.setenv("REFIT_STORE", str(tmp_path / "store"))
    base = generate_base(60_000, seed=0)
    write_frame(store, "datasets/churn/base/part-00000.parquet", base.iloc[-4000:])
    first = retrain(RetrainParameters(config_path=str(config)))
    assert first.champion_after == 1
    # an old import of drifted records joins the data: south x premium behaved differently then
    [batch] = generate_production(
        1,
        150_000,
        seed=5,
        start="2026-01-01",
        drift="concept",
        segment={"region": "south", "plan": "premium"},
        drift_strength=2.0,
    )
    poison = to_training_frame(batch)
    poison = poison[(poison["region"] == "south") & (poison["plan"] == "premium")]
    write_frame(store, "datasets/churn/base/part-00000.parquet", base)
    write_frame(store, "datasets/churn/base/part-00001.parquet", poison)
    second = retrain(RetrainParameters(config_path=str(config)))
    assert second.outcome == "REJECT", second.headline
    assert second.headline.startswith("REJECTED: better overall")
    assert "worse for region=south" in second.headline
    decision = Registry(store).get_version("churn", 2).decision
    assert decision["gain"] > 0 and decision["ci_low"] > 0  # better on average ...
    south = next(s for s in decision["segments"] if s["segment"] == "region" and s["value"] == "south")
    assert south["gain"] < -0.02 and south["passed"] is False  # ... but not for these customers
    others = [s for s in decision["segments"] if s["segment"] == "region" and s["value"] != "south"]
    assert all(s["passed"] for s in others)
    assert second.champion_after == 1 and Registry(store).aliases("churn") == {"champion": 1}


def test_bad_rows_are_quarantined_reported_and_stop_the_run_when_too_many(project) -> None:  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from refit.errors import ValidationFailedError
    from refit.io.frames import write_frame

    config, store = project
    base = read_frame(store, "datasets/churn/base/part-00000.parquet")
    bad = base.copy()
    bad["region"] = bad["region"].astype(object)
    bad.loc[:29, "region"] = "atlantis"  # 0.5%: quarantined, the run goes on
    write_frame(store, "datasets/churn/base/part-00000.parquet", bad)
    result = retrain(RetrainParameters(config_path=str(config)))
    assert result.data["quarantined"] == 30 and result.version == 1
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["churn-quarantine"])), limit=1
        )
    assert "atlantis" in str(artifact.data) and "region" in str(artifact.data)
    bad.loc[:199, "region"] = "atlantis"  # 3.3% > 1%: the run stops, the rows are kept
    write_frame(store, "datasets/churn/base/part-00000.parquet", bad)
    with pytest.raises(ValidationFailedError, match=r"200 of 6000 rows invalid .* region isin"):
        retrain(RetrainParameters(config_path=str(config)))
    assert Registry(store).list_versions("churn")[-1].version == 1
    kept = [k for k in store.list("quarantine/churn/") if k.endswith("rows.parquet")]
    assert len(read_frame(store, sorted(kept)[-1])) == 200
