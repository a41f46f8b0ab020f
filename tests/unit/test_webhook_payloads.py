"""Alert payloads: the generic format and Alertmanager's, normalised into DriftAlert."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from refit.webhook import DispatchResult, DriftAlert, PayloadError, parse_alerts


def _body(data: Any) -> bytes:
    return json.dumps(data).encode()


# What Alertmanager 0.27 posts for a group routed with group_by: [alertname, model].
ALERTMANAGER = {
    "receiver": "refit-drift",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "FeatureDrift",
                "model": "churn",
                "severity": "warning",
                "instance": "monitor-0:9100",
                "job": "drift-monitor",
            },
            "annotations": {
                "summary": "Feature drift on churn: 42% of features drifted",
                "description": "tenure and monthly_charges moved",
                "drift_share": "0.42",
                "drifted_columns": "tenure, monthly_charges",
            },
            "startsAt": "2026-11-03T08:15:30.123Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=refit_drift_share+%3E+0.3",
            "fingerprint": "c2a3f0e1b4d5a697",
        },
        {
            "status": "firing",
            "labels": {
                "alertname": "FeatureDrift",
                "model": "churn",
                "severity": "warning",
                "instance": "monitor-1:9100",
                "job": "drift-monitor",
            },
            "annotations": {"summary": "Feature drift on churn", "drift_share": "0.35", "drifted_columns": "contract"},
            "startsAt": "2026-11-03T08:16:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "0f1e2d3c4b5a6978",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "FeatureDrift", "model": "churn", "instance": "monitor-2:9100"},
            "annotations": {"summary": "old"},
            "startsAt": "2026-11-02T01:00:00Z",
            "endsAt": "2026-11-02T03:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "aaaaaaaaaaaaaaaa",
        },
    ],
    "groupLabels": {"alertname": "FeatureDrift", "model": "churn"},
    "commonLabels": {"alertname": "FeatureDrift", "model": "churn", "job": "drift-monitor"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "version": "4",
    "groupKey": '{}/{alertname="FeatureDrift"}:{alertname="FeatureDrift", model="churn"}',
    "truncatedAlerts": 0,
}


def _am(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(ALERTMANAGER)
    data.update(changes)
    return data


# --- generic ---------------------------------------------------------------------------------


def test_generic_alert_is_normalised() -> None:
    body = {
        "alert_id": "drift-2026-11-03T08",
        "model": "churn",
        "summary": "share 0.42",
        "drift_share": 0.42,
        "drifted_columns": ["tenure", "monthly_charges"],
        "window": {"start": "2026-11-02T08:00:00Z", "end": "2026-11-03T08:00:00Z"},
        "severity": "warning",
        "labels": {"team": "growth", "attempt": 2},
        "unknown_extra": "ignored",
    }
    [alert] = parse_alerts(_body(body))
    assert alert == DriftAlert(
        alert_id="drift-2026-11-03T08",
        model="churn",
        status="firing",
        source="generic",
        reason="share 0.42",
        drift_share=0.42,
        drifted_columns=("tenure", "monthly_charges"),
        window={"start": "2026-11-02T08:00:00Z", "end": "2026-11-03T08:00:00Z"},
        window_end=datetime(2026, 11, 3, 8, tzinfo=UTC),  # the retrain runs as of then
        severity="warning",
        labels={"team": "growth", "attempt": "2"},
    )
    assert alert.firing


def test_generic_reason_wins_over_summary_and_minimal_alert() -> None:
    [alert] = parse_alerts(_body({"alert_id": "a", "model": "m", "reason": "r", "summary": "s"}))
    assert alert.reason == "r"
    [alert] = parse_alerts(_body({"alert_id": "a", "model": "m"}))
    assert (alert.reason, alert.drift_share, alert.drifted_columns, alert.window) == (None, None, (), None)


def test_generic_model_from_labels_then_default() -> None:
    assert parse_alerts(_body({"alert_id": "a", "labels": {"refit_model": "housing"}}))[0].model == "housing"
    assert parse_alerts(_body({"alert_id": "a"}), default_model="churn")[0].model == "churn"
    assert parse_alerts(_body({"alert_id": "a", "model": "x"}), default_model="churn")[0].model == "x"


def test_generic_resolved_is_not_firing() -> None:
    [alert] = parse_alerts(_body({"alert_id": "a", "model": "m", "status": "resolved"}))
    assert alert.status == "resolved" and not alert.firing


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"alert"', "expected a JSON object, got str"),
        (_body({"model": "churn"}), "invalid generic alert: alert_id: Field required"),
        (_body({"alert_id": "", "model": "churn"}), "alert_id: String should have at least 1 character"),
        (_body({"alert_id": "a\nb", "model": "churn"}), "alert_id: Value error, must be printable"),
        (_body({"alert_id": "a", "model": "churn", "drift_share": 1.5}), "drift_share: Input should be less"),
        (_body({"alert_id": "a", "model": "churn", "drift_share": "lots"}), "drift_share: Input should be a valid"),
        (_body({"alert_id": "a", "model": "churn", "drifted_columns": "tenure"}), "drifted_columns: Input should be"),
        (_body({"alert_id": "a", "model": "churn", "status": "pending"}), "status: Input should be 'firing'"),
        (_body({"alert_id": "a"}), "no model"),
        (_body({"alert_id": "a", "model": "../etc/passwd"}), "invalid model name"),
        (_body({"alert_id": "a", "model": "churn model"}), "invalid model name"),
    ],
)
def test_malformed_generic_alerts(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message.replace("(", r"\(")):
        parse_alerts(body)


# --- Alertmanager ----------------------------------------------------------------------------


def test_alertmanager_firing_group_becomes_one_alert() -> None:
    alerts = parse_alerts(_body(ALERTMANAGER))
    firing = [a for a in alerts if a.firing]
    resolved = [a for a in alerts if not a.firing]
    assert len(firing) == 1 and len(resolved) == 1
    alert = firing[0]
    assert alert.source == "alertmanager"
    assert alert.model == "churn"
    assert alert.alert_id.startswith("am-") and len(alert.alert_id) == 27
    assert alert.fingerprints == ("0f1e2d3c4b5a6978", "c2a3f0e1b4d5a697")  # the resolved one is not in it
    assert alert.group_key == ALERTMANAGER["groupKey"]
    assert alert.reason == "Feature drift on churn: 42% of features drifted"
    assert alert.drift_share == 0.42
    assert alert.drifted_columns == ("contract", "monthly_charges", "tenure")
    assert alert.severity == "warning"
    assert alert.labels == {
        "alertname": "FeatureDrift",
        "model": "churn",
        "severity": "warning",
        "job": "drift-monitor",
    }
    assert resolved[0].fingerprints == ("aaaaaaaaaaaaaaaa",)
    assert resolved[0].alert_id != alert.alert_id


def test_alertmanager_alert_id_is_stable_across_redelivery() -> None:
    first = parse_alerts(_body(ALERTMANAGER))[0]
    again = _am(alerts=list(reversed(copy.deepcopy(ALERTMANAGER["alerts"]))))
    again["alerts"][0]["annotations"]["summary"] = "repeat notification"  # annotations may change
    assert parse_alerts(_body(again))[0].alert_id == first.alert_id


def test_alertmanager_alert_id_changes_with_the_episode_group_and_members() -> None:
    base = parse_alerts(_body(ALERTMANAGER))[0].alert_id
    refired = _am()
    refired["alerts"][0]["startsAt"] = "2026-11-04T10:00:00Z"  # resolved, then fired again
    other_group = _am(groupKey='{}/{alertname="FeatureDrift"}:{model="churn", env="prod"}')
    fewer = _am(alerts=copy.deepcopy(ALERTMANAGER["alerts"][:1]))
    ids = {base, *(parse_alerts(_body(d))[0].alert_id for d in (refired, other_group, fewer))}
    assert len(ids) == 4


def test_alertmanager_resolved_only_gives_no_firing_alert() -> None:
    data = _am(status="resolved")
    for alert in data["alerts"]:
        alert["status"] = "resolved"
    alerts = parse_alerts(_body(data))
    assert alerts and not any(a.firing for a in alerts)
    # Resolved alerts with no model anywhere are dropped rather than refused.
    no_model = copy.deepcopy(data)
    no_model["commonLabels"] = {"alertname": "FeatureDrift"}
    for alert in no_model["alerts"]:
        alert["labels"].pop("model")
    assert parse_alerts(_body(no_model)) == []


def test_alertmanager_model_label_fallbacks() -> None:
    data = _am(commonLabels={"alertname": "FeatureDrift"})
    for alert in data["alerts"]:
        alert["labels"].pop("model")
    with pytest.raises(PayloadError, match=r"alerts\.0: no model"):
        parse_alerts(_body(data))
    assert {a.model for a in parse_alerts(_body(data), default_model="churn")} == {"churn"}
    data["alerts"][0]["labels"]["refit_model"] = "housing"
    firing = [a for a in parse_alerts(_body(data), default_model="churn") if a.firing]
    assert sorted(a.model for a in firing) == ["churn", "housing"]


def test_alertmanager_group_with_two_models_splits_per_model() -> None:
    data = _am(commonLabels={"alertname": "FeatureDrift"})
    data["alerts"][1]["labels"]["model"] = "housing"
    firing = [a for a in parse_alerts(_body(data)) if a.firing]
    assert [(a.model, a.fingerprints) for a in firing] == [
        ("churn", ("c2a3f0e1b4d5a697",)),
        ("housing", ("0f1e2d3c4b5a6978",)),
    ]
    assert firing[0].alert_id != firing[1].alert_id
    assert firing[1].drift_share == 0.35 and firing[1].drifted_columns == ("contract",)


def test_grafana_webhook_is_read_too() -> None:
    grafana = {
        "receiver": "refit",
        "status": "firing",
        "orgId": 1,
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "Drift", "grafana_folder": "ML", "refit_model": "churn"},
                "annotations": {"summary": "drift share above 0.3"},
                "startsAt": "2026-11-03T08:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://grafana/alerting/grafana/abc/view",
                "fingerprint": "57c6d9296de2ad39",
                "silenceURL": "http://grafana/alerting/silence/new",
                "values": {"B": 0.41},
                "valueString": "[ var='B' value=0.41 ]",
            }
        ],
        "groupLabels": {"alertname": "Drift"},
        "commonLabels": {"alertname": "Drift", "refit_model": "churn"},
        "commonAnnotations": {"summary": "drift share above 0.3"},
        "externalURL": "http://grafana/",
        "version": "1",
        "groupKey": '{}:{alertname="Drift"}',
        "truncatedAlerts": 0,
        "title": "[FIRING:1] Drift",
        "state": "alerting",
        "message": "...",
    }
    [alert] = parse_alerts(_body(grafana))
    assert (alert.model, alert.fingerprints, alert.reason) == ("churn", ("57c6d9296de2ad39",), "drift share above 0.3")


def test_alertmanager_without_fingerprints_uses_a_label_hash() -> None:
    data = _am()
    for alert in data["alerts"]:
        alert.pop("fingerprint")
    firing = [a for a in parse_alerts(_body(data)) if a.firing][0]
    assert len(firing.fingerprints) == 2 and all(len(f) == 16 for f in firing.fingerprints)
    assert firing.fingerprints[0] != firing.fingerprints[1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"alerts": []}, "alerts: List should have at least 1 item"),
        ({"groupKey": None}, "groupKey: Input should be a valid string"),
        ({"version": None}, "version: Input should be a valid string"),
        ({"status": "pending"}, "status: Input should be 'firing' or 'resolved'"),
        ({"alerts": "firing"}, "alerts: Input should be a valid list"),
        ({"alerts": [{"labels": {}}]}, r"alerts\.0\.status: Field required"),
        ({"alerts": [{"status": "firing", "startsAt": "yesterday"}]}, r"alerts\.0\.startsAt: Input should be"),
        ({"alerts": [{"status": "firing", "labels": {"model": "a b"}}]}, r"alerts\.0: invalid model name"),
    ],
)
def test_malformed_alertmanager_payloads(change: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_alerts(_body(_am(**change)))


def test_dispatch_result_checks_itself() -> None:
    assert DispatchResult("accepted", flow_run_id="f-1").flow_run_id == "f-1"
    assert DispatchResult("suppressed", reason="cooldown").reason == "cooldown"
    with pytest.raises(ValueError, match="needs a flow_run_id"):
        DispatchResult("accepted")
    with pytest.raises(ValueError, match="unknown dispatch status"):
        DispatchResult("started")  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [32, 1_000, 200_000])
def test_deeply_nested_json_is_a_payload_error_not_a_recursion_error(depth: int) -> None:
    body = '{"alert_id": "a", "model": "churn", "window": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    with pytest.raises(PayloadError, match="nested more than 32 levels deep"):
        parse_alerts(body)
    array = '{"alert_id": "a", "model": "churn", "drifted_columns": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(PayloadError, match="nested more than 32 levels deep"):
        parse_alerts(array)


def test_nesting_up_to_the_limit_is_read() -> None:
    depth = 31  # the alert object itself is the first level
    body = '{"alert_id": "a", "model": "churn", "window": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    (alert,) = parse_alerts(body)
    assert isinstance(alert.window, dict) and alert.alert_id == "a"
