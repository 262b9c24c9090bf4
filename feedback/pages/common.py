"""What the admin pages share: the project lookup with its permission check, and the header's links."""

from __future__ import annotations

from core.permissions import ADMIN, REVIEWER, has_project_role, require_project_role
from feedback import selectors


def project_for_admin(request, slug):
    """The project if the user administers it: 404 for non-members (as for a missing project), else 403."""
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    require_project_role(user=request.user, project=project, role=ADMIN)
    return project


def project_for_reviewer(request, slug):
    """The project if the user reviews it (reviewers and admins): 404 for everyone else, annotators included
    (these pages do not exist for them)."""
    from django.http import Http404

    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    if not has_project_role(user=request.user, project=project, role=REVIEWER):
        raise Http404("No such project.")
    return project


def nav(request, project=None) -> dict:
    """Context for base.html's header: which links this user may follow (nobody sees a link they cannot use)."""
    user = request.user
    context = {"nav_may_create": selectors.may_create_projects(user=user)}
    if project is not None:
        context.update({
            "nav_project": project,
            "nav_is_reviewer": has_project_role(user=user, project=project, role=REVIEWER),
            "nav_is_admin": has_project_role(user=user, project=project, role=ADMIN),
        })
    return context
