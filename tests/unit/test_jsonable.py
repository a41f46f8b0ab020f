"""The one JSON conversion refit writes with (artifacts, dossiers, registry records)."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from refit.jsonable import finite_or_none, to_jsonable


def test_to_jsonable_gives_plain_json_values() -> None:
    value = {
        1: np.float32(0.5),
        "nan": float("nan"),
        "inf": np.float64(np.inf),
        "ints": (np.int64(3), 4),
        "array": np.array([[1, 2], [3, 4]]),
        "set": {"b", "a"},
        "when": datetime(2026, 12, 1, 4, 0, tzinfo=UTC),
        "day": date(2026, 12, 1),
        "path": Path("/tmp/x"),
        "flag": np.bool_(True),
        "other": complex(1, 2),
    }
    out = to_jsonable(value)
    assert out == {
        "1": 0.5,
        "nan": None,
        "inf": None,
        "ints": [3, 4],
        "array": [[1, 2], [3, 4]],
        "set": ["a", "b"],
        "when": "2026-12-01T04:00:00+00:00",
        "day": "2026-12-01",
        "path": "/tmp/x",
        "flag": True,
        "other": "(1+2j)",
    }
    json.dumps(out, allow_nan=False)  # really plain JSON


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (float("nan"), None), (math.inf, None), (np.float32(0.25), 0.25), (3, 3.0), ("0.5", 0.5)],
)
def test_finite_or_none(value: object, expected: float | None) -> None:
    assert finite_or_none(value) == expected
