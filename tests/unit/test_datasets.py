"""The demo-data generator: deterministic, on contract, and drifting exactly as it claims."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from refit.datasets import (
    FEATURE_COLUMNS,
    TRAINING_COLUMNS,
    Drift,
    ProductionBatch,
    churn_probability,
    generate_base,
    generate_production,
    to_capture_frame,
    to_training_frame,
)
from schemas.churn import CHANNELS, PLANS, REGIONS, ChurnCaptureSchema, ChurnTrainingSchema

SOUTH = {"region": "south"}
NUMERIC = [c for c in FEATURE_COLUMNS if c not in ("region", "plan", "channel", "autopay")]


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return generate_base(20_000, seed=7)


def production(
    drift: Drift = "none",
    n_batches: int = 4,
    segment: dict[str, str] | None = SOUTH,
    drift_strength: float = 1.0,
) -> list[ProductionBatch]:
    """4 x 5,000 rows from one seed: drift runs differ from "none" only by the drift."""
    return generate_production(n_batches, 5_000, seed=11, drift=drift, segment=segment, drift_strength=drift_strength)


def features_of(batches: list[ProductionBatch]) -> pd.DataFrame:
    return pd.concat([b.features for b in batches], ignore_index=True)


def labels_of(batches: list[ProductionBatch]) -> np.ndarray:
    return pd.concat([b.labels for b in batches], ignore_index=True)["churned"].to_numpy()


@pytest.fixture(scope="module")
def none_batches() -> list[ProductionBatch]:
    return production("none")


@pytest.fixture(scope="module")
def covariate_batches() -> list[ProductionBatch]:
    return production("covariate")


@pytest.fixture(scope="module")
def concept_batches() -> list[ProductionBatch]:
    return production("concept")


# --- base data -----------------------------------------------------------------------------


def test_same_seed_gives_identical_frames(base: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(generate_base(20_000, seed=7), base)


def test_different_seed_gives_different_values(base: pd.DataFrame) -> None:
    other = generate_base(20_000, seed=8)
    assert (other["monthly_charges"].to_numpy() != base["monthly_charges"].to_numpy()).mean() > 0.95
    assert (other["event_time"] != base["event_time"]).mean() > 0.99
    assert (other["region"] != base["region"]).mean() > 0.5


def test_output_does_not_depend_on_chunk_size_and_is_prefix_stable(base: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(generate_base(20_000, seed=7, chunk_rows=3_001), base)
    pd.testing.assert_frame_equal(generate_base(5_000, seed=7), base.iloc[:5_000])


def test_progress_bar_does_not_change_the_output(base: pd.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    shown = generate_base(2_000, seed=7, progress=True, chunk_rows=500)
    pd.testing.assert_frame_equal(shown, base.iloc[:2_000])
    assert "2.00k/2.00k" in capsys.readouterr().err


def test_base_passes_the_training_schema_without_coercion(base: pd.DataFrame) -> None:
    assert list(base.columns) == list(TRAINING_COLUMNS)
    validated = ChurnTrainingSchema.validate(base)
    pd.testing.assert_series_equal(validated.dtypes, base.dtypes)
    assert str(base["event_time"].dtype) == "datetime64[ns, UTC]"
    for column in ("region", "plan", "channel"):
        assert base[column].dtype == object
        assert {type(v) for v in base[column]} == {str}


def test_ids_and_default_window(base: pd.DataFrame) -> None:
    np.testing.assert_array_equal(base["customer_id"].to_numpy(), np.arange(20_000))
    end = pd.Timestamp("2026-10-01", tz="UTC")
    assert base["event_time"].min() >= end - pd.Timedelta(days=180)
    assert base["event_time"].max() < end
    # spread over the whole window, not bunched up
    assert base["event_time"].min() < end - pd.Timedelta(days=175)
    assert base["event_time"].max() > end - pd.Timedelta(days=5)


def test_custom_window_and_id_offset() -> None:
    df = generate_base(2_000, seed=1, start="2025-01-01", end=pd.Timestamp("2025-01-08", tz="UTC"), id_offset=500)
    assert df["event_time"].min() >= pd.Timestamp("2025-01-01", tz="UTC")
    assert df["event_time"].max() < pd.Timestamp("2025-01-08", tz="UTC")
    assert df["customer_id"].iloc[0] == 500 and df["customer_id"].iloc[-1] == 2_499
    only_start = generate_base(2_000, seed=1, start="2025-01-01")
    assert only_start["event_time"].max() > pd.Timestamp("2025-06-01", tz="UTC")
    assert only_start["event_time"].max() < pd.Timestamp("2025-06-30", tz="UTC")


def test_empty_frame_still_has_the_contract() -> None:
    empty = generate_base(0)
    assert list(empty.columns) == list(TRAINING_COLUMNS)
    assert len(ChurnTrainingSchema.validate(empty)) == 0


def test_base_distributions_look_like_the_spec(base: pd.DataFrame) -> None:
    assert 0.15 <= base["churned"].mean() <= 0.30
    assert 0.02 <= base["age"].isna().mean() <= 0.04
    assert 0.005 <= base["total_charges"].isna().mean() <= 0.015
    assert 0.012 <= base["sessions_per_week"].isna().mean() <= 0.028
    for column in ("tenure_months", "monthly_charges", "support_tickets", "discount_pct"):
        assert base[column].notna().all()
    # categories: every value occurs, shares unequal
    for column, values in (("region", REGIONS), ("plan", PLANS), ("channel", CHANNELS)):
        shares = base[column].value_counts(normalize=True)
        assert set(shares.index) == set(values)
        assert shares.max() > 1.5 * shares.min()
    # charges follow the plan, with rare large outliers
    by_plan = base.groupby("plan")["monthly_charges"].median()
    assert by_plan["basic"] < by_plan["standard"] < by_plan["premium"]
    outliers = (base["monthly_charges"] > 4 * by_plan["premium"]).mean()
    assert 0.0005 < outliers < 0.01
    # total charges track tenure * monthly charges
    ratio = base["total_charges"] / (base["tenure_months"] * base["monthly_charges"])
    assert ratio[base["tenure_months"] > 0].median() == pytest.approx(1.0, abs=0.02)
    assert 0.6 < (base["discount_pct"] == 0).mean() < 0.8
    assert 0.4 < base["autopay"].mean() < 0.8


def test_churn_has_non_linear_segment_structure(base: pd.DataFrame) -> None:
    rate = base.groupby("plan")["churned"].mean()
    assert rate["basic"] > rate["standard"] > rate["premium"]
    early_basic = base[(base["plan"] == "basic") & (base["tenure_months"] < 6)]["churned"].mean()
    early_premium = base[(base["plan"] == "premium") & (base["tenure_months"] < 6)]["churned"].mean()
    assert early_basic > early_premium + 0.15
    pair = (base["region"] == "south") & (base["channel"] == "paid_search")
    assert base[pair]["churned"].mean() > base[~pair]["churned"].mean() + 0.1
    # tenure is non-monotone: the renewal bump around 36 months beats 20-28 months
    tenure = base["tenure_months"]
    assert base[tenure.between(33, 39)]["churned"].mean() > base[tenure.between(20, 28)]["churned"].mean()


def test_labels_are_drawn_from_the_oracle_probability(base: pd.DataFrame) -> None:
    p = churn_probability(base)
    assert p.mean() == pytest.approx(base["churned"].mean(), abs=0.01)
    # calibrated in each decile, so the oracle is the truth and ranks well
    deciles = pd.qcut(p, 10, labels=False)
    observed = base.groupby(deciles)["churned"].mean().to_numpy()
    expected = pd.Series(p).groupby(deciles).mean().to_numpy()
    assert np.abs(observed - expected).max() < 0.05
    assert observed[-1] > 3 * observed[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_rows": -1}, "n_rows"),
        ({"n_rows": 10, "start": "2026-01-02", "end": "2026-01-01"}, "after start"),
        ({"n_rows": 10, "chunk_rows": 0}, "chunk_rows"),
    ],
)
def test_base_rejects_bad_arguments(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        generate_base(**kwargs)


# --- production ----------------------------------------------------------------------------


def test_production_batches_are_deterministic_and_prefix_stable(
    none_batches: list[ProductionBatch],
) -> None:
    again = production("none", n_batches=2)
    for a, b in zip(again, none_batches[:2], strict=True):
        pd.testing.assert_frame_equal(a.features, b.features)
        pd.testing.assert_frame_equal(a.labels, b.labels)
    other = generate_production(1, 5_000, seed=12)
    assert (other[0].features["monthly_charges"] != none_batches[0].features["monthly_charges"]).mean() > 0.95


def test_production_batches_have_the_promised_shape(none_batches: list[ProductionBatch]) -> None:
    start = pd.Timestamp("2026-10-01", tz="UTC")
    assert [b.index for b in none_batches] == [0, 1, 2, 3]
    for b in none_batches:
        assert b.start == start + b.index * pd.Timedelta(hours=1)
        assert list(b.features.columns) == [*FEATURE_COLUMNS, "request_id", "event_time"]
        assert list(b.labels.columns) == ["request_id", "churned", "label_time"]
        assert b.features["event_time"].min() >= b.start
        assert b.features["event_time"].max() < b.start + pd.Timedelta(hours=1)
        assert (b.labels["request_id"] == b.features["request_id"]).all()
        delay = b.labels["label_time"] - b.features["event_time"]
        assert delay.min() >= pd.Timedelta(days=1)
        assert delay.max() <= pd.Timedelta(days=60)
        assert set(b.labels["churned"].unique()) == {0, 1}
        assert b.labels["churned"].dtype == np.int64
    ids = pd.concat([b.features["request_id"] for b in none_batches])
    assert ids.is_unique
    assert ids.iloc[0] == "req-11-00000-0000000"
    assert none_batches[2].features["request_id"].iloc[17] == "req-11-00002-0000017"


def test_custom_start_and_interval() -> None:
    batches = generate_production(3, 100, start="2026-10-05", batch_interval=pd.Timedelta(minutes=10))
    assert batches[2].start == pd.Timestamp("2026-10-05 00:20", tz="UTC")
    assert batches[2].features["event_time"].max() < pd.Timestamp("2026-10-05 00:30", tz="UTC")


def test_capture_frame_passes_its_schema(none_batches: list[ProductionBatch]) -> None:
    batch = none_batches[0]
    blank = to_capture_frame(batch)
    ChurnCaptureSchema.validate(blank)
    assert blank["prediction"].isna().all()
    assert blank["churned"].isna().all() and blank["churned"].dtype == np.float64
    assert blank["model_version"].isna().all()

    scores = np.linspace(0, 1, len(batch.features))
    scored = ChurnCaptureSchema.validate(to_capture_frame(batch, prediction=scores, model_version="v3"))
    np.testing.assert_array_equal(scored["prediction"].to_numpy(), scores)
    assert (scored["model_version"] == "v3").all()
    # the batch itself is not modified
    assert "prediction" not in batch.features.columns
    with pytest.raises(ValueError, match="one value per row"):
        to_capture_frame(batch, prediction=scores[:-1])


def test_customer_ids_are_unique_across_base_and_production(
    base: pd.DataFrame, none_batches: list[ProductionBatch]
) -> None:
    produced = pd.concat([to_training_frame(b) for b in none_batches], ignore_index=True)
    assert list(produced.columns) == list(TRAINING_COLUMNS)
    assert produced["customer_id"].iloc[0] == 10_000_000
    assert produced["customer_id"].iloc[-1] == 10_000_000 + 4 * 5_000 - 1
    combined = ChurnTrainingSchema.validate(pd.concat([base, produced], ignore_index=True))
    assert combined["customer_id"].is_unique
    assert len(combined) == 40_000
    np.testing.assert_array_equal(produced["churned"].to_numpy(), labels_of(none_batches))


def test_no_drift_matches_the_base_distributions(base: pd.DataFrame, none_batches: list[ProductionBatch]) -> None:
    live = features_of(none_batches)
    for column in NUMERIC:
        assert ks_2samp(base[column].dropna(), live[column].dropna()).statistic < 0.03, column
    for column in ("region", "plan", "channel", "autopay"):
        shares = base[column].value_counts(normalize=True)
        live_shares = live[column].value_counts(normalize=True)
        assert (shares - live_shares).abs().max() < 0.02, column
    assert labels_of(none_batches).mean() == pytest.approx(base["churned"].mean(), abs=0.02)


def test_covariate_drift_moves_features_inside_the_segment_only(
    none_batches: list[ProductionBatch], covariate_batches: list[ProductionBatch]
) -> None:
    before, after = features_of(none_batches), features_of(covariate_batches)
    pd.testing.assert_series_equal(before["region"], after["region"])  # membership is stable
    inside = (after["region"] == "south").to_numpy()
    assert 0.15 < inside.mean() < 0.3

    # outside the segment nothing changes, not even one value
    pd.testing.assert_frame_equal(before[~inside], after[~inside])

    b, a = before[inside], after[inside]
    assert a["monthly_charges"].mean() > 1.5 * b["monthly_charges"].mean()
    assert a["tenure_months"].mean() < 0.6 * b["tenure_months"].mean()
    assert a["support_tickets"].mean() > b["support_tickets"].mean() + 1.0
    paid = (a["channel"] == "paid_search").mean() - (b["channel"] == "paid_search").mean()
    assert paid > 0.25
    for column in ("monthly_charges", "tenure_months", "support_tickets"):
        assert ks_2samp(b[column], a[column]).statistic > 0.3, column
    # the rest of the segment's features are left alone
    for column in ("age", "days_since_last_login", "discount_pct", "num_devices"):
        pd.testing.assert_series_equal(b[column], a[column])


def test_covariate_drift_keeps_p_y_given_x(covariate_batches: list[ProductionBatch]) -> None:
    live, y = features_of(covariate_batches), labels_of(covariate_batches)
    inside = (live["region"] == "south").to_numpy()
    p = churn_probability(live)
    # the segment churns a lot more ...
    assert y[inside].mean() > y[~inside].mean() + 0.15
    # ... and exactly as much as the unchanged label function predicts from the new features
    n = inside.sum()
    tolerance = 4 * np.sqrt(p[inside].mean() * (1 - p[inside].mean()) / n)
    assert abs(y[inside].mean() - p[inside].mean()) < tolerance
    high = inside & (p > 0.6)
    assert abs(y[high].mean() - p[high].mean()) < 0.05


def test_covariate_drift_leaves_the_segment_column_alone_when_it_is_the_channel() -> None:
    paid = {"channel": "paid_search"}
    before = features_of(production("none", n_batches=1, segment=paid))
    after = features_of(production("covariate", n_batches=1, segment=paid))
    pd.testing.assert_series_equal(before["channel"], after["channel"])
    inside = (after["channel"] == "paid_search").to_numpy()
    assert after[inside]["monthly_charges"].mean() > 1.5 * before[inside]["monthly_charges"].mean()


def test_covariate_drift_without_a_segment_moves_every_row(
    none_batches: list[ProductionBatch],
) -> None:
    everywhere = features_of(production("covariate", n_batches=1, segment=None))
    before = none_batches[0].features
    for region in REGIONS:
        rows = (before["region"] == region).to_numpy()
        assert everywhere[rows]["monthly_charges"].mean() > 1.5 * before[rows]["monthly_charges"].mean()


def test_concept_drift_changes_labels_inside_the_segment_only(
    none_batches: list[ProductionBatch], concept_batches: list[ProductionBatch]
) -> None:
    before, after = features_of(none_batches), features_of(concept_batches)
    pd.testing.assert_frame_equal(before, after)  # features unchanged, value for value
    y0, y1 = labels_of(none_batches), labels_of(concept_batches)
    inside = (after["region"] == "south").to_numpy()
    np.testing.assert_array_equal(y0[~inside], y1[~inside])
    assert y1[inside].mean() > y0[inside].mean() + 0.2
    # a label only ever flips to churned (the drift adds risk), and many do
    assert (y1[inside] >= y0[inside]).all()


def test_concept_drift_features_match_base(base: pd.DataFrame, concept_batches: list[ProductionBatch]) -> None:
    live = features_of(concept_batches)
    south_live = live[live["region"] == "south"]
    south_base = base[base["region"] == "south"]
    for column in ("monthly_charges", "tenure_months", "support_tickets", "sessions_per_week"):
        assert ks_2samp(south_base[column].dropna(), south_live[column].dropna()).statistic < 0.05, column


def test_concept_drift_breaks_the_old_relationship_in_the_segment(
    concept_batches: list[ProductionBatch],
) -> None:
    live, y = features_of(concept_batches), labels_of(concept_batches)
    inside = (live["region"] == "south").to_numpy()
    p = churn_probability(live)  # what a perfect model of the base data would say

    def log_loss(rows: np.ndarray) -> float:
        q = np.clip(p[rows], 1e-6, 1 - 1e-6)
        return float(-np.mean(y[rows] * np.log(q) + (1 - y[rows]) * np.log(1 - q)))

    assert y[inside].mean() > p[inside].mean() + 0.2
    assert abs(y[~inside].mean() - p[~inside].mean()) < 0.02
    assert log_loss(inside) > log_loss(~inside) + 0.3
    # autopay used to protect; in the drifted segment it no longer does
    autopay = live["autopay"].to_numpy()
    assert y[inside & autopay].mean() > y[inside & ~autopay].mean()
    assert y[~inside & autopay].mean() < y[~inside & ~autopay].mean()


def test_drift_strength_scales_the_effect(none_batches: list[ProductionBatch]) -> None:
    inside = (none_batches[0].features["region"] == "south").to_numpy()

    def segment_rate(strength: float) -> float:
        batches = production("concept", n_batches=1, drift_strength=strength)
        return float(labels_of(batches)[inside].mean())

    zero, half, full = segment_rate(0.0), segment_rate(0.5), segment_rate(1.0)
    assert zero == pytest.approx(labels_of(none_batches[:1])[inside].mean())
    assert zero + 0.05 < half < full - 0.05

    no_shift = production("covariate", n_batches=1, drift_strength=0.0)
    pd.testing.assert_frame_equal(no_shift[0].features, none_batches[0].features)
    weak = production("covariate", n_batches=1, drift_strength=0.25)[0].features
    strong = production("covariate", n_batches=1, drift_strength=1.0)[0].features
    base_mean = none_batches[0].features[inside]["monthly_charges"].mean()
    assert base_mean < weak[inside]["monthly_charges"].mean() < strong[inside]["monthly_charges"].mean()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"segment": {"colour": "red"}}, "segment column"),
        ({"segment": {"region": "mars"}}, "segment value"),
        ({"drift": "sideways"}, "drift must be"),
        ({"drift_strength": -1.0}, "drift_strength"),
        ({"batch_interval": pd.Timedelta(0)}, "batch_interval"),
        ({"n_batches": -1}, "n_batches"),
    ],
)
def test_production_rejects_bad_arguments(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    arguments = {"n_batches": 1, "rows_per_batch": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_production(**arguments)
