"""Samples/s of refit's trainer (``train_torch``) against a naive ``DataLoader`` loop training
the same model on the same rows.

    python -m benchmarks.torch_speed --rows 1000000 --epochs 1

The naive loop is what a first version usually looks like: ``DataLoader(TensorDataset(...),
batch_size=B, shuffle=True)`` (per-sample indexing and collation) with a ``loss.item()`` per
batch. Both train the same ``TabularMLP`` (same architecture, AdamW, batch size, gradient
clipping) on the churn demo rows after refit's preprocessing; both count only the training
epoch (no validation pass). On CUDA, ``train_torch`` is also timed on the GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

HIDDEN = [64, 32]
VALIDATION_SHARE = 0.15


def churn_arrays(rows: int, config_path: str) -> Any:
    """Train / validation arrays of ``rows`` demo rows, preprocessed as the pipeline does."""
    from refit.config_loader import load_config
    from refit.datasets import generate_base
    from refit.training.search import prepare_data

    config = load_config(config_path)
    df = generate_base(rows, seed=0)
    cut = int(rows * (1 - VALIDATION_SHARE))
    return prepare_data(df.iloc[:cut], df.iloc[cut:], config), config


def naive(
    x_num: np.ndarray, x_cat: np.ndarray, y: np.ndarray, cards: list[int], params: dict[str, Any], epochs: int
) -> float:
    """Samples/s of the textbook loop."""
    from refit.training.torch_net import TabularMLP

    torch.manual_seed(0)
    model = TabularMLP(x_num.shape[1], cards, params["hidden"], params["dropout"], 1, params["emb_max_dim"])
    opt = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
    loss_fn = nn.BCEWithLogitsLoss()
    ds = TensorDataset(torch.from_numpy(x_num), torch.from_numpy(x_cat), torch.from_numpy(y.astype(np.float32)))
    loader = DataLoader(ds, batch_size=params["batch_size"], shuffle=True)
    start = time.perf_counter()
    seen = 0
    for _ in range(epochs):
        model.train()
        total = 0.0
        for xb, cb, yb in loader:
            loss = loss_fn(model(xb, cb).squeeze(1), yb)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), params["max_grad_norm"] or 1e9)
            opt.step()
            total += loss.item() * len(yb)
            seen += len(yb)
    return seen / (time.perf_counter() - start)


def run(rows: int = 1_000_000, config_path: str = "benchmarks/bench.yaml", epochs: int = 1) -> dict[str, Any]:
    from refit.config import TrainingConfig
    from refit.training.torch_mlp import train_torch
    from refit.training.torch_net import resolve_params

    data, config = churn_arrays(rows, config_path)
    cfg = TrainingConfig(**{**config.training.model_dump(), "max_epochs": epochs, "patience": 99})
    params = resolve_params({"hidden": HIDDEN}, cfg)
    cards = data.preprocessor.cardinalities
    x_num, x_cat, y = data.x_num.astype(np.float32), data.x_cat.astype(np.int64), data.y

    def refit_trainer(device: torch.device) -> Any:
        return train_torch(
            x_num,
            x_cat,
            y,
            data.x_num_val,
            data.x_cat_val,
            data.y_val,
            "binary",
            2,
            {"hidden": HIDDEN},
            cfg,
            device,
            cardinalities=cards,
        )

    fast = refit_trainer(torch.device("cpu"))
    slow = naive(x_num, x_cat, y, cards, params, epochs)
    out: dict[str, Any] = {
        "rows": len(y),
        "epochs": epochs,
        "batch_size": params["batch_size"],
        "hidden": params["hidden"],
        "torch_threads": torch.get_num_threads(),
        "features": {"numeric": x_num.shape[1], "categorical": len(cards)},
        "train_torch_cpu_samples_per_s": round(fast.samples_per_s),
        "naive_dataloader_samples_per_s": round(slow),
        "cuda": None,
    }
    if torch.cuda.is_available():
        refit_trainer(torch.device("cuda"))  # warm-up: CUDA context, kernels
        gpu = refit_trainer(torch.device("cuda"))
        out["cuda"] = {
            "device": torch.cuda.get_device_name(0),
            "train_torch_samples_per_s": round(gpu.samples_per_s),
            "gpu_over_cpu": round(gpu.samples_per_s / fast.samples_per_s, 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--config", default="benchmarks/bench.yaml")
    args = parser.parse_args()
    result = run(args.rows, args.config, args.epochs)
    result["speedup"] = round(result["train_torch_cpu_samples_per_s"] / result["naive_dataloader_samples_per_s"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
