"""Projects and their members."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from rest_framework.authtoken.models import Token

from core.audit import record_audit
from core.models import AuditEvent
from feedback.models import Membership, Project

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


@transaction.atomic
def add_member(
    *, project: Project, username: str, role: str, password: str | None = None, actor=None
) -> tuple[Membership, Token]:
    """Create the user if needed, give it `role` in `project`, and return its API token."""
    if role not in Membership.Role.values:
        raise ValidationError({"role": ROLE_UNKNOWN.format(role=role, roles=", ".join(Membership.Role.values))})
    user, created = User.objects.get_or_create(username=username)
    if password:
        user.set_password(password)
    elif created:
        user.set_unusable_password()
    user.save()  # a project role never makes a user staff: project admins work in the product's pages
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    _sync_account(user)  # a demotion takes every privilege of the old role away at once
    token, _ = Token.objects.get_or_create(user=user)
    record_audit(actor=actor, event_type=AuditEvent.Type.MEMBER_ADDED, project=project, target=f"user:{user.pk}",
                 extra={"username": user.username, "role": role})
    return membership, token


@transaction.atomic
def remove_member(*, membership: Membership, actor=None) -> None:
    """Take a user out of a project; their judgements stay (they are evidence)."""
    project, user = membership.project, membership.user
    membership.delete()
    _sync_account(user)
    record_audit(actor=actor, event_type=AuditEvent.Type.MEMBER_REMOVED, project=project, target=f"user:{user.pk}",
                 extra={"username": user.username})


@transaction.atomic
def make_superuser(*, username: str) -> None:
    """Give an existing user every permission (the demo's admin); a deployment step, not a project change."""
    User.objects.filter(username=username).update(is_superuser=True, is_staff=True)
