"""The retrain at one size, as the plain ``refit.pipeline`` steps, stage by stage; then drift.

Each size runs in its own process (see ``benchmarks.common.run_in_subprocess``): first
``generate`` writes the demo data into a fresh local store, then ``retrain`` times every stage
and samples the process's RSS while it runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: The base data is written as files of at most this many rows (read back and concatenated).
PART_ROWS = 1_000_000
#: The production window for the drift check: every row shifted (covariate drift, strength 1).
DRIFT_KIND = "covariate"


def generate(rows: int, store: str, config_path: str, seed: int = 0) -> dict[str, Any]:
    """Demo base data, ``rows`` rows, written where the config's sources point."""
    from benchmarks.common import frame_bytes
    from refit.config_loader import load_config
    from refit.datasets import generate_base
    from refit.demo import base_data_key
    from refit.io import open_store
    from refit.io.frames import write_frame

    config = load_config(config_path)
    target = open_store(store)
    start = time.perf_counter()
    frame = generate_base(rows, seed=seed)
    generate_s = time.perf_counter() - start
    size = frame_bytes(frame)
    parts = max(1, math.ceil(rows / PART_ROWS))
    start = time.perf_counter()
    for part in range(parts):
        lo, hi = part * PART_ROWS, min(rows, (part + 1) * PART_ROWS)
        write_frame(target, base_data_key(config, part), frame.iloc[lo:hi])
    return {
        "rows": rows,
        "parts": parts,
        "generate_s": round(generate_s, 2),
        "write_s": round(time.perf_counter() - start, 2),
        "data_mb": round(size["shared"] / 2**20, 1),
        "data_mb_deep": round(size["deep"] / 2**20, 1),
    }


def production_window(rows: int, seed: int = 7) -> Any:
    """``rows`` production requests (features only), shifted everywhere, in batches of <= 1M."""
    import pandas as pd

    from refit.datasets import generate_production

    per_batch = min(rows, PART_ROWS)
    batches = generate_production(math.ceil(rows / per_batch), per_batch, seed=seed, drift=DRIFT_KIND)
    frames = [b.features for b in batches]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return frame.iloc[:rows]


#: The stage each step of ``refit.recipe.RETRAIN_STEPS`` is reported as (the report's names).
STAGE_OF_STEP = {
    "load-and-validate": "load_validate",
    "split-data": "split",
    "train-candidates": "train",
    "smoke-test": "smoke_test",
    "evaluate-candidate": "evaluate",
    "register-model": "register",
    "promote-model": "promote",
}

#: The parts of ``load_and_validate``, timed by wrapping the functions it calls; the rest of the
#: step ("stage") writes the valid rows and fingerprints them.
LOAD_VALIDATE_PARTS = {
    "load": (("refit.data", "read_sources"), ("refit.capture", "load_labelled_captures")),
    "validate": (("refit.data", "validate_and_quarantine"),),
}


def retrain(rows: int, store: str, config_path: str, drift: bool = True) -> dict[str, Any]:
    """Every retrain stage on ``rows`` rows, timed, with the peak RSS seen during each."""
    from benchmarks.common import RssSampler, import_step_modules, peak_rss_mb, timed_calls
    from refit import recipe
    from refit.config_loader import load_config
    from refit.io import open_store

    import_step_modules()  # what the stages import lazily: no stage is charged for an import
    config = load_config(config_path)
    st = open_store(store)
    out: dict[str, Any] = {"rows": rows}
    with RssSampler() as rss:
        out["baseline_rss_mb"] = round(rss.rss_mb(), 1)

        @contextmanager
        def stage(step: str) -> Iterator[None]:
            """Each step of the recipe is a stage; load+validate is also split into its parts."""
            if step != "load-and-validate":
                with rss.stage(STAGE_OF_STEP[step]):
                    yield
                return
            with rss.stage(STAGE_OF_STEP[step]) as record, timed_calls(LOAD_VALIDATE_PARTS) as parts:
                yield
            record["parts_s"] = {name: round(parts[name], 3) for name in LOAD_VALIDATE_PARTS}
            record["parts_s"]["stage"] = round(record["s"] - sum(parts.values()), 3)

        run = recipe.run_retrain(st, config, recipe.RetrainOptions(tags={"trigger": "bench"}), around=stage)
        version = run.need("version")
        retrain_stages = dict(rss.stages)
        out["retrain_s"] = round(sum(s["s"] for s in retrain_stages.values()), 2)
        out["retrain_peak_rss_mb"] = max(s["peak_rss_mb"] for s in retrain_stages.values())
        out["retrain_max_rss_mb"] = round(peak_rss_mb(), 1)
        out["result"] = _summary(run)
        if drift:
            from refit.drift import MemoryNullCache, check_drift
            from refit.registry import Registry

            nulls = MemoryNullCache()

            def check() -> Any:
                return check_drift(
                    reference,
                    window,
                    config.feature_columns,
                    None,
                    config.drift,
                    seed=config.training.seed,
                    report=False,
                    nulls=nulls,
                ).result

            with rss.stage("drift_prepare") as cold:  # not timed as drift: data, imports, the champion's nulls
                reference = Registry(st).reference(config.dataset.name, version.version)
                window = production_window(rows)
                check()
            with rss.stage("drift"):  # a later check of the same champion: its nulls are cached
                result = check()
            out["drift_prepare_s"] = cold["s"]
            out["drift_result"] = {
                "reference_rows": len(reference),
                "current_rows": len(window),
                "drift_detected": result.drift_detected,
                "drift_share": result.drift_share,
                "drifted_columns": result.drifted_columns,
            }
    out["stages"] = rss.stages
    return out


def _summary(run: Any) -> dict[str, Any]:
    """What the retrain produced, for the results file."""
    data, splits, candidate = run.need("data"), run.need("splits"), run.need("candidate")
    smoke, evaluation, version = run.need("smoke"), run.need("evaluation"), run.need("version")
    return {
        "valid_rows": data.rows,
        "quarantined": data.invalid_rows,
        "split_rows": splits.rows,
        "candidate": candidate.family,
        "candidate_params": candidate.params,
        "validation_roc_auc": candidate.validation_metrics.get("roc_auc"),
        "trials": [
            {
                "family": t["family"],
                "train_s": round(t["train_s"], 2),
                "primary": t.get("primary"),
                "samples_per_s": t.get("samples_per_s"),
            }
            for t in candidate.trials
        ],
        "smoke_passed": bool(smoke.passed),
        "gate": evaluation.outcome,
        "version": version.version,
    }
