"""Which device to train on, and how mixed precision is set up there.

Both functions take the CUDA capabilities as an argument (defaulting to what this machine
has), so the CUDA branches are unit-tested on a CPU-only machine by injecting them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import torch

from refit.errors import ConfigError

_SPEC = re.compile(r"^(auto|cpu|cuda(?::(\d+))?)$")


@dataclass(frozen=True)
class CudaCaps:
    """What the CUDA runtime offers (everything False / 0 on a CPU-only machine)."""

    available: bool
    device_count: int = 0
    bf16_supported: bool = False

    @classmethod
    def detect(cls) -> CudaCaps:
        if not torch.cuda.is_available():
            return cls(available=False)
        return cls(
            available=True,
            device_count=torch.cuda.device_count(),
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
        )


class AutocastSettings(NamedTuple):
    """Arguments for ``torch.autocast`` plus whether a GradScaler is needed."""

    enabled: bool
    dtype: torch.dtype
    use_grad_scaler: bool


def resolve_device(spec: str = "auto", caps: CudaCaps | None = None) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a torch device.

    ``auto`` picks CUDA when there is one. Asking for CUDA where there is none (or for a
    device index that does not exist) is a ConfigError, not a silent fallback to the CPU.
    """
    match = _SPEC.match(spec.strip().lower()) if isinstance(spec, str) else None
    if match is None:
        raise ConfigError(f"invalid device {spec!r}: expected auto, cpu, cuda or cuda:N")
    caps = caps if caps is not None else CudaCaps.detect()
    name = match.group(1)
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda", 0) if caps.available else torch.device("cpu")
    if not caps.available:
        raise ConfigError(f"device {spec!r} requested but CUDA is not available on this machine")
    index = int(match.group(2) or 0)
    if index >= caps.device_count:
        raise ConfigError(f"device {spec!r} requested but this machine has {caps.device_count} CUDA device(s)")
    return torch.device("cuda", index)


def autocast_settings(
    device: torch.device, bf16_supported: bool | None = None, mixed_precision: bool = True
) -> AutocastSettings:
    """Mixed precision on CUDA: bf16 where supported, else fp16 with a GradScaler; off on CPU.

    Args:
        device: The training device.
        bf16_supported: Injected capability (default: ask torch when the device is CUDA).
        mixed_precision: False turns autocast off everywhere.
    """
    if device.type != "cuda" or not mixed_precision:
        return AutocastSettings(enabled=False, dtype=torch.bfloat16, use_grad_scaler=False)
    if bf16_supported is None:
        bf16_supported = bool(torch.cuda.is_bf16_supported())
    if bf16_supported:
        return AutocastSettings(enabled=True, dtype=torch.bfloat16, use_grad_scaler=False)
    return AutocastSettings(enabled=True, dtype=torch.float16, use_grad_scaler=True)


def device_name(device: torch.device) -> str:
    """A human-readable name: the GPU model on CUDA, ``cpu (N threads)`` otherwise."""
    if device.type == "cuda":
        try:
            return f"{device} ({torch.cuda.get_device_name(device)})"
        except Exception:  # pragma: no cover - name lookup is best effort
            return str(device)
    return f"cpu ({torch.get_num_threads()} threads)"
