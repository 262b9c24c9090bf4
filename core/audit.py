"""Writing the audit trail. Call `record_audit` inside the transaction of the change it records, so the
change and its row commit (or roll back) together (Zulip's RealmAuditLog habit)."""

from __future__ import annotations

from core.models import AuditEvent


def record_audit(*, actor, event_type: str, project=None, target: str = "", extra: dict | None = None) -> AuditEvent:
    """Append an audit row. Anonymous actors (the worker, a schedule) are stored as no actor."""
    actor = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(actor=actor, event_type=event_type, project=project, target=target,
                                     extra=extra or {})
