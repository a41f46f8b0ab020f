"""Schedules and defaults of the deployments, from the environment (``REFIT_`` prefix)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DeploymentSettings(BaseSettings):
    """Change schedules and defaults without editing code: ``REFIT_RETRAIN_CRON="0 4 * * 1"``."""

    model_config = SettingsConfigDict(env_prefix="REFIT_", extra="ignore")

    config_path: str = Field("refit.yaml", description="Pipeline config the deployments run with.")
    retrain_cron: str = Field("0 3 * * 1", description="retrain-weekly: Mondays 03:00.")
    drift_cron: str = Field("0 * * * *", description="drift-check-hourly: every hour.")
    timezone: str = "UTC"
    window_days: float | None = Field(
        None, description="Labelled captures joined into training (unset: training.window_days of the config)."
    )
    drift_window_hours: int | None = Field(
        None, description="Captures compared with the champion's reference (unset: drift.window_hours of the config)."
    )
    retrain_collision: Literal["ENQUEUE", "CANCEL_NEW"] = Field(
        "ENQUEUE", description="When a retrain is already running: queue the new one, or cancel it."
    )
    schedules_paused: bool = Field(False, description="Create the scheduled deployments paused.")
    notify_block: str | None = Field(
        None,
        description="Notification block the failure/rejection automations send to, as 'block-type-slug/name' "
        "(e.g. slack-webhook/ops); made in the UI or with Python. Wins over notify_webhook_url.",
    )
    notify_webhook_url: SecretStr | None = Field(
        None,
        description="Or a URL: refit saves a Custom Webhook block (refit-notify) that POSTs "
        '{"subject": ..., "body": ...} as JSON to it. A secret: never logged.',
    )
