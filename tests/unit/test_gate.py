"""The promotion gate: evidence of harm rejects, evidence of benefit promotes, else the champion stays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from refit.config import DatasetConfig, GateConfig
from refit.evaluation import (
    GateDecision,
    Outcome,
    PairedBootstrap,
    SegmentComparison,
    decide_gate,
    evaluate_gate,
)
from refit.evaluation.wording import signed

DATASET = DatasetConfig.model_validate(
    {
        "name": "churn",
        "sources": ["x.parquet"],
        "schema": "m:C",
        "target": "y",
        "task": "binary",
        "id_column": "id",
        "timestamp_column": "ts",
        "segments": [{"column": "region"}],
    }
)
GATE = GateConfig(bootstrap_resamples=200, seed=1)
REGIONS = ["east", "north", "south", "west"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _data(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    frame = pd.DataFrame({"region": np.array(REGIONS)[np.arange(n) % 4]})
    shared = rng.normal(size=n)
    champ = _sigmoid(shared + 1.0 * y + 0.6 * rng.normal(size=n))
    return y, frame, shared, champ


def test_identical_models_are_inconclusive() -> None:
    y, frame, _, champ = _data()
    d = evaluate_gate("binary", y, champ, champ.copy(), frame, GATE, DATASET)
    assert d.outcome == d.gate_outcome == Outcome.INCONCLUSIVE and not d.promote
    assert d.gain == 0.0 and d.ci_low == 0.0 and d.ci_high == 0.0
    assert all(s.gain == 0.0 and s.passed for s in d.segments)
    assert d.headline.startswith("INCONCLUSIVE: no clear change overall")


def test_clearly_better_candidate_is_promoted() -> None:
    y, frame, shared, champ = _data()
    cand = _sigmoid(shared + 1.6 * y + 0.3 * np.random.default_rng(1).normal(size=len(y)))
    d = evaluate_gate("binary", y, cand, champ, frame, GATE, DATASET)
    assert d.outcome == Outcome.PROMOTE and d.promote
    assert d.ci_low > 0 and d.candidate_value > d.champion_value
    assert [s.value for s in d.segments] == REGIONS and all(s.gated and s.passed for s in d.segments)
    assert d.headline.startswith("PROMOTED: better overall (+")


def test_better_overall_but_much_worse_in_one_segment_is_rejected() -> None:
    y, frame, shared, champ = _data()
    south = (frame["region"] == "south").to_numpy()
    noise = np.random.default_rng(2).normal(size=len(y))
    cand = _sigmoid(shared + np.where(south, 0.2, 1.8) * y + 0.3 * noise)
    d = evaluate_gate("binary", y, cand, champ, frame, GATE, DATASET)
    assert d.outcome == Outcome.REJECT
    assert d.ci_low > 0  # better overall ...
    failed = [c.scope for c in d.failed_checks]
    assert failed == ["region=south"]  # ... but worse for one segment, and only that one
    assert "but worse for region=south (-0." in d.headline and "tolerance 0.02" in d.headline
    assert any("region=south" in r for r in d.reasons)
    south_row = next(s for s in d.segments if s.value == "south")
    assert south_row.ci_high < -GATE.max_segment_regression and south_row.p_harm_adjusted == 0.0


def test_tiny_data_is_inconclusive_and_small_segments_are_not_gated() -> None:
    y, frame, shared, champ = _data(n=40, seed=3)
    cand = _sigmoid(shared + 1.2 * y + 0.6 * np.random.default_rng(4).normal(size=len(y)))
    d = evaluate_gate("binary", y, cand, champ, frame, GATE, DATASET)
    assert d.outcome == Outcome.INCONCLUSIVE
    assert d.ci_low < 0 < d.ci_high
    assert all(not s.gated and s.passed is None and "min_segment_size" in s.note for s in d.segments)
    assert all(c.passed is None for c in d.checks if c.name == "segment_regression")


def test_a_small_segment_is_reported_not_gated() -> None:
    y, frame, shared, champ = _data()
    frame.loc[:99, "region"] = "island"  # 100 rows < min_segment_size 200
    island = (frame["region"] == "island").to_numpy()
    cand = _sigmoid(shared + np.where(island, -1.0, 1.6) * y + 0.3 * np.random.default_rng(5).normal(size=len(y)))
    d = evaluate_gate("binary", y, cand, champ, frame, GATE, DATASET)
    row = next(s for s in d.segments if s.value == "island")
    assert row.n == 100 and not row.gated and row.passed is None and row.gain < -0.2
    assert d.outcome == Outcome.PROMOTE  # a disaster in an ungated segment does not block


def _comparison(segment: str, value: str, n: int, replicates: np.ndarray, diff: float) -> SegmentComparison:
    lo, hi = np.quantile(replicates, [0.025, 0.975])
    return SegmentComparison(
        segment=segment,
        value=value,
        n=n,
        candidate=0.8 + diff,
        champion=0.8,
        difference=diff,
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=0.5,
        n_valid=len(replicates),
        replicates=replicates,
    )


def test_holm_turns_a_borderline_rejection_into_a_promotion() -> None:
    # Three segments each with 2% of resampled gains within tolerance: p = 0.02 < alpha 0.025,
    # but Holm needs 0.025 / 3 for the smallest.
    borderline = np.r_[np.full(980, -0.05), np.full(20, 0.0)]
    overall = np.linspace(0.01, 0.03, 1000)
    boot = PairedBootstrap(
        metric="roc_auc",
        confidence=0.95,
        n_resamples=1000,
        seed=0,
        overall=_comparison("overall", "all", 9000, overall, 0.02),
        segments=[_comparison("region", r, 3000, borderline, -0.05) for r in ("a", "b", "c")],
    )
    with_holm = decide_gate(boot, GateConfig())
    without = decide_gate(boot, GateConfig(holm=False))
    assert [s.p_harm for s in with_holm.segments] == pytest.approx([0.02] * 3)
    assert [s.p_harm_adjusted for s in with_holm.segments] == pytest.approx([0.06] * 3)
    assert with_holm.outcome == Outcome.PROMOTE
    assert without.outcome == Outcome.REJECT
    assert [c.scope for c in without.failed_checks] == ["region=a", "region=b", "region=c"]


def test_leakage_guard_blocks_a_gain_too_good_to_be_true() -> None:
    y, frame, _, champ = _data()
    cand = np.where(y == 1, 0.9, 0.1) + np.random.default_rng(6).uniform(-0.05, 0.05, len(y))  # ~perfect
    d = evaluate_gate("binary", y, cand, champ, frame, GATE, DATASET)
    assert d.outcome == Outcome.REJECT
    assert [c.name for c in d.failed_checks] == ["leakage_guard"]
    assert "leakage" in d.headline and "max_improvement 0.2" in d.reasons[0]
    assert (
        evaluate_gate(
            "binary", y, cand, champ, frame, GATE.model_copy(update={"max_improvement": None}), DATASET
        ).outcome
        == Outcome.PROMOTE
    )


def test_a_significantly_worse_candidate_is_rejected_overall() -> None:
    y, frame, shared, champ = _data()
    cand = _sigmoid(shared + 0.6 * y + 0.6 * np.random.default_rng(7).normal(size=len(y)))
    d = evaluate_gate("binary", y, cand, champ, None, GATE, None)
    assert d.outcome == Outcome.REJECT and d.segments == []
    assert "overall_regression" in [c.name for c in d.failed_checks]
    assert d.headline.startswith("REJECTED: worse overall")


def test_first_run_only_value_thresholds_apply() -> None:
    y, frame, shared, _ = _data()
    cand = _sigmoid(shared + 1.2 * y)
    passed = evaluate_gate("binary", y, cand, None, frame, GateConfig(floor=0.6), DATASET)
    assert passed.outcome == Outcome.PROMOTE and passed.first_run
    assert [(c.name, c.passed) for c in passed.checks] == [("floor", True)]
    assert [s.value for s in passed.segments] == REGIONS and not any(s.gated for s in passed.segments)
    failed = evaluate_gate("binary", y, cand, None, frame, GateConfig(floor=0.95), DATASET)
    assert failed.outcome == Outcome.REJECT
    assert failed.checks[0].margin == pytest.approx(failed.candidate_value - 0.95)
    assert "below the floor 0.95" in failed.headline
    assert evaluate_gate("binary", y, cand, None, None, GateConfig(), None).outcome == Outcome.PROMOTE


def test_force_needs_a_reason_and_is_recorded() -> None:
    y, frame, shared, champ = _data()
    cand = _sigmoid(shared + 0.6 * y + 0.6 * np.random.default_rng(7).normal(size=len(y)))
    with pytest.raises(ValueError, match="force_reason"):
        evaluate_gate("binary", y, cand, champ, frame, GATE, DATASET, force=True)
    with pytest.raises(ValueError, match="force_reason"):
        evaluate_gate("binary", y, cand, champ, frame, GATE, DATASET, force=True, force_reason="  ")
    d = evaluate_gate(
        "binary",
        y,
        cand,
        champ,
        frame,
        GATE,
        DATASET,
        force=True,
        force_reason="hotfix INC-42: champion returns NaN for new plans",
    )
    assert d.outcome == Outcome.PROMOTE and d.promote and d.forced
    assert d.gate_outcome == Outcome.REJECT
    assert d.force_reason == "hotfix INC-42: champion returns NaN for new plans"
    assert d.headline.startswith("FORCED PROMOTION (reason: hotfix INC-42") and "REJECTED" in d.headline


def test_lower_is_better_metric_direction_is_inferred() -> None:
    """And worded as the metric's own change: ``+0.044 RMSE`` reads as the candidate's RMSE being
    higher, so the headline and the reasons turn the gain's sign and interval (they did not)."""
    rng = np.random.default_rng(8)
    y = rng.normal(100, 20, 3000)
    champ = y + rng.normal(0, 10, len(y))
    cand = y + rng.normal(0, 6, len(y))
    gate = GateConfig(primary_metric="rmse", bootstrap_resamples=200, max_improvement=None)
    d = evaluate_gate("regression", y, cand, champ, None, gate, None)
    assert not d.higher_is_better and d.outcome == Outcome.PROMOTE
    assert d.gain == pytest.approx(d.champion_value - d.candidate_value) and d.gain > 3
    worse = evaluate_gate("regression", y, champ, cand, None, gate, None)
    assert worse.outcome == Outcome.REJECT and worse.gain < 0 and worse.ci_high < 0
    rise = signed(worse.candidate_value - worse.champion_value)  # "+4.012"
    assert rise.startswith("+") and f"worse overall ({rise} RMSE, 95% CI [+" in worse.headline, worse.headline
    assert f"worse overall: {rise} RMSE, 95% CI [+" in " ".join(worse.reasons), worse.reasons
    assert f"better overall (-{rise[1:]} RMSE, 95% CI [-" in d.headline, d.headline


def test_decision_is_json_serialisable() -> None:
    y, frame, _, champ = _data(n=800)
    d = evaluate_gate("binary", y, champ, champ[::-1].copy(), frame, GATE, DATASET)
    again = GateDecision.model_validate_json(d.model_dump_json())
    assert again == d and again.outcome == d.outcome


def test_gate_config_checks_metric_and_direction() -> None:
    with pytest.raises(ValidationError, match="unknown primary_metric"):
        GateConfig(primary_metric="aucc")
    with pytest.raises(ValidationError, match="lower-is-better"):
        GateConfig(primary_metric="rmse", higher_is_better=True)
    assert GateConfig(primary_metric="rmse", higher_is_better=False).primary_metric == "rmse"
    with pytest.raises(ValueError, match="rmse does not judge a binary task"):
        evaluate_gate("binary", [0, 1], [0.2, 0.8], None, None, GateConfig(primary_metric="rmse"), None)


def test_holm_within_each_segmentation_rejects_a_clearly_worse_segment() -> None:
    """With dozens of segment values, Holm across all of them hides clear harm in one segment;
    within its own segmentation (the values a reader compares) the harm counts."""
    from refit.config import GateConfig
    from refit.evaluation.gate import _holm_by_family

    class Seg:
        def __init__(self, segment: str) -> None:
            self.segment = segment

    # one region value clearly harmful (p=0.002), 5 regions and 25 other crossing values
    pending = [(Seg("region"), True, "", 0.002)] + [(Seg("region"), True, "", 0.9)] * 4
    pending += [(Seg("region×plan"), True, "", 0.5)] * 25
    by_segmentation = _holm_by_family(pending, GateConfig())
    across_all = _holm_by_family(pending, GateConfig(holm_scope="all"))
    assert by_segmentation[0] == 0.002 * 5  # Holm among the 5 region values
    assert across_all[0] == 0.002 * 30  # Holm among all 30 values
    assert by_segmentation[0] <= 0.025 < across_all[0]
    no_holm = _holm_by_family(pending, GateConfig(holm=False))
    assert no_holm[0] == 0.002
