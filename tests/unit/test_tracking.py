"""refit.tracking without a server: when it is on, what it hides, and what it never does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from refit import tracking
from refit.config import TrackingConfig
from tests.flows.helpers import write_config


def _config(tmp_path: Path, **tracking_section: object):  # type: ignore[no-untyped-def]
    from refit.config_loader import load_config

    return load_config(
        write_config(tmp_path, tracking=tracking_section) if tracking_section else write_config(tmp_path)
    )


def test_off_by_default_on_by_yaml_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    plain = _config(tmp_path)
    assert plain.tracking == TrackingConfig() and not tracking.tracking_enabled(plain)
    report = tracking.track_retrain(None, plain, None)  # type: ignore[arg-type]  # off: touches nothing
    assert not report.ok and "tracking is off" in (report.error or "")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert tracking.tracking_uri(plain) == "http://env:5000"
    yaml_wins = _config(tmp_path, mlflow_uri="http://yaml:5000")
    assert tracking.tracking_uri(yaml_wins) == "http://yaml:5000"


def test_a_password_in_the_uri_never_reaches_a_log() -> None:
    assert (
        tracking.redact("https://ana:s3cret@mlflow.example.com:8443/x") == "https://ana:***@mlflow.example.com:8443/x"
    )
    assert tracking.redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    # a token in the query string (MLFLOW_TRACKING_URI may hold one) is masked too
    assert (
        tracking.redact("https://mlflow.example.com/?token=s3cret&x=1") == "https://mlflow.example.com/?token=***&x=1"
    )
    # and in an error message that quotes the URL, percent-encoded as written, or decoded
    from refit.url_credentials import scrub

    uri = "https://mlflow.example.com/api?token=ab%2Bc%2F%3D&x=1"
    said = scrub(f"API request to {uri} failed: token ab+c/= refused", uri)
    assert said == "API request to https://mlflow.example.com/api?token=***&x=1 failed: token *** refused"


@pytest.mark.parametrize(
    ("uri", "rule"),
    [
        ("https://ana:s3cret@mlflow.example.com", "must not carry a password"),
        ("https://mlflow.example.com/?token=s3cret", "must not carry a credential (token)"),
    ],
)
def test_a_tracking_uri_with_a_password_is_refused_at_load(tmp_path: Path, uri: str, rule: str) -> None:
    """The config is stored with every model (config.json, the dossier, MLflow): the password was too."""
    from refit.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _config(tmp_path, mlflow_uri=uri)
    message = str(info.value)
    assert "tracking.mlflow_uri" in message and rule in message and "MLFLOW_TRACKING_PASSWORD" in message
    assert "s3cret" not in message
    assert _config(tmp_path, mlflow_uri="https://ana@mlflow.example.com").tracking.mlflow_uri  # a user alone is fine


def test_segment_scopes_become_valid_metric_names() -> None:
    assert tracking._metric_name("segment.region×plan=north×basic.gain") == "segment.region_plan_north_basic.gain"
    assert tracking._metric_name("val_roc_auc") == "val_roc_auc"


def test_an_unreachable_server_is_one_warning_and_the_environment_is_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import free_port

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # the user's own setting wins, and stays
    # a password may come in MLFLOW_TRACKING_URI (never stored); the YAML refuses one (below)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://ana:pw@127.0.0.1:{free_port()}")
    cfg = _config(tmp_path)
    record = tracking.RetrainRecord("r1", "churn", None, {}, {}, {}, [], None, {}, None, None, [])
    with caplog.at_level("WARNING", logger="refit.tracking"):
        report = tracking.track_retrain(None, cfg, record)  # type: ignore[arg-type]
    assert not report.ok and report.run_id is None and report.uri is not None and "pw" not in report.uri
    (line,) = [r.getMessage() for r in caplog.records if r.name == "refit.tracking"]
    assert "the retrain goes on" in line and ":pw@" not in line
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
