"""Webhook registration checks, event fan-out (on commit) and signed delivery with retries.

A URL must use http(s) and resolve only to public addresses: loopback, private, link-local (cloud
metadata), multicast and reserved ranges are refused at registration and again at every delivery, after
DNS resolution, so a name that later resolves inward (DNS rebinding) is refused too — unless settings
allow private networks (WEBHOOK_ALLOW_PRIVATE_NETWORKS, for tests and closed deployments).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ops.models import EVENTS, Webhook, WebhookDelivery

URL_NOT_ALLOWED = "Webhook URLs must be http(s) and resolve to public addresses; {host} resolves to {address}."
URL_UNRESOLVABLE = "Webhook host {host!r} does not resolve."
EVENT_UNKNOWN = "Unknown event {event!r}; choose from {events}."
MAX_ATTEMPTS = 6
TIMEOUT_SECONDS = 5


def check_events(events) -> None:
    if not isinstance(events, list) or not events:
        raise ValidationError({"events": "Subscribe to at least one event."})
    for event in events:
        if event not in EVENTS:
            raise ValidationError({"events": EVENT_UNKNOWN.format(event=event, events=", ".join(EVENTS))})


def check_url(url: str) -> list[str]:
    """The addresses `url` resolves to, if every one is allowed; ValidationError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError({"url": "Webhook URLs must be http:// or https:// with a host."})
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ValidationError({"url": URL_UNRESOLVABLE.format(host=parts.hostname)}) from None
    addresses = sorted({info[4][0] for info in infos})
    if not getattr(settings, "WEBHOOK_ALLOW_PRIVATE_NETWORKS", False):
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not ip.is_global or ip.is_multicast:
                raise ValidationError({"url": URL_NOT_ALLOWED.format(host=parts.hostname, address=address)})
    return addresses


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>" (the timestamp makes an old delivery useless to replay)."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def notify(*, event: str, project, payload: dict) -> list[WebhookDelivery]:
    """Record a delivery for every matching active webhook; they are sent by the worker after commit."""
    from ops.tasks import deliver_webhook

    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    scope = Q(project__isnull=True) | Q(project=project) if project is not None else Q(project__isnull=True)
    hooks = Webhook.objects.filter(scope, is_active=True)
    deliveries = [
        WebhookDelivery.objects.create(webhook=hook, event=event, event_id=uuid.uuid4(), payload=payload)
        for hook in hooks if event in hook.events
    ]
    for delivery in deliveries:
        transaction.on_commit(lambda pk=delivery.pk: deliver_webhook.enqueue(pk))
    return deliveries


def record_deliveries_for_event(sender, *, event: str, project, payload: dict, **kwargs) -> None:
    """Receiver of core.events.domain_event: the outbox rows are written in the announcing transaction."""
    notify(event=event, project=project, payload=payload)


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
