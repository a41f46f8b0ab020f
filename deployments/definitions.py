"""The deployments, declared once: schedules, triggers, parameters and concurrency."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from deployments.settings import DeploymentSettings
from flows.drift_check import DriftCheckParameters, drift_check
from flows.retrain import RetrainParameters, retrain
from tasks.names import DRIFT_EVENT, RETRAIN_ON_DRIFT

RETRAIN_WEEKLY = "retrain-weekly"
RETRAIN_MANUAL = "retrain-manual"
DRIFT_CHECK_HOURLY = "drift-check-hourly"


def _retrain_params(settings: DeploymentSettings, store: str | None, **overrides: Any) -> dict[str, Any]:
    params = RetrainParameters(
        config_path=settings.config_path, store=store, window_days=settings.window_days, **overrides
    )
    return {"params": params.model_dump(mode="json")}


def build_deployments(settings: DeploymentSettings | None = None, store: str | None = None) -> list[Any]:
    """The four deployments as ``RunnerDeployment`` objects (serve them, or deploy to a work pool).

    Args:
        settings: Schedules and defaults (default: from ``REFIT_*`` variables).
        store: The store every run reads and writes (``refit serve`` passes the one it was started
            with); None leaves it to each run's worker (``REFIT_STORE`` there). A drift-triggered
            retrain uses the store the drift was found in, named by the event.
    """
    settings = settings or DeploymentSettings()
    one_retrain = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy(settings.retrain_collision)
    )
    drift_trigger = DeploymentEventTrigger(
        name="retrain when drift is detected",
        expect={DRIFT_EVENT},
        match={"prefect.resource.id": "refit.model.*"},
        parameters={
            "params": {
                "config_path": settings.config_path,
                # the store the drift was found in; an event that names none: the worker's REFIT_STORE
                "store": "{{ event.payload.store | default(none) }}",
                "window_days": settings.window_days,
                # the retrain runs as of the drifted window's end, the drift check's clock
                "as_of": "{{ event.payload.window_end | default(none) }}",
                "trigger": "drift",
                "reason": "drift detected on {{ event.resource.id }}: {{ event.payload.reason }}",
                "drift": "{{ event.payload }}",
            }
        },
    )
    return [
        retrain.to_deployment(
            name=RETRAIN_WEEKLY,
            schedules=[Cron(settings.retrain_cron, timezone=settings.timezone)],
            paused=settings.schedules_paused,
            parameters=_retrain_params(settings, store, trigger="schedule", reason="weekly retrain"),
            concurrency_limit=one_retrain,
            tags=["refit", "retrain"],
            entrypoint_type=EntrypointType.MODULE_PATH,
            description="Scheduled retrain: validate, train, gate per segment, register, promote.",
        ),
        retrain.to_deployment(
            name=RETRAIN_MANUAL,
            parameters=_retrain_params(settings, store, trigger="manual"),
            concurrency_limit=one_retrain,
            tags=["refit", "retrain"],
            entrypoint_type=EntrypointType.MODULE_PATH,
            description="Start a retrain by hand: Run > Custom run edits the parameters as a form.",
        ),
        retrain.to_deployment(
            name=RETRAIN_ON_DRIFT,
            triggers=[drift_trigger],
            parameters=_retrain_params(settings, store, trigger="drift"),
            concurrency_limit=one_retrain,
            tags=["refit", "retrain", "drift"],
            entrypoint_type=EntrypointType.MODULE_PATH,
            description=f"Started by the {DRIFT_EVENT} event (drift-check flow) or by the drift-alert webhook.",
        ),
        drift_check.to_deployment(
            name=DRIFT_CHECK_HOURLY,
            schedules=[Cron(settings.drift_cron, timezone=settings.timezone)],
            paused=settings.schedules_paused,
            parameters={
                "params": DriftCheckParameters(
                    config_path=settings.config_path, store=store, window_hours=settings.drift_window_hours
                ).model_dump(mode="json")
            },
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            tags=["refit", "drift"],
            entrypoint_type=EntrypointType.MODULE_PATH,
            description="Compare the last hours of captured traffic with the champion's training reference.",
        ),
    ]
