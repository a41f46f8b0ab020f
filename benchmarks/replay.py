"""``refit replay`` over a year: 52 weekly windows of labelled production data, 1M rows in all.

The production path a replay runs (``refit.replay.replay``, what ``refit replay`` calls): on a
scratch store holding the bench config's base data, each week's captures are written, checked
for drift against the serving champion's reference, decided on by the governor and, on a
trigger, retrained and gated. The history is the churn generator's: in distribution for the
first half of the year, then covariate drift. Reported: wall time (in all and per window), the
process's peak RSS, and what the replay decided (triggers, promotions).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import timedelta
from typing import Any


def run(rows: int, config_path: str, weeks: int = 52, base_rows: int = 50_000) -> dict[str, Any]:
    """Replay ``weeks`` weekly windows of ``rows`` labelled rows in all (drift from mid-year)."""
    from benchmarks.common import peak_rss_mb
    from refit.config import load_config
    from refit.demo import production_history, write_base_data
    from refit.io import open_store
    from refit.replay import replay

    config = load_config(config_path)
    root = tempfile.mkdtemp(prefix="refit-bench-replay-")
    try:
        store = open_store(root)
        write_base_data(store, config, rows=base_rows, seed=0)
        history = production_history(
            weeks=weeks, rows_per_week=rows // weeks, drift="covariate", drift_from_week=weeks // 2, strength=0.5
        )
        started = time.perf_counter()
        result = replay(store, config, history, window=timedelta(days=7))
        wall = time.perf_counter() - started
        return {
            "rows": len(history),
            "weeks": weeks,
            "base_rows": base_rows,
            "windows": len(result.windows),
            "replay_s": round(wall, 2),
            "s_per_window": round(wall / max(1, len(result.windows)), 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "triggers": len(result.triggers),
            "promotions": len(result.promotions),
            "first_trigger_week": result.triggers[0] if result.triggers else None,
            "drift_from_week": weeks // 2,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
