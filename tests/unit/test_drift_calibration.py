"""Calibrated drift: scores equal Evidently's, thresholds from the reference's own null, Holm
across columns, column kinds, and the decisions they give (false alarms and power, small counts;
``benchmarks/drift.py`` measures the same at 200+ windows per size)."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from refit.config import DriftConfig, RetentionConfig
from refit.datasets import FEATURE_COLUMNS, generate_base, generate_production
from refit.drift import (
    MemoryNullCache,
    StoreNullCache,
    check_drift,
    plot_drift_history,
    prune_reports,
    read_drift_history,
)
from refit.drift import null as drift_null
from refit.io.layout import LAYOUT

COLUMNS = list(FEATURE_COLUMNS)


def _evidently_score(ref: pd.Series, cur: pd.Series, kind: str, method: str) -> float:
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
    test = get_stattest(ref, cur, column_type, method)
    with np.errstate(divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's chisquare on an unseen category
        return float(test(ref, cur, column_type, 0.1).drift_score)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_one_scorer_gives_evidentlys_scores(seed: int) -> None:
    """Observed and null scores come from score_counts; it is Evidently's stat test, number for number."""
    rng = np.random.default_rng(seed)
    cases = [
        ("numerical", pd.Series(rng.normal(0, 1, 3000)), pd.Series(rng.normal(0.1, 1.2, 700)), "wasserstein"),
        ("numerical", pd.Series(rng.gamma(2, 3, 3000)), pd.Series(rng.gamma(2, 3.3, 500)), "jensenshannon"),
        ("numerical", pd.Series(rng.normal(0, 1, 3000)), pd.Series(rng.normal(0.3, 1, 400)), "psi"),
        ("numerical", pd.Series(rng.integers(0, 15, 2000) * 1.0), pd.Series(rng.integers(0, 17, 300) * 1.0), "psi"),
    ]
    cats = pd.Series(rng.choice(list("abcde"), 3000, p=[0.5, 0.2, 0.2, 0.09, 0.01]), dtype=object)
    window = pd.Series(rng.choice(list("abcdf"), 300, p=[0.4, 0.3, 0.2, 0.05, 0.05]), dtype=object)
    cases += [("categorical", cats, window, m) for m in ("jensenshannon", "psi", "chisquare")]
    same = pd.Series(rng.choice(list("abc"), 400), dtype=object)
    cases.append(("categorical", cats, same, "chisquare"))  # a p-value that is not 0
    for kind, ref, cur, method in cases:
        ours = drift_null.score_counts(method, kind, drift_null.observed_counts(ref, cur, kind))[0]  # type: ignore[arg-type]
        assert ours == pytest.approx(_evidently_score(ref, cur, kind, method), rel=1e-9, abs=1e-12), (kind, method)


def test_p_values_and_thresholds_say_the_same() -> None:
    """Crossing the calibrated threshold is exactly a p-value at or below the level."""
    rng = np.random.default_rng(4)
    null = rng.gamma(2.0, 0.01, 999)
    for method in ("wasserstein", "chisquare"):
        values = null if method == "wasserstein" else rng.random(999)
        for level in (0.01, 0.002, 0.05):
            threshold = drift_null.threshold_at(values, level, method)
            for score in np.concatenate([values[:200], [threshold, values.max() * 1.01, 0.0]]):
                p = drift_null.p_value(float(score), values, method)
                crosses = score >= threshold if method == "wasserstein" else score < threshold
                assert crosses == (p <= level), (method, level, score)
    assert drift_null.p_value(10.0, null, "wasserstein") == 1 / 1000  # +1 smoothed: never 0
    assert drift_null.threshold_at(null, 0.0001, "wasserstein") == float("inf")  # too few draws to reject


def test_size_buckets_round_down_and_draws_let_holm_reject() -> None:
    assert [drift_null.size_bucket(n) for n in (1, 16, 17, 100, 165, 168, 20_000)] == [1, 16, 16, 91, 152, 152, 19_484]
    assert all(drift_null.size_bucket(n) <= n for n in range(1, 5000))
    draws = drift_null.draws_for(14, 0.01, 1000)
    assert 1 / (draws + 1) < 0.01 / 14


def test_low_cardinality_numbers_are_categories_and_a_constant_column_is_bounded() -> None:
    """A 0/1 flag and a count with few values are categories; a column constant in the reference
    scores the share of new values (0.2 here), not a normed distance over a zero spread (1000)."""
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {
            "holiday": np.zeros(2000, dtype=np.int64),
            "flag": (rng.random(2000) < 0.1).astype(np.int64),
            "devices": rng.integers(1, 6, 2000),
            "code": rng.integers(0, 4, 2000).astype(np.float64),
            "amount": rng.normal(50, 10, 2000),
        }
    )
    cur = ref.iloc[:500].copy()
    cur.loc[cur.index[:100], "holiday"] = 1
    for mode in ("calibrated", "fixed"):
        cfg = DriftConfig(threshold_mode=mode, categorical_columns=["code"])  # type: ignore[arg-type]
        result = check_drift(ref, cur, list(ref.columns), None, cfg, seed=0, report=False).result
        by = {c.column: c for c in result.columns}
        assert {c: by[c].kind for c in by} == {
            "holiday": "categorical",
            "flag": "categorical",
            "devices": "categorical",
            "code": "categorical",
            "amount": "numerical",
        }
        assert by["flag"].method == "jensenshannon" and by["amount"].method == "wasserstein"
        assert by["holiday"].method == drift_null.NEW_VALUE and by["holiday"].score == pytest.approx(0.2)
        assert by["holiday"].drifted and result.drifted_columns == ["holiday"], mode


def test_one_unseen_value_in_a_short_window_is_not_yet_drift() -> None:
    """A constant reference of 2,000 rows does not prove a value impossible: one new value in 150
    rows is within chance (add-one rate), two or more are not."""
    ref = pd.DataFrame({"holiday": np.zeros(2000, dtype=np.int64)})
    cur = ref.iloc[:150].copy()
    cur.iloc[0, 0] = 1
    one = check_drift(ref, cur, ["holiday"], None, DriftConfig(), seed=0, report=False).result
    cur.iloc[1, 0] = 1
    cur.iloc[2, 0] = 1
    three = check_drift(ref, cur, ["holiday"], None, DriftConfig(), seed=0, report=False).result
    assert not one.drift_detected and one.columns[0].p_value is not None and one.columns[0].p_value > 0.01
    assert three.drift_detected and three.columns[0].score == pytest.approx(3 / 150)


def _windows(rows: int, count: int, seed: int, **drift: object) -> list[pd.DataFrame]:
    batches = generate_production(count, rows, seed=seed, **drift)  # type: ignore[arg-type]
    return [b.features for b in batches]


@pytest.mark.slow  # a false-alarm rate: 100 calibrated checks (11 s), too long for make test-fast
def test_in_distribution_windows_rarely_alarm() -> None:
    """100 windows of 100 rows from the generator without drift, against a 3,000-row reference:
    calibrated at alpha 0.01 alarms in at most 2 (1 here)."""
    reference = generate_base(3000, seed=0)
    windows = _windows(100, 100, seed=5, drift="none")
    nulls = MemoryNullCache()
    alarms = [
        check_drift(reference, w, COLUMNS, None, DriftConfig(), seed=0, report=False, nulls=nulls).result
        for w in windows
    ]
    assert sum(r.drift_detected for r in alarms) <= 2
    assert {r.columns[0].window_bucket for r in alarms} == {91}


def test_fixed_thresholds_alarm_on_small_in_distribution_windows() -> None:
    """The old default (Evidently's fixed 0.1 distances and a 0.3 share) on the same kind of
    windows: most alarm, because a 100-row window differs from its reference by chance."""
    reference = generate_base(3000, seed=0)
    fixed = DriftConfig(threshold_mode="fixed")
    old = [check_drift(reference, w, COLUMNS, None, fixed, seed=0, report=False) for w in _windows(100, 6, seed=5)]
    assert sum(c.result.drift_detected for c in old) >= 4


@pytest.mark.slow  # a false-alarm rate: 20 calibrated checks
def test_reference_self_splits_rarely_alarm() -> None:
    """Windows cut from the reference's own population (another seed of the same generator)."""
    population = generate_base(6000, seed=3)
    reference, rest = population.iloc[:3000], population.iloc[3000:]
    nulls = MemoryNullCache()
    results = [
        check_drift(reference, rest.iloc[i : i + 150], COLUMNS, None, DriftConfig(), seed=1, report=False, nulls=nulls)
        for i in range(0, 3000, 150)
    ]
    assert sum(r.result.drift_detected for r in results) <= 1


def test_covariate_drift_at_strength_half_is_detected_at_1000_rows() -> None:
    reference = generate_base(5000, seed=0)
    nulls = MemoryNullCache()
    windows = _windows(1000, 3, seed=7, drift="covariate", drift_strength=0.5)
    results = [
        check_drift(reference, w, COLUMNS, None, DriftConfig(), seed=0, report=False, nulls=nulls).result
        for w in windows
    ]
    assert all(r.drift_detected for r in results)
    assert all({"tenure_months", "monthly_charges"} <= set(r.drifted_columns) for r in results)
    for r in results:
        for c in r.columns:
            assert c.p_value is not None and c.threshold is not None and c.level is not None
            assert c.drifted == (c.column in r.drifted_columns)
            if c.drifted:  # Holm's verdict, and the score beyond its calibrated threshold
                assert c.score is not None and c.score >= c.threshold and c.p_value <= c.level


def test_nulls_are_cached_per_champion_and_size_in_the_store(local_store, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    reference = generate_base(2000, seed=0)
    window = _windows(300, 1, seed=5, drift="none")[0]
    first = check_drift(
        reference,
        window,
        COLUMNS,
        None,
        DriftConfig(),
        seed=0,
        report=False,
        nulls=StoreNullCache(local_store, "churn", 3),
    ).result
    key = LAYOUT.drift_calibration("churn", 3, drift_null.size_bucket(300))
    assert local_store.exists(key) and key == "drift/churn/calibration/v3/n256.npz"
    calls: list[str] = []
    real = drift_null.null_scores
    monkeypatch.setattr(drift_null, "null_scores", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    again = check_drift(
        reference,
        window,
        COLUMNS,
        None,
        DriftConfig(),
        seed=0,
        report=False,
        nulls=StoreNullCache(local_store, "churn", 3),
    ).result
    assert calls == [] and again == first  # read back, not drawn again
    check_drift(
        reference,
        window,
        COLUMNS,
        None,
        DriftConfig(),
        seed=0,
        report=False,
        nulls=StoreNullCache(local_store, "churn", 4),
    )
    assert len(calls) == len(COLUMNS)  # another champion: its own nulls

    calls.clear()  # a window where one column has no values tests one column fewer ...
    sparse = window.assign(monthly_charges=np.nan)
    check_drift(
        reference,
        sparse,
        COLUMNS,
        None,
        DriftConfig(),
        seed=0,
        report=False,
        nulls=StoreNullCache(local_store, "churn", 3),
    )
    assert calls == []  # ... and still reads every other column's null back, not drawn again


def test_calibrated_methods_are_checked_with_one_clear_line() -> None:
    from refit.errors import ConfigError

    ref = pd.DataFrame({"x": np.random.default_rng(0).normal(0, 1, 500)})
    with pytest.raises(ConfigError, match=r"'ks' for numerical column 'x': threshold_mode calibrated scores"):
        check_drift(ref, ref, ["x"], None, DriftConfig(column_methods={"x": "ks"}), seed=0, report=False)


@pytest.mark.slow  # renders Evidently's HTML report (seconds)
def test_report_shows_the_calibrated_thresholds_and_agrees() -> None:
    """The stored page shows, per column, the result's own score, calibrated threshold and p-value
    (the numbers, in the column's row), and Evidently's report below it judges each column at that
    very threshold, so its verdicts are the result's."""
    from refit.evidence import drift_summary_rows, evidence_html
    from refit.monitoring import DriftReport

    reference = generate_base(3000, seed=0)
    window = _windows(800, 1, seed=7, drift="covariate", drift_strength=1.0)[0]
    check = check_drift(reference, window, COLUMNS, None, DriftConfig(), seed=0, report=False)
    result = check.result
    assert result.drift_detected
    end = datetime(2026, 10, 5, tzinfo=UTC)
    report = DriftReport(result, None, "", "", end - timedelta(hours=1), end, 800, 0, check=check)
    page = evidence_html(report, None)  # what render_report puts above Evidently's report
    rows = drift_summary_rows(report)
    assert [r["column"] for r in rows] == COLUMNS
    for c in result.columns:
        assert c.threshold is not None and c.p_value is not None and c.score is not None
        row = (
            f"<tr><td>{c.column}</td><td>{c.method}</td><td>{c.score:.4g}</td><td>{c.threshold:.4g}</td>"
            f"<td>{c.p_value:.4g}</td><td>{'yes' if c.drifted else ''}</td></tr>"
        )
        assert row in page, c.column
    # Evidently's own verdicts at those thresholds are the result's (its report agrees with the decision)
    plan = check.plan
    assert plan is not None
    from refit.compat import evidently as evidently_compat

    cols = [c.column for c in result.columns if c.method != drift_null.NEW_VALUE]
    thresholds = {c.column: float(c.threshold) for c in result.columns if c.threshold is not None}
    verdicts, counted, _ = evidently_compat.run_report(
        plan.reference[cols], plan.current[cols], plan.kinds, plan.methods, thresholds, cols, None, 0.5
    )
    for c in result.columns:
        score, drifted = verdicts[c.column]
        assert score == pytest.approx(c.score, rel=1e-9) and drifted == c.drifted, c.column
    assert counted is not None and counted[0] == result.n_drifted
    assert f"{result.n_drifted} of {result.n_columns} drifted" in page


# ------------------------------------------------------------------------------ storage


@pytest.mark.slow  # renders Evidently's HTML report twice (seconds)
def test_a_check_stores_under_1_mb_and_its_html_only_when_the_decision_changes(local_store) -> None:  # type: ignore[no-untyped-def]
    """JSON always (with the decision and the decay table); the HTML on a champion's first check and
    when the decision changes, with the decision and the calibrated thresholds above Evidently's
    report, and Evidently's 3.5 MB script stored once beside the reports."""
    from refit.decay import compute_decay
    from refit.monitoring import DriftReport, GovernorOutcome, record_drift_check

    config = _churn_config()  # its 500-row windows are under the 1,000-row sample either way
    reference = generate_base(3000, seed=0)
    nulls = MemoryNullCache()
    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.3).astype(float)
    decay = compute_decay(y, rng.random(600), {"overall": 0.8}, config.drift, "roc_auc")
    t0 = datetime(2026, 10, 5, 8, tzinfo=UTC)

    scores = np.clip(y * 0.3 + rng.random(600) * 0.7, 0.0, 1.0)
    performance = pd.DataFrame({"target": y, "prediction": scores})

    def report(window: pd.DataFrame, hour: int) -> DriftReport:
        check = check_drift(reference, window, COLUMNS, None, config.drift, seed=0, report=False, nulls=nulls)
        end = t0 + timedelta(hours=hour)
        return DriftReport(
            performance=performance,
            result=check.result,
            decay=decay,
            report_uri="",
            history_key="",
            window_start=end - timedelta(hours=1),
            window_end=end,
            current_rows=len(window),
            labelled_rows=600,
            check=check,
            champion_version=1,
        )

    quiet = GovernorOutcome(action="suppress", reason="cooldown", detail="in cooldown", fingerprint="a", ledger_seq=1)
    loud = GovernorOutcome(action="trigger", reason="signal", detail="decay in overall", fingerprint="b", ledger_seq=2)
    calm = _windows(500, 2, seed=5, drift="none")
    checks = [
        record_drift_check(local_store, config, report(calm[0], 0), quiet),
        record_drift_check(local_store, config, report(calm[1], 1), quiet),
        record_drift_check(local_store, config, report(calm[1], 2), loud),
    ]
    assert [c.report_stored for c in checks] == [True, False, True]
    assert checks[1].report_uri.endswith(".json") and checks[2].report_uri.endswith(".html")
    for c in checks:
        html_bytes = (
            local_store.size(c.report_uri.rsplit("/drift/", 1)[-1].join(["drift/", ""])) if c.report_stored else 0
        )
        assert local_store.size(c.history_key) + html_bytes < 1_000_000
    page = local_store.get_bytes(checks[2].report_uri.rsplit("/drift/", 1)[-1].join(["drift/", ""])).decode()
    assert checks[2].report_uri.endswith(f"/20261005T100000000000Z-{checks[2].history_key[-17:-5]}.html")
    # a second check of a window ending at the same time keeps its own report beside the first
    again = record_drift_check(local_store, config, report(calm[1], 2), loud, html=True)
    assert again.report_uri != checks[2].report_uri
    reports = [k for k in local_store.list(LAYOUT.drift_reports("churn")) if k.endswith(".html")]
    assert len(reports) == 3
    assert "refit decision: trigger" in page and "p-value" in page
    # the decayed segment named with its interval, in words, above the tables (the "Done when")
    o = decay.overall
    assert o.decayed and o.ci_low is not None and o.ci_high is not None
    # the interval is the drop's (what the decision compares with the tolerance), said next to the drop
    assert (
        f"decay in overall: roc_auc {o.current:.3g} (registered {o.registered:.3g}), drop {o.drop:.3g}, "
        f"95% interval [{o.ci_low:.3g}, {o.ci_high:.3g}], beyond the tolerance {o.tolerance:.3g}"
    ) in page
    assert o.ci_low is not None and o.ci_high is not None and o.drop is not None
    assert o.ci_low <= o.drop <= o.ci_high
    assert '<script src="evidently-' in page
    # Evidently's classification preset on the 600 labelled rows, framed in the same page
    from html import unescape

    from sklearn.metrics import roc_auc_score

    from refit.compat.evidently import run_performance_report

    values, _ = run_performance_report(performance, "binary", "target", "prediction")
    assert values["RocAuc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert "performance on the 600 labelled rows (Evidently)" in page
    framed = unescape(page.split('srcdoc="', 1)[1].split('"></iframe>', 1)[0])
    assert "<html" in framed.lower() and '<script src="evidently-' in framed
    scripts = [k for k in local_store.list(LAYOUT.drift_reports("churn")) if k.endswith(".js")]
    assert len(scripts) == 1 and local_store.size(scripts[0]) > 1_000_000
    body = json.loads(local_store.get_bytes(checks[2].history_key))
    assert body["decision"]["action"] == "trigger" and body["decision"]["reason"] == "signal"
    assert body["decay"]["overall"]["ci_low"] is not None and body["result"]["threshold_mode"] == "calibrated"
    assert all(c["p_value"] is not None for c in body["result"]["columns"])


def test_a_regression_window_with_a_far_off_label_renders_its_performance_report_quietly() -> None:
    """Evidently's regression preset bins the target and asks scikit-learn for each bin's R^2:
    one far-off label made a bin of one row, and the user's terminal got scikit-learn's
    UndefinedMetricWarning."""
    from sklearn.exceptions import UndefinedMetricWarning

    from refit.compat.evidently import run_performance_report

    rng = np.random.default_rng(0)
    target = np.append(rng.normal(30, 5, 200), 300.0)  # one delivery took five hours
    frame = pd.DataFrame({"target": target, "prediction": target + rng.normal(0, 2, len(target))})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        values, page = run_performance_report(frame, "regression", "target", "prediction")
    assert not [w for w in seen if issubclass(w.category, UndefinedMetricWarning)]
    assert values["RMSE"] > 0 and "<html" in page.lower()


def test_a_multiclass_window_gets_evidently_s_classification_preset() -> None:
    """The README promises Evidently's performance section for labelled windows; a multiclass
    champion's got none. Labels and scores as decay reads them (class indices, (n, K) in one
    class order) become class names and one probability column per class."""
    from sklearn.metrics import accuracy_score

    from refit.compat.evidently import performance_frame, run_performance_report

    rng = np.random.default_rng(3)
    classes = ["low", "medium", "high"]
    scores = rng.dirichlet([1.0, 1.0, 1.0], 300)
    y = np.array([rng.choice(3, p=row) for row in scores]).astype(float)  # decay's float indices
    frame = performance_frame("multiclass", y, scores, classes)
    assert frame is not None and list(frame.columns) == [*classes, "target", "prediction"]
    assert set(frame["target"]) <= set(classes) and (frame["prediction"] == np.array(classes)[scores.argmax(1)]).all()
    values, page = run_performance_report(frame, "multiclass", "target", "prediction")
    assert values["Accuracy"] == pytest.approx(accuracy_score(y.astype(int), scores.argmax(1)))
    assert "RocAuc" in values and "<html" in page.lower()
    # a class named like one of the two columns: no performance section (decay is unaffected)
    assert performance_frame("multiclass", y, scores, ["target", "b", "c"]) is None


def test_a_multiclass_window_missing_a_class_or_a_label_still_stores_its_report(local_store, caplog) -> None:  # type: ignore[no-untyped-def]
    """Evidently 0.7 refuses a multiclass window whose labels lack one of the classes (KeyError):
    the report is stored without its performance section, said in the log, and the check goes
    on. A missing label (a nullable target) is left out, as decay leaves it out (its NaN index
    became INT64_MIN and an IndexError)."""
    import logging

    from refit.compat.evidently import performance_frame
    from refit.monitoring import DriftReport, GovernorOutcome, record_drift_check

    rng = np.random.default_rng(4)
    scores = rng.dirichlet([1.0, 1.0, 1.0], 200)
    y = rng.integers(0, 2, 200).astype(float)  # "high" never among the labels
    y[7] = np.nan
    frame = performance_frame("multiclass", y, scores, ["low", "medium", "high"])
    assert frame is not None and len(frame) == 199 and set(frame["target"]) == {"low", "medium"}
    config = _churn_config()
    config = config.model_copy(update={"dataset": config.dataset.model_copy(update={"task": "multiclass"})})
    reference = generate_base(3000, seed=0)
    window = _windows(500, 1, seed=5, drift="none")[0]
    check = check_drift(reference, window, COLUMNS, None, config.drift, seed=0, report=False)
    end = datetime(2026, 10, 5, 8, tzinfo=UTC)
    report = DriftReport(
        result=check.result, decay=None, report_uri="", history_key="", window_start=end - timedelta(hours=1),
        window_end=end, current_rows=len(window), labelled_rows=199, check=check, champion_version=1,
        performance=frame,
    )  # fmt: skip
    quiet = GovernorOutcome(action="none", reason="no-drift", detail="calm", fingerprint="a", ledger_seq=0)
    with caplog.at_level(logging.WARNING, logger="refit.monitoring"):
        stored = record_drift_check(local_store, config, report, quiet, html=True)
    assert stored.report_stored and stored.report_uri.endswith(".html")
    page = local_store.get_bytes(stored.report_uri.rsplit("/drift/", 1)[-1].join(["drift/", ""])).decode()
    assert "refit decision: none" in page and "performance on the" not in page
    assert "no Evidently performance section in the drift report: KeyError" in caplog.text


def test_history_plot_reads_twenty_columns(local_store) -> None:  # type: ignore[no-untyped-def]
    from refit.drift import append_drift_history

    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(20)]
    reference = pd.DataFrame({n: rng.normal(0, 1, 800) for n in names})
    t0 = datetime(2026, 10, 5, tzinfo=UTC)
    nulls = MemoryNullCache()
    for i in range(6):
        window = pd.DataFrame({n: rng.normal(0.6 * (i == 5) * (n == "c3"), 1, 200) for n in names})
        cfg = DriftConfig(alpha=0.05)  # 1,000 null draws are enough for Holm over 20 columns at 0.05
        result = check_drift(reference, window, names, None, cfg, seed=0, report=False, nulls=nulls).result
        decision = {"action": "trigger" if result.drift_detected else "none", "reason": "test"}
        append_drift_history(local_store, "m", result, t0 + timedelta(days=i), extra={"decision": decision})
    history = read_drift_history(local_store, "m")
    assert len(history) == 120 and history["ratio"].notna().all()
    last = history[history["at"] == history["at"].max()]
    assert last.loc[last["column"] == "c3", "ratio"].iloc[0] > 1.0
    assert (history.loc[history["drifted"].astype(bool), "ratio"] >= 1.0).all()
    assert list(history.drop_duplicates("run_id")["decision"]) == ["none"] * 5 + ["trigger"]
    png = plot_drift_history(history, title="20 columns")
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    assert json.loads(local_store.get_bytes(local_store.list(LAYOUT.drift_history("m"))[0]))["decision"]["action"]


def test_reports_are_pruned_by_count_age_and_size(local_store) -> None:  # type: ignore[no-untyped-def]
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    for day in range(10):
        stamp = (t0 + timedelta(days=day)).strftime("%Y%m%dT%H%M%S%fZ")
        local_store.put_bytes(LAYOUT.drift_report("m", stamp), b"x" * 300_000)
    local_store.put_bytes(LAYOUT.drift_report_asset("m", "evidently-0.7.23.js"), b"js")
    now = t0 + timedelta(days=9)
    removed = prune_reports(local_store, "m", RetentionConfig(drift_reports=8, drift_reports_days=90), now)
    assert len(removed) == 2 and all("20261001" in k or "20261002" in k for k in removed)
    removed = prune_reports(local_store, "m", RetentionConfig(drift_reports_days=5.5), now)
    assert len(removed) == 2  # days 3 and 4 are more than 5.5 days before day 9
    removed = prune_reports(local_store, "m", RetentionConfig(drift_reports_max_mb=1.0), now)
    left = [k for k in local_store.list(LAYOUT.drift_reports("m")) if k.endswith(".html")]
    assert len(left) == 3 and len(removed) == 3  # 3 x 0.3 MB fit under 1 MB
    assert local_store.exists(LAYOUT.drift_report_asset("m", "evidently-0.7.23.js"))  # shared script stays


def test_a_column_crosses_its_threshold_exactly_when_holm_rejects_it() -> None:
    """Holm's step-down stops at the first p-value above its level; a later column whose own level
    it would pass must not be judged there, or its score crosses the stored threshold while the
    verdict says no drift (the second smallest here: 0.0045 <= 0.01 / 2 but Holm stopped at 0.004)."""
    from refit.evaluation.gate import holm_adjust, holm_levels

    p = [0.0045, 0.004, 0.5]
    levels = holm_levels(p, 0.01)
    assert levels == pytest.approx([0.01 / 3, 0.01 / 3, 0.01 / 3])
    rng = np.random.default_rng(0)
    for _ in range(500):
        m = int(rng.integers(1, 12))
        p = rng.uniform(0, 0.05, m) ** rng.uniform(0.5, 3)
        rejected = [a <= 0.01 for a in holm_adjust(list(p))]
        assert [pi <= lv for pi, lv in zip(p, holm_levels(list(p), 0.01), strict=True)] == rejected


def _unlucky_reference(n: int) -> dict[str, tuple[str, pd.Series]]:
    """One categorical and one numeric reference column of ``n`` rows whose own sampling error is
    at its 95th percentile (shares: Pearson chi-square 6.07 against the truth, 2 dof; mean:
    1.96 standard errors off), what one champion in twenty keeps."""
    shares = np.array([0.5, 0.35, 0.15])
    counts = np.array([1050, 650, 300]) * n // 2000
    plan = pd.Series(np.repeat(np.array(["a", "b", "c"], dtype=object), counts))
    x = np.random.default_rng(0).normal(size=n)
    x = (x - x.mean()) / x.std() + 1.96 / np.sqrt(n)
    assert (((counts - n * shares) ** 2) / (n * shares)).sum() == pytest.approx(6.07, abs=0.01)
    return {"plan": ("categorical", plan), "x": ("numerical", pd.Series(x))}


@pytest.mark.parametrize("column", ["plan", "x"])
def test_a_kept_reference_with_an_unlucky_sample_does_not_alarm_on_its_own_population(column: str) -> None:
    """Every check compares its window with the same reference sample, so that sample's own error is
    in every score. A two-sample null (both sides drawn afresh) is right only on average over
    references: against this reference (95th percentile error), 200 windows as large as it, drawn
    from the true population, crossed the 0.05 level in 24% (shares) and 18% (mean) of windows.
    The smaller reference-side draw keeps it at or below the level (5 and 1 here)."""
    kind, reference = _unlucky_reference(2000)[column]
    method = "jensenshannon" if kind == "categorical" else "wasserstein"
    null = drift_null.null_scores(method, kind, reference, 2000, 1000, np.random.default_rng(1))  # type: ignore[arg-type]
    rng = np.random.default_rng(7)
    alarms = 0
    for _ in range(200):
        if kind == "categorical":
            window = pd.Series(np.array(["a", "b", "c"], dtype=object)[rng.choice(3, 2000, p=[0.5, 0.35, 0.15])])
        else:
            window = pd.Series(rng.normal(size=2000))
        counts = drift_null.observed_counts(reference, window, kind)  # type: ignore[arg-type]
        score = float(drift_null.score_counts(method, kind, counts)[0])  # type: ignore[arg-type]
        alarms += drift_null.p_value(score, null, method) <= 0.05
    assert alarms <= 10, alarms  # 0.05 of 200 (the old null: 48 and 37)


def test_the_reference_side_of_a_null_is_drawn_so_spreads_add() -> None:
    """sqrt(1/m + 1/n_c) = 1/sqrt(n_c) + 1/sqrt(n_r): a third of the reference at equal sizes,
    little change for a small window."""
    for nr, nc in [(20_000, 20_000), (20_000, 100), (50_000, 1000), (3000, 91)]:
        m = drift_null.reference_draw_size(nr, nc)
        assert np.sqrt(1 / m + 1 / nc) == pytest.approx(1 / np.sqrt(nc) + 1 / np.sqrt(nr), rel=1e-3)
    assert drift_null.reference_draw_size(20_000, 20_000) == 6667


# ------------------------------------------------------------------------------ calibration at promotion


def _churn_config(**drift: object):  # type: ignore[no-untyped-def]
    from refit.config import DatasetConfig, PipelineConfig

    dataset = DatasetConfig(
        name="churn",
        sources=["x.parquet"],
        schema="schemas.churn:ChurnTrainingSchema",
        target="churned",
        task="binary",
        id_column="customer_id",
        timestamp_column="event_time",
    )
    return PipelineConfig(dataset=dataset, drift=DriftConfig(sample_size=1000, **drift))  # type: ignore[arg-type]


def _version(store, reference: pd.DataFrame) -> int:  # type: ignore[no-untyped-def]
    from refit.registry import Registry

    mv = Registry(store).register("churn", artifact_files={"m.bin": b"w"}, author="t", reference_sample=reference)
    return int(mv.version)


def test_a_check_right_after_promotion_draws_nothing(local_store, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """calibrate_version (the retrain's calibrate-drift step after promote-model) stores the kinds
    and the nulls of a full window; the champion's first check reads them and draws no null."""
    from refit.capture import CaptureWindow
    from refit.monitoring import Reference, calibrate_version, compute_drift_and_decay

    config = _churn_config()
    reference = generate_base(2000, seed=0)
    version = _version(local_store, reference)
    buckets = calibrate_version(local_store, config, version)
    assert buckets == [drift_null.size_bucket(1000)] == [861]
    assert local_store.exists(LAYOUT.drift_calibration("churn", version, 861))
    assert local_store.exists(LAYOUT.drift_kinds("churn", version))

    calls: list[str] = []
    real = drift_null.null_scores
    monkeypatch.setattr(drift_null, "null_scores", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    current = generate_production(1, 5000, seed=3, drift="none")[0].features
    end = datetime(2026, 10, 5, tzinfo=UTC)
    window = CaptureWindow(
        start=end - timedelta(hours=1),
        end=end,
        frame=current,
        origins=pd.Series(["t"] * len(current)),
        labels=pd.DataFrame({"request_id": pd.Series([], dtype=object), "churned": pd.Series([], dtype=float)}),
        request_id_column="request_id",
        target="churned",
    )
    champion = Reference(model="churn", version=version, frame=reference, registered_metrics={})
    report = compute_drift_and_decay(local_store, config, champion, current, window)
    assert calls == []  # every column's null was there: nothing drawn on the first check
    assert {c.window_bucket for c in report.result.columns} == {861}
    assert all(c.p_value is not None for c in report.result.columns)


def test_calibration_at_promotion_can_be_left_to_the_first_check(local_store) -> None:  # type: ignore[no-untyped-def]
    """drift.calibrate_at_promotion: false stores the version's column kinds and draws nothing."""
    from refit.monitoring import calibrate_version

    config = _churn_config(calibrate_at_promotion=False)
    version = _version(local_store, generate_base(2000, seed=0))
    assert calibrate_version(local_store, config, version) == []
    assert local_store.exists(LAYOUT.drift_kinds("churn", version))
    assert not local_store.exists(LAYOUT.drift_calibration("churn", version, drift_null.size_bucket(1000)))


def test_column_kinds_are_fixed_per_version_and_carried_to_the_next(local_store) -> None:  # type: ignore[no-untyped-def]
    """A count with 10 values in one version's reference is a category; the next version's
    reference has 12, and the column stays a category (the kind is stored with the version and
    inherited), in fixed mode as in calibrated mode, so its test never flips between versions."""
    from refit.monitoring import column_kinds

    rng = np.random.default_rng(0)
    first = pd.DataFrame({"devices": rng.integers(0, 10, 3000), "amount": rng.normal(0, 1, 3000)})
    second = pd.DataFrame({"devices": rng.integers(0, 12, 3000), "amount": rng.normal(0, 1, 3000)})
    for mode in ("calibrated", "fixed"):
        config = _churn_config(threshold_mode=mode)
        config = config.model_copy(update={"dataset": config.dataset.model_copy(update={"name": f"m-{mode}"})})
        cfg = config.drift
        name = config.dataset.name
        kinds_1 = column_kinds(local_store, config, name, 1, first, columns=["devices", "amount"])
        kinds_2 = column_kinds(local_store, config, name, 2, second, columns=["devices", "amount"])
        assert kinds_1 == kinds_2 == {"devices": "categorical", "amount": "numerical"}
        assert json.loads(local_store.get_bytes(LAYOUT.drift_kinds(name, 2))) == kinds_2
        # without the stored kinds, the rule alone flips the column on the second reference
        assert check_drift(second, second, ["devices"], None, cfg, seed=0, report=False).result.columns[0].kind == (
            "numerical"
        )
        held = check_drift(second, second, ["devices"], None, cfg, seed=0, report=False, kinds=kinds_2).result
        assert held.columns[0].kind == "categorical" and held.columns[0].method == "jensenshannon"


def test_a_reference_cache_gives_the_same_results_and_cleans_the_reference_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Many windows against one reference (a replay, the rates benchmark) do the reference side
    once: the same results as without the cache, and the reference's columns cleaned once."""
    from refit.drift import ReferenceCache, plan

    reference = generate_base(3000, seed=0)
    windows = _windows(300, 3, seed=5, drift="none") + _windows(300, 1, seed=6, drift="covariate", drift_strength=1.0)
    cfg = DriftConfig(sample_size=1000)
    plain = [
        check_drift(reference, w, COLUMNS, None, cfg, seed=0, report=False, nulls=MemoryNullCache()).result
        for w in windows
    ]
    cleaned: list[int] = []
    real_clean = plan._clean
    monkeypatch.setattr(plan, "_clean", lambda values, kind: cleaned.append(len(values)) or real_clean(values, kind))
    cache, nulls = ReferenceCache(), MemoryNullCache()
    cached = [
        check_drift(reference, w, COLUMNS, None, cfg, seed=0, report=False, nulls=nulls, reference_cache=cache).result
        for w in windows
    ]
    assert [r.model_dump() for r in cached] == [r.model_dump() for r in plain]
    assert cached[-1].drift_detected and not any(r.drift_detected for r in cached[:3])
    # the reference's 1,000 sampled rows cleaned once per column, each 300-row window every time
    assert cleaned.count(1000) == len(COLUMNS) and cleaned.count(300) == len(COLUMNS) * len(windows)
