"""refit: the Prefect-free core of the retraining pipeline."""

__version__ = "0.1.0"
