"""The drift-alert receiver: a small FastAPI app in front of an injected dispatcher.

Order of checks on ``POST /alerts/drift``: size (the body is streamed and cut off at the
limit, whatever Content-Length says), then authentication (the MAC covers the raw bytes),
then parsing, then the dispatcher. The app decides nothing about retraining: the dispatcher
(the governor and Prefect behind it) does; the app turns its answer into an HTTP status.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool

from refit.config import Settings
from refit.errors import ConfigError
from refit.webhook.auth import DEFAULT_TOLERANCE_S, Secret, WebhookAuthError, authenticate
from refit.webhook.payloads import (
    DispatchResult,
    DispatchUnavailable,
    DriftAlert,
    PayloadError,
    parse_alerts,
)

logger = logging.getLogger("refit.webhook")

MAX_BODY_BYTES = 1 << 20
#: Longest a request's body may take to arrive: a sender trickling bytes holds a connection and
#: up to MAX_BODY_BYTES of memory for as long as it likes otherwise (a slow-body attack, before
#: any authentication can refuse it). A real alert of a few kB arrives in milliseconds.
BODY_DEADLINE_S = 10.0
DRIFT_PATH = "/alerts/drift"

AnyDispatcher = Callable[[DriftAlert], DispatchResult] | Callable[[DriftAlert], Awaitable[DispatchResult]]


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int, deadline_s: float) -> bytes:
    """The raw body, refused as soon as it passes ``limit`` bytes (declared or streamed), or
    (``TimeoutError``) when it has not all arrived ``deadline_s`` after reading began."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    body = bytearray()
    async with asyncio.timeout(deadline_s):
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _BodyTooLarge
    return bytes(body)


def _secret_list(secrets: Secret | Iterable[Secret] | None) -> list[Secret]:
    if secrets is None:
        return []
    if isinstance(secrets, str | bytes | SecretStr):
        return [secrets]
    return list(secrets)


def _is_empty(secret: Secret) -> bool:
    """Empty or only whitespace: a secret someone meant to set and did not (a stray newline, quotes)."""
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return not value.strip()


def create_app(
    dispatcher: AnyDispatcher,
    *,
    settings: Settings | None = None,
    secrets: Secret | Iterable[Secret] | None = None,
    token: Secret | None = None,
    default_model: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    body_deadline_s: float = BODY_DEADLINE_S,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    retry_after_s: int = 30,
    clock: Callable[[], float] = time.time,
    insecure_dev: bool = False,
) -> FastAPI:
    """Build the receiver. Does no I/O; nothing runs until a server serves it.

    Args:
        dispatcher: Acts on one firing alert; returns a ``DispatchResult`` or raises
            ``DispatchUnavailable``. Called in a worker thread (async ones on the loop).
        settings: Source of ``webhook_secret`` / ``webhook_token`` when those are not given.
        secrets: HMAC secret, or several while rotating (any may sign). Overrides settings.
        token: Bearer token accepted instead of a signature. Overrides settings.
        default_model: Model for alerts that name none.
        max_body_bytes: Larger bodies get 413 before any parsing.
        body_deadline_s: A body not complete this long after the request began gets 408.
        tolerance_s: Replay window of the signature timestamp.
        retry_after_s: ``Retry-After`` of a 503 when the dispatcher names none.
        clock: Unix seconds, for the replay window.
        insecure_dev: Allow running with no secret and no token (local development only).
    """
    keys, bearer = _credentials(secrets, token, settings, insecure_dev)
    if max_body_bytes < 1:
        raise ConfigError("max_body_bytes must be at least 1")
    if tolerance_s <= 0 or body_deadline_s <= 0:
        raise ConfigError("tolerance_s and body_deadline_s must be positive")
    dispatch = _awaitable(dispatcher)
    app = FastAPI(title="refit drift-alert receiver", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(DRIFT_PATH)
    async def receive_drift_alert(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, max_body_bytes, body_deadline_s)
        except TimeoutError:
            detail = f"body not received within {body_deadline_s:g} s"
            return JSONResponse(
                {"status": "timeout", "detail": detail}, status_code=408, headers={"Connection": "close"}
            )
        except _BodyTooLarge:
            return JSONResponse(
                {"status": "too_large", "detail": f"body larger than {max_body_bytes} bytes"},
                status_code=413,
                headers={"Connection": "close"},
            )
        try:
            method = authenticate(
                request.headers, body, secrets=keys, token=bearer, now=clock(), tolerance_s=tolerance_s
            )
        except WebhookAuthError as exc:
            client = request.client.host if request.client else "?"
            logger.warning("drift alert refused from %s: %s", client, exc.reason)
            headers = {"WWW-Authenticate": "Bearer"} if bearer is not None else None
            return JSONResponse({"status": "unauthorized", "detail": exc.reason}, status_code=401, headers=headers)
        try:
            alerts = parse_alerts(body, default_model=default_model, now=datetime.fromtimestamp(clock(), UTC))
        except PayloadError as exc:
            return JSONResponse({"status": "invalid", "detail": str(exc)}, status_code=422)

        firing = [a for a in alerts if a.firing]
        if not firing:
            logger.info("drift notification with no firing alert: acknowledged, nothing to do")
            return JSONResponse({"status": "ignored", "reason": "no firing alert (resolved)"}, status_code=200)

        return await _dispatch_all(firing, dispatch, method, retry_after_s)

    return app


def check_credentials(settings: Settings, insecure_dev: bool = False) -> None:
    """What :func:`build_app` checks of the environment's secret and token, on its own: a command
    that starts the receiver calls it first, so a blank or missing secret is its one error line.

    Raises:
        ConfigError: As :func:`build_app` would.
    """
    _credentials(None, None, settings, insecure_dev, warn=False)


def _credentials(
    secrets: Secret | Iterable[Secret] | None,
    token: Secret | None,
    settings: Settings | None,
    insecure_dev: bool,
    warn: bool = True,
) -> tuple[list[Secret], Secret | None]:
    """The HMAC secrets and the bearer token the receiver accepts (arguments first, then settings).

    Raises:
        ConfigError: One is set but blank, or there is neither (unless ``insecure_dev``).
    """
    keys = _secret_list(secrets if secrets is not None else (settings.webhook_secret if settings else None))
    bearer = token if token is not None else (settings.webhook_token if settings else None)
    if any(_is_empty(k) for k in keys) or (bearer is not None and _is_empty(bearer)):
        raise ConfigError(
            "REFIT_WEBHOOK_SECRET or REFIT_WEBHOOK_TOKEN is set but empty or only whitespace: "
            "unset it or give it a value"
        )
    if not keys and bearer is None:
        if not insecure_dev:
            raise ConfigError(
                "the drift webhook needs REFIT_WEBHOOK_SECRET or REFIT_WEBHOOK_TOKEN "
                "(or insecure_dev=True for local development)"
            )
        if warn:
            logger.warning(
                "!!! INSECURE: the drift webhook accepts UNAUTHENTICATED alerts (insecure_dev=True). "
                "Anyone who can reach it can trigger retraining. Never expose it. !!!"
            )
    return keys, bearer


def _awaitable(dispatcher: AnyDispatcher) -> Callable[[DriftAlert], Awaitable[DispatchResult]]:
    """``dispatcher`` as a coroutine: an async one runs on the loop, any other in a worker thread."""
    # An async function, or an object whose __call__ is one, runs on the loop; others in a thread.
    is_async = inspect.iscoroutinefunction(dispatcher) or inspect.iscoroutinefunction(type(dispatcher).__call__)

    async def dispatch(alert: DriftAlert) -> DispatchResult:
        if is_async:
            result = await dispatcher(alert)  # type: ignore[misc]
        else:
            result = await run_in_threadpool(dispatcher, alert)
        if not isinstance(result, DispatchResult):
            raise TypeError(f"the dispatcher returned {type(result).__name__}, not DispatchResult")
        return result

    return dispatch


async def _dispatch_all(
    firing: list[DriftAlert],
    dispatch: Callable[[DriftAlert], Awaitable[DispatchResult]],
    method: str,
    retry_after_s: int,
) -> JSONResponse:
    """Dispatch each firing alert in turn; the response names the first accepted one (all, if several).

    The first alert the dispatcher cannot take (503) or fails on (500) ends the request.
    """
    answers: list[dict[str, Any]] = []
    for alert in firing:
        try:
            result = await dispatch(alert)
        except DispatchUnavailable as exc:
            logger.warning("drift alert %s for %s: dispatcher unavailable: %s", alert.alert_id, alert.model, exc)
            wait = exc.retry_after_s if exc.retry_after_s is not None else retry_after_s
            return JSONResponse(
                {"status": "unavailable", "detail": str(exc), "alert_id": alert.alert_id, "retry_after_s": wait},
                status_code=503,
                headers={"Retry-After": str(wait)},
            )
        except Exception:
            logger.exception("drift alert %s for %s: the dispatcher failed", alert.alert_id, alert.model)
            return JSONResponse(
                {
                    "status": "error",
                    "detail": "the dispatcher failed; see the receiver's log",
                    "alert_id": alert.alert_id,
                },
                status_code=500,
            )
        logger.info(
            "drift alert %s for %s (%s): %s %s",
            alert.alert_id,
            alert.model,
            method,
            result.status,
            result.flow_run_id or result.reason or "",
        )
        answer: dict[str, Any] = {"status": result.status, "alert_id": alert.alert_id, "model": alert.model}
        if result.flow_run_id is not None:
            answer["flow_run_id"] = result.flow_run_id
        if result.reason is not None:
            answer["reason"] = result.reason
        answers.append(answer)

    accepted = [a for a in answers if a["status"] in ("accepted", "queued")]
    unknown = [a for a in answers if a["status"] == "unknown_model"]
    content = dict(accepted[0] if accepted else unknown[0] if unknown else answers[0])
    if len(answers) > 1:
        content["results"] = answers
    # an alert for a model this receiver does not serve was not delivered: 404, never a 200 the
    # sender would take for "done" (a batch with an accepted alert is 202 and lists every result)
    return JSONResponse(content, status_code=202 if accepted else 404 if unknown else 200)
