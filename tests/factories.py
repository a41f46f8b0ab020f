"""Tiny deterministic frames that satisfy the churn contracts (for tests that must not depend on the generator)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def churn_rows(n: int = 200, seed: int = 0, id_offset: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": np.arange(id_offset, id_offset + n, dtype=np.int64),
            "event_time": pd.Timestamp("2026-09-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 86400 * 20, n), unit="s"),
            "region": rng.choice(["north", "south", "east", "west", "central"], n),
            "plan": rng.choice(["basic", "standard", "premium"], n),
            "channel": rng.choice(["organic", "paid_search", "social", "referral", "partner"], n),
            "age": rng.uniform(18, 90, n).round(0),
            "tenure_months": rng.integers(0, 120, n),
            "monthly_charges": rng.uniform(10, 150, n).round(2),
            "total_charges": rng.uniform(10, 5000, n).round(2),
            "support_tickets": rng.poisson(1.0, n),
            "days_since_last_login": rng.integers(0, 90, n),
            "sessions_per_week": rng.uniform(0, 20, n).round(1),
            "num_devices": rng.integers(1, 5, n),
            "payment_failures": rng.poisson(0.2, n),
            "discount_pct": rng.uniform(0, 0.3, n).round(2),
            "autopay": rng.random(n) < 0.6,
            "churned": (rng.random(n) < 0.2).astype(np.int64),
        }
    )
