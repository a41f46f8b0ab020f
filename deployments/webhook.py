"""The drift-alert webhook's dispatcher: governor first, then a run of ``retrain-on-drift``.

Prefect's idempotency key is built from the alert id (keys are permanent per flow), so a
redelivered alert never starts a second run. When Prefect is unreachable the alert is written
to an outbox in the store and retried (on the next alert and every ``retry_every_s``), and the
sender gets 503, so nothing is lost.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from refit.config import PipelineConfig
from refit.errors import RefitError
from refit.io import Store
from refit.policy import DriftSignal, Governor
from refit.webhook import DispatchResult, DispatchUnavailable, DriftAlert

logger = logging.getLogger("refit.webhook")

RETRAIN_ON_DRIFT = "retrain/retrain-on-drift"


def idempotency_key(alert: DriftAlert) -> str:
    return f"refit-alert-{alert.model}-{alert.alert_id}"


class PrefectDispatcher:
    """Turns an authenticated alert into at most one retrain run."""

    def __init__(
        self,
        store: Store,
        config: PipelineConfig,
        config_path: str,
        deployment: str = RETRAIN_ON_DRIFT,
        retry_every_s: float = 30.0,
    ) -> None:
        self.store = store
        self.config = config
        self.config_path = config_path
        self.deployment = deployment
        self.retry_every_s = retry_every_s
        self._lock = threading.RLock()  # one decision at a time in this process; the ledger's CAS covers others
        self._stop = threading.Event()

    def _outbox(self, model: str) -> str:
        return f"webhook/{model}/outbox/"

    def _champion(self, model: str) -> str | None:
        from refit.registry import Registry

        try:
            return str(Registry(self.store).resolve(f"{model}@champion").version)
        except RefitError:
            return None

    def __call__(self, alert: DriftAlert) -> DispatchResult:
        if alert.model != self.config.dataset.name:
            return DispatchResult(status="ignored", reason=f"unknown model {alert.model!r}")
        self.retry_pending()
        now = datetime.now(UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
        signal = DriftSignal(
            model=alert.model,
            source="alert",
            alert_id=alert.alert_id,
            window_start=hour - timedelta(hours=1),
            window_end=hour,
            champion_version=self._champion(alert.model),
            drift_detected=True,
            drift_share=alert.drift_share,
            detail=alert.reason or "drift alert",
        )
        with self._lock:
            entry = Governor(self.store, alert.model, self.config.drift).submit(signal, now=now)
            if not entry.decision.trigger:
                return DispatchResult(status="suppressed", reason=f"{entry.decision.reason}: {entry.decision.detail}")
            pending = {"alert": alert.model_dump(mode="json"), "ledger_seq": entry.seq, "received_at": now.isoformat()}
            key = f"{self._outbox(alert.model)}{alert.alert_id}.json"
            self.store.put_bytes(key, json.dumps(pending).encode())  # recorded before we try Prefect
            run_id = self._start_run(alert)
            self.store.delete(key)
        return DispatchResult(status="accepted", flow_run_id=run_id)

    def _start_run(self, alert: DriftAlert) -> str:
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment

        params = {
            "config_path": self.config_path,
            "trigger": "drift",
            "reason": f"drift alert {alert.alert_id}: {alert.reason or 'no reason given'}",
            "drift": {
                "alert_id": alert.alert_id,
                "source": alert.source,
                "drift_share": alert.drift_share,
                "drifted_columns": list(alert.drifted_columns),
                "severity": alert.severity,
            },
        }
        try:
            with get_client(sync_client=True) as client:
                deployment = client.read_deployment_by_name(self.deployment)
            # A run's parameters replace the deployment's `params` object whole: start from the
            # deployment's defaults (window_days, ...) so that only what the alert decides changes.
            defaults = (deployment.parameters or {}).get("params") or {}
            run = run_deployment(
                deployment.id,
                parameters={"params": defaults | params},
                timeout=0,
                idempotency_key=idempotency_key(alert),
            )
        except Exception as exc:  # httpx errors, Prefect API errors: the outbox keeps the alert
            logger.warning(
                "Prefect unreachable for alert %s: %s (kept in the outbox, will retry)",
                alert.alert_id,
                type(exc).__name__,
            )
            raise DispatchUnavailable(
                f"Prefect API unavailable ({type(exc).__name__}); alert kept for retry",
                retry_after_s=int(self.retry_every_s),
            ) from None
        return str(run.id)

    def retry_pending(self) -> list[str]:
        """Start the runs of alerts that were accepted while Prefect was down; returns their run ids."""
        started = []
        with self._lock:
            for key in self.store.list(self._outbox(self.config.dataset.name)):
                alert = DriftAlert.model_validate(json.loads(self.store.get_bytes(key))["alert"])
                try:
                    started.append(self._start_run(alert))
                except DispatchUnavailable:
                    break
                self.store.delete(key)
        return started

    def run_retry_loop(self) -> threading.Thread:
        """Retry the outbox in the background until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(self.retry_every_s):
                try:
                    self.retry_pending()
                except Exception as exc:  # never kill the loop
                    logger.warning("outbox retry failed: %s", exc)

        thread = threading.Thread(target=loop, name="refit-webhook-outbox", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def build_app(
    store: Store,
    config: PipelineConfig,
    config_path: str,
    settings: Any,
    insecure_dev: bool = False,
    retry_every_s: float = 30.0,
) -> tuple[Any, PrefectDispatcher]:
    from refit.webhook import create_app

    dispatcher = PrefectDispatcher(store, config, config_path, retry_every_s=retry_every_s)
    app = create_app(dispatcher, settings=settings, default_model=config.dataset.name, insecure_dev=insecure_dev)
    return app, dispatcher
