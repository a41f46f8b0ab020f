"""Optuna's TPE against random search at an equal trial budget, on the demo data.

One family (``hist_gradient_boosting``: cheap, five hyper-parameters worth tuning), one search
space, the demo's churn data split as a retrain splits it, encoded once; for each seed, both
searches run ``max(budgets)`` trials through refit's own ``search_candidates``. Each search's
first k trials are exactly what a budget of k would have run (random search draws its trials
in order from one seeded generator; TPE seeds trial N from the run seed and N, and sees only the
trials before it), so the best validation metric after k trials is the running best of one run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

#: The search space both searches draw from.
SPACE: dict[str, Any] = {
    "learning_rate": {"low": 0.005, "high": 0.5, "log": True},
    "max_iter": {"low": 10, "high": 100, "int": True},
    "max_leaf_nodes": {"low": 4, "high": 64, "int": True},
    "min_samples_leaf": {"low": 5, "high": 200, "int": True, "log": True},
    "l2_regularization": {"low": 1e-4, "high": 10.0, "log": True},
}
SEARCHES = ("optuna", "random")


def run(
    rows: int, config_path: str, seeds: int = 5, budgets: tuple[int, ...] = (10, 20, 40), data_seed: int = 0
) -> dict[str, Any]:
    """Best validation value of the gate's metric after each budget, per search and seed, and their means."""
    import torch

    from refit.config import CandidateSpec
    from refit.config_loader import load_config
    from refit.datasets import generate_base
    from refit.metrics import get_metric
    from refit.pipeline import split_codes
    from refit.splits import split_frame
    from refit.training.search import prepare_data, search_candidates

    base = load_config(config_path)
    frame = generate_base(rows, seed=data_seed)
    parts = split_frame(frame, split_codes(frame, base))  # the retrain's own split
    data = prepare_data(parts["train"], parts["validation"], base)
    metric = get_metric(base.gate.primary_metric)
    top = max(budgets)

    runs: dict[str, list[dict[str, Any]]] = {search: [] for search in SEARCHES}
    for seed in range(seeds):
        for search in SEARCHES:
            spec = CandidateSpec(family="hist_gradient_boosting", params=SPACE, search=search, budget=top)
            training = base.training.model_copy(update={"seed": seed, "candidates": [spec], "num_threads": 1})
            config = base.model_copy(update={"training": training})
            start = time.perf_counter()
            result = search_candidates(data, config, None, "", torch.device("cpu"))
            wall = time.perf_counter() - start
            values = [t.primary for t in result.trials]
            if len(values) != top or any(v is None for v in values):
                raise RuntimeError(f"{search} seed {seed}: {len(values)} trials, some without a value: {values}")
            best = [_running_best(values[:k], metric.higher_is_better) for k in budgets]
            fit_s = sum(t.train_s for t in result.trials)
            runs[search].append(
                {"seed": seed, "best": dict(zip(map(str, budgets), best, strict=True)), "wall_s": round(wall, 1),
                 "fit_s": round(fit_s, 1)}
            )  # fmt: skip
    means = {
        search: {str(k): statistics.fmean(r["best"][str(k)] for r in runs[search]) for k in budgets}
        for search in SEARCHES
    }
    return {
        "rows": rows,
        "train_rows": len(data.y),
        "validation_rows": len(data.y_val),
        "metric": metric.name,
        "higher_is_better": metric.higher_is_better,
        "family": "hist_gradient_boosting",
        "space": SPACE,
        "seeds": seeds,
        "budgets": list(budgets),
        "mean_best": means,
        "runs": runs,
    }


def _running_best(values: list[float], higher_is_better: bool) -> float:
    return max(values) if higher_is_better else min(values)
