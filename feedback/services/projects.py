"""Projects and their members. The member rules live here, and every door (members page, Django admin,
`add_member` command, project creation) goes through `add_member`, `change_role` and `remove_member`:
a project always keeps one admin, checked inside the write's transaction under a lock."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from rest_framework.authtoken.models import Token

from core.audit import record_audit
from core.db import lock_rows
from core.exceptions import Conflict
from core.models import AuditEvent
from feedback.models import Membership, Project
from feedback.services.tokens import ensure_token

User = get_user_model()

ROLE_UNKNOWN = "Unknown role {role!r}; choose one of {roles}."
PROJECT_FIELDS = ("name", "instructions", "completions_per_task", "overlap", "lease_seconds", "gold_rate",
                  "max_overlap", "agreement_threshold")

ROLE_GROUPS = {
    Membership.Role.ANNOTATOR: "Annotators",
    Membership.Role.REVIEWER: "Reviewers",
    Membership.Role.ADMIN: "Project admins",
}


@transaction.atomic
def create_project(
    *, slug: str, name: str = "", instructions: str = "", completions_per_task: int = 2, overlap: int = 3,
    lease_seconds: int = 600, gold_rate: float = 0.0, max_overlap: int | None = None,
    agreement_threshold: float = 0.75, actor=None,
) -> Project:
    project = Project(
        slug=slug, name=name or slug, instructions=instructions, completions_per_task=completions_per_task,
        overlap=overlap, lease_seconds=lease_seconds, gold_rate=gold_rate, max_overlap=max_overlap,
        agreement_threshold=agreement_threshold,
    )
    project.full_clean()
    project.save()
    record_audit(actor=actor, event_type=AuditEvent.Type.PROJECT_CREATED, project=project, target=f"project:{project.pk}")
    if actor is not None and actor.is_authenticated and not actor.is_superuser:
        add_member(project=project, username=actor.get_username(), role=Membership.Role.ADMIN, actor=actor)
    return project


@transaction.atomic
def update_project(*, project: Project, actor=None, **changes) -> Project:
    """Change a project's settings (not its slug); the audit row names the fields that changed."""
    unknown = set(changes) - set(PROJECT_FIELDS)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "cannot be changed here"})
    changed = {k: v for k, v in changes.items() if getattr(project, k) != v}
    for name, value in changed.items():
        setattr(project, name, value)
    project.full_clean()
    project.save()
    if changed:
        record_audit(actor=actor, event_type=AuditEvent.Type.PROJECT_CHANGED, project=project,
                     target=f"project:{project.pk}", extra={"fields": sorted(changed)})
    return project


def ensure_role_groups() -> dict[str, Group]:
    """The Django groups named after the roles. They carry NO model permissions: a Django permission is
    global, so it would reach every project's rows; roles live in Membership, per project, and are read
    fresh by core.permissions. (The groups only label users; older installs' permissions are removed.)"""
    groups = {}
    for role, name in ROLE_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.clear()
        groups[role] = group
    return groups


def _sync_account(user) -> None:
    """Make the user's global flags follow their memberships: never staff through a project role (the Django
    admin is for superusers only), and in exactly the role groups of the roles they still hold somewhere."""
    groups = ensure_role_groups()
    held = set(Membership.objects.filter(user=user).values_list("role", flat=True))
    user.groups.remove(*[g for role, g in groups.items() if role not in held])
    user.groups.add(*[g for role, g in groups.items() if role in held])
    if user.is_staff and not user.is_superuser:
        User.objects.filter(pk=user.pk).update(is_staff=False)
        user.is_staff = False


class LastAdmin(Conflict):
    """The change would leave the project without an admin (nobody could manage its members any more)."""

    code = "last_admin"
    default_message = "A project keeps at least one admin: make someone else admin first."


class MemberGone(Conflict):
    """The membership was removed (by someone else) before this change reached it."""

    code = "member_gone"
    default_message = "This person is no longer a member of the project."


def _lock_members(project: Project) -> None:
    """Serialise every membership write of `project` until the transaction ends, so the last-admin rule reads
    the admins no other write is changing: PostgreSQL locks the project's row (FOR NO KEY UPDATE, so inserts
    that point at the project are not blocked); on SQLite every transaction is
    IMMEDIATE (config.settings), so it already holds the database's write lock from its first statement."""
    list(lock_rows(Project.objects.filter(pk=project.pk)).values_list("pk", flat=True))


def _refuse_last_admin(*, membership: Membership) -> None:
    """Call with the members locked: refuse when `membership` is the project's only admin."""
    if membership.role != Membership.Role.ADMIN:
        return
    others = Membership.objects.filter(project_id=membership.project_id, role=Membership.Role.ADMIN)
    if not others.exclude(pk=membership.pk).exists():
        raise LastAdmin()


def _locked(membership: Membership) -> Membership:
    """The membership as it is now, read under the members' lock (it may have changed or gone since it was read)."""
    _lock_members(membership.project)
    current = Membership.objects.select_related("project", "user").filter(pk=membership.pk).first()
    if current is None:
        raise MemberGone()
    return current


def _check_role(role: str) -> None:
    if role not in Membership.Role.values:
        raise ValidationError({"role": ROLE_UNKNOWN.format(role=role, roles=", ".join(Membership.Role.values))})


@transaction.atomic
def add_member(
    *, project: Project, username: str, role: str, password: str | None = None, actor=None, issue_token: bool = True,
) -> tuple[Membership, Token | None]:
    """Create the user if needed and give it `role` in `project` (for a member already there: `change_role`).

    Returns the membership and, with `issue_token`, the user's API token: their existing one, or a new one if
    they have none, except after a revocation (then None; see tokens.ensure_token). Without
    `issue_token` (the members page, the Django admin) tokens are left alone and the existing one, if any,
    comes back."""
    _check_role(role)
    user, created = User.objects.get_or_create(username=username)
    if password:
        user.set_password(password)
    elif created:
        user.set_unusable_password()
    user.save()  # a project role never makes a user staff: project admins work in the product's pages
    _lock_members(project)
    membership = Membership.objects.select_related("project", "user").filter(project=project, user=user).first()
    if membership is not None:
        membership = change_role(membership=membership, role=role, actor=actor)
    else:
        membership = Membership.objects.create(project=project, user=user, role=role)
        _sync_account(user)
        record_audit(actor=actor, event_type=AuditEvent.Type.MEMBER_ADDED, project=project,
                     target=f"user:{user.pk}", extra={"username": user.username, "role": role})
    if issue_token:
        token = ensure_token(user=user, actor=actor, project=project)
    else:
        token = Token.objects.filter(user=user).first()
    return membership, token


@transaction.atomic
def change_role(*, membership: Membership, role: str, actor=None) -> Membership:
    """Give a member another role. Refused (LastAdmin) when it would demote the project's only admin; the check
    and the write happen under the members' lock, so two admins demoting each other at once leave one admin.
    Tokens are untouched. Audited as member_role_changed {from, to}; no row when the role is already `role`."""
    _check_role(role)
    current = _locked(membership)
    before = current.role
    if before == role:
        return current
    if role != Membership.Role.ADMIN:
        _refuse_last_admin(membership=current)
    current.role = role
    current.save(update_fields=["role"])
    _sync_account(current.user)  # a demotion takes every privilege of the old role away at once
    record_audit(actor=actor, event_type=AuditEvent.Type.MEMBER_ROLE_CHANGED, project=current.project,
                 target=f"user:{current.user_id}",
                 extra={"username": current.user.username, "from": before, "to": role})
    return current


@transaction.atomic
def remove_member(*, membership: Membership, actor=None) -> None:
    """Take a user out of a project; their judgements stay (they are evidence). Refused (LastAdmin) for the
    project's only admin, checked under the members' lock."""
    current = _locked(membership)
    _refuse_last_admin(membership=current)
    project, user = current.project, current.user
    current.delete()
    _sync_account(user)
    record_audit(actor=actor, event_type=AuditEvent.Type.MEMBER_REMOVED, project=project, target=f"user:{user.pk}",
                 extra={"username": user.username})


@transaction.atomic
def make_superuser(*, username: str) -> None:
    """Give an existing user every permission (the demo's admin); a deployment step, not a project change."""
    User.objects.filter(username=username).update(is_superuser=True, is_staff=True)
