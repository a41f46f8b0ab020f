"""Deterministic demo data: subscription churn, for training and for simulated production.

Why a generator rather than a CSV: the demo needs any size (a few rows in a unit test, ten
million in a benchmark), the same bytes from the same seed, and production traffic whose drift
is known exactly (which segment, which kind, how strong), so drift detection and per-segment
gating can be checked against the truth.

Reproducibility: every column draws from its own random stream, seeded from the seed and the
stream's name, and a stream is consumed strictly in row order. So a frame depends only on the
arguments (not on ``chunk_rows``), ``generate_base(n)`` is the first ``n`` rows of
``generate_base(m)`` for ``n < m``, and drift only changes rows inside its segment: with the
same seed, rows outside the segment equal those of ``drift="none"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm import tqdm

from refit.timestamps import utc_timestamp
from schemas.churn import CHANNELS, PLANS, REGIONS

Drift = Literal["none", "covariate", "concept"]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Base data covers the ``DEFAULT_BASE_DAYS`` ending here; production starts here.
DEFAULT_BASE_END = pd.Timestamp("2026-10-01", tz="UTC")
DEFAULT_BASE_DAYS = 180
DEFAULT_PRODUCTION_START = DEFAULT_BASE_END
DEFAULT_PRODUCTION_ID_OFFSET = 10_000_000
DEFAULT_CHUNK_ROWS = 1_000_000

#: The model's input columns, in the order of ``ChurnFeatures``.
FEATURE_COLUMNS = (
    "region",
    "plan",
    "channel",
    "age",
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_tickets",
    "days_since_last_login",
    "sessions_per_week",
    "num_devices",
    "payment_failures",
    "discount_pct",
    "autopay",
)
TRAINING_COLUMNS = ("customer_id", "event_time", *FEATURE_COLUMNS, "churned")
CAPTURE_COLUMNS = (
    *FEATURE_COLUMNS,
    "customer_id",
    "request_id",
    "event_time",
    "prediction",
    "model_version",
    "churned",
)
SEGMENT_COLUMNS = {"region": REGIONS, "plan": PLANS, "channel": CHANNELS}

# Category shares (deliberately unequal), in the order of REGIONS, PLANS, CHANNELS.
_REGION_SHARES = np.array([0.26, 0.21, 0.22, 0.18, 0.13])
_PLAN_SHARES = np.array([0.50, 0.35, 0.15])
_CHANNEL_SHARES = np.array([0.34, 0.24, 0.17, 0.15, 0.10])
_PLAN_PRICE = np.array([25.0, 55.0, 95.0])

# One independent stream per purpose. Append only: an index change reshuffles a column.
_STREAMS = (
    "region",
    "plan",
    "channel",
    "age",
    "age_missing",
    "tenure",
    "charges",
    "charges_outlier",
    "total_noise",
    "total_missing",
    "tickets",
    "tickets_shift",
    "engagement",
    "login",
    "sessions_missing",
    "devices",
    "failures",
    "discount",
    "discount_zero",
    "autopay",
    "label",
    "event_time",
    "label_delay",
)
_BASE_DOMAIN = 0
_PRODUCTION_DOMAIN = 1


def _streams(*key: int) -> dict[str, np.random.Generator]:
    """One generator per stream name, each seeded from ``(*key, stream index)``."""
    return {name: np.random.default_rng(np.random.SeedSequence([*key, index])) for index, name in enumerate(_STREAMS)}


@dataclass(frozen=True)
class _Shift:
    """A covariate shift: which rows move, and how far."""

    segment: Mapping[str, str] | None
    strength: float


def _categorical(u: FloatArray, shares: FloatArray) -> npt.NDArray[np.int8]:
    """Inverse-CDF draw of category codes from uniforms (so shifted shares reuse the same u)."""
    cdf = np.cumsum(shares / shares.sum())
    codes = np.searchsorted(cdf, u, side="right")
    return np.minimum(codes, len(shares) - 1).astype(np.int8)


def _segment_mask(codes: Mapping[str, np.ndarray], segment: Mapping[str, str] | None) -> BoolArray:
    """Rows inside ``segment`` (all rows when it is None)."""
    n = len(codes["region"])
    mask = np.ones(n, dtype=bool)
    for column, value in (segment or {}).items():
        mask &= codes[column] == SEGMENT_COLUMNS[column].index(value)
    return mask


def _charges(
    draw: Mapping[str, np.random.Generator], n: int, plan: np.ndarray, tenure: np.ndarray, factor: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Monthly and total charges: by plan, with rare large bills, monthly ones times ``factor``."""
    charges = _PLAN_PRICE[plan] * np.exp(0.18 * draw["charges"].standard_normal(n))
    u_outlier = draw["charges_outlier"].random(n)
    # Rare large bills (~0.5%): enterprise add-ons, billing errors.
    outlier = u_outlier < 0.005
    charges = np.where(outlier, charges * (5.0 + 3000.0 * u_outlier), charges)
    charges *= factor
    charges = np.round(np.minimum(charges, 2000.0), 2)

    total = tenure * charges * np.exp(0.05 * draw["total_noise"].standard_normal(n))
    total = np.round(np.minimum(total, 500_000.0), 2)
    total[draw["total_missing"].random(n) < 0.01] = np.nan
    return charges, total


def _engagement(draw: Mapping[str, np.random.Generator], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sessions per week and days since the last login: one engagement drives both (up, and down)."""
    engagement = draw["engagement"].standard_normal(n)
    sessions = np.round(np.minimum(np.exp(1.2 + 0.7 * engagement), 500.0), 1)
    sessions[draw["sessions_missing"].random(n) < 0.02] = np.nan
    login_scale = 6.0 * np.exp(-0.8 * engagement)
    days = np.minimum(np.floor(draw["login"].standard_exponential(n) * login_scale), 3650)
    return sessions, days


def _sample_features(
    streams: Mapping[str, np.random.Generator], n: int, shift: _Shift | None = None
) -> dict[str, np.ndarray]:
    """Draw ``n`` rows of features; categoricals come back as int8 codes.

    Each stream draws exactly ``n`` values whatever the shift, and shifted values are
    transforms of the same draws, so a shift moves rows inside its segment only.
    """
    draw = streams
    region = _categorical(draw["region"].random(n), _REGION_SHARES)
    plan = _categorical(draw["plan"].random(n), _PLAN_SHARES)
    u_channel = draw["channel"].random(n)
    channel = _categorical(u_channel, _CHANNEL_SHARES)
    codes = {"region": region, "plan": plan, "channel": channel}

    strength = 0.0 if shift is None else shift.strength
    shifted = _segment_mask(codes, shift.segment) if shift is not None and strength > 0 else np.zeros(n, dtype=bool)
    moves_channel = shift is not None and "channel" not in (shift.segment or {})
    if moves_channel and shifted.any():
        # Marketing moved to paid search in the segment.
        pull = min(1.0, 0.5 * strength)
        target = np.zeros(len(CHANNELS))
        target[CHANNELS.index("paid_search")] = 1.0
        channel_shifted = _categorical(u_channel, (1 - pull) * _CHANNEL_SHARES + pull * target)
        channel = np.where(shifted, channel_shifted, channel)

    age = np.clip(draw["age"].normal(44.0, 14.0, n), 18.0, 90.0)
    age[draw["age_missing"].random(n) < 0.03] = np.nan

    # Tenure: exponential then floored (a geometric count of months); shorter when shifted.
    tenure_mean = np.where(shifted, 22.0 / (1.0 + 1.5 * strength), 22.0)
    tenure_mean *= np.where(plan == 2, 1.5, 1.0)
    tenure = np.minimum(np.floor(draw["tenure"].standard_exponential(n) * tenure_mean), 240)
    tenure = tenure.astype(np.int64)

    charges, total = _charges(draw, n, plan, tenure, np.where(shifted, 1.0 + 0.8 * strength, 1.0))

    # Support tickets: Poisson, plus an independent Poisson when shifted (the sum is Poisson).
    tickets = draw["tickets"].poisson(0.8, n)
    extra_tickets = draw["tickets_shift"].poisson(1.5 * max(strength, 0.0), n)
    tickets = np.minimum(tickets + np.where(shifted, extra_tickets, 0), 100).astype(np.int64)

    sessions, days = _engagement(draw, n)
    devices = 1 + draw["devices"].poisson(np.where(plan == 2, 1.4, 0.6), n)
    autopay = draw["autopay"].random(n) < np.where(plan == 2, 0.75, 0.55)
    failures = draw["failures"].poisson(np.where(autopay, 0.08, 0.35), n)
    discount = np.round(draw["discount"].beta(2.0, 8.0, n), 3)
    discount[draw["discount_zero"].random(n) < 0.7] = 0.0

    return {
        "region": region,
        "plan": plan,
        "channel": channel.astype(np.int8),
        "age": age,
        "tenure_months": tenure,
        "monthly_charges": charges,
        "total_charges": total,
        "support_tickets": tickets,
        "days_since_last_login": days.astype(np.int64),
        "sessions_per_week": sessions,
        "num_devices": np.minimum(devices, 20).astype(np.int64),
        "payment_failures": np.minimum(failures, 50).astype(np.int64),
        "discount_pct": discount,
        "autopay": autopay,
    }


# Region x channel interactions of the churn logit, rows REGIONS, columns CHANNELS.
_REGION_CHANNEL = np.zeros((len(REGIONS), len(CHANNELS)))
_REGION_CHANNEL[REGIONS.index("south"), CHANNELS.index("paid_search")] = 0.9
_REGION_CHANNEL[REGIONS.index("west"), CHANNELS.index("social")] = 0.6
_REGION_CHANNEL[REGIONS.index("north"), CHANNELS.index("referral")] = -0.7
_REGION_CHANNEL[REGIONS.index("east"), CHANNELS.index("partner")] = -0.5
_REGION_CHANNEL[REGIONS.index("central"), CHANNELS.index("organic")] = 0.4
_PLAN_EFFECT = np.array([0.45, 0.0, -0.35])


def _churn_logit(
    features: Mapping[str, np.ndarray],
    concept_mask: BoolArray | None = None,
    strength: float = 0.0,
) -> FloatArray:
    """Log-odds of churn: non-linear, with segment interactions.

    Inside ``concept_mask`` the relationship itself changes (concept drift): churn rises,
    and autopay, discounts and long tenure stop protecting customers and start to hurt.
    """
    plan = features["plan"].astype(np.intp)
    tenure = features["tenure_months"].astype(np.float64)
    charges = features["monthly_charges"]
    tickets = features["support_tickets"].astype(np.float64)
    sessions = np.nan_to_num(features["sessions_per_week"], nan=3.0)
    age = np.nan_to_num(features["age"], nan=44.0)
    autopay = features["autopay"].astype(np.float64)
    discount = features["discount_pct"]

    logit = -1.2 + _PLAN_EFFECT[plan]
    # Basic is month-to-month-like: early tenure churns a lot more there.
    logit += np.where(plan == 0, 0.9 * np.clip(1.0 - tenure / 12.0, 0.0, 1.0), 0.0)
    # Loyalty builds with tenure, except around the 3-year renewal.
    logit += -0.9 * (1.0 - np.exp(-tenure / 18.0)) + 0.7 * np.exp(-(((tenure - 36.0) / 6.0) ** 2))
    # Price relative to what the plan normally costs; a step for bills far above it.
    relative_price = charges / _PLAN_PRICE[plan]
    logit += 0.8 * np.log(np.maximum(relative_price, 0.05)) + 0.6 * (relative_price > 2.0)
    # Tickets hurt, and much more from customers who barely use the product.
    logit += 0.22 * tickets + 0.45 * tickets * (sessions < 1.5)
    logit += 0.025 * np.minimum(features["days_since_last_login"], 60)
    logit -= 0.15 * np.log1p(sessions)
    logit += 0.45 * np.minimum(features["payment_failures"], 5)
    logit -= 0.45 * autopay + 1.6 * discount
    logit += _REGION_CHANNEL[features["region"].astype(np.intp), features["channel"].astype(np.intp)]
    logit += 0.0006 * (age - 44.0) ** 2 - 0.12
    logit -= 0.12 * (np.minimum(features["num_devices"], 6) - 1)

    if concept_mask is not None and strength > 0:
        flipped = 0.9 + 0.9 * autopay + 0.035 * (np.minimum(tenure, 60.0) - 12.0) + 2.0 * discount
        logit += np.where(concept_mask, strength * flipped, 0.0)
    return logit


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def _draw_labels(
    rng: np.random.Generator,
    features: Mapping[str, np.ndarray],
    concept_mask: BoolArray | None = None,
    strength: float = 0.0,
) -> npt.NDArray[np.int64]:
    u = rng.random(len(features["region"]))
    return (u < _sigmoid(_churn_logit(features, concept_mask, strength))).astype(np.int64)


def _to_utc(value: pd.Timestamp | str) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is read as UTC."""
    return utc_timestamp(value)


def _base_window(start: pd.Timestamp | str | None, end: pd.Timestamp | str | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    span = pd.Timedelta(days=DEFAULT_BASE_DAYS)
    if start is None and end is None:
        return DEFAULT_BASE_END - span, DEFAULT_BASE_END
    if start is None:
        end_ts = _to_utc(end)
        return end_ts - span, end_ts
    start_ts = _to_utc(start)
    end_ts = start_ts + span if end is None else _to_utc(end)
    if end_ts <= start_ts:
        raise ValueError(f"end ({end_ts}) must be after start ({start_ts})")
    return start_ts, end_ts


def _object_values(codes: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Category codes -> an object array of plain ``str`` (what the schemas expect)."""
    return np.asarray(np.array(names, dtype=object)[codes])


def _frame(features: Mapping[str, np.ndarray], columns: Mapping[str, object]) -> pd.DataFrame:
    """Features (codes decoded) plus extra columns, in the order the schemas declare."""
    data: dict[str, object] = {}
    for name in FEATURE_COLUMNS:
        values = features[name]
        data[name] = _object_values(values, SEGMENT_COLUMNS[name]) if name in SEGMENT_COLUMNS else values
    data.update(columns)
    return pd.DataFrame(data, copy=False)


def _check_segment(segment: Mapping[str, str] | None) -> None:
    for column, value in (segment or {}).items():
        if column not in SEGMENT_COLUMNS:
            raise ValueError(f"segment column {column!r} is not one of {sorted(SEGMENT_COLUMNS)}")
        if value not in SEGMENT_COLUMNS[column]:
            raise ValueError(f"segment value {value!r} is not a {column}: expected one of {SEGMENT_COLUMNS[column]}")


def generate_base(
    n_rows: int,
    seed: int = 0,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    id_offset: int = 0,
    progress: bool = False,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> pd.DataFrame:
    """Labelled training rows that pass ``ChurnTrainingSchema`` as they are (no coercion).

    Args:
        n_rows: How many rows.
        seed: Same seed and arguments, same frame.
        start: First instant of the period (UTC; naive is read as UTC). Default: 180 days
            before ``end``.
        end: End of the period, exclusive. Default: 2026-10-01 UTC, or ``start`` + 180 days.
            Fixed defaults, never "now", so the bytes do not change from day to day.
        id_offset: ``customer_id`` is ``id_offset + arange(n_rows)``.
        progress: Show a tqdm bar (one step per chunk).
        chunk_rows: Rows generated at a time; bounds the scratch memory, not the output.

    Returns:
        The frame, columns in the order of ``TRAINING_COLUMNS``, ``event_time`` unsorted.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if seed < 0 or id_offset < 0:
        raise ValueError("seed and id_offset must be >= 0")
    start_ts, end_ts = _base_window(start, end)
    span_ns = end_ts.value - start_ts.value

    streams = _streams(seed, _BASE_DOMAIN)
    out: dict[str, np.ndarray] = {}
    event_ns = np.empty(n_rows, dtype=np.int64)
    churned = np.empty(n_rows, dtype=np.int64)
    with tqdm(total=n_rows, disable=not progress, unit="row", unit_scale=True, desc="base") as bar:
        for lo in range(0, n_rows, chunk_rows):
            hi = min(lo + chunk_rows, n_rows)
            features = _sample_features(streams, hi - lo)
            for name, values in features.items():
                if name not in out:
                    out[name] = np.empty(n_rows, dtype=values.dtype)
                out[name][lo:hi] = values
            offsets = streams["event_time"].random(hi - lo) * span_ns
            event_ns[lo:hi] = start_ts.value + offsets.astype(np.int64)
            churned[lo:hi] = _draw_labels(streams["label"], features)
            bar.update(hi - lo)
    if n_rows == 0:
        out = {name: values[:0] for name, values in _sample_features(streams, 0).items()}

    frame = _frame(out, {"churned": churned})
    frame.insert(0, "customer_id", np.arange(id_offset, id_offset + n_rows, dtype=np.int64))
    frame.insert(1, "event_time", pd.to_datetime(event_ns, unit="ns", utc=True))
    return frame


@dataclass(frozen=True, eq=False)
class ProductionBatch:
    """One interval of simulated serving traffic, with the labels that arrive later.

    Attributes:
        index: Position of the batch (0-based).
        start: Start of the batch's interval; every ``event_time`` is in
            ``[start, start + interval)``.
        features: ``ChurnFeatures`` columns plus ``request_id`` and ``event_time``.
        labels: ``request_id``, ``churned`` (int 0/1) and ``label_time`` (after the request).
        first_customer_id: ``customer_id`` of the first row; rows are numbered on from it
            (see ``to_training_frame``).
    """

    index: int
    start: pd.Timestamp
    features: pd.DataFrame
    labels: pd.DataFrame
    first_customer_id: int


def generate_production(
    n_batches: int,
    rows_per_batch: int,
    seed: int = 1,
    start: pd.Timestamp | str | None = None,
    batch_interval: pd.Timedelta = pd.Timedelta(hours=1),
    drift: Drift = "none",
    segment: Mapping[str, str] | None = None,
    drift_strength: float = 1.0,
    id_offset: int = DEFAULT_PRODUCTION_ID_OFFSET,
) -> list[ProductionBatch]:
    """Simulated serving traffic, optionally drifting inside one segment.

    Args:
        n_batches: How many consecutive intervals.
        rows_per_batch: Requests per interval.
        seed: Batch ``i`` depends only on ``(seed, i)`` and the drift arguments.
        start: Start of batch 0 (UTC). Default: 2026-10-01 UTC, where base data ends.
        batch_interval: Length of one batch's interval.
        drift: ``"none"``: the base distributions. ``"covariate"``: inside the segment,
            higher monthly charges, shorter tenure, more support tickets and more paid-search
            customers (the channel mix is left alone when the segment is a channel); labels
            follow the same function of the features, so P(y|x) is unchanged.
            ``"concept"``: the features are exactly those of ``"none"``, but inside the
            segment churn rises and autopay, discounts and tenure stop protecting customers.
        segment: Category values that select the drifting rows, e.g. ``{"region": "south"}``
            (keys: region, plan, channel). None: every row drifts.
        drift_strength: Scales the drift (0 = none; 1 = clearly visible).
        id_offset: First ``customer_id`` of batch 0; keep it clear of the base ids.

    Returns:
        One ``ProductionBatch`` per interval, in order.
    """
    if n_batches < 0 or rows_per_batch < 0:
        raise ValueError("n_batches and rows_per_batch must be >= 0")
    if seed < 0 or id_offset < 0:
        raise ValueError("seed and id_offset must be >= 0")
    if drift not in ("none", "covariate", "concept"):
        raise ValueError(f"drift must be 'none', 'covariate' or 'concept', got {drift!r}")
    if not drift_strength >= 0:
        raise ValueError(f"drift_strength must be >= 0, got {drift_strength}")
    interval = pd.Timedelta(batch_interval)
    if interval <= pd.Timedelta(0):
        raise ValueError(f"batch_interval must be positive, got {interval}")
    _check_segment(segment)
    first_start = DEFAULT_PRODUCTION_START if start is None else _to_utc(start)

    shift = _Shift(segment, drift_strength) if drift == "covariate" else None
    row_numbers = np.char.zfill(np.arange(rows_per_batch).astype(str), 7).astype(object)
    batches = []
    for index in range(n_batches):
        streams = _streams(seed, _PRODUCTION_DOMAIN, index)
        features = _sample_features(streams, rows_per_batch, shift)
        concept_mask = _segment_mask(features, segment) if drift == "concept" else None
        churned = _draw_labels(streams["label"], features, concept_mask, drift_strength)

        batch_start = first_start + index * interval
        offsets = (streams["event_time"].random(rows_per_batch) * interval.value).astype(np.int64)
        event_time = pd.to_datetime(batch_start.value + offsets, unit="ns", utc=True)
        delay_days = 1 + np.minimum(np.floor(streams["label_delay"].standard_exponential(rows_per_batch) * 7), 59)
        label_time = event_time + pd.to_timedelta(delay_days.astype(np.int64), unit="D")
        request_id = f"req-{seed}-{index:05d}-" + row_numbers

        frame = _frame(features, {"request_id": request_id, "event_time": event_time})
        labels = pd.DataFrame({"request_id": request_id, "churned": churned, "label_time": label_time}, copy=False)
        batches.append(
            ProductionBatch(
                index=index,
                start=batch_start,
                features=frame,
                labels=labels,
                first_customer_id=id_offset + index * rows_per_batch,
            )
        )
    return batches


def to_capture_frame(
    batch: ProductionBatch,
    prediction: npt.ArrayLike | None = None,
    model_version: str | None = None,
) -> pd.DataFrame:
    """The batch as serving captures it (passes ``ChurnCaptureSchema``); labels come later.

    Args:
        batch: The production batch.
        prediction: One churn probability per row; None: NaN (not scored).
        model_version: Version that scored the rows; None: missing.
    """
    n = len(batch.features)
    frame = batch.features.loc[:, [*FEATURE_COLUMNS, "request_id", "event_time"]].copy()
    frame.insert(
        len(FEATURE_COLUMNS),
        "customer_id",
        np.arange(batch.first_customer_id, batch.first_customer_id + n, dtype=np.int64),
    )
    if prediction is None:
        scores = np.full(n, np.nan)
    else:
        scores = np.asarray(prediction, dtype=np.float64)
        if scores.shape != (n,):
            raise ValueError(f"prediction must have one value per row ({n}), got shape {scores.shape}")
    frame["prediction"] = scores
    frame["model_version"] = pd.Series([model_version] * n, index=frame.index, dtype=object)
    frame["churned"] = np.full(n, np.nan)
    return frame


def to_training_frame(batch: ProductionBatch) -> pd.DataFrame:
    """The batch's requests joined with their labels, as ``ChurnTrainingSchema`` rows.

    ``customer_id`` is ``batch.first_customer_id`` onward, so it never collides with base ids
    while ``generate_production``'s ``id_offset`` stays above them.
    """
    labelled = batch.features.merge(
        batch.labels[["request_id", "churned"]], on="request_id", how="inner", validate="1:1"
    )
    n = len(labelled)
    ids = np.arange(batch.first_customer_id, batch.first_customer_id + n, dtype=np.int64)
    labelled.insert(0, "customer_id", ids)
    return labelled.loc[:, list(TRAINING_COLUMNS)]


def churn_probability(features: pd.DataFrame) -> FloatArray:
    """The true P(churn | features) without concept drift: the oracle to judge models by."""
    data: dict[str, np.ndarray] = {}
    for name in FEATURE_COLUMNS:
        column = features[name]
        if name in SEGMENT_COLUMNS:
            codes = pd.Categorical(column, categories=SEGMENT_COLUMNS[name]).codes
            if (codes < 0).any():
                raise ValueError(f"{name} has values outside {SEGMENT_COLUMNS[name]}")
            data[name] = codes
        else:
            data[name] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return _sigmoid(_churn_logit(data))
