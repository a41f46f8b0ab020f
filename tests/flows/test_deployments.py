"""The deployment declarations, checked on the ``to_deployment`` objects (nothing is applied)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.events import DeploymentEventTrigger
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import ValidationError, validate

from deployments.definitions import (
    DRIFT_CHECK_HOURLY,
    DRIFT_EVENT,
    RETRAIN_MANUAL,
    RETRAIN_ON_DRIFT,
    RETRAIN_WEEKLY,
    build_deployments,
)
from deployments.settings import DeploymentSettings
from flows.drift_check import DriftCheckParameters, drift_check
from flows.retrain import RetrainParameters, retrain
from refit.config_loader import load_config, resolve_run_parameters
from tests.flows.helpers import write_config


def _by_name(settings: DeploymentSettings | None = None) -> dict[str, Any]:
    return {d.name: d for d in build_deployments(settings)}


def _schema(flow: Any) -> dict[str, Any]:
    """The parameter schema the server enforces (what ``to_deployment`` sends as parameter_openapi_schema)."""
    return parameter_schema(flow).model_dump_for_openapi()


@pytest.fixture(autouse=True)
def _no_refit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CONFIG_PATH",
        "RETRAIN_CRON",
        "DRIFT_CRON",
        "TIMEZONE",
        "WINDOW_DAYS",
        "DRIFT_WINDOW_HOURS",
        "RETRAIN_COLLISION",
        "SCHEDULES_PAUSED",
    ):
        monkeypatch.delenv(f"REFIT_{name}", raising=False)


def test_four_deployments_of_two_flows() -> None:
    deployments = build_deployments()
    assert [d.name for d in deployments] == [RETRAIN_WEEKLY, RETRAIN_MANUAL, RETRAIN_ON_DRIFT, DRIFT_CHECK_HOURLY]
    assert [d.flow_name for d in deployments] == ["retrain", "retrain", "retrain", "drift-check"]
    # module paths, not file paths: the same deployments work from a work pool where the package is installed
    assert [d.entrypoint for d in deployments] == ["flows.retrain.retrain"] * 3 + ["flows.drift_check.drift_check"]
    assert all(d.enforce_parameter_schema for d in deployments)
    assert all("refit" in d.tags for d in deployments)


def test_default_schedules_and_defaults() -> None:
    d = _by_name()
    weekly = d[RETRAIN_WEEKLY].schedules
    assert len(weekly) == 1 and weekly[0].active
    assert (weekly[0].schedule.cron, weekly[0].schedule.timezone) == ("0 3 * * 1", "UTC")
    hourly = d[DRIFT_CHECK_HOURLY].schedules
    assert [(s.schedule.cron, s.schedule.timezone) for s in hourly] == [("0 * * * *", "UTC")]
    assert d[RETRAIN_WEEKLY].paused is False and d[DRIFT_CHECK_HOURLY].paused is False
    assert d[RETRAIN_WEEKLY].parameters["params"] == {
        "config_path": "refit.yaml",
        "store": None,  # the worker's REFIT_STORE, unless `refit serve` names one (build_deployments(store=))
        "window_days": None,  # the config's training.window_days, read when the run starts
        "as_of": None,  # now, when the run starts
        "force": False,
        "dry_run": False,
        "reason": "weekly retrain",
        "trigger": "schedule",
        "drift": None,
    }
    assert d[DRIFT_CHECK_HOURLY].parameters["params"] == {
        "config_path": "refit.yaml",
        "store": None,
        "window_hours": None,  # the config's drift.window_hours, read when the run starts
        "window_rows": None,
        "as_of": None,
        "report": None,  # the HTML report when drift.report_html says (by default: the decision changed)
    }


def test_schedules_and_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFIT_RETRAIN_CRON", "0 4 * * 1")
    monkeypatch.setenv("REFIT_DRIFT_CRON", "*/15 * * * *")
    monkeypatch.setenv("REFIT_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("REFIT_CONFIG_PATH", "conf/prod.yaml")
    monkeypatch.setenv("REFIT_WINDOW_DAYS", "7.5")
    monkeypatch.setenv("REFIT_DRIFT_WINDOW_HOURS", "6")
    monkeypatch.setenv("REFIT_SCHEDULES_PAUSED", "true")
    d = _by_name()
    [weekly] = d[RETRAIN_WEEKLY].schedules
    assert (weekly.schedule.cron, weekly.schedule.timezone) == ("0 4 * * 1", "Europe/Berlin")
    [hourly] = d[DRIFT_CHECK_HOURLY].schedules
    assert (hourly.schedule.cron, hourly.schedule.timezone) == ("*/15 * * * *", "Europe/Berlin")
    assert d[RETRAIN_WEEKLY].paused is True and d[DRIFT_CHECK_HOURLY].paused is True
    for name in (RETRAIN_WEEKLY, RETRAIN_MANUAL, RETRAIN_ON_DRIFT):
        assert d[name].parameters["params"]["config_path"] == "conf/prod.yaml"
        assert d[name].parameters["params"]["window_days"] == 7.5
    assert d[DRIFT_CHECK_HOURLY].parameters["params"]["window_hours"] == 6
    [trigger] = d[RETRAIN_ON_DRIFT].triggers
    assert trigger.parameters["params"]["config_path"] == "conf/prod.yaml"
    assert trigger.parameters["params"]["window_days"] == 7.5


def test_every_deployment_reads_its_windows_from_the_config(tmp_path: Path) -> None:
    """No deployment declares a window: each run reads the YAML's, as the CLI and a direct flow call do."""
    path = write_config(tmp_path, training={"window_days": 12.5}, drift={"window_hours": 6})
    cfg = load_config(path)
    d = _by_name(DeploymentSettings(config_path=str(path)))
    hourly = DriftCheckParameters.model_validate(d[DRIFT_CHECK_HOURLY].parameters["params"])
    assert resolve_run_parameters(hourly, cfg).window_hours == 6
    assert resolve_run_parameters(DriftCheckParameters(window_hours=3), cfg).window_hours == 3  # an explicit value wins
    for name in (RETRAIN_WEEKLY, RETRAIN_MANUAL, RETRAIN_ON_DRIFT):
        params = RetrainParameters.model_validate(d[name].parameters["params"])
        assert resolve_run_parameters(params, cfg).window_days == 12.5
    [trigger] = d[RETRAIN_ON_DRIFT].triggers
    assert trigger.parameters["params"]["window_days"] is None


def test_explicit_settings_win_over_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFIT_RETRAIN_CRON", "0 5 * * *")
    d = _by_name(DeploymentSettings(retrain_cron="30 2 * * 0"))
    assert d[RETRAIN_WEEKLY].schedules[0].schedule.cron == "30 2 * * 0"


def test_every_deployment_runs_on_the_store_it_was_built_with() -> None:
    d = {x.name: x for x in build_deployments(store="s3://bucket/refit")}
    for name in (RETRAIN_WEEKLY, RETRAIN_MANUAL, RETRAIN_ON_DRIFT, DRIFT_CHECK_HOURLY):
        assert d[name].parameters["params"]["store"] == "s3://bucket/refit"


def _render_trigger(payload: dict[str, Any]) -> dict[str, Any]:
    """The drift trigger's parameters as the server renders them for an event with ``payload``."""
    from prefect.server.events.actions import RunDeployment
    from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

    [trigger] = _by_name()[RETRAIN_ON_DRIFT].triggers
    # the server's own wrapping of "{{ ... }}" strings (a one-expression template keeps its type)
    params = {
        key: RunDeployment._wrap_v1_template(value) if "{{" in str(value) else value
        for key, value in trigger.parameters["params"].items()
    }
    context = HydrationContext(
        raise_on_error=True,
        render_jinja=True,
        jinja_context={"event": {"payload": payload, "resource": {"id": "refit.model.churn"}}},
    )
    return dict(hydrate({"params": params}, context)["params"])


def test_a_drift_triggered_retrain_runs_on_the_store_the_drift_was_found_in() -> None:
    rendered = _render_trigger({"reason": "share 0.4", "store": "/data/refit store"})
    assert rendered["store"] == "/data/refit store"
    assert rendered["reason"] == "drift detected on refit.model.churn: share 0.4"
    validate({"params": rendered}, _schema(retrain), raise_on_error=True)
    # an event that names no store still starts a run: on the worker's REFIT_STORE
    assert _render_trigger({"reason": "share 0.4"})["store"] is None


def test_a_drift_triggered_retrain_runs_as_of_the_drifted_windows_end() -> None:
    end = "2012-08-01T00:00:00+00:00"
    rendered = _render_trigger({"reason": "share 0.4", "window_end": end})
    assert rendered["as_of"] == end
    validate({"params": rendered}, _schema(retrain), raise_on_error=True)
    # an event that names no window: the retrain runs as of now
    assert _render_trigger({"reason": "share 0.4"})["as_of"] is None


def test_retrain_manual_and_on_drift_have_no_schedule() -> None:
    d = _by_name()
    assert d[RETRAIN_MANUAL].schedules == [] and d[RETRAIN_MANUAL].triggers == []
    assert d[RETRAIN_ON_DRIFT].schedules == []
    assert d[RETRAIN_MANUAL].parameters["params"]["trigger"] == "manual"
    assert d[RETRAIN_ON_DRIFT].parameters["params"]["trigger"] == "drift"


@pytest.mark.parametrize("strategy", ["ENQUEUE", "CANCEL_NEW"])
def test_one_retrain_at_a_time_with_the_configured_collision_strategy(
    monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    monkeypatch.setenv("REFIT_RETRAIN_COLLISION", strategy)
    d = _by_name()
    for name in (RETRAIN_WEEKLY, RETRAIN_MANUAL, RETRAIN_ON_DRIFT):
        assert d[name].concurrency_limit == 1
        assert d[name].concurrency_options.collision_strategy == ConcurrencyLimitStrategy(strategy)
    # an hourly check that overlaps the previous one is pointless: always cancelled
    assert d[DRIFT_CHECK_HOURLY].concurrency_limit == 1
    assert d[DRIFT_CHECK_HOURLY].concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW


def test_an_unknown_collision_strategy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFIT_RETRAIN_COLLISION", "RUN_BOTH")
    with pytest.raises(pydantic.ValidationError, match="retrain_collision"):
        build_deployments()


def test_drift_trigger_listens_for_the_drift_event_of_any_model() -> None:
    [trigger] = _by_name()[RETRAIN_ON_DRIFT].triggers
    assert isinstance(trigger, DeploymentEventTrigger)
    assert trigger.expect == {DRIFT_EVENT} == {"refit.drift.detected"}
    assert trigger.match.model_dump() == {"prefect.resource.id": "refit.model.*"}
    assert trigger.enabled and trigger.threshold == 1
    params = trigger.parameters["params"]
    # one-expression templates keep their type (the payload arrives as an object); mixed text stays a string
    assert params["drift"] == "{{ event.payload }}"
    assert params["reason"] == "drift detected on {{ event.resource.id }}: {{ event.payload.reason }}"
    assert params["trigger"] == "drift"
    assert set(params) <= set(_schema(retrain)["definitions"]["RetrainParameters"]["properties"])


def test_drift_trigger_parameters_validate_once_rendered() -> None:
    [trigger] = _by_name()[RETRAIN_ON_DRIFT].triggers
    rendered = {
        "params": trigger.parameters["params"]
        | {
            "reason": "drift detected on refit.model.churn: drift share 0.42",
            "drift": {"drift_share": 0.42, "drifted_columns": ["monthly_charges"]},
            "as_of": "2026-03-02T12:00:00+00:00",
        }
    }
    validate(rendered, _schema(retrain), raise_on_error=True)


def test_parameter_schema_is_the_typed_form() -> None:
    schema = _schema(retrain)
    assert list(schema["properties"]) == ["params"] and "params" not in schema.get("required", [])
    assert schema["properties"]["params"]["$ref"] == "#/definitions/RetrainParameters"
    assert schema["properties"]["params"]["description"].startswith("What this run does")  # from the docstring
    fields = schema["definitions"]["RetrainParameters"]["properties"]
    assert fields["force"]["type"] == "boolean" and fields["force"]["default"] is False
    assert fields["dry_run"]["type"] == "boolean"
    assert {"type": "number", "minimum": 0} in fields["window_days"]["anyOf"]
    assert fields["trigger"]["enum"] == ["manual", "schedule", "drift", "cli"]
    assert fields["reason"]["description"].startswith("Why this run")
    assert schema["definitions"]["RetrainParameters"]["additionalProperties"] is False


@pytest.mark.parametrize("name", [RETRAIN_WEEKLY, RETRAIN_MANUAL, RETRAIN_ON_DRIFT, DRIFT_CHECK_HOURLY])
def test_default_parameters_validate_against_the_flow_schema(name: str) -> None:
    deployment = _by_name()[name]
    flow = drift_check if name == DRIFT_CHECK_HOURLY else retrain
    validate(deployment.parameters, _schema(flow), raise_on_error=True)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"force": "yes"}, "force"),
        ({"window_days": "thirty"}, "window_days"),
        ({"window_days": -1}, "window_days"),
        ({"trigger": "cron"}, "trigger"),
        ({"unknown": 1}, "params"),
    ],
)
def test_the_server_schema_refuses_bad_parameters(change: dict[str, Any], field: str) -> None:
    params = _by_name()[RETRAIN_MANUAL].parameters["params"] | change
    with pytest.raises(ValidationError, match=field):
        validate({"params": params}, _schema(retrain), raise_on_error=True)
