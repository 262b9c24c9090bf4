"""Webhook deliveries: the outbox rows written with the change they announce, and signed delivery.

URL and event checks live in ops.validators (the model's clean uses them too); enqueueing the worker's
task after commit is ops.dispatch's job, so this module never imports the tasks that call it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import timedelta

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from ops.models import Webhook, WebhookDelivery
from ops.validators import EVENTS, check_url

MAX_ATTEMPTS = 6
TIMEOUT_SECONDS = 5


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>" (the timestamp makes an old delivery useless to replay)."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def record_deliveries(*, event: str, project, payload: dict) -> list[WebhookDelivery]:
    """An outbox row for every matching active webhook; call it inside the transaction of the change."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    scope = Q(project__isnull=True) | Q(project=project) if project is not None else Q(project__isnull=True)
    hooks = Webhook.objects.filter(scope, is_active=True)
    return [
        WebhookDelivery.objects.create(webhook=hook, event=event, event_id=uuid.uuid4(), payload=payload)
        for hook in hooks if event in hook.events
    ]


def attempt_delivery(delivery: WebhookDelivery) -> bool:
    """POST once; True when the receiver answered 2xx. Records the outcome on the delivery."""
    hook = delivery.webhook
    body = json.dumps({"event": delivery.event, "id": str(delivery.event_id), "payload": delivery.payload},
                      sort_keys=True).encode()
    timestamp = str(int(time.time()))
    delivery.attempts += 1
    try:
        check_url(hook.url)  # again at delivery: DNS may have changed since registration
        response = requests.post(
            hook.url, data=body, timeout=TIMEOUT_SECONDS, allow_redirects=False,
            headers={"Content-Type": "application/json", "X-Webhook-Event": delivery.event,
                     "X-Webhook-Id": str(delivery.event_id), "X-Webhook-Timestamp": timestamp,
                     "X-Signature-256": sign(hook.secret, timestamp, body)},
        )
        delivery.last_status_code = response.status_code
        delivered = 200 <= response.status_code < 300
        delivery.last_error = "" if delivered else f"HTTP {response.status_code}"
    except ValidationError as exc:
        delivered, delivery.last_error = False, " ".join(exc.messages)
        delivery.attempts = MAX_ATTEMPTS  # a refused address will not become acceptable by retrying
    except requests.RequestException as exc:
        delivered, delivery.last_error = False, f"{type(exc).__name__}: {exc}"[:1000]
    if delivered:
        delivery.state, delivery.delivered_at = WebhookDelivery.State.DELIVERED, timezone.now()
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.state = WebhookDelivery.State.FAILED
    delivery.save()
    return delivered


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: 2, 4, 8, 16 … seconds (times WEBHOOK_BACKOFF_SECONDS / 2)."""
    base = getattr(settings, "WEBHOOK_BACKOFF_SECONDS", 2.0)
    return timedelta(seconds=base * 2 ** (attempts - 1))
