"""Domain events that leave the process (webhooks), announced inside the transaction of the change.

Apps lower in the order (feedback, training) announce what happened here; `ops` listens (it connects a
receiver in its AppConfig.ready). Receivers run inside the caller's transaction, so what they record (an
outbox row per delivery) commits or rolls back with the change itself, and anything that leaves the
process must wait for `transaction.on_commit`. No app imports the one that reacts to it.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent with: event (str, one of ops' EVENTS), project (a feedback.Project or None), payload (a JSON-able dict).
domain_event = Signal()


def announce(*, event: str, project, payload: dict) -> None:
    """Tell every listener that `event` happened; call it inside the transaction of the change."""
    domain_event.send(sender=None, event=event, project=project, payload=payload)
