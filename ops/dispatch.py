"""From a domain event to webhook deliveries: outbox rows in the announcing transaction, and the
worker's delivery task enqueued once that transaction commits (nothing leaves for a rolled-back change)."""

from __future__ import annotations

from django.db import transaction

from ops import services
from ops.models import WebhookDelivery
from ops.tasks import deliver_webhook


def notify(*, event: str, project, payload: dict) -> list[WebhookDelivery]:
    """Record a delivery for every matching active webhook; they are sent by the worker after commit."""
    deliveries = services.record_deliveries(event=event, project=project, payload=payload)
    for delivery in deliveries:
        transaction.on_commit(lambda pk=delivery.pk: deliver_webhook.enqueue(pk))
    return deliveries


def on_domain_event(sender, *, event: str, project, payload: dict, **kwargs) -> None:
    """Receiver of core.events.domain_event (connected in OpsConfig.ready)."""
    notify(event=event, project=project, payload=payload)
