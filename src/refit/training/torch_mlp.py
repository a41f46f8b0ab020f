"""A tabular MLP (embeddings + MLP) and its fast, resumable training loop.

Why the loop looks the way it does: the data sit on the device as whole tensors, each epoch
shuffles with a ``torch.randperm`` seeded by (seed, epoch) and slices batches by index. There
is no DataLoader and no per-sample Python, and the loss is summed on the device so there is
one host sync per epoch. Evaluation runs in large no-grad chunks. On CUDA, data larger than a
budget stay in pinned host memory and each epoch's batches are copied with ``non_blocking``.

After every epoch a checkpoint (weights, optimizer, LR schedule, grad scaler, every RNG state,
early-stopping state, history) goes to a :class:`CheckpointSink`; a rerun with the same sink
resumes there and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from refit.config import TrainingConfig
from refit.device import AutocastSettings, autocast_settings, device_name
from refit.errors import DataError
from refit.seeds import rng_state, seed_everything, set_rng_state
from refit.training.checkpoint import CheckpointSink
from refit.training.common import Task, TrainingError, run_key, score
from refit.training.torch_net import TabularMLP, resolve_params

CHECKPOINT_FORMAT = 1

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TorchResult:
    """A trained model (best weights, on the CPU, in eval mode) and how training went."""

    model: TabularMLP
    arch: dict[str, Any]
    task: Task
    n_classes: int
    params: dict[str, Any]
    target_mean: float
    target_std: float
    history: list[dict[str, Any]]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    val_metrics: dict[str, float]
    resumed_from_epoch: int | None
    samples_per_s: float
    train_s: float
    wall_s: float
    peak_memory_bytes: int
    device: str
    data_placement: str
    extra: dict[str, Any] = field(default_factory=dict)

    def predict_output(self, x_num: np.ndarray, x_cat: np.ndarray) -> np.ndarray:
        """Probabilities ``[n, K]`` (classification) or values ``[n]`` (regression)."""
        return predict_torch(self.model, x_num, x_cat, self.task, self.target_mean, self.target_std)


def predict_torch(
    model: TabularMLP,
    x_num: np.ndarray,
    x_cat: np.ndarray,
    task: Task,
    target_mean: float = 0.0,
    target_std: float = 1.0,
    device: torch.device | None = None,
    chunk: int = 65536,
) -> np.ndarray:
    """Model output in no-grad chunks: probabilities ``[n, K]`` or de-standardised values."""
    device = device or next(model.parameters()).device
    logits = _logits(model, torch.from_numpy(x_num), torch.from_numpy(x_cat), device, chunk, None)
    return _output_from_logits(logits, task, target_mean, target_std)


def _output_from_logits(logits: torch.Tensor, task: Task, mean: float, std: float) -> np.ndarray:
    logits = logits.double()
    if task == "binary":
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1).numpy()
    if task == "multiclass":
        return torch.softmax(logits, dim=1).numpy()
    return (logits[:, 0] * std + mean).numpy()


def _logits(
    model: TabularMLP,
    x_num: torch.Tensor,
    x_cat: torch.Tensor,
    device: torch.device,
    chunk: int,
    amp: AutocastSettings | None,
) -> torch.Tensor:
    """Float32 logits on the CPU, computed in ``chunk``-row no-grad slices."""
    was_training = model.training
    model.eval()
    out = []
    enabled = bool(amp and amp.enabled)
    dtype = amp.dtype if amp else torch.bfloat16
    with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled):
        for start in range(0, x_num.shape[0], chunk):
            xb = x_num[start : start + chunk].to(device, non_blocking=True)
            cb = x_cat[start : start + chunk].to(device, non_blocking=True)
            out.append(model(xb, cb).float())
    model.train(was_training)
    if not out:
        return torch.empty((0, int(model.arch["out_dim"])))
    return torch.cat(out).cpu()


class _Data:
    """Training tensors, resident on the device or streamed from (pinned) host memory."""

    def __init__(
        self,
        x_num: np.ndarray,
        x_cat: np.ndarray,
        y: np.ndarray,
        device: torch.device,
        placement: Literal["auto", "resident", "streamed"],
        budget_bytes: float,
    ) -> None:
        self.n = int(x_num.shape[0])
        self.device = device
        nbytes = x_num.nbytes + x_cat.nbytes + y.nbytes
        if placement == "auto":
            placement = "streamed" if device.type == "cuda" and nbytes > budget_bytes else "resident"
        self.placement = placement
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in (x_num, x_cat, y)]
        if placement == "resident":
            self.tensors = [t.to(device) for t in tensors]
            self.stage: list[torch.Tensor] = []
        else:
            pin = device.type == "cuda"
            self.tensors = [t.pin_memory() if pin else t for t in tensors]
            # One shuffled copy per epoch, sliced contiguously: slices of a pinned tensor are
            # pinned, so every batch copy is asynchronous.
            self.stage = [torch.empty_like(t, pin_memory=pin) for t in self.tensors]

    def batches(self, perm: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.placement == "resident":
            perm = perm.to(self.device, non_blocking=True)
            for start in range(0, self.n, batch_size):
                idx = perm[start : start + batch_size]
                yield tuple(t.index_select(0, idx) for t in self.tensors)
        else:
            # The previous epoch's copies have finished: the epoch loss sync waited for them.
            for src, dst in zip(self.tensors, self.stage, strict=True):
                torch.index_select(src, 0, perm, out=dst)
            for start in range(0, self.n, batch_size):
                yield tuple(s[start : start + batch_size].to(self.device, non_blocking=True) for s in self.stage)


def _make_scheduler(
    optimizer: torch.optim.Optimizer, params: dict[str, Any], total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if params["schedule"] == "onecycle":
        # OneCycleLR needs a warmup phase of at least two steps (or it divides by zero).
        total_steps = max(total_steps, 4)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=float(params["lr"]),
            total_steps=total_steps,
            pct_start=min(max(float(params["warmup_fraction"]), 2.0 / total_steps), 0.9),
        )
    warmup = max(1, int(total_steps * float(params["warmup_fraction"])))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _check_inputs(x_num: np.ndarray, x_cat: np.ndarray, y: np.ndarray, what: str) -> None:
    if x_num.ndim != 2 or x_cat.ndim != 2 or y.ndim != 1:
        raise DataError(f"{what}: expected X_num [n, f], X_cat [n, c] and y [n]")
    if not (x_num.shape[0] == x_cat.shape[0] == y.shape[0]):
        raise DataError(f"{what}: X_num, X_cat and y have different row counts")
    if x_num.shape[0] == 0:
        raise DataError(f"{what}: no rows")


@dataclass
class _Target:
    """The target as the loss sees it (a regression target standardised), and that loss."""

    train: np.ndarray
    valid: np.ndarray
    mean: float
    std: float
    out_dim: int
    loss_fn: nn.Module

    @property
    def squeeze(self) -> bool:
        return self.out_dim == 1

    def output(self, logits: torch.Tensor, task: Task) -> np.ndarray:
        """What the model answers for ``logits``, on the target's own scale."""
        return _output_from_logits(logits, task, self.mean, self.std)


def _target(task: Task, y: np.ndarray, y_val: np.ndarray, n_classes: int) -> _Target:
    if task == "regression":
        mean = float(np.mean(y))
        std = float(np.std(y)) or 1.0
        train, valid = ((y - mean) / std).astype(np.float32), ((y_val - mean) / std).astype(np.float32)
        return _Target(train, valid, mean, std, 1, nn.MSELoss())
    if task == "binary":
        return _Target(y.astype(np.float32), y_val.astype(np.float32), 0.0, 1.0, 1, nn.BCEWithLogitsLoss())
    if task == "multiclass":
        return _Target(y.astype(np.int64), y_val.astype(np.int64), 0.0, 1.0, int(n_classes), nn.CrossEntropyLoss())
    raise TrainingError(f"unknown task {task!r}")


@dataclass
class _Step:
    """The model and everything that moves it one batch (and that a checkpoint keeps)."""

    model: TabularMLP
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    squeeze: bool
    amp: AutocastSettings
    max_grad_norm: Any

    def epoch(self, data: _Data, perm: torch.Tensor, batch_size: int, device: torch.device) -> float:
        """One pass over ``data`` in ``perm`` order; the mean training loss (one host sync)."""
        self.model.train()
        loss_sum = torch.zeros((), device=device)
        for xb, cb, yb in data.batches(perm, batch_size):
            with torch.autocast(device_type=device.type, dtype=self.amp.dtype, enabled=self.amp.enabled):
                out = self.model(xb, cb)
                loss = self.loss_fn(out.squeeze(1) if self.squeeze else out, yb)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.max_grad_norm:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), float(self.max_grad_norm))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            loss_sum += loss.detach().float() * yb.shape[0]
        return float(loss_sum.item()) / data.n

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


@dataclass
class _Progress:
    """Where training stands after ``epoch`` epochs: early stopping, history, timings."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    done: bool = False
    stopped: bool = False
    train_s: float = 0.0
    samples: int = 0
    resumed_from: int | None = None

    def record(self, row: dict[str, Any], val_loss: float, model: nn.Module, patience: int, max_epochs: int) -> None:
        """Add an epoch's row; keep the weights if it is the best so far; decide whether to stop."""
        self.epoch = int(row["epoch"])
        self.history.append(row)
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, self.epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        self.stopped = self.bad_epochs >= patience
        self.done = self.stopped or self.epoch == max_epochs

    def checkpoint(self, signature: str, step: _Step) -> dict[str, Any]:
        """Everything a rerun needs to go on exactly where this one stands."""
        return {
            "format": CHECKPOINT_FORMAT,
            "signature": signature,
            "epoch": self.epoch,
            "done": self.done,
            "stopped": self.stopped,
            **step.state(),
            "rng": rng_state(),
            "best_state": self.best_state,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "train_s": self.train_s,
            "samples": self.samples,
        }


def _resume(checkpoint: CheckpointSink | None, signature: str, step: _Step) -> _Progress:
    """The progress of the same run from ``checkpoint`` (restoring ``step`` and the RNGs), or a fresh start."""
    state = checkpoint.load_latest() if checkpoint is not None else None
    if state is None or state.get("signature") != signature or state.get("format") != CHECKPOINT_FORMAT:
        return _Progress()
    step.restore(state)
    set_rng_state(state["rng"])
    return _Progress(
        epoch=int(state["epoch"]),
        history=list(state["history"]),
        best_state=state["best_state"],
        best_loss=float(state["best_loss"]),
        best_epoch=int(state["best_epoch"]),
        bad_epochs=int(state["bad_epochs"]),
        done=bool(state["done"]),
        stopped=bool(state["stopped"]),
        train_s=float(state["train_s"]),
        samples=int(state["samples"]),
        resumed_from=int(state["epoch"]),
    )


def train_torch(
    x_num: np.ndarray,
    x_cat: np.ndarray,
    y: np.ndarray,
    x_num_val: np.ndarray,
    x_cat_val: np.ndarray,
    y_val: np.ndarray,
    task: Task,
    n_classes: int,
    params: dict[str, Any] | None,
    cfg: TrainingConfig,
    device: torch.device,
    checkpoint: CheckpointSink | None = None,
    on_epoch: EpochCallback | None = None,
    *,
    cardinalities: list[int] | None = None,
    seed: int | None = None,
    amp: AutocastSettings | None = None,
    data_placement: Literal["auto", "resident", "streamed"] = "auto",
) -> TorchResult:
    """Train a :class:`TabularMLP` with AdamW, a per-batch LR schedule and early stopping.

    Long for its arguments only: the body wires the steps (:func:`_target`, :meth:`_Step.epoch`,
    :meth:`_Progress.record`, :func:`_resume`, :func:`_result`) in their one fixed order.

    Args:
        x_num, x_cat, y: Training features (float32, int64) and target: class indices
            0..K-1 for classification, values for regression (standardised internally).
        x_num_val, x_cat_val, y_val: The validation split (early stopping, metrics).
        task: ``binary`` | ``multiclass`` | ``regression``.
        n_classes: K for classification (2 for binary); ignored for regression.
        params: Family params (see :data:`refit.training.torch_net.DEFAULT_PARAMS`); merged with ``cfg``.
        cfg: Seed, batch size, epochs, patience, precision, grad clipping, data budget.
        device: Where to train (see :func:`refit.device.resolve_device`).
        checkpoint: Where to checkpoint every epoch; an existing checkpoint there is resumed.
        on_epoch: Called after each epoch (after its checkpoint) with the epoch's metrics.
        cardinalities: Categorical vocabulary sizes incl. the unknown bucket (default:
            max index + 1 over both splits).
        seed: Overrides ``cfg.seed``.
        amp: Overrides the autocast settings derived from the device (tests inject these).
        data_placement: ``auto`` keeps data on the device unless it exceeds the budget.

    Returns:
        A :class:`TorchResult` holding the best epoch's weights.
    """
    wall_start = time.perf_counter()
    _check_inputs(x_num, x_cat, y, "training data")
    _check_inputs(x_num_val, x_cat_val, y_val, "validation data")
    x_num, x_num_val = x_num.astype(np.float32, copy=False), x_num_val.astype(np.float32, copy=False)
    x_cat, x_cat_val = x_cat.astype(np.int64, copy=False), x_cat_val.astype(np.int64, copy=False)
    p = resolve_params(params, cfg, rows=len(y))
    seed = cfg.seed if seed is None else int(seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    target = _target(task, y, y_val, n_classes)

    if cardinalities is None:
        cardinalities = [
            int(max(x_cat[:, j].max(initial=0), x_cat_val[:, j].max(initial=0))) + 1 for j in range(x_cat.shape[1])
        ]
    model = TabularMLP(
        x_num.shape[1], cardinalities, p["hidden"], float(p["dropout"]), target.out_dim, int(p["emb_max_dim"])
    ).to(device)
    data = _Data(x_num, x_cat, target.train, device, data_placement, cfg.device_data_budget_mb * 2**20)
    val_num, val_cat = torch.from_numpy(x_num_val), torch.from_numpy(x_cat_val)
    if data.placement == "resident":
        val_num, val_cat = val_num.to(device), val_cat.to(device)
    val_target = torch.from_numpy(target.valid)

    batch_size = p["batch_size"]
    max_epochs = p["max_epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    scheduler = _make_scheduler(optimizer, p, math.ceil(data.n / batch_size) * max_epochs)
    amp = amp or autocast_settings(device, mixed_precision=cfg.mixed_precision)
    scaler = torch.amp.GradScaler(device.type, enabled=amp.use_grad_scaler)
    step = _Step(model, optimizer, scheduler, scaler, target.loss_fn, target.squeeze, amp, p["max_grad_norm"])
    # A checkpoint is only resumed by the same run: same model, params, seed, data size, precision.
    signature = run_key(model.arch, p, seed, data.n, int(x_num_val.shape[0]), task, str(amp.dtype), amp[0], amp[2])
    progress = _resume(checkpoint, signature, step)

    for epoch in range(progress.epoch, max_epochs):
        if progress.done:
            break
        epoch_start = time.perf_counter()
        # Seeded by (seed, epoch): a resumed run shuffles exactly as an uninterrupted one.
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        train_loss = step.epoch(data, torch.randperm(data.n, generator=generator), batch_size, device)
        epoch_train_s = time.perf_counter() - epoch_start
        progress.train_s += epoch_train_s
        progress.samples += data.n
        if not math.isfinite(train_loss):
            raise TrainingError(f"training loss became {train_loss} in epoch {epoch + 1}; lower the learning rate")

        logits = _logits(model, val_num, val_cat, device, cfg.eval_batch_size, amp)
        val_loss = float(target.loss_fn(logits.squeeze(1) if target.squeeze else logits, val_target).item())
        metrics = score(task, y_val, target.output(logits, task))
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "epoch_s": time.perf_counter() - epoch_start,
            "samples_per_s": data.n / epoch_train_s if epoch_train_s > 0 else float("nan"),
        }
        row.update({f"val_{k}": v for k, v in metrics.items()})
        progress.record(row, val_loss, model, p["patience"], max_epochs)
        if checkpoint is not None:
            checkpoint.save(epoch + 1, progress.checkpoint(signature, step))
        if on_epoch is not None:
            on_epoch({**row, "max_epochs": max_epochs, "best_epoch": progress.best_epoch, "stopped": progress.stopped})

    return _result(model, progress, task, n_classes, p, target, device, data.placement, wall_start)


def _result(
    model: TabularMLP,
    progress: _Progress,
    task: Task,
    n_classes: int,
    params: dict[str, Any],
    target: _Target,
    device: torch.device,
    placement: str,
    wall_start: float,
) -> TorchResult:
    """The best epoch's weights (on the CPU) and what the run measured."""
    if progress.best_state is None:  # pragma: no cover - at least one epoch always runs
        raise TrainingError("training ran no epochs")
    model.load_state_dict(progress.best_state)
    model.eval()
    peak = _peak_memory(device)
    model = model.cpu()
    best_row = progress.history[progress.best_epoch - 1]
    val_metrics = {k[len("val_") :]: v for k, v in best_row.items() if k.startswith("val_")}
    return TorchResult(
        model=model,
        arch=dict(model.arch),
        task=task,
        n_classes=int(n_classes) if task != "regression" else 0,
        params=params,
        target_mean=target.mean,
        target_std=target.std,
        history=progress.history,
        best_epoch=progress.best_epoch,
        epochs_run=len(progress.history),
        stopped_early=progress.stopped,
        val_metrics=val_metrics,
        resumed_from_epoch=progress.resumed_from,
        samples_per_s=progress.samples / progress.train_s if progress.train_s > 0 else float("nan"),
        train_s=progress.train_s,
        wall_s=time.perf_counter() - wall_start,
        peak_memory_bytes=peak,
        device=device_name(device),
        data_placement=placement,
    )
