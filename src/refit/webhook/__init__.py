"""The drift-alert webhook receiver: signed alerts in, one dispatcher call per firing alert.

``auth`` and ``payloads`` are plain Python; ``app`` (FastAPI) is imported only when
``create_app`` is first used, so a dispatcher or a CLI that only signs pays nothing for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from refit.webhook.auth import SIGNATURE_HEADER, WebhookAuthError, authenticate, check_bearer, sign, verify
from refit.webhook.payloads import (
    Dispatcher,
    DispatchResult,
    DispatchUnavailable,
    DriftAlert,
    PayloadError,
    parse_alerts,
)

if TYPE_CHECKING:
    from refit.webhook.app import create_app

__all__ = [
    "SIGNATURE_HEADER",
    "DispatchResult",
    "DispatchUnavailable",
    "Dispatcher",
    "DriftAlert",
    "PayloadError",
    "WebhookAuthError",
    "authenticate",
    "check_bearer",
    "create_app",
    "parse_alerts",
    "sign",
    "verify",
]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from refit.webhook.app import create_app

        return create_app
    raise AttributeError(f"module 'refit.webhook' has no attribute {name!r}")
