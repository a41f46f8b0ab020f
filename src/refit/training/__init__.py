"""Training: the torch MLP, scikit-learn families, and the search that picks a candidate."""

from refit.training.checkpoint import CheckpointSink
from refit.training.common import TrainingError, fingerprint_arrays, run_key, score

__all__ = ["CheckpointSink", "TrainingError", "fingerprint_arrays", "run_key", "score"]
