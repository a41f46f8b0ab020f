"""Deterministic demo data (subscription churn) for training and simulated production."""

from refit.datasets.churn import (
    CAPTURE_COLUMNS,
    DEFAULT_BASE_DAYS,
    DEFAULT_BASE_END,
    DEFAULT_PRODUCTION_ID_OFFSET,
    DEFAULT_PRODUCTION_START,
    FEATURE_COLUMNS,
    SEGMENT_COLUMNS,
    TRAINING_COLUMNS,
    Drift,
    ProductionBatch,
    churn_probability,
    generate_base,
    generate_production,
    to_capture_frame,
    to_training_frame,
)

__all__ = [
    "CAPTURE_COLUMNS",
    "DEFAULT_BASE_DAYS",
    "DEFAULT_BASE_END",
    "DEFAULT_PRODUCTION_ID_OFFSET",
    "DEFAULT_PRODUCTION_START",
    "FEATURE_COLUMNS",
    "SEGMENT_COLUMNS",
    "TRAINING_COLUMNS",
    "Drift",
    "ProductionBatch",
    "churn_probability",
    "generate_base",
    "generate_production",
    "to_capture_frame",
    "to_training_frame",
]
