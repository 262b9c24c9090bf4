"""Which projects and tasks a user may reach: the permission-aware lookups every door (page, API, training's
pages) shares, so they all agree. A lookup brings the caller's role back with the project, for the permission
checks of the same request (`core.permissions.remember_role`)."""

from __future__ import annotations

import re

from django.db.models import QuerySet
from django.http import Http404

from core.permissions import ADMIN, limit_to_token_scope, remember_role, role_in, token_scope, within_token_scope
from feedback.models import ComparisonTask, Membership, Project
from feedback.selectors.sql import member_project, member_task


def projects_for_user(*, user) -> QuerySet[Project]:
    """The user's projects, as far as the request's credentials reach (a scoped API token: its projects only)."""
    if user.is_superuser:
        return limit_to_token_scope(Project.objects.all(), user=user)
    return limit_to_token_scope(Project.objects.filter(memberships__user=user).distinct(), user=user)


PROJECT_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")


def get_project_for_user(*, user, project_ref: str | int) -> Project:
    """A project by numeric id or slug, if the user may see it; 404 otherwise (no existence leak).

    One query: the membership is joined (no DISTINCT: a user has one membership per project) and the user's role
    comes back with the project, so the permission checks of this request need no second lookup (see
    core.permissions.remember_role)."""
    ref = str(project_ref)
    # Only ASCII ids of up to 18 digits or slugs reach the database: anything else (NUL bytes, which PostgreSQL
    # refuses in text, Arabic-Indic digits, 64+ characters) cannot name a project and gets the same 404.
    if ref.isascii() and ref.isdigit() and len(ref) <= 18:
        lookup = {"pk": int(ref)}
    elif PROJECT_SLUG.fullmatch(ref):
        lookup = {"slug": ref}
    else:
        raise Http404("No such project.")
    if not getattr(user, "is_authenticated", False):
        raise Http404("No such project.")
    if user.is_superuser:
        project, role = Project.objects.filter(**lookup).first(), ADMIN
    else:
        project, role = member_project(user_id=user.pk, **lookup) or (None, None)
    if project is None or not within_token_scope(user=user, project_id=project.pk):
        raise Http404("No such project.")
    remember_role(project=project, user=user, role=role)
    return project


def may_create_projects(*, user) -> bool:
    """Superusers, and admins of at least one project (they become the new project's admin); never by
    `is_staff` or a Django model permission alone."""
    if not getattr(user, "is_authenticated", False) or token_scope(user) is not None:
        return False  # a token minted by someone else acts inside its projects only: it creates none
    return user.is_superuser or Membership.objects.filter(user=user, role=Membership.Role.ADMIN).exists()


def role_in_project(*, user, project: Project) -> str | None:
    return role_in(project=project, user=user)


def project_by_slug(*, slug: str) -> Project | None:
    return Project.objects.filter(slug=slug).first()


def task_for_annotator(*, user, task_id: int) -> ComparisonTask:
    """A task the user may act on: it must belong to a project they are a member of (one join, no subquery).
    The caller's role comes back with it and serves this request's permission checks on `task.project`."""
    if user.is_superuser:
        task, role = ComparisonTask.objects.select_related("project").filter(pk=task_id).first(), ADMIN
    else:
        task, role = member_task(user_id=user.pk, task_id=task_id) or (None, None)
    if task is None or not within_token_scope(user=user, project_id=task.project_id):
        raise Http404("No such task.")
    remember_role(project=task.project, user=user, role=role)
    return task
