"""Data tasks: load + validate with quarantine, stage the valid rows."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from refit.config import PipelineConfig
from refit.data import ValidatedData, stage_validated
from tasks.common import open_run_store, transient_store_error


@task(name="validate-data", retries=2, retry_delay_seconds=2, retry_condition_fn=transient_store_error)
def validate_data(config: PipelineConfig, run_id: str, store_uri: str | None = None) -> ValidatedData:
    """Read the training data, quarantine bad rows, stop when too many are bad."""
    logger = get_run_logger()
    handle, result = stage_validated(open_run_store(store_uri), config, run_id)
    summary = result.summary
    logger.info(
        "validated %s rows from %d file(s): %s valid, %s quarantined (%.2f%%), fingerprint %s",
        f"{summary.rows:,}",
        len(summary.sources),
        f"{summary.valid_rows:,}",
        f"{summary.invalid_rows:,}",
        100 * summary.invalid_fraction,
        handle.fingerprint.short,
    )
    if summary.failures:
        create_table_artifact(
            key=f"{config.dataset.name}-quarantine",
            table=[
                {
                    "column": f.column,
                    "rule": f.rule,
                    "rows": f.count,
                    "examples": ", ".join(f.examples[:3]),
                    "files": ", ".join(f.sources),
                }
                for f in summary.failures
            ],
            description=f"Rows quarantined by validation; kept at {handle.quarantine_uri}",
        )
    return handle
