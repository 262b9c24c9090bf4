"""Checks of a webhook's registration, used by the model (clean) and by delivery (DNS may change).

A URL must use http(s) and resolve only to public addresses: loopback, private, link-local (cloud
metadata), multicast and reserved ranges are refused at registration and again at every delivery, after
DNS resolution, so a name that later resolves inward (DNS rebinding) is refused too — unless settings
allow private networks (WEBHOOK_ALLOW_PRIVATE_NETWORKS, for tests and closed deployments).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

EVENTS = ("snapshot.created", "model_version.registered", "run.finished", "retrain.finished")

URL_NOT_ALLOWED = "Webhook URLs must be http(s) and resolve to public addresses; {host} resolves to {address}."
URL_UNRESOLVABLE = "Webhook host {host!r} does not resolve."
URL_NOT_HTTP = "Webhook URLs must be http:// or https:// with a host."
EVENTS_EMPTY = "Subscribe to at least one event."
EVENT_UNKNOWN = "Unknown event {event!r}; choose from {events}."


def check_events(events) -> None:
    if not isinstance(events, list) or not events:
        raise ValidationError({"events": EVENTS_EMPTY})
    for event in events:
        if event not in EVENTS:
            raise ValidationError({"events": EVENT_UNKNOWN.format(event=event, events=", ".join(EVENTS))})


def check_url(url: str) -> list[str]:
    """The addresses `url` resolves to, if every one is allowed; ValidationError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError({"url": URL_NOT_HTTP})
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
