"""Who may post a drift alert: an HMAC-SHA256 signature, or a bearer token.

The signature header is ``X-Refit-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
HMAC-SHA256(secret, ``f"{t}.".encode() + body``). Binding the timestamp into the MAC and
refusing old timestamps stops a captured request from being replayed later; a sender that
rotates its secret may send one ``v1=`` per secret. Comparisons are constant-time, and no
message raised here ever contains a secret or a token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import SecretStr

from refit.errors import RefitError

SIGNATURE_HEADER = "X-Refit-Signature"
DEFAULT_TOLERANCE_S = 300.0
MAX_SIGNATURES = 8  # v1= entries read from one header; more is malformed

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

Secret = str | bytes | SecretStr
AuthMethod = Literal["signature", "bearer", "none"]


class WebhookAuthError(RefitError):
    """A request failed authentication. ``reason`` is safe to return to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _secret_bytes(secret: Secret) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        raise ValueError("the webhook secret is empty")
    return secret


def _as_list(secrets: Secret | Iterable[Secret]) -> list[bytes]:
    if isinstance(secrets, str | bytes | SecretStr):
        return [_secret_bytes(secrets)]
    return [_secret_bytes(s) for s in secrets]


def _mac(body: bytes, secret: bytes, timestamp: int) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes | str, secret: Secret, timestamp: int | None = None) -> str:
    """The ``X-Refit-Signature`` header value for ``body``.

    Args:
        body: The exact bytes that will be posted (a str is UTF-8 encoded).
        secret: The shared secret.
        timestamp: Unix seconds; default now. The receiver refuses it outside its window.
    """
    if isinstance(body, str):
        body = body.encode()
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={ts},v1={_mac(body, _secret_bytes(secret), ts)}"


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """Split ``t=...,v1=...[,v1=...]`` into the timestamp and the lower-case hex digests.

    Unknown schemes (``v0=``, ``v2=``) are skipped so a sender can add newer ones.
    """
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookAuthError("malformed signature header: expected t=<unix seconds>,v1=<hex>")
        key, value = key.strip(), value.strip()
        if key == "t":
            if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                raise WebhookAuthError("malformed signature header: t must appear once, as unix seconds")
            timestamp = int(value)
        elif key == "v1":
            if not _HEX64.fullmatch(value):
                raise WebhookAuthError("malformed signature header: v1 must be 64 hex digits")
            digests.append(value.lower())
    if timestamp is None:
        raise WebhookAuthError("malformed signature header: no t=<unix seconds>")
    if not digests:
        raise WebhookAuthError("malformed signature header: no v1=<hex>")
    if len(digests) > MAX_SIGNATURES:
        raise WebhookAuthError(f"malformed signature header: more than {MAX_SIGNATURES} v1 entries")
    return timestamp, digests


def verify(
    body: bytes,
    header: str | None,
    secrets: Secret | Iterable[Secret],
    *,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a signature header; return its timestamp or raise ``WebhookAuthError``.

    Args:
        body: The raw request body, exactly as received.
        header: The ``X-Refit-Signature`` value (None when absent).
        secrets: One secret, or several while the receiver rotates (any may match).
        now: Unix seconds (default: the system clock); injected by tests.
        tolerance_s: Largest distance allowed between ``t`` and ``now``, either way.
    """
    keys = _as_list(secrets)
    if not keys:
        raise ValueError("verify needs at least one secret")
    if not header:
        raise WebhookAuthError(f"missing {SIGNATURE_HEADER} header")
    timestamp, digests = parse_signature_header(header)
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise WebhookAuthError(f"signature timestamp outside the {tolerance_s:g} s window (check the sender's clock)")
    for key in keys:
        expected = _mac(body, key, timestamp)
        for digest in digests:
            if hmac.compare_digest(expected, digest):
                return timestamp
    raise WebhookAuthError("signature does not match")


def check_bearer(authorization: str | None, token: Secret) -> bool:
    """True when ``authorization`` is ``Bearer <token>`` (constant-time compare)."""
    if not authorization:
        return False
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return False
    return hmac.compare_digest(presented.strip().encode(), _secret_bytes(token))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    name = name.lower()
    return next((value for key, value in headers.items() if key.lower() == name), None)


def authenticate(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Iterable[Secret] = (),
    token: Secret | None = None,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> AuthMethod:
    """Accept a request by signature or bearer token; raise ``WebhookAuthError`` otherwise.

    Header names are matched case-insensitively (the first of repeated ones wins). A valid
    bearer token is enough when one is configured; otherwise, or when it is wrong, a valid
    signature is required. With neither configured every request passes (``"none"``): the
    app only allows that in explicit insecure development mode.
    """
    keys = _as_list(secrets)
    authorization = _header(headers, "authorization")
    signature = _header(headers, SIGNATURE_HEADER)
    if token is not None and authorization is not None:
        if check_bearer(authorization, token):
            return "bearer"
        if not (keys and signature):
            raise WebhookAuthError("invalid bearer token")
    if keys:
        if signature is None and token is not None:
            raise WebhookAuthError(f"missing {SIGNATURE_HEADER} header or bearer token")
        verify(body, signature, keys, now=now, tolerance_s=tolerance_s)
        return "signature"
    if token is not None:
        raise WebhookAuthError("missing bearer token")
    return "none"
