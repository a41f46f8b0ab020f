"""Tiny deterministic frames and configs for the training tests (no refit.datasets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from refit.config import DatasetConfig, GateConfig, PipelineConfig, TrainingConfig

CHURN_FEATURES = ["region", "plan", "age", "tenure_months", "monthly_charges", "support_tickets", "autopay"]


def churn_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Binary target, numeric + categorical + boolean features, NaNs in two columns."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east", "west"], size=n)
    plan = rng.choice(["basic", "standard", "premium"], size=n, p=[0.5, 0.3, 0.2])
    age = rng.uniform(18, 80, size=n)
    tenure = rng.integers(0, 72, size=n)
    charges = rng.gamma(4.0, 20.0, size=n)
    tickets = rng.poisson(1.5, size=n)
    autopay = rng.random(n) < 0.6
    logit = (
        -0.04 * tenure
        + 0.6 * tickets
        + 0.01 * charges
        - 0.8 * autopay
        + 1.2 * (plan == "basic")
        - 0.5 * (region == "west")
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    age[rng.random(n) < 0.1] = np.nan
    charges[rng.random(n) < 0.05] = np.nan
    region = region.astype(object)
    region[rng.random(n) < 0.05] = None
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "region": region,
            "plan": plan,
            "age": age,
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_tickets": tickets,
            "autopay": autopay,
            "churned": churned,
        }
    )


def multiclass_frame(n: int = 600, seed: int = 1) -> pd.DataFrame:
    """Three string classes driven by one numeric and one categorical feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    noise = rng.normal(scale=0.5, size=n)
    score = x + noise + (color == "red") * 1.5
    label = np.where(score < -0.3, "low", np.where(score < 1.0, "mid", "high"))
    return pd.DataFrame({"x": x, "z": rng.normal(size=n), "color": color, "label": label})


def regression_frame(n: int = 600, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.uniform(0, 10, size=n)
    kind = rng.choice(["p", "q"], size=n)
    y = 3.0 * a + 0.5 * b + (kind == "q") * 2.0 + rng.normal(scale=0.3, size=n) + 100.0
    b[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"a": a, "b": b, "kind": kind, "y": y})


def split(df: pd.DataFrame, frac: float = 0.75) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = int(len(df) * frac)
    return df.iloc[:cut].reset_index(drop=True), df.iloc[cut:].reset_index(drop=True)


def make_config(
    kind: str = "churn",
    candidates: list[dict[str, Any]] | None = None,
    gate: dict[str, Any] | None = None,
    **training: Any,
) -> PipelineConfig:
    """A PipelineConfig for one of the frames above, with small training defaults."""
    datasets = {
        "churn": dict(target="churned", task="binary", features=CHURN_FEATURES),
        "multiclass": dict(target="label", task="multiclass", features=["x", "z", "color"]),
        "regression": dict(target="y", task="regression", features=["a", "b", "kind"]),
    }
    dataset = DatasetConfig(
        name=f"test-{kind}",
        sources=["data/x.parquet"],
        schema="schemas.churn:ChurnTrainingSchema",
        id_column="customer_id",
        timestamp_column="event_time",
        **datasets[kind],
    )
    settings: dict[str, Any] = {"max_epochs": 4, "batch_size": 128, "patience": 3, "num_threads": 1, **training}
    if candidates is not None:
        settings["candidates"] = candidates
    metric = {"multiclass": "log_loss", "regression": "rmse"}.get(kind, "roc_auc")
    gate_cfg = GateConfig(**{"primary_metric": metric, **(gate or {})})
    return PipelineConfig(dataset=dataset, training=TrainingConfig(**settings), gate=gate_cfg)
