"""Create the failure/rejection automations (``build_notifications``) on the Prefect API, with
the notification block the settings name. ``refit serve`` (and so ``refit up``) calls this."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client

from deployments.definitions import RETRAIN_FAILED_AUTOMATION, RETRAIN_REJECTED_AUTOMATION, build_notifications
from deployments.settings import DeploymentSettings

#: The Custom Webhook block refit saves when REFIT_NOTIFY_WEBHOOK_URL is set.
WEBHOOK_BLOCK_NAME = "refit-notify"

OFF = (
    "failure notifications off: set REFIT_NOTIFY_WEBHOOK_URL (a URL that takes a JSON POST) or "
    "REFIT_NOTIFY_BLOCK (a notification block, e.g. slack-webhook/ops) and restart"
)


def notification_block_id(settings: DeploymentSettings) -> UUID | None:
    """The block to notify through: the named one, else a Custom Webhook block saved for the URL."""
    if settings.notify_block:
        slug, _, name = settings.notify_block.partition("/")
        if not name:
            raise ValueError(
                f"REFIT_NOTIFY_BLOCK={settings.notify_block!r}: expected 'block-type-slug/name', e.g. slack-webhook/ops"
            )
        with get_client(sync_client=True) as client:
            return client.read_block_document_by_name(name, block_type_slug=slug).id
    if settings.notify_webhook_url is not None:
        # the URL may carry a token (Slack's, Teams'): kept in the block's secrets and filled into
        # its url template when it sends; the url field itself is plain text that anyone who can
        # read blocks (the API, the UI) sees
        block = CustomWebhookNotificationBlock(
            name=WEBHOOK_BLOCK_NAME,
            url="{{notify_url}}",
            secrets={"notify_url": settings.notify_webhook_url.get_secret_value()},
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
        )
        # called from sync code it is the UUID (Prefect's sync_compatible types both outcomes)
        return cast(UUID, block.save(WEBHOOK_BLOCK_NAME, overwrite=True))
    return None


def apply_notifications(settings: DeploymentSettings) -> str:
    """Create (or recreate: UI edits are replaced) the two automations; a line saying what was done."""
    block_id = notification_block_id(settings)
    with get_client(sync_client=True) as client:
        # an earlier start's automations go either way: turned off, they must stop sending
        for name in (RETRAIN_FAILED_AUTOMATION, RETRAIN_REJECTED_AUTOMATION):
            for old in client.read_automations_by_name(name):
                client.delete_automation(old.id)
        if block_id is None:
            return OFF
        automations = build_notifications(block_id)
        for automation in automations:
            client.create_automation(automation)
    target = settings.notify_block or f"custom-webhook/{WEBHOOK_BLOCK_NAME}"
    return f"failure notifications on: {', '.join(a.name for a in automations)} -> {target}"
