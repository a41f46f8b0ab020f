"""Webhook authentication: HMAC signatures with a replay window, and the bearer token."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from pydantic import SecretStr

from refit.webhook import WebhookAuthError, authenticate, check_bearer, sign, verify

SECRET = "whsec-unit-test-0123456789"
NOW = 1_800_000_000
BODY = b'{"alert_id":"a-1","model":"churn"}'


def test_sign_is_the_documented_hmac() -> None:
    expected = hmac.new(SECRET.encode(), b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET, NOW) == f"t=1800000000,v1={expected}"
    assert sign(BODY.decode(), SecretStr(SECRET), NOW) == sign(BODY, SECRET, NOW)


def test_round_trip_returns_the_timestamp() -> None:
    assert verify(BODY, sign(BODY, SECRET, NOW), SECRET, now=NOW + 5) == NOW
    assert verify(BODY, sign(BODY, SECRET, NOW), SecretStr(SECRET), now=NOW) == NOW


def test_sign_defaults_to_now() -> None:
    before = time.time()
    timestamp = verify(BODY, sign(BODY, SECRET), SECRET)  # the real clock on both sides
    assert int(before) <= timestamp <= time.time()


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookAuthError, match="does not match"):
        verify(BODY, sign(BODY, "another-secret", NOW), SECRET, now=NOW)


@pytest.mark.parametrize("tampered", [BODY + b" ", BODY.replace(b"churn", b"chur2"), b""])
def test_tampered_body_is_refused(tampered: bytes) -> None:
    with pytest.raises(WebhookAuthError, match="does not match"):
        verify(tampered, sign(BODY, SECRET, NOW), SECRET, now=NOW)


def test_timestamp_is_bound_into_the_mac() -> None:
    digest = sign(BODY, SECRET, NOW).split("v1=")[1]
    with pytest.raises(WebhookAuthError, match="does not match"):
        verify(BODY, f"t={NOW + 60},v1={digest}", SECRET, now=NOW + 60)


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_stale_or_future_timestamps_are_refused(skew: int) -> None:
    header = sign(BODY, SECRET, NOW)
    with pytest.raises(WebhookAuthError, match="300 s window"):
        verify(BODY, header, SECRET, now=NOW + skew)


@pytest.mark.parametrize("skew", [300, -300])
def test_the_window_edge_is_inside(skew: int) -> None:
    assert verify(BODY, sign(BODY, SECRET, NOW), SECRET, now=NOW + skew) == NOW


def test_tolerance_is_a_parameter() -> None:
    header = sign(BODY, SECRET, NOW)
    with pytest.raises(WebhookAuthError, match="30 s window"):
        verify(BODY, header, SECRET, now=NOW + 31, tolerance_s=30)
    assert verify(BODY, header, SECRET, now=NOW + 3000, tolerance_s=3600) == NOW


def _digest() -> str:
    return sign(BODY, SECRET, NOW).split("v1=")[1]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing X-Refit-Signature"),
        ("", "missing X-Refit-Signature"),
        (f"v1={_digest()}", "no t="),
        (f"t={NOW}", "no v1="),
        (f"t={NOW},v0={_digest()}", "no v1="),
        (f"t={NOW},v1={'z' * 64}", "64 hex digits"),
        (f"t={NOW},v1={_digest()[:-1]}", "64 hex digits"),
        (f"t={NOW},v1=", "64 hex digits"),
        (f"t=soon,v1={_digest()}", "unix seconds"),
        (f"t=-5,v1={_digest()}", "unix seconds"),
        (f"t={NOW}.5,v1={_digest()}", "unix seconds"),
        (f"t={NOW},t={NOW},v1={_digest()}", "once"),
        ("garbage", "malformed"),
        ("Bearer abc", "malformed"),
        (",,,", "malformed"),
        (f"t={NOW}," + ",".join([f"v1={_digest()}"] * 9), "more than 8"),
    ],
)
def test_malformed_headers_are_refused(header: str | None, message: str) -> None:
    with pytest.raises(WebhookAuthError, match=message):
        verify(BODY, header, SECRET, now=NOW)


def test_whitespace_upper_case_and_unknown_schemes_are_tolerated() -> None:
    digest = _digest()
    assert verify(BODY, f" t={NOW} , v0=dead, v1={digest.upper()} ", SECRET, now=NOW) == NOW


def test_sender_rotation_with_two_v1_entries() -> None:
    old, new = "old-secret-abcdef", "new-secret-123456"
    both = f"t={NOW},v1={sign(BODY, old, NOW).split('v1=')[1]},v1={sign(BODY, new, NOW).split('v1=')[1]}"
    assert verify(BODY, both, old, now=NOW) == NOW  # receiver not rotated yet
    assert verify(BODY, both, new, now=NOW) == NOW  # receiver already rotated
    with pytest.raises(WebhookAuthError, match="does not match"):
        verify(BODY, both, "a-third-secret", now=NOW)


def test_receiver_rotation_accepts_any_configured_secret() -> None:
    header = sign(BODY, "old-secret-abcdef", NOW)
    assert verify(BODY, header, ["new-secret-123456", SecretStr("old-secret-abcdef")], now=NOW) == NOW


def test_empty_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign(BODY, "", NOW)
    with pytest.raises(ValueError, match="at least one secret"):
        verify(BODY, sign(BODY, SECRET, NOW), [], now=NOW)


def test_error_messages_never_contain_the_secret() -> None:
    for header in [sign(BODY, "x" + SECRET, NOW), f"t=1,v1={'0' * 64}", "junk", None]:
        with pytest.raises(WebhookAuthError) as info:
            verify(BODY, header, SECRET, now=NOW)
        assert SECRET not in str(info.value) and SECRET not in info.value.reason


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer tok-123456", True),
        ("bearer tok-123456", True),
        ("  Bearer   tok-123456 ", True),
        ("Bearer tok-1234567", False),
        ("Bearer TOK-123456", False),
        ("Basic tok-123456", False),
        ("tok-123456", False),
        ("Bearer ", False),
        ("", False),
        (None, False),
    ],
)
def test_bearer_token(header: str | None, ok: bool) -> None:
    assert check_bearer(header, SecretStr("tok-123456")) is ok


def test_authenticate_prefers_a_valid_token_and_falls_back_to_the_signature() -> None:
    token = SecretStr("tok-123456")
    good_sig = sign(BODY, SECRET, NOW)
    args = {"secrets": [SECRET], "token": token, "now": NOW}
    assert authenticate({"authorization": "Bearer tok-123456"}, BODY, **args) == "bearer"
    assert authenticate({"x-refit-signature": good_sig}, BODY, **args) == "signature"
    # A wrong token with a valid signature still passes on the signature ...
    assert authenticate({"authorization": "Bearer nope", "x-refit-signature": good_sig}, BODY, **args) == "signature"
    # ... and without one it is refused.
    with pytest.raises(WebhookAuthError, match="invalid bearer token"):
        authenticate({"authorization": "Bearer nope"}, BODY, **args)
    with pytest.raises(WebhookAuthError, match="or bearer token"):
        authenticate({}, BODY, **args)


def test_authenticate_token_only_and_signature_only() -> None:
    token_only = {"token": "tok-123456", "now": NOW}
    assert authenticate({"authorization": "Bearer tok-123456"}, BODY, **token_only) == "bearer"
    with pytest.raises(WebhookAuthError, match="missing bearer token"):
        authenticate({"x-refit-signature": sign(BODY, SECRET, NOW)}, BODY, **token_only)
    # With no token configured, an Authorization header opens nothing.
    with pytest.raises(WebhookAuthError, match="missing X-Refit-Signature"):
        authenticate({"authorization": "Bearer tok-123456"}, BODY, secrets=[SECRET], now=NOW)
    assert authenticate({}, BODY) == "none"
