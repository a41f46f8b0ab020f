"""The config's timeouts reach Prefect: a hung step times out and fails its run (freeing the
concurrency-1 slot) instead of holding it forever."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import pytest

from flows.retrain import RetrainParameters, retrain
from refit.config import TimeoutsConfig
from refit.config_loader import load_config
from tests.flows.helpers import make_project


# pytest-timeout's default method holds SIGALRM, and Prefect then falls back to a watcher thread
# that cannot interrupt a blocked read; without it (a served run, the CLI) Prefect uses the alarm
@pytest.mark.timeout(900, method="thread")
def test_a_hung_step_times_out_and_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    config, _ = make_project(tmp_path, rows=300, timeouts={"step_s": 3})
    assert load_config(config).timeouts.step_s == 3
    monkeypatch.setenv("REFIT_STORE", str(tmp_path / "store"))
    # a data file that never delivers a byte, as on a stalled mount: a FIFO nobody writes
    stalled = tmp_path / "store" / "datasets" / "churn" / "base" / "zz-stalled.parquet"
    os.mkfifo(stalled)

    unblocked = threading.Event()

    def unblock() -> None:  # only if the step did not time out: then this test fails instead of hanging
        unblocked.set()
        with contextlib.suppress(OSError):
            os.close(os.open(stalled, os.O_WRONLY | os.O_NONBLOCK))

    watchdog = threading.Timer(120, unblock)
    watchdog.start()
    try:
        state = retrain(RetrainParameters(config_path=str(config)), return_state=True)
    finally:
        watchdog.cancel()
    assert not unblocked.is_set(), "the step was not stopped by its timeout: the test had to unblock it"
    assert state.is_failed()
    # task run states reach the API as events, persisted by the server a moment later: poll for them
    timed_out: dict[str, str] = {}
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while timed_out.get("load-and-validate") != "TimedOut" and time.monotonic() < deadline:
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            )
            timed_out = {t.name.rsplit("-", 1)[0]: t.state.name for t in tasks if t.state is not None}
            time.sleep(0.5)
    assert timed_out.get("load-and-validate") == "TimedOut", timed_out


def test_timeouts_have_defaults_and_refuse_nonsense() -> None:
    defaults = TimeoutsConfig()
    assert defaults.training_s > defaults.step_s > 0 and defaults.retrain_s >= defaults.training_s
    with pytest.raises(ValueError, match="step_s"):
        TimeoutsConfig(step_s=0)


def test_reporting_what_the_run_decided_is_not_stopped_by_the_runs_time() -> None:
    """Once a model is promoted, the run's time being up must not fail it (the failure notification
    would announce a promoted model as a failed retrain): a step still refuses to start, a report does not."""
    from flows.parameters import RunBudget
    from tasks.retrain import publish_summary

    budget = RunBudget(0.0, "retrain")
    with pytest.raises(TimeoutError, match="ran past its 0 s"):
        budget.step(publish_summary, 30)
    assert budget.report(publish_summary, 30).timeout_seconds == 30
    assert RunBudget(3600, "retrain").report(publish_summary, 30).timeout_seconds == 30
