"""The tabular MLP's architecture (embeddings + MLP) and its hyper-parameters.

What a ``torch_mlp`` candidate is, apart from how it is trained (:mod:`refit.training.torch_mlp`):
the parameter names and defaults a config may set (:data:`DEFAULT_PARAMS`, checked by
:func:`resolve_params`) and the module :class:`TabularMLP` that a saved artifact rebuilds from its
``arch`` (:mod:`refit.model`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from refit.config import TrainingConfig, auto_batch_size
from refit.errors import ConfigError
from refit.training.common import TrainingError

DEFAULT_PARAMS: dict[str, Any] = {
    "lr": 3e-3,  # peak learning rate
    "weight_decay": 1e-4,
    "width": 128,  # first hidden layer when ``hidden`` is not given; each next one halves
    "depth": 2,  # hidden layers when ``hidden`` is not given (default: 128-64)
    "hidden": None,  # explicit sizes: [256, 128], "256-128" or an int (one layer)
    "dropout": 0.1,
    "emb_max_dim": 16,
    "schedule": "onecycle",  # or "cosine" (linear warmup then cosine decay)
    "warmup_fraction": 0.1,
    "batch_size": None,  # None: TrainingConfig.batch_size, else adapted to the data (auto_batch_size)
    "max_epochs": None,  # None: TrainingConfig.max_epochs
    "patience": None,  # None: TrainingConfig.patience
    "max_grad_norm": "config",  # "config": TrainingConfig.max_grad_norm; None: off
}


def resolve_params(params: dict[str, Any] | None, cfg: TrainingConfig, rows: int | None = None) -> dict[str, Any]:
    """Defaults + ``params``, with config-level defaults filled in; unknown names are an error.

    A batch size set by neither follows the number of training ``rows``
    (:func:`refit.config.auto_batch_size`), so small data gets enough optimizer steps.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ConfigError(
            f"unknown torch_mlp params: {', '.join(unknown)} (known: {', '.join(sorted(DEFAULT_PARAMS))})"
        )
    out = {**DEFAULT_PARAMS, **params}
    out["batch_size"] = int(out["batch_size"] or cfg.batch_size or auto_batch_size(rows))
    out["max_epochs"] = int(out["max_epochs"] or cfg.max_epochs)
    out["patience"] = int(out["patience"] or cfg.patience)
    if out["max_grad_norm"] == "config":
        out["max_grad_norm"] = cfg.max_grad_norm
    out["hidden"] = hidden_sizes(out)
    if out["schedule"] not in ("onecycle", "cosine"):
        raise ConfigError(f"unknown schedule {out['schedule']!r}: expected 'onecycle' or 'cosine'")
    return out


def hidden_sizes(params: dict[str, Any]) -> list[int]:
    """Explicit ``hidden`` sizes, else a funnel: ``width``, ``width/2``, ... (``depth`` layers, >= 8)."""
    hidden = params.get("hidden")
    if hidden is None:
        return [max(8, int(params["width"]) // 2**i) for i in range(int(params["depth"]))]
    if isinstance(hidden, int | float):
        return [int(hidden)]
    if isinstance(hidden, str):
        return [int(v) for v in hidden.replace(",", "-").split("-") if v.strip()]
    return [int(v) for v in hidden]


def embedding_dim(cardinality: int, max_dim: int = 16) -> int:
    """min(max_dim, (cardinality + 1) // 2), at least 1."""
    return max(1, min(int(max_dim), (int(cardinality) + 1) // 2))


class TabularMLP(nn.Module):
    """Numeric features + one embedding per categorical -> MLP -> ``out_dim`` outputs."""

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        hidden: list[int],
        dropout: float,
        out_dim: int,
        emb_max_dim: int = 16,
    ) -> None:
        super().__init__()
        if n_numeric == 0 and not cardinalities:
            raise TrainingError("the model has no input features")
        self.arch: dict[str, Any] = {
            "n_numeric": int(n_numeric),
            "cardinalities": [int(c) for c in cardinalities],
            "hidden": [int(h) for h in hidden],
            "dropout": float(dropout),
            "out_dim": int(out_dim),
            "emb_max_dim": int(emb_max_dim),
        }
        dims = [embedding_dim(card, emb_max_dim) for card in cardinalities]
        self.embeddings = nn.ModuleList(nn.Embedding(card, dim) for card, dim in zip(cardinalities, dims, strict=True))
        width = n_numeric + sum(dims)
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, out_dim))
        self.mlp = nn.Sequential(*layers)

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> TabularMLP:
        return cls(**arch)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        parts = [x_num] if self.arch["n_numeric"] else []
        parts += [emb(x_cat[:, j]) for j, emb in enumerate(self.embeddings)]
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        out: torch.Tensor = self.mlp(x)
        return out
