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

import pandas as pd


def run(
    rows: int, config_path: str, weeks: int = 52, base_rows: int = 50_000, progress: str | None = None
) -> dict[str, Any]:
    """Replay ``weeks`` weekly windows of ``rows`` labelled rows in all (drift from mid-year)."""
    from benchmarks.common import peak_rss_mb
    from refit.config_loader import load_config
    from refit.demo import production_history, write_base_data
    from refit.io import open_store
    from refit.io.frames import read_frame, write_frame
    from refit.replay import replay

    config = load_config(config_path)
    ts = config.dataset.timestamp_column
    root = tempfile.mkdtemp(prefix="refit-bench-replay-")
    try:
        store = open_store(root)
        write_base_data(store, config, rows=base_rows, seed=0)
        # the year must be over: captures are validated against the wall clock (not_in_future), and
        # the generator's history starts after its base data ends; both move back, together
        shift = pd.Timedelta(weeks=weeks + 1)
        for key in store.glob(config.dataset.sources[0]):
            base = read_frame(store, key)
            write_frame(store, key, base.assign(**{ts: base[ts] - shift}))
        history = production_history(
            weeks=weeks,
            rows_per_week=rows // weeks,
            drift="covariate",
            drift_from_week=weeks // 2,
            strength=0.5,
            start=str(pd.Timestamp("2026-10-05") - shift),
        )
        assert history[ts].max() < pd.Timestamp.now(tz="UTC"), "the replayed year must be in the past"
        ticks: list[tuple[float, float, str]] = []

        def tick(window: Any) -> None:  # each window's end: wall and CPU clocks, and what it did
            ticks.append((time.perf_counter(), time.process_time(), window.decision))
            if progress:  # for a run that is stopped before it ends
                with open(progress, "a") as fh:
                    fh.write(f"{window.index} {ticks[-1][0] - started:.1f} {ticks[-1][1] - cpu0:.1f} {window.decision}"
                             f" {window.retrain_outcome}\n")  # fmt: skip

        started, cpu0 = time.perf_counter(), time.process_time()
        result = replay(store, config, history, window=timedelta(days=7), on_window=tick)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
        # per window: from the previous window's end (the first: from the first model's promotion,
        # which the replay does before its first window and which is not counted here)
        per = [(b[0] - a[0], b[1] - a[1], b[2]) for a, b in zip(ticks, ticks[1:], strict=False)]

        def kind(windows: list[tuple[float, float, str]]) -> dict[str, Any]:
            n = len(windows)
            return {
                "windows": n,
                "mean_s": round(sum(w[0] for w in windows) / n, 2) if n else None,
                "mean_cpu_s": round(sum(w[1] for w in windows) / n, 2) if n else None,
            }

        return {
            "rows": len(history),
            "weeks": weeks,
            "rows_per_window": len(history) // max(1, weeks),
            "base_rows": base_rows,
            "windows": len(result.windows),
            "replay_s": round(wall, 2),
            "replay_cpu_s": round(cpu, 2),
            "s_per_window": round(wall / max(1, len(result.windows)), 3),
            "cpu_s_per_window": round(cpu / max(1, len(result.windows)), 3),
            "first_window_s": round(ticks[0][0] - started, 2) if ticks else None,  # the first model too
            "checks_only": kind([w for w in per if w[2] != "trigger"]),
            "with_retrain": kind([w for w in per if w[2] == "trigger"]),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "triggers": len(result.triggers),
            "promotions": len(result.promotions),
            "trigger_weeks": result.triggers,
            "promotion_weeks": result.promotions,
            "first_trigger_week": result.triggers[0] if result.triggers else None,
            "drift_from_week": weeks // 2,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
