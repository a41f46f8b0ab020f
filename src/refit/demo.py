"""Writing the demo data into the store where the config expects it."""

from __future__ import annotations

import math
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd

from refit.capture import CaptureWriter
from refit.config import PipelineConfig
from refit.errors import ConfigError, StoreError
from refit.io import Store, open_location
from refit.io.frames import write_frame
from refit.io.layout import LAYOUT
from refit.timestamps import utc_timestamp


def base_data_key(config: PipelineConfig, part: int) -> str:
    """Where part ``part`` of the base data goes: the folder of the config's first source glob."""
    source = config.dataset.sources[0]
    folder = source.rsplit("/", 1)[0] if "/" in source else ""
    if any(c in folder for c in "*?["):
        raise ConfigError(f"cannot derive an output folder from source {source!r}: put the glob in the file name")
    return f"{folder}/part-{part:05d}.parquet" if folder else f"part-{part:05d}.parquet"


def write_base_data(
    store: Store, config: PipelineConfig, *, rows: int, seed: int, parts: int = 1, progress: bool = False
) -> dict[str, Any]:
    from refit.datasets import generate_base

    frame = generate_base(rows, seed=seed, progress=progress)
    target_store, _ = open_location(config.dataset.sources[0], store)
    uris = []
    bounds = [round(i * len(frame) / parts) for i in range(parts + 1)]
    for part in range(parts):
        key = base_data_key(config, part)
        uris.append(write_frame(target_store, key, frame.iloc[bounds[part] : bounds[part + 1]]))
    return {"rows": len(frame), "uris": uris, "seed": seed, "churn_rate": float(frame[config.dataset.target].mean())}


def write_production_data(
    store: Store,
    config: PipelineConfig,
    *,
    batches: int,
    rows_per_batch: int,
    drift: Literal["none", "covariate", "concept"] = "none",
    segment: dict[str, str] | None = None,
    strength: float = 1.0,
    seed: int = 1,
    start: str | None = None,
    predict: Any = None,
    model_version: str | None = None,
) -> dict[str, Any]:
    """Generate production traffic and write it as captures (requests now, labels as they arrive).

    ``predict`` (a callable on the feature frame returning probabilities) scores the traffic
    the way serving would; without one the captures carry no prediction.
    """
    from refit.datasets import generate_production, to_capture_frame

    if start is None:
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        # two weeks back by default, so that most labels (1 to 60 days late) have arrived
        start_ts = pd.Timestamp(now - timedelta(days=14, hours=batches))
    else:
        start_ts = utc_timestamp(start)
    produced = generate_production(
        batches, rows_per_batch, seed=seed, start=start_ts, drift=drift, segment=segment, drift_strength=strength
    )
    name = config.dataset.name
    n_rows = n_labels = 0
    # Through the serving-side writer, so the demo exercises it: one flush per batch, parts named
    # after the batch (a rerun with the same seed overwrites rather than duplicates).
    with tempfile.TemporaryDirectory(prefix="refit-demo-spill-") as spill:
        writer = CaptureWriter.for_config(
            store,
            config,
            flush_rows=sys.maxsize,
            flush_interval_s=math.inf,
            max_queue_rows=sys.maxsize,  # one flush per batch, whatever its size: reruns overwrite
            spill_dir=spill,
            part_prefix=f"batch-{seed}",
        )
        for batch in produced:
            prediction = predict(batch.features) if predict is not None else None
            frame = to_capture_frame(batch, prediction=prediction, model_version=model_version)
            writer.log(
                frame.drop(columns=["request_id", "event_time", "prediction", "model_version"]),
                frame["prediction"],
                model_version=model_version,
                request_ids=frame["request_id"],
                timestamps=frame["event_time"],
            )
            # labels only exist once they have arrived: never in the future
            arrived = batch.labels[batch.labels["label_time"] <= pd.Timestamp.now(tz="UTC")]
            writer.log_labels(arrived["request_id"], arrived["churned"], label_time=arrived["label_time"])
            stats = writer.flush()
            if stats.spilled_batches or stats.rows_dropped or stats.labels_dropped:
                # serving would spill and carry on; a demo run stops and says why
                raise StoreError(f"cannot write production captures to {store.uri}: {stats.last_error}")
            n_rows += len(frame)
            n_labels += len(arrived)
        writer.close()
    return {
        "rows": n_rows,
        "labels": n_labels,
        "batches": batches,
        "drift": drift,
        "segment": ",".join(f"{k}={v}" for k, v in (segment or {}).items()) or None,
        "requests_prefix": store.uri_for(LAYOUT.capture_requests(name).rstrip("/")),
        "labels_prefix": store.uri_for(LAYOUT.capture_labels(name).rstrip("/")),
    }


def production_history(
    *,
    weeks: int,
    rows_per_week: int,
    drift: Literal["none", "covariate", "concept"] = "none",
    drift_from_week: int = 0,
    segment: dict[str, str] | None = None,
    strength: float = 1.0,
    seed: int = 1,
    start: str | None = None,
) -> pd.DataFrame:
    """Weeks of labelled churn traffic as one history frame (for ``refit replay``).

    Weeks before ``drift_from_week`` are in distribution; from it on, ``drift`` applies (in
    ``segment`` when given). Each row carries its request id and the time its label arrived.
    """
    from refit.datasets import generate_production, to_capture_frame

    first = utc_timestamp(start or "2026-10-05")  # the base data ends on 1 October 2026
    frames = []
    for week in range(weeks):
        kind = drift if week >= drift_from_week else "none"
        [batch] = generate_production(
            1,
            rows_per_week,
            seed=seed * 1000 + week,
            start=first + pd.Timedelta(weeks=week),
            batch_interval=pd.Timedelta(weeks=1),
            drift=kind,
            segment=segment if kind != "none" else None,
            drift_strength=strength,
            id_offset=10_000_000 + week * rows_per_week,
        )
        requests = to_capture_frame(batch).drop(columns=["prediction", "model_version", "churned"], errors="ignore")
        frames.append(requests.merge(batch.labels, on="request_id", how="left"))
    return pd.concat(frames, ignore_index=True)
