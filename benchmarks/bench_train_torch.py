"""Samples/s of ``train_torch`` vs a naive DataLoader loop training the same model.

    python benchmarks/bench_train_torch.py --rows 1000000 --epochs 1 --threads 1

The naive loop is what a first version usually looks like: ``DataLoader(TensorDataset(...),
batch_size=B, shuffle=True)`` (per-sample indexing and collation) with a ``loss.item()`` per
batch. Both train the same architecture with the same optimizer and batch size.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from refit.config import TrainingConfig
from refit.training.torch_mlp import TabularMLP, resolve_params, train_torch


def make_data(rows: int, n_num: int, cards: list[int], seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    x_num = rng.normal(size=(rows, n_num)).astype(np.float32)
    x_cat = np.stack([rng.integers(0, c, size=rows) for c in cards], axis=1).astype(np.int64)
    logit = x_num[:, 0] - 0.5 * x_num[:, 1] + (x_cat[:, 0] == 1)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x_num, x_cat, y


def naive(x_num, x_cat, y, cards, params, epochs: int) -> float:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = TabularMLP(x_num.shape[1], cards, params["hidden"], params["dropout"], 1)
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
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += loss.item() * len(yb)
            seen += len(yb)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--hidden", default="128-64", help="hidden sizes (the torch_mlp default: 128-64)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cards = [6, 4, 6]  # + 11 numeric = 14 features
    x_num, x_cat, y = make_data(args.rows, 11, cards)
    xv, cv, yv = make_data(20_000, 11, cards, seed=1)
    cfg = TrainingConfig(max_epochs=args.epochs, batch_size=args.batch_size, num_threads=args.threads, patience=99)
    params = resolve_params({"hidden": args.hidden}, cfg)
    fast = train_torch(x_num, x_cat, y, xv, cv, yv, "binary", 2, {"hidden": args.hidden}, cfg,
                       torch.device("cpu"), cardinalities=cards)  # fmt: skip
    slow = naive(x_num, x_cat, y, cards, params, args.epochs)
    print(json.dumps({
        "rows": args.rows, "epochs": args.epochs, "batch_size": args.batch_size, "hidden": params["hidden"],
        "threads": torch.get_num_threads(), "train_torch_samples_per_s": round(fast.samples_per_s),
        "naive_dataloader_samples_per_s": round(slow), "speedup": round(fast.samples_per_s / slow, 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
