"""API tokens (rest_framework.authtoken) of project members: who may make them, where they work, and when one
is (not) made again.

A DRF token is the user's, one per user, and by itself opens every project the user belongs to, also projects
they join later. Two rules keep a key inside the tenant of whoever saw it:

- Who may mint: a project admin may create or revoke the token of a user whose every membership is in a project
  they administer (superusers: anyone). Minting replaces the user's key, so an admin of one project must not be
  able to break (or read) the key the user works with elsewhere.
- Where it works: a key minted by someone other than its owner (and not a superuser) gets a scope
  (core.models.TokenScope): the projects its minter administered at that moment. It is enforced on every
  request (core.authentication / core.permissions): outside it the key answers as for a non-member, 404. A
  membership added later (members page, Django admin, `add_member`, a project the user creates) does not widen
  it. Keys without a scope are their owners' own: asked for with their password (`POST /api/v1/auth/token/`,
  which also replaces a key someone else minted, cutting that copy off), made by a superuser, or by the
  operator's `add_member` command.

A revoked token is never brought back by a side effect: `add_member` issues one only to a user who never had a
token revoked; after a revocation only an explicit `create_token` (members page) or `add_member --new-token`
makes a new key.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from rest_framework.authtoken.models import Token

from core.audit import record_audit
from core.models import AuditEvent, TokenScope
from feedback.models import Membership

TOKEN_NOT_YOURS = "This user also belongs to projects you do not administer; ask a superuser to manage their token."


def _admin_projects(user) -> set[int]:
    return set(Membership.objects.filter(user=user, role=Membership.Role.ADMIN).values_list("project_id", flat=True))


def may_manage_token(*, actor, user) -> bool:
    if actor.is_superuser:
        return True
    if user.is_superuser:
        return False
    theirs = set(Membership.objects.filter(user=user).values_list("project_id", flat=True))
    return theirs <= _admin_projects(actor)


def managed_users(*, actor, users) -> set[int]:
    """The ids among `users` whose token `actor` may manage (one query each way, for a members list)."""
    users = list(users)
    if actor.is_superuser:
        return {u.pk for u in users}
    mine = _admin_projects(actor)
    theirs: dict[int, set[int]] = {}
    for user_id, project_id in Membership.objects.filter(user__in=users).values_list("user_id", "project_id"):
        theirs.setdefault(user_id, set()).add(project_id)
    return {u.pk for u in users if not u.is_superuser and theirs.get(u.pk, set()) <= mine}


def scope_for(*, actor, user) -> set[int] | None:
    """The projects a key `actor` mints for `user` will open, or None for an unscoped key (the owner's own, a
    superuser's or the operator's: no actor)."""
    if actor is None or not getattr(actor, "is_authenticated", False) or actor.pk == user.pk or actor.is_superuser:
        return None
    return _admin_projects(actor)


def _mint(*, actor, user) -> tuple[Token, bool]:
    """A fresh key for `user` (an older one stops working at once), scoped when someone else mints it."""
    replaced, _ = Token.objects.filter(user=user).delete()
    token = Token.objects.create(user=user)
    scope = scope_for(actor=actor, user=user)
    if scope is not None:
        TokenScope.objects.create(token=token, minted_by=actor).projects.set(scope)
    return token, bool(replaced)


def _audit_created(*, actor, user, project, replaced: bool, via: str) -> None:
    scope = scope_for(actor=actor, user=user)
    record_audit(actor=actor, event_type=AuditEvent.Type.TOKEN_CREATED, project=project, target=f"user:{user.pk}",
                 extra={"username": user.username, "replaced": replaced, "via": via,
                        "scope": None if scope is None else sorted(scope)})


@transaction.atomic
def create_token(*, actor, user, project=None) -> Token:
    """A fresh token for `user` (its key is shown only now). Audited (never the key) under `project`, the
    project whose members page it was made from, with the scope it got."""
    if not may_manage_token(actor=actor, user=user):
        raise PermissionDenied(TOKEN_NOT_YOURS)
    token, replaced = _mint(actor=actor, user=user)
    _audit_created(actor=actor, user=user, project=project, replaced=replaced, via="members page")
    return token


@transaction.atomic
def revoke_token(*, actor, user, project=None) -> bool:
    """Delete the user's token; True when there was one. Audited only when a token was revoked."""
    if not may_manage_token(actor=actor, user=user):
        raise PermissionDenied(TOKEN_NOT_YOURS)
    deleted = _revoke(user=user)
    if deleted:
        record_audit(actor=actor, event_type=AuditEvent.Type.TOKEN_REVOKED, project=project,
                     target=f"user:{user.pk}", extra={"username": user.username})
    return deleted


def _revoke(*, user) -> bool:
    return Token.objects.filter(user=user).delete()[0] > 0  # its scope goes with it (cascade)


def was_revoked(*, user) -> bool:
    """True when the user's most recent token event is a revocation (the audit trail is the record)."""
    last = (AuditEvent.objects.filter(target=f"user:{user.pk}", event_type__in=[
        AuditEvent.Type.TOKEN_CREATED, AuditEvent.Type.TOKEN_REVOKED]).order_by("-pk").values_list("event_type", flat=True).first())
    return last == AuditEvent.Type.TOKEN_REVOKED


@transaction.atomic
def ensure_token(*, user, actor=None, project=None) -> Token | None:
    """The user's token; a new one when they have none, unless their last one was revoked (then None: a revoked
    key comes back only when someone asks for it explicitly)."""
    token = Token.objects.filter(user=user).first()
    if token is not None:
        return token
    if was_revoked(user=user):
        return None
    token, _ = _mint(actor=actor, user=user)
    _audit_created(actor=actor, user=user, project=project, replaced=False, via="add_member")
    return token


@transaction.atomic
def issue_operator_token(*, user, project=None) -> Token:
    """A fresh, unscoped key made by the operator (`add_member --new-token`), replacing any other."""
    token, replaced = _mint(actor=None, user=user)
    _audit_created(actor=None, user=user, project=project, replaced=replaced, via="add_member --new-token")
    return token


@transaction.atomic
def own_token(*, user) -> Token:
    """The token for its owner, who proved their password (`POST /api/v1/auth/token/`): their own key as it is;
    a key someone else minted (scoped: they may hold a copy) is replaced by a fresh unscoped one, which cuts
    that copy off. A revoked key is not brought back: the owner gets a new one."""
    token = Token.objects.filter(user=user).select_related("scope").first()
    if token is not None and not hasattr(token, "scope"):
        return token
    token, replaced = _mint(actor=user, user=user)
    _audit_created(actor=user, user=user, project=None, replaced=replaced, via="password")
    return token


def token_facts(*, users, viewer) -> dict[int, dict]:
    """For a members list: per user id with a token, whose key it is and where it works:
    {"scoped": bool, "minted_by": username or None, "projects": [slugs], "others": n, "created": datetime}.
    Only projects `viewer` belongs to are named; the rest are counted (`others`), so the list tells no one
    about projects they cannot see."""
    facts: dict[int, dict] = {}
    tokens = list(Token.objects.filter(user__in=list(users)).select_related("scope__minted_by"))
    for token in tokens:
        scope = getattr(token, "scope", None)
        facts[token.user_id] = {"scoped": scope is not None, "created": token.created, "projects": [], "others": 0,
                                "minted_by": scope.minted_by.username if scope and scope.minted_by else None}
    by_key = {t.key: t.user_id for t in tokens if hasattr(t, "scope")}
    seen = None if viewer.is_superuser else set(Membership.objects.filter(user=viewer).values_list("project_id", flat=True))
    through = TokenScope.projects.through.objects.filter(tokenscope_id__in=list(by_key))
    for key, project_id, slug in through.values_list("tokenscope_id", "project_id", "project__slug").order_by("project__slug"):
        if seen is None or project_id in seen:
            facts[by_key[key]]["projects"].append(slug)
        else:
            facts[by_key[key]]["others"] += 1
    return facts
