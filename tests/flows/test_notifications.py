"""The failure/rejection automations: created on the API with the right triggers, and fired by
the server itself (a real failed retrain run, a real rejection event) into a local HTTP receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from deployments.definitions import FAILED_STATES, RETRAIN_FAILED_AUTOMATION, RETRAIN_REJECTED_AUTOMATION
from deployments.notifications import OFF, apply_notifications
from deployments.settings import DeploymentSettings
from tasks.names import REJECTED_EVENT


class Receiver:
    """A real HTTP server on loopback that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def wait_for(self, needle: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for body in list(self.bodies):
                if needle in body.get("body", ""):
                    return body
            time.sleep(0.5)
        raise AssertionError(f"no notification containing {needle!r} in {timeout_s} s; got {self.bodies}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()


def test_without_a_block_nothing_is_created_and_the_line_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFIT_NOTIFY_BLOCK", raising=False)
    monkeypatch.delenv("REFIT_NOTIFY_WEBHOOK_URL", raising=False)
    from prefect.client.orchestration import get_client

    ours = {RETRAIN_FAILED_AUTOMATION, RETRAIN_REJECTED_AUTOMATION}
    # an earlier start turned them on ...
    assert apply_notifications(DeploymentSettings(notify_webhook_url="http://127.0.0.1:9/hook")).startswith(
        "failure notifications on"
    )
    with get_client(sync_client=True) as client:
        assert ours <= {a.name for a in client.read_automations()}
    # ... and a start without a block turns them off: they must not go on sending
    assert apply_notifications(DeploymentSettings()) == OFF
    assert "REFIT_NOTIFY_WEBHOOK_URL" in OFF and "REFIT_NOTIFY_BLOCK" in OFF
    with get_client(sync_client=True) as client:
        assert not ours & {a.name for a in client.read_automations()}


def test_a_bad_block_name_is_one_clear_line() -> None:
    with pytest.raises(ValueError, match="REFIT_NOTIFY_BLOCK='ops'.*block-type-slug/name"):
        apply_notifications(DeploymentSettings(notify_block="ops"))


def test_failed_and_rejected_retrains_notify_through_the_server(receiver: Receiver, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.retrain import RetrainParameters, retrain
    from tasks.retrain import _emit

    settings = DeploymentSettings(notify_webhook_url=receiver.url)
    line = apply_notifications(settings)
    assert receiver.url not in line  # the URL may carry a token: never printed
    apply_notifications(settings)  # a restart recreates them, never duplicates
    with get_client(sync_client=True) as client:
        [failed] = client.read_automations_by_name(RETRAIN_FAILED_AUTOMATION)
        [rejected] = client.read_automations_by_name(RETRAIN_REJECTED_AUTOMATION)
        block = client.read_block_document(failed.actions[0].block_document_id)  # type: ignore[union-attr]
        shown = client.read_block_document(block.id, include_secrets=False)  # what the API and UI show
    assert block.block_type is not None and block.block_type.slug == "custom-webhook"
    # the URL (it may carry a token) is one of the block's secrets, not its plain-text url field
    assert shown.data["url"] == "{{notify_url}}" and receiver.url not in json.dumps(shown.data, default=str)
    assert failed.enabled and rejected.enabled
    assert failed.trigger.expect == {f"prefect.flow-run.{s}" for s in FAILED_STATES}  # type: ignore[union-attr]
    assert failed.trigger.match_related.model_dump() == {  # type: ignore[union-attr]
        "prefect.resource.role": "flow",
        "prefect.resource.name": "retrain",
    }
    assert rejected.trigger.expect == {REJECTED_EVENT}  # type: ignore[union-attr]
    assert [a.type for a in failed.actions + rejected.actions] == ["send-notification"] * 2
    time.sleep(3)  # the triggers service loads new automations periodically

    # a real retrain run that fails (its config does not exist)
    state = retrain(RetrainParameters(config_path=str(tmp_path / "missing.yaml")), return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)  # type: ignore[arg-type]
    body = receiver.wait_for(f"retrain run {run.name} ended Failed", 60)
    assert body["subject"] == "refit: retrain Failed"

    # the register step's rejection event, as it emits it
    _emit(REJECTED_EVENT, "churn", 7, {"outcome": "REJECT", "headline": "worse in segment enterprise"})
    body = receiver.wait_for("churn version 7 not promoted (REJECT): worse in segment enterprise", 60)
    assert body["subject"] == "refit: churn candidate not promoted"
