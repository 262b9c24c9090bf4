"""API tokens (rest_framework.authtoken) of project members, managed from the members page.

No service for this existed (add_member only makes sure a token exists). A token is the user's, not the
project's: it opens every project the user belongs to. So a project admin may only create or revoke the
token of a user whose every membership is in a project they administer (superusers: anyone); otherwise
an admin of one project could read a key that opens another project.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from rest_framework.authtoken.models import Token

from core.audit import record_audit
from core.models import AuditEvent
from feedback.models import Membership

TOKEN_NOT_YOURS = "This user also belongs to projects you do not administer; ask a superuser to manage their token."


def may_manage_token(*, actor, user) -> bool:
    if actor.is_superuser:
        return True
    if user.is_superuser:
        return False
    theirs = set(Membership.objects.filter(user=user).values_list("project_id", flat=True))
    mine = set(Membership.objects.filter(user=actor, role=Membership.Role.ADMIN).values_list("project_id", flat=True))
    return theirs <= mine


def managed_users(*, actor, users) -> set[int]:
    """The ids among `users` whose token `actor` may manage (one query each way, for a members list)."""
    users = list(users)
    if actor.is_superuser:
        return {u.pk for u in users}
    mine = set(Membership.objects.filter(user=actor, role=Membership.Role.ADMIN).values_list("project_id", flat=True))
    theirs: dict[int, set[int]] = {}
    for user_id, project_id in Membership.objects.filter(user__in=users).values_list("user_id", "project_id"):
        theirs.setdefault(user_id, set()).add(project_id)
    return {u.pk for u in users if not u.is_superuser and theirs.get(u.pk, set()) <= mine}


@transaction.atomic
def create_token(*, actor, user, project=None) -> Token:
    """A fresh token for `user`; an older one stops working at once (its key is shown only now).
    Audited (never the key) under `project`, the project whose members page it was made from."""
    if not may_manage_token(actor=actor, user=user):
        raise PermissionDenied(TOKEN_NOT_YOURS)
    replaced, _ = Token.objects.filter(user=user).delete()
    token = Token.objects.create(user=user)
    record_audit(actor=actor, event_type=AuditEvent.Type.TOKEN_CREATED, project=project, target=f"user:{user.pk}",
                 extra={"username": user.username, "replaced": bool(replaced)})
    return token


@transaction.atomic
def revoke_token(*, actor, user, project=None) -> bool:
    """Delete the user's token; True when there was one. Audited only when a token was revoked."""
    if not may_manage_token(actor=actor, user=user):
        raise PermissionDenied(TOKEN_NOT_YOURS)
    deleted, _ = Token.objects.filter(user=user).delete()
    if deleted:
        record_audit(actor=actor, event_type=AuditEvent.Type.TOKEN_REVOKED, project=project,
                     target=f"user:{user.pk}", extra={"username": user.username})
    return bool(deleted)
