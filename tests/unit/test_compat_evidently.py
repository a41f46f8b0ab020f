"""refit.compat.evidently: the shortcuts into Evidently's internals and its public API give the
same drift scores and verdicts.

The shortcuts (the ``evidently.legacy`` stat-test registry, reading the report's serialised
form) run while the installed Evidently is in the tested range; outside it every call takes the
public path (``Report`` of ``ValueDrift`` metrics, results looked up by metric id). Evidently is
slow, so the generated cases are few and small.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import refit.compat
from refit.compat import evidently as evidently_compat
from tests.lanes import repeats

NUM_METHODS = ["wasserstein", "ks", "psi", "kl_div", "jensenshannon", "anderson", "hellinger", "ed"]
CAT_METHODS = ["jensenshannon", "chisquare", "psi", "kl_div", "TVD", "hellinger", "z"]


@contextmanager
def public_path() -> Iterator[None]:
    """The installed Evidently reported as outside the tested range, for the duration."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(refit.compat, "installed_version", lambda distribution: "0.8.0")
        evidently_compat.internals_available.cache_clear()
        try:
            yield
        finally:
            evidently_compat.internals_available.cache_clear()


def test_tested_version_takes_the_shortcuts_and_any_other_does_not() -> None:
    evidently_compat.internals_available.cache_clear()
    assert evidently_compat.internals_available() is True
    with public_path():
        assert evidently_compat.internals_available() is False
    assert evidently_compat.internals_available() is True


@pytest.mark.parametrize(
    ("method", "kind"), [*((m, "numerical") for m in NUM_METHODS), *((m, "categorical") for m in CAT_METHODS)]
)
def test_default_threshold_is_the_same_on_both_paths(method: str, kind: str) -> None:
    shortcut = evidently_compat.default_threshold(method, kind)  # type: ignore[arg-type]
    with public_path():
        public = evidently_compat.default_threshold(method, kind)  # type: ignore[arg-type]
    assert public == shortcut
    assert 0 < shortcut < 1


@pytest.mark.parametrize(("method", "kind"), [("no_such_test", "numerical"), ("wasserstein", "categorical")])
def test_unknown_method_is_refused_on_both_paths(method: str, kind: str) -> None:
    with pytest.raises(ValueError):
        evidently_compat.default_threshold(method, kind)  # type: ignore[arg-type]
    with public_path(), pytest.raises(ValueError):
        evidently_compat.default_threshold(method, kind)  # type: ignore[arg-type]


@st.composite
def drift_cases(draw: st.DrawFn) -> dict[str, object]:
    """A reference and a current frame (one numerical and one categorical column, some values
    missing, the current one shifted or not) with a method and a threshold per column."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_ref, n_cur = draw(st.integers(30, 300)), draw(st.integers(30, 300))
    shift = draw(st.sampled_from([0.0, 0.1, 0.5, 2.0]))
    letters = ["a", "b", "c", "d"]
    skew = draw(st.sampled_from([[0.25] * 4, [0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7]]))

    def numbers(n: int, loc: float) -> pd.Series:
        values = rng.normal(loc, 1.0, n)
        values[rng.random(n) < 0.1] = np.nan
        return pd.Series(values, dtype="float64")

    def categories(n: int, p: list[float]) -> pd.Series:
        values = rng.choice(letters, n, p=p).astype(object)
        values[rng.random(n) < 0.1] = None
        return pd.Series(values, dtype=object)

    reference = pd.DataFrame({"x": numbers(n_ref, 0.0), "c": categories(n_ref, [0.25] * 4)})
    current = pd.DataFrame({"x": numbers(n_cur, shift), "c": categories(n_cur, skew)})
    methods = {"x": draw(st.sampled_from(NUM_METHODS)), "c": draw(st.sampled_from(CAT_METHODS))}
    kinds = {"x": "numerical", "c": "categorical"}
    thresholds = {
        c: draw(st.sampled_from([evidently_compat.default_threshold(methods[c], kinds[c]), 0.05, 0.2]))  # type: ignore[arg-type]
        for c in methods
    }
    return {"reference": reference, "current": current, "kinds": kinds, "methods": methods, "thresholds": thresholds}


def _same(a: dict[str, tuple[float, bool]], b: dict[str, tuple[float, bool]]) -> None:
    assert a.keys() == b.keys()
    for column in a:
        assert a[column][0] == pytest.approx(b[column][0], rel=1e-9, abs=1e-12), column
        assert a[column][1] is b[column][1], column


@settings(max_examples=repeats(full=8, fast=3), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=drift_cases())
def test_stat_tests_give_the_same_scores_and_verdicts_on_both_paths(case: dict[str, object]) -> None:
    shortcut = evidently_compat.run_stattests(**case)  # type: ignore[arg-type]
    with public_path():
        public = evidently_compat.run_stattests(**case)  # type: ignore[arg-type]
    _same(shortcut, public)


@settings(max_examples=repeats(full=4, fast=2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=drift_cases(), drift_share=st.sampled_from([0.3, 0.5, 1.0]))
def test_report_reads_the_same_scores_and_verdicts_on_both_paths(case: dict[str, object], drift_share: float) -> None:
    """The shortcut reads the report's serialised form, the public path looks each metric up by
    its id; both read what the direct stat tests compute. Only the shortcut also reads
    Evidently's drifted-column count, which agrees with the per-column verdicts."""
    args = {**case, "features": ["x"], "prediction": "c", "drift_share": drift_share}
    per_column, counted, html = evidently_compat.run_report(**args)  # type: ignore[arg-type]
    with public_path():
        public, public_counted, public_html = evidently_compat.run_report(**args)  # type: ignore[arg-type]
    _same(per_column, public)
    _same(per_column, evidently_compat.run_stattests(**case))  # type: ignore[arg-type]
    assert counted is not None and counted[0] == int(per_column["x"][1])
    assert public_counted is None
    assert "<html" in html.lower() and "<html" in public_html.lower()


def test_report_read_falls_back_to_the_public_lookup_when_the_serialised_form_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inside the tested range, a snapshot whose metric type strings are not the ones the
    shortcut reads (an Evidently patch release renaming them) is read the public way."""
    rng = np.random.default_rng(7)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 200)})
    current = pd.DataFrame({"x": rng.normal(1, 1, 200)})
    args = {
        "reference": reference,
        "current": current,
        "kinds": {"x": "numerical"},
        "methods": {"x": "wasserstein"},
        "thresholds": {"x": 0.1},
        "features": ["x"],
        "prediction": None,
        "drift_share": 0.5,
    }
    expected, counted, _ = evidently_compat.run_report(**args)  # type: ignore[arg-type]
    monkeypatch.setattr(evidently_compat, "_VALUE_DRIFT", "evidently:metric_v3:ValueDrift")
    renamed, renamed_counted, _ = evidently_compat.run_report(**args)  # type: ignore[arg-type]
    assert renamed == expected and expected["x"][1] is True
    assert counted == (1, 1.0) and renamed_counted is None


def test_drift_page_tests_each_column_at_most_twice_and_judges_as_the_public_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stored page is DataDriftPreset's own two widgets (dataset drift, drift table) and the
    prediction's drift: each column's stat test runs once per widget, not also in a ValueDrift
    metric whose plots the page never shows (the preset of 0.7 ran each test three times). Its
    verdicts are the public report's and the direct stat tests'."""
    import evidently.legacy.calculations.data_drift as data_drift
    import evidently.metrics.column_statistics as column_statistics

    rng = np.random.default_rng(3)
    reference = pd.DataFrame(
        {"x": rng.normal(0, 1, 400), "c": rng.choice(["a", "b"], 400).astype(object), "p": rng.random(400)}
    )
    current = pd.DataFrame(
        {"x": rng.normal(0.5, 1, 300), "c": rng.choice(["a", "b"], 300).astype(object), "p": rng.random(300)}
    )
    kinds = {"x": "numerical", "c": "categorical", "p": "numerical"}
    methods = {"x": "wasserstein", "c": "jensenshannon", "p": "wasserstein"}
    args = {
        "reference": reference,
        "current": current,
        "kinds": kinds,
        "methods": methods,
        "thresholds": {"x": 0.1, "c": 0.1, "p": 0.1},
        "features": ["x", "c"],
        "prediction": "p",
        "drift_share": 0.5,
    }
    tested: list[str] = []
    original = data_drift.get_one_column_drift

    def counted(*a: object, **kw: object) -> object:
        tested.append(str(kw.get("column_name")))
        return original(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(data_drift, "get_one_column_drift", counted)
    monkeypatch.setattr(column_statistics, "get_one_column_drift", counted)
    verdicts, html = evidently_compat.render_drift_report(**args)  # type: ignore[arg-type]
    assert sorted(tested) == ["c", "c", "x", "x"]  # the prediction's own metric tests it once more
    assert "<html" in html.lower() and "Dataset Drift is detected" in html
    with public_path():
        public, _ = evidently_compat.render_drift_report(**args)  # type: ignore[arg-type]
    _same(verdicts, public)
    _same(verdicts, evidently_compat.run_stattests(reference, current, kinds, methods, args["thresholds"]))  # type: ignore[arg-type]
    assert verdicts["x"][1] is True
