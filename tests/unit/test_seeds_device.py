"""Seeding, RNG capture for checkpoints, device resolution and mixed-precision settings."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from refit.device import AutocastSettings, CudaCaps, autocast_settings, device_name, resolve_device
from refit.errors import ConfigError
from refit.seeds import rng_state, seed_everything, set_rng_state

NO_CUDA = CudaCaps(available=False)
TWO_GPUS = CudaCaps(available=True, device_count=2, bf16_supported=True)


def _draws() -> tuple[list[float], list[float], list[float]]:
    return (
        [random.random() for _ in range(3)],
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
    )


def test_same_seed_same_draws_from_every_rng() -> None:
    seed_everything(123)
    first = _draws()
    seed_everything(123)
    assert _draws() == first
    seed_everything(124)
    other = _draws()
    assert all(a != b for a, b in zip(other, first, strict=True))


def test_seed_everything_sets_deterministic_flags() -> None:
    seed_everything(0)
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False
    if torch.cuda.is_available():
        assert torch.are_deterministic_algorithms_enabled()


def test_rng_state_round_trips_through_weights_only_load() -> None:
    seed_everything(7)
    random.random(), np.random.normal(), torch.randn(2)  # advance, incl. numpy's cached gaussian
    buf = io.BytesIO()
    torch.save(rng_state(), buf)
    expected = _draws()
    _draws()  # move on
    set_rng_state(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert _draws() == expected


@pytest.mark.parametrize(
    ("spec", "caps", "expected"),
    [
        ("cpu", NO_CUDA, "cpu"),
        ("auto", NO_CUDA, "cpu"),
        ("auto", TWO_GPUS, "cuda:0"),
        ("cuda", TWO_GPUS, "cuda:0"),
        ("cuda:1", TWO_GPUS, "cuda:1"),
        ("CPU", TWO_GPUS, "cpu"),
    ],
)
def test_resolve_device(spec: str, caps: CudaCaps, expected: str) -> None:
    assert resolve_device(spec, caps) == torch.device(expected)


@pytest.mark.parametrize(
    ("spec", "caps", "message"),
    [
        ("cuda", NO_CUDA, "CUDA is not available"),
        ("cuda:0", NO_CUDA, "CUDA is not available"),
        ("cuda:2", TWO_GPUS, "has 2 CUDA device"),
        ("gpu", TWO_GPUS, "invalid device"),
        ("cuda:x", TWO_GPUS, "invalid device"),
    ],
)
def test_resolve_device_errors(spec: str, caps: CudaCaps, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_device(spec, caps)


def test_resolve_device_default_detects_this_machine() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_autocast_off_on_cpu() -> None:
    assert autocast_settings(torch.device("cpu"), bf16_supported=True) == AutocastSettings(False, torch.bfloat16, False)


def test_autocast_bf16_where_supported() -> None:
    settings = autocast_settings(torch.device("cuda", 0), bf16_supported=True)
    assert settings == AutocastSettings(enabled=True, dtype=torch.bfloat16, use_grad_scaler=False)


def test_autocast_fp16_with_grad_scaler_without_bf16() -> None:
    enabled, dtype, scaler = autocast_settings(torch.device("cuda", 0), bf16_supported=False)
    assert (enabled, dtype, scaler) == (True, torch.float16, True)


def test_autocast_can_be_turned_off_on_cuda() -> None:
    assert not autocast_settings(torch.device("cuda", 0), bf16_supported=True, mixed_precision=False).enabled


def test_device_name_cpu() -> None:
    assert device_name(torch.device("cpu")).startswith("cpu (")
