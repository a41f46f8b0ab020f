"""The deployments, declared once: schedules, triggers, parameters and concurrency."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType
from prefect.events import AutomationCore, DeploymentEventTrigger, EventTrigger, Posture
from prefect.events.actions import SendNotification
from prefect.schedules import Cron

from deployments.settings import DeploymentSettings
from flows.drift_check import DriftCheckParameters, drift_check
from flows.retrain import RetrainParameters, retrain
from tasks.names import DRIFT_EVENT, REJECTED_EVENT, RETRAIN_ON_DRIFT

RETRAIN_WEEKLY = "retrain-weekly"
RETRAIN_MANUAL = "retrain-manual"
DRIFT_CHECK_HOURLY = "drift-check-hourly"
#: The automations that notify (created by ``refit serve`` when a notification block is set).
RETRAIN_FAILED_AUTOMATION = "notify when a retrain fails"
RETRAIN_REJECTED_AUTOMATION = "notify when a retrain is rejected"
#: Flow-run states that end a retrain badly (TimedOut: the run's timeouts.retrain_s ran out).
FAILED_STATES = ("Failed", "Crashed", "TimedOut")


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


def build_notifications(block_document_id: UUID) -> list[AutomationCore]:
    """Two automations that send to one notification block: a retrain run that ends Failed,
    Crashed or TimedOut (any deployment, or none), and a candidate the gate did not promote
    (the ``refit.model.rejected`` event of the register step).

    Args:
        block_document_id: The notification block (Slack, Teams, a custom webhook...) to send to.
    """
    failed = EventTrigger(
        expect={f"prefect.flow-run.{state}" for state in FAILED_STATES},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": retrain.name},
        posture=Posture.Reactive,
        threshold=1,
    )
    rejected = EventTrigger(
        expect={REJECTED_EVENT},
        match={"prefect.resource.id": "refit.model.*"},
        posture=Posture.Reactive,
        threshold=1,
    )
    return [
        AutomationCore(
            name=RETRAIN_FAILED_AUTOMATION,
            description="A retrain run ended Failed, Crashed or TimedOut.",
            trigger=failed,
            actions=[
                SendNotification(
                    block_document_id=block_document_id,
                    subject="refit: retrain {{ event.resource['prefect.state-name'] }}",
                    body="retrain run {{ event.resource.name }} ended {{ event.resource['prefect.state-name'] }}: "
                    "{{ event.resource['prefect.state-message'] }}",
                )
            ],
        ),
        AutomationCore(
            name=RETRAIN_REJECTED_AUTOMATION,
            description="A retrained candidate was registered but not promoted (rejected or inconclusive).",
            trigger=rejected,
            actions=[
                SendNotification(
                    block_document_id=block_document_id,
                    subject="refit: {{ event.resource['refit.model'] }} candidate not promoted",
                    body="{{ event.resource['refit.model'] }} version {{ event.resource['refit.version'] }} "
                    "not promoted ({{ event.payload.outcome }}): {{ event.payload.headline }}",
                )
            ],
        ),
    ]
