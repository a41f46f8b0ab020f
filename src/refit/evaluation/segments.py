"""Segments: which segment value every row belongs to, and how a segment value is named.

One definition used by the gate, registration, decay and reports: bins, labels and crossings
are applied here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from refit.config import DatasetConfig
from refit.errors import DataError

OVERALL = "overall"


def _bin_labels(edges: Sequence[float]) -> list[str]:
    return [f"[{a:g}, {b:g})" for a, b in zip(edges[:-1], edges[1:], strict=False)]


def segment_labels(df: pd.DataFrame, dataset: DatasetConfig) -> dict[str, pd.Categorical]:
    """The segment of every row, per configured segment column and crossing.

    Numeric columns with ``bins`` are cut into ``[edge, next_edge)`` intervals (named by
    ``labels`` when given); values outside the edges are ``(out of range)``, missing values
    ``(missing)``. A crossing of ``region`` and ``plan`` is named ``region×plan`` and its
    values ``north×pro``.
    """
    out: dict[str, pd.Categorical] = {}
    for spec in dataset.segments:
        if spec.column not in df.columns:
            raise DataError(f"segment column {spec.column!r} is not in the evaluation frame")
        col = df[spec.column]
        if spec.bins is not None:
            names = list(spec.labels or _bin_labels(spec.bins))
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            idx = np.searchsorted(np.asarray(spec.bins), values, side="right") - 1
            text = np.asarray(names + ["(out of range)", "(missing)"], dtype=object)
            idx = np.where((idx < 0) | (idx >= len(names)), len(names), idx)
            idx = np.where(np.isnan(values), len(names) + 1, idx)
            cat = pd.Categorical.from_codes(idx, categories=text)
        else:
            strings = col.astype(object).where(col.notna(), "(missing)").astype(str)
            cat = pd.Categorical(strings, categories=sorted(pd.unique(strings)))
        out[spec.column] = cat.remove_unused_categories()
    for crossing in dataset.segment_crossings:
        parts = []
        for name in crossing:
            if name not in out:
                if name not in df.columns:
                    raise DataError(f"crossing column {name!r} is not in the evaluation frame")
                strings = df[name].astype(object).where(df[name].notna(), "(missing)").astype(str)
                out[name] = pd.Categorical(strings, categories=sorted(pd.unique(strings)))
            parts.append(out[name])
        joined = pd.Series(np.asarray(parts[0]).astype(str), dtype=object)
        for part in parts[1:]:
            joined = joined + "×" + np.asarray(part).astype(str)
        order = ["×".join(t) for t in pd.MultiIndex.from_product([list(p.categories) for p in parts]).to_flat_index()]
        present = set(joined)
        out["×".join(crossing)] = pd.Categorical(joined, categories=[v for v in order if v in present])
    return out


def segment_key(segment: str, value: object) -> str:
    """How one segment value is named wherever it is stored or judged: ``region=north``,
    ``region×plan=north×pro``, ``tenure_months=[0, 12)``."""
    return f"{segment}={value}"


def segment_masks(df: pd.DataFrame, dataset: DatasetConfig) -> dict[str, dict[str, np.ndarray]]:
    """Row indices of every segment value: ``{"region": {"north": array([...]), ...}, ...}``."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, cat in segment_labels(df, dataset).items():
        codes = np.asarray(cat.codes)
        out[name] = {str(v): np.flatnonzero(codes == i) for i, v in enumerate(cat.categories)}
    return out


@dataclass(frozen=True)
class Grouping:
    """One segmentation as integer codes: the bootstrap kernels' view of a segment column."""

    name: str
    codes: np.ndarray  # (n,) int32, every code present
    labels: list[str]


def groupings(segments: Mapping[str, Any] | None, n: int) -> list[Grouping]:
    """``overall`` first, then one ``Grouping`` per named segmentation (labels sorted, numbers
    in numeric order, missing values as ``(missing)``)."""
    out = [Grouping(OVERALL, np.zeros(n, dtype=np.int32), ["all"])]
    for name, values in (segments or {}).items():
        if name == OVERALL:
            raise ValueError(f"{OVERALL!r} is reserved; rename that segment")
        if isinstance(values, pd.Series):
            values = values.array if isinstance(values.dtype, pd.CategoricalDtype) else values.to_numpy()
        if isinstance(values, pd.Categorical):
            cat = values.remove_unused_categories()
            codes = np.asarray(cat.codes)
            if (codes < 0).any():
                cat = cat.add_categories(["(missing)"]).fillna("(missing)")
                codes = np.asarray(cat.codes)
            labels = [str(c) for c in cat.categories]
        else:
            arr = np.asarray(values)
            if arr.ndim != 1 or len(arr) != n:
                raise ValueError(f"segment {name!r} must have one label per row ({n})")
            codes, uniq = pd.factorize(arr, use_na_sentinel=False)
            text = [str(u) for u in uniq]
            numeric = np.asarray(uniq).dtype.kind in "biuf"  # segment ids: 2 before 10
            rank = np.argsort(np.asarray(uniq if numeric else text, dtype=None if numeric else object), kind="stable")
            codes = np.argsort(rank)[codes]
            labels = [text[r] for r in rank]
        if len(codes) != n:
            raise ValueError(f"segment {name!r} must have one label per row ({n})")
        out.append(Grouping(str(name), codes.astype(np.int32), labels))
    return out
