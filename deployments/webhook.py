"""The drift-alert webhook's dispatcher: governor first, then a run of ``retrain-on-drift``.

What it guarantees, and how:

* **An alert the governor lets through is never lost.** Before a trigger is recorded in the
  ledger, the alert is written to an outbox in the store (``webhook/<model>/outbox/``); when
  that write fails nothing is recorded, the sender gets 500 and its retry is decided afresh.
  The entry leaves the outbox only once Prefect has the run. A background task retries what
  is left there; Prefect's idempotency key (built from the alert id: keys are permanent per
  flow) makes a second start of the same alert return the same run.
* **No request waits on Prefect longer than ``prefect_deadline_s``** (``PREFECT_DEADLINE_S``,
  5 s, unless ``REFIT_WEBHOOK_PREFECT_DEADLINE_S`` says otherwise). Prefect is called outside
  the decision lock, from a small thread pool, and the request stops waiting at the deadline:
  the alert stays in the outbox and the sender gets 202 ``queued``. After a failure the
  requests of the next ``retry_every_s`` do not call Prefect at all; the background task does.
* **A decision costs the same however long the ledger is**: one :class:`Governor` per model
  for the life of the process (see ``refit.policy``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from refit.config import PipelineConfig
from refit.errors import NotFoundError, RefitError, first_line
from refit.io import Store
from refit.io.layout import LAYOUT
from refit.policy import Decision, DriftSignal, Governor
from refit.webhook import DispatchResult, DispatchUnavailable, DriftAlert
from tasks.names import RETRAIN_ON_DRIFT_FULL_NAME

logger = logging.getLogger("refit.webhook")

PREFECT_DEADLINE_S = 5.0  # the longest a request waits on Prefect: the one place this default lives
RETRY_EVERY_S = 30.0
CHAMPION_TTL_S = 2.0  # how long a champion lookup is reused (promotions are rare; alerts come in storms)
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

RunStarter = Callable[[DriftAlert], str]


class WebhookSettings(BaseSettings):
    """The receiver's timing, from ``REFIT_WEBHOOK_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="REFIT_WEBHOOK_", extra="ignore")

    prefect_deadline_s: float = Field(
        PREFECT_DEADLINE_S, gt=0, description="Longest a request waits on Prefect before answering 202 queued."
    )
    retry_every_s: float = Field(RETRY_EVERY_S, gt=0, description="How often the outbox is retried.")


def _alert_name(alert: DriftAlert) -> str:
    """The alert's id and, when it names one, its window's end: one name per alert and window."""
    window = f"-{alert.window_end.astimezone(UTC):%Y%m%dT%H%M%SZ}" if alert.window_end is not None else ""
    return f"{alert.alert_id}{window}"


def idempotency_key(alert: DriftAlert) -> str:
    """Prefect's key for the alert's run: a redelivery (same id, same window) gets the first run
    back. The window's end is part of it: a sender that reuses an id for a later window got the
    earlier, finished run back, answered "accepted", and no retrain ran."""
    return f"refit-alert-{alert.model}-{_alert_name(alert)}"


def outbox_name(alert: DriftAlert) -> str:
    """The alert's object name in the outbox, one per alert and window (as its run's key): its
    name when that is a safe key, else a hash of it."""
    name = _alert_name(alert)
    if _SAFE_NAME.fullmatch(name) and ".." not in name:
        return f"{name}.json"
    return f"sha256-{hashlib.sha256(name.encode()).hexdigest()[:40]}.json"


class PrefectDispatcher:
    """Turns an authenticated alert into at most one retrain run (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        config: PipelineConfig,
        config_path: str,
        deployment: str = RETRAIN_ON_DRIFT_FULL_NAME,
        retry_every_s: float = RETRY_EVERY_S,
        prefect_deadline_s: float = PREFECT_DEADLINE_S,
        start_run: RunStarter | None = None,
    ) -> None:
        if prefect_deadline_s <= 0 or retry_every_s <= 0:
            raise ValueError("prefect_deadline_s and retry_every_s must be positive")
        self.store = store
        self.config = config
        self.config_path = config_path
        self.deployment = deployment
        self.retry_every_s = retry_every_s
        self.prefect_deadline_s = prefect_deadline_s
        self.model = config.dataset.name
        self.governor = Governor(store, self.model, config.drift)
        self._start_run: RunStarter = start_run or self.start_prefect_run
        self._retry_lock = threading.Lock()  # one outbox pass at a time
        self._unreadable: set[str] = set()  # outbox objects that are not pending alerts (warned once)
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="refit-prefect")
        self._failed_at: float | None = None  # monotonic time of the last failed Prefect call
        self._champion_cache: tuple[float, str | None] | None = None
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def outbox(self) -> str:
        return LAYOUT.webhook_outbox(self.model)

    def _champion(self) -> str | None:
        cached = self._champion_cache
        if cached is not None and time.monotonic() - cached[0] < CHAMPION_TTL_S:
            return cached[1]
        from refit.registry import Registry

        try:
            version: str | None = str(Registry(self.store).champion(self.model).version)
        except RefitError:
            version = None
        self._champion_cache = (time.monotonic(), version)
        return version

    def __call__(self, alert: DriftAlert) -> DispatchResult:
        if alert.model != self.model:
            return DispatchResult(
                status="unknown_model",
                reason=f"unknown model {alert.model!r}: this receiver serves {self.model!r}; "
                "the alert was not delivered",
            )
        now = datetime.now(UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
        signal = DriftSignal(
            model=alert.model,
            source="alert",
            alert_id=alert.alert_id,
            window_start=(alert.window_end or hour) - timedelta(hours=1),
            window_end=alert.window_end or hour,
            champion_version=self._champion(),
            drift_detected=True,
            drift_share=alert.drift_share,
            detail=alert.reason or "drift alert",
        )
        key = self.outbox + outbox_name(alert)
        written: list[str] = []

        def write_outbox(decision: Decision) -> None:
            pending = {
                "alert": alert.model_dump(mode="json"),
                "signal": signal.model_dump(mode="json"),
                "received_at": now.isoformat(),
            }
            self.store.put_bytes(key, json.dumps(pending).encode())
            written.append(key)

        # The governor decides from memory and records this with the decisions taken meanwhile:
        # one store write, under its own lock; Prefect is never called under it.
        # an alert that names its window is decided on the data's clock, as the drift check is (the
        # cooldown and the daily cap compare window times in one ledger); one that does not, on
        # ours (the governor caps a future one: refit.clock.MAX_DECISION_AHEAD)
        entry = self.governor.submit(signal, now=alert.window_end or now, before_trigger=write_outbox)
        if not entry.decision.trigger:
            if written:  # decided again after another writer's entry, and not a trigger this time
                self._remove(key)
            return DispatchResult(status="suppressed", reason=f"{entry.decision.reason}: {entry.decision.detail}")
        if self._prefect_recently_failed():
            return DispatchResult(
                status="queued", reason="Prefect was unreachable moments ago; the run starts from the outbox"
            )
        try:
            run_id = self.start_within_deadline(alert)
        except DispatchUnavailable as exc:
            return DispatchResult(status="queued", reason=f"{exc}; the run starts from the outbox")
        self._remove(key)
        return DispatchResult(status="accepted", flow_run_id=run_id)

    def _prefect_recently_failed(self) -> bool:
        failed = self._failed_at
        return failed is not None and time.monotonic() - failed < self.retry_every_s

    def _remove(self, key: str) -> None:
        try:
            self.store.delete(key)
        except RefitError as exc:  # the run exists; a retry finds it again by its idempotency key
            logger.warning("could not remove %s from the outbox: %s", key, exc)

    def start_within_deadline(self, alert: DriftAlert) -> str:
        """Start the alert's run, waiting at most ``prefect_deadline_s``; raises DispatchUnavailable."""
        future = self._pool.submit(self._start_run, alert)
        try:
            run_id = future.result(timeout=self.prefect_deadline_s)
        except concurrent.futures.TimeoutError:
            self._failed_at = time.monotonic()
            logger.warning(
                "Prefect did not answer within %.1f s for alert %s (kept in the outbox, will retry)",
                self.prefect_deadline_s,
                alert.alert_id,
            )
            raise DispatchUnavailable(
                f"Prefect API did not answer within {self.prefect_deadline_s:g} s",
                retry_after_s=int(self.retry_every_s),
            ) from None
        except Exception as exc:  # httpx errors, Prefect API errors: the outbox keeps the alert
            self._failed_at = time.monotonic()
            logger.warning(
                "Prefect unreachable for alert %s: %s (kept in the outbox, will retry)",
                alert.alert_id,
                type(exc).__name__,
            )
            raise DispatchUnavailable(
                f"Prefect API unavailable ({type(exc).__name__})", retry_after_s=int(self.retry_every_s)
            ) from None
        self._failed_at = None
        return run_id

    def run_parameters(self, alert: DriftAlert) -> dict[str, Any]:
        """What this alert's retrain is told, over the deployment's defaults."""
        return {
            "config_path": self.config_path,
            "store": self.store.uri,  # the run writes where this alert's decision was recorded
            "trigger": "drift",
            "reason": f"drift alert {alert.alert_id}: {alert.reason or 'no reason given'}",
            # the retrain trains on what was known when the drifted window ended (the data's time)
            "as_of": None if alert.window_end is None else alert.window_end.isoformat(),
            "drift": {
                "alert_id": alert.alert_id,
                "source": alert.source,
                "drift_share": alert.drift_share,
                "drifted_columns": list(alert.drifted_columns),
                "severity": alert.severity,
            },
        }

    def start_prefect_run(self, alert: DriftAlert) -> str:
        """Create the run of ``retrain-on-drift`` for this alert (idempotent per alert id)."""
        params = self.run_parameters(alert)
        client = self._prefect_client()
        deployment = client.read_deployment_by_name(self.deployment)
        # A run's parameters replace the deployment's `params` object whole: start from the
        # deployment's defaults (window_days, ...) so that only what the alert decides changes.
        defaults = (deployment.parameters or {}).get("params") or {}
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"params": defaults | params}, idempotency_key=idempotency_key(alert)
        )
        return str(run.id)

    def _prefect_client(self) -> Any:
        """One Prefect client for the life of the dispatcher (a new one costs 0.2 s of TLS set-up).

        Its timeout is the deadline, and its transport does not retry a refused connection
        (Prefect's default sleeps 1.5 s over three tries): the outbox is the retry.
        """
        import httpx
        from prefect.client.orchestration import get_client

        with self._client_lock:
            if self._client is None:
                settings = {"timeout": self.prefect_deadline_s, "transport": httpx.HTTPTransport(retries=0)}
                client = get_client(sync_client=True, httpx_settings=settings)
                client.__enter__()  # checks the API version: raises while Prefect is down, and is not kept
                self._client = client
            return self._client

    def retry_pending(self) -> list[str]:
        """Settle every alert in the outbox; returns the ids of the runs started.

        An entry whose trigger is recorded gets its run; an entry whose decision was never
        recorded (the ledger write failed, or the process stopped in between) is decided now,
        as of when it arrived; an entry whose evidence another alert already acted on is
        dropped. Stops at the first Prefect failure and tries again on the next pass.
        """
        started: list[str] = []
        with self._retry_lock:
            for key in self.store.list(self.outbox):
                try:
                    pending = json.loads(self.store.get_bytes(key))
                    alert = DriftAlert.model_validate(pending["alert"])
                    signal = DriftSignal.model_validate(pending["signal"])
                    received = datetime.fromisoformat(pending["received_at"])
                except NotFoundError:
                    continue  # the request that wrote it has just finished with it
                except (ValueError, KeyError, TypeError) as exc:  # not an entry this receiver wrote
                    if key not in self._unreadable:  # kept for a person to look at; said once
                        self._unreadable.add(key)
                        logger.warning("outbox: %s is not a pending alert (%s); skipped", key, first_line(exc))
                    continue
                entry = self.governor.trigger_for(signal.fingerprint)
                if entry is None:
                    decided = self.governor.submit(signal, now=alert.window_end or received)
                    entry = self.governor.trigger_for(signal.fingerprint)  # this one's, or a concurrent one's
                    if entry is None:
                        logger.info(
                            "outbox: alert %s suppressed (%s); dropped", alert.alert_id, decided.decision.reason
                        )
                if entry is None or entry.signal.alert_id != alert.alert_id:
                    self._remove(key)  # not a trigger, or another alert's trigger acted on this evidence
                    continue
                try:
                    started.append(self.start_within_deadline(alert))
                except DispatchUnavailable:
                    break
                self._remove(key)
        return started

    def prepare(self) -> None:
        """Import Prefect's client now (about 2 s), so the first trigger does not spend its deadline on it."""
        if self._start_run == self.start_prefect_run:
            import prefect.client.orchestration  # noqa: F401

    def run_retry_loop(self) -> threading.Thread:
        """Retry the outbox in the background (at once, then every ``retry_every_s``) until :meth:`stop`."""
        self.prepare()

        def loop() -> None:
            while True:
                try:
                    self.retry_pending()
                except Exception as exc:  # never kill the loop
                    logger.warning("outbox retry failed: %s", exc)
                if self._stop.wait(self.retry_every_s):
                    return

        thread = threading.Thread(target=loop, name="refit-webhook-outbox", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.__exit__(None, None, None)


def build_app(
    store: Store,
    config: PipelineConfig,
    config_path: str,
    settings: Any,
    insecure_dev: bool = False,
    webhook_settings: WebhookSettings | None = None,
    start_run: RunStarter | None = None,
) -> tuple[Any, PrefectDispatcher]:
    from refit.webhook import create_app

    timing = webhook_settings or WebhookSettings()
    dispatcher = PrefectDispatcher(
        store,
        config,
        config_path,
        retry_every_s=timing.retry_every_s,
        prefect_deadline_s=timing.prefect_deadline_s,
        start_run=start_run,
    )
    app = create_app(dispatcher, settings=settings, default_model=config.dataset.name, insecure_dev=insecure_dev)
    return app, dispatcher
