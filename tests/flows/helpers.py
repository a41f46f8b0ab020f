"""Small projects for flow tests: a config file and base data in a local store."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from refit.config_loader import load_config
from refit.demo import write_base_data
from refit.io import open_store

ROOT = Path(__file__).resolve().parents[2]

FAST_TRAINING: dict[str, Any] = {
    "seed": 3,
    "max_epochs": 3,
    "candidates": [{"family": "hist_gradient_boosting", "params": {"max_iter": [60]}, "budget": 1}],
    "smoke_sample_rows": 300,
    # the smoke test's latency rule is a production gate; its own tests pin it. Here a loaded CI
    # machine must not turn a gate decision into SMOKE_FAILED (speed lives in `make bench`)
    "smoke_max_ms_per_1k_rows": 1e6,
}


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_config(folder: Path, **overrides: Any) -> Path:
    """The demo config with fast training, plus overrides; returns its path."""
    raw = yaml.safe_load((ROOT / "refit.yaml").read_text())
    raw["training"] = FAST_TRAINING
    raw["gate"] = {**raw.get("gate", {}), "bootstrap_resamples": 300}
    # a promotion's drift calibration costs 10 to 30 s of null draws, and few of these tests run a
    # drift check after it (those draw lazily, as they did); its own tests switch it on
    raw["drift"] = {**raw.get("drift", {}), "calibrate_at_promotion": False}
    raw = deep_merge(raw, overrides)
    path = folder / "refit.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def make_project(folder: Path, rows: int = 6000, seed: int = 0, **overrides: Any) -> tuple[Path, Any]:
    """Config + base data under ``folder``; returns (config path, store)."""
    path = write_config(folder, **overrides)
    store = open_store(str(folder / "store"))
    write_base_data(store, load_config(path), rows=rows, seed=seed)
    return path, store
