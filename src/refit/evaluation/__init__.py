"""Evaluation: segments, a paired bootstrap per segment, and the promotion gate.

The metrics themselves live in ``refit.metrics`` (name, task kinds, direction, function). The
gate compares candidate and champion on the same resampled rows (paired), per segment, and
returns our own typed ``GateDecision``. Pure numpy / pandas; nothing here touches a store or
Prefect.

- ``segments``: which segment value each row is in, and how it is named.
- ``kernels``: bit-packed resample weights and the metric plans that read them.
- ``bootstrap``: the paired bootstrap (``paired_bootstrap``), and one model's metric on the same
  resamples (``metric_bootstrap``, for decay).
- ``records``: the typed results.
- ``gate``: the gate's rules and the decision (``evaluate_gate``, ``decide_gate``).
- ``wording``: the verdict's words (headline and reasons).
"""

from refit.evaluation.bootstrap import MetricReplicates, metric_bootstrap, paired_bootstrap
from refit.evaluation.gate import decide_gate, evaluate_gate, holm_adjust
from refit.evaluation.records import GateCheck, GateDecision, Outcome, PairedBootstrap, SegmentComparison, SegmentResult
from refit.evaluation.segments import OVERALL, segment_key, segment_labels, segment_masks
from refit.evaluation.wording import VERDICT, describe_decision

__all__ = [
    "GateCheck",
    "GateDecision",
    "OVERALL",
    "Outcome",
    "PairedBootstrap",
    "SegmentComparison",
    "SegmentResult",
    "VERDICT",
    "decide_gate",
    "describe_decision",
    "evaluate_gate",
    "holm_adjust",
    "MetricReplicates",
    "metric_bootstrap",
    "paired_bootstrap",
    "segment_key",
    "segment_labels",
    "segment_masks",
]
