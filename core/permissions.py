"""Who may do what in a project: one ladder of roles, one helper for services and pages, and the DRF
permission classes the API uses. Every check in the product goes through here.

Projects answer `role_of(user)` (a method on feedback.Project), so core needs no import of the app that
defines memberships. Non-members never reach these checks: project lookups answer 404 for them, so a
foreign project and a missing one look the same.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

ANNOTATOR, REVIEWER, ADMIN = "annotator", "reviewer", "admin"
ROLE_LADDER = (ANNOTATOR, REVIEWER, ADMIN)

NEEDS_ROLE = "This needs the {role} role in the project."


def has_project_role(*, user, project, role: str) -> bool:
    """True when `user` holds `role` or a higher one in `project` (superusers hold every role)."""
    held = project.role_of(user) if getattr(user, "is_authenticated", False) else None
    return held is not None and ROLE_LADDER.index(held) >= ROLE_LADDER.index(role)


def require_project_role(*, user, project, role: str) -> None:
    """Raise PermissionDenied (a 403 in the API and in pages) unless `user` holds `role` in `project`."""
    if not has_project_role(user=user, project=project, role=role):
        raise PermissionDenied(NEEDS_ROLE.format(role=role))


class ProjectRolePermission(BasePermission):
    """Object permission: the object is a project or has a `.project`; the user must hold `role` there."""

    role = ANNOTATOR
    message = NEEDS_ROLE

    def has_object_permission(self, request, view, obj) -> bool:
        project = getattr(obj, "project", obj)
        if has_project_role(user=request.user, project=project, role=self.role):
            return True
        self.message = NEEDS_ROLE.format(role=self.role)
        return False


class IsProjectAnnotator(ProjectRolePermission):
    role = ANNOTATOR


class IsProjectReviewer(ProjectRolePermission):
    role = REVIEWER


class IsProjectAdmin(ProjectRolePermission):
    role = ADMIN
