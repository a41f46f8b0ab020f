"""Training: the torch MLP, scikit-learn families, and the search that picks a candidate.

Importing this package does not import torch: loading or scoring a scikit-learn model (a
serving process, the smoke-test subprocess) never pays for it. Torch comes in with the
modules that use it (``torch_mlp``, ``checkpoint``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from refit.training.common import TrainingError, fingerprint_arrays, run_key, score

if TYPE_CHECKING:
    from refit.training.checkpoint import CheckpointSink

__all__ = ["CheckpointSink", "TrainingError", "fingerprint_arrays", "run_key", "score"]


def __getattr__(name: str) -> Any:
    if name == "CheckpointSink":
        from refit.training.checkpoint import CheckpointSink

        return CheckpointSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
