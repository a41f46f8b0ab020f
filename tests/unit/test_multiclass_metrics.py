"""Multiclass metrics (macro one-vs-rest ROC AUC, log loss, accuracy) in the registry and in the
gate's paired bootstrap, checked against scikit-learn on the very resamples the bootstrap draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from refit import metrics as rm
from refit.evaluation import evaluate_gate, metric_bootstrap, paired_bootstrap
from refit.evaluation.bootstrap import _chunk_size
from refit.evaluation.kernels import _draw_weights

K = 3


def _probabilities(y: np.ndarray, signal: float, rng: np.random.Generator, decimals: int | None = None) -> np.ndarray:
    P = rng.dirichlet(np.ones(K), len(y))
    P[np.arange(len(y)), y] += signal
    P /= P.sum(axis=1, keepdims=True)
    if decimals is not None:  # coarse scores make ties; the rows still sum to one
        P[:, :-1] = np.floor(P[:, :-1] * 10**decimals) / 10**decimals
        P[:, -1] = 1.0 - P[:, :-1].sum(axis=1)
    return P


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    region = rng.choice(["north", "south"], n)
    return y, _probabilities(y, 0.6, rng, 2), _probabilities(y, 0.3, rng, 2), region


def _sk_macro(y: np.ndarray, P: np.ndarray, w: np.ndarray | None = None) -> float:
    return float(roc_auc_score(y, P, multi_class="ovr", average="macro", labels=list(range(K)), sample_weight=w))


def test_multiclass_metrics_match_sklearn_unweighted_and_weighted() -> None:
    y, cand, _, _ = _data()
    got = rm.compute_metrics("multiclass", y, cand)
    assert got["macro_roc_auc"] == pytest.approx(_sk_macro(y, cand), abs=1e-12)
    assert got["log_loss"] == pytest.approx(log_loss(y, cand, labels=list(range(K))), abs=1e-12)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, cand.argmax(axis=1)), abs=1e-12)
    W = np.random.default_rng(1).integers(0, 4, (len(y), 6)).astype(np.float64)
    values = rm.metric_values("macro_roc_auc", y, cand, W, task="multiclass")
    assert values == pytest.approx([_sk_macro(y, cand, W[:, j]) for j in range(6)], abs=1e-12)
    losses = rm.metric_values("log_loss", y, cand, W, task="multiclass")
    assert losses == pytest.approx([log_loss(y, cand, sample_weight=W[:, j]) for j in range(6)], abs=1e-12)


def test_macro_auc_averages_the_classes_a_segment_holds() -> None:
    """sklearn refuses a class missing from y_true; refit averages the classes present, so a
    segment without a rare class is judged on the others instead of not at all."""
    y, cand, _, _ = _data(200)
    keep = y != 2
    expected = np.mean([roc_auc_score(y[keep] == k, cand[keep, k]) for k in (0, 1)])
    assert rm.metric_value("macro_roc_auc", y[keep], cand[keep], task="multiclass") == pytest.approx(expected)
    assert rm.metric_value("macro_roc_auc", np.zeros(5, dtype=int), cand[:5], task="multiclass") is None


def test_paired_bootstrap_replicates_match_sklearn_on_the_drawn_resamples() -> None:
    """The bit-packed kernel, run per class on plain weights (``_OvrAucPlan``), gives sklearn's
    macro AUC on every resample, overall and per segment, ties included."""
    y, cand, champ, region = _data()
    n, resamples, seed = len(y), 24, 7
    assert resamples <= _chunk_size(n)  # one chunk: its weights are the first child seed's draw
    W = _draw_weights(np.random.SeedSequence(seed).spawn(1)[0], n, resamples)[:n].astype(np.float64)
    boot = paired_bootstrap(
        "multiclass", "macro_roc_auc", y, cand, champ, {"region": region}, n_resamples=resamples, seed=seed
    )
    assert boot.overall.candidate == pytest.approx(_sk_macro(y, cand), abs=1e-12)
    assert boot.overall.champion == pytest.approx(_sk_macro(y, champ), abs=1e-12)
    expected = [_sk_macro(y, cand, W[:, j]) - _sk_macro(y, champ, W[:, j]) for j in range(resamples)]
    assert boot.overall.replicates == pytest.approx(expected, abs=1e-12)
    for seg in boot.segments:
        rows = region == seg.value
        expected = [
            _sk_macro(y[rows], cand[rows], W[rows, j]) - _sk_macro(y[rows], champ[rows], W[rows, j])
            for j in range(resamples)
        ]
        assert seg.replicates == pytest.approx(expected, abs=1e-12)
        assert seg.ci_low is not None and seg.ci_high is not None and seg.ci_low <= seg.ci_high


@pytest.mark.parametrize("metric", ["log_loss", "accuracy"])
def test_paired_bootstrap_sum_metrics_match_sklearn_on_the_drawn_resamples(metric: str) -> None:
    y, cand, champ, _ = _data(300, seed=3)
    W = _draw_weights(np.random.SeedSequence(1).spawn(1)[0], len(y), 16)[: len(y)].astype(np.float64)
    boot = paired_bootstrap("multiclass", metric, y, cand, champ, n_resamples=16, seed=1)

    def sk(P: np.ndarray, w: np.ndarray) -> float:
        if metric == "log_loss":
            return float(log_loss(y, P, sample_weight=w, labels=list(range(K))))
        return float(accuracy_score(y, P.argmax(axis=1), sample_weight=w))

    assert boot.overall.replicates == pytest.approx([sk(cand, W[:, j]) - sk(champ, W[:, j]) for j in range(16)])


def test_one_models_bootstrap_for_decay_reads_the_same_kernel() -> None:
    y, cand, _, region = _data()
    reps = metric_bootstrap("multiclass", "macro_roc_auc", y, cand, {"region": region}, n_resamples=100)
    assert [r.scope for r in reps] == ["overall", "region=north", "region=south"]
    assert reps[0].point == pytest.approx(_sk_macro(y, cand))
    assert np.isfinite(reps[0].replicates).all() and 0.0 < np.std(reps[0].replicates) < 0.05


def test_the_gate_judges_multiclass_per_segment() -> None:
    from refit.config import GateConfig, SegmentSpec
    from tests.unit.training_frames import make_config

    y, cand, champ, region = _data(900, seed=4)
    gate = GateConfig(primary_metric="macro_roc_auc", min_segment_size=100, bootstrap_resamples=200)
    dataset = make_config("multiclass").dataset.model_copy(update={"segments": [SegmentSpec(column="region")]})

    decision = evaluate_gate("multiclass", y, cand, champ, pd.DataFrame({"region": region}), gate, dataset)
    assert decision.outcome == "PROMOTE" and decision.ci_low is not None and decision.ci_low > 0
    assert {s.scope for s in decision.segments if s.gated} == {"region=north", "region=south"}
    worse = evaluate_gate("multiclass", y, champ, cand, pd.DataFrame({"region": region}), gate, dataset)
    assert worse.outcome == "REJECT"


def test_align_classes_puts_every_model_in_one_order() -> None:
    labels = np.array(["bee", "ant", None, "wasp"], dtype=object)
    first = (["ant", "bee"], np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [0.1, 0.9]]))
    second = (["bee", "moth", "ant"], np.full((4, 3), 1 / 3))
    classes, y, (a, b) = rm.align_classes(labels, [first, second])
    assert classes == ["ant", "bee", "moth", "wasp"]  # first model's, the second's new one, then the data's
    assert np.array_equal(y[[0, 1, 3]], [1, 0, 3]) and np.isnan(y[2])
    assert np.array_equal(a[:, :2], first[1]) and not a[:, 2:].any()  # a class a model lacks: probability 0
    assert np.array_equal(b[:, [1, 2, 0]], second[1]) and not b[:, 3].any()
    ints, yi, _ = rm.align_classes(np.array([2, 0]), [([np.int64(0), np.int64(2)], np.eye(2))])
    assert ints == [0, 2] and np.array_equal(yi, [1, 0])  # a parquet int and a model.json int are one class


def test_bad_multiclass_inputs_are_one_line_errors() -> None:
    y, cand, champ, _ = _data(50)
    with pytest.raises(ValueError, match="class indices 0..K-1"):
        rm.metric_value("macro_roc_auc", np.array(["a"] * 50), cand, task="multiclass")
    with pytest.raises(ValueError, match=r"must lie in 0..2"):
        rm.metric_value("log_loss", np.full(50, 3), cand, task="multiclass")
    with pytest.raises(ValueError, match="different numbers of classes"):
        paired_bootstrap("multiclass", "accuracy", y, cand, champ[:, :2], n_resamples=10)
    with pytest.raises(ValueError, match="pr_auc does not judge a multiclass task"):
        paired_bootstrap("multiclass", "pr_auc", y, cand, champ, n_resamples=10)
