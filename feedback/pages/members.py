"""A project's members: list with roles, add an existing user, change a role, remove, API tokens."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from core.permissions import ADMIN, has_project_role
from feedback.forms import AddMemberForm, RoleForm
from feedback.models import Membership
from feedback.pages.common import nav, project_for_admin
from feedback.services.projects import LastAdmin, MemberGone, add_member, change_role, remove_member
from feedback.services.tokens import create_token, managed_users, revoke_token, token_facts


def _members_page(request, project, add_form, new_token=None, status=200):
    memberships = list(project.memberships.select_related("user").order_by("user__username"))
    users = [m.user for m in memberships]
    managed = managed_users(actor=request.user, users=users)
    tokens = token_facts(users=users, viewer=request.user)
    admins = [m for m in memberships if m.role == Membership.Role.ADMIN]
    rows = [{"membership": m, "may_token": m.user_id in managed, "has_token": m.user_id in tokens,
             "token": tokens.get(m.user_id), "last_admin": admins == [m]} for m in memberships]
    if new_token is not None:
        new_token["facts"] = token_facts(users=[new_token["user"]], viewer=request.user).get(new_token["user"].pk)
    return render(request, "feedback/members.html", {
        "project": project, "rows": rows, "add_form": add_form, "roles": Membership.Role.choices,
        "new_token": new_token, **nav(request, project),
    }, status=status)


@login_required
def members(request, slug):
    project = project_for_admin(request, slug)
    add_form = AddMemberForm(request.POST if request.method == "POST" else None, project=project)
    if request.method == "POST" and add_form.is_valid():
        username, role = add_form.cleaned_data["username"], add_form.cleaned_data["role"]
        # Tokens are made on request only here (the token buttons): adding someone issues none.
        add_member(project=project, username=username, role=role, actor=request.user, issue_token=False)
        messages.success(request, f"{username} added as {role}.")
        return redirect("feedback:members", slug=project.slug)
    return _members_page(request, project, add_form)


def _membership(project, membership_id):
    return get_object_or_404(Membership.objects.select_related("user"), pk=membership_id, project=project)


@login_required
@require_POST
def member_role(request, slug, membership_id):
    project = project_for_admin(request, slug)
    membership = _membership(project, membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: annotator, reviewer or admin.")
        return _back(request, project)
    role = form.cleaned_data["role"]
    try:
        change_role(membership=membership, role=role, actor=request.user)
    except (LastAdmin, MemberGone) as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"{membership.user.username} is now {role}.")
    return _back(request, project)


@login_required
@require_POST
def member_remove(request, slug, membership_id):
    project = project_for_admin(request, slug)
    membership = _membership(project, membership_id)
    try:
        remove_member(membership=membership, actor=request.user)
    except (LastAdmin, MemberGone) as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"{membership.user.username} removed; their judgements stay.")
    return _back(request, project)


def _back(request, project):
    """Back to the members page, or to where the user still may go after demoting or removing themselves."""
    if has_project_role(user=request.user, project=project, role=ADMIN):
        return redirect("feedback:members", slug=project.slug)
    if project.role_of(request.user):
        return redirect("feedback:project-detail", slug=project.slug)
    return redirect("feedback:project-list")


@never_cache  # the page shows a token's key
@login_required
@require_POST
def member_token(request, slug, membership_id):
    """Create (or replace) the member's API token and show its key once; or revoke it."""
    project = project_for_admin(request, slug)
    membership = _membership(project, membership_id)
    user = membership.user
    if request.POST.get("action") == "revoke":
        revoke_token(actor=request.user, user=user, project=project)
        messages.success(request, f"{user.username}'s API token is revoked.")
        return redirect("feedback:members", slug=project.slug)
    token = create_token(actor=request.user, user=user, project=project)
    return _members_page(request, project, AddMemberForm(project=project),
                         new_token={"user": user, "username": user.username, "key": token.key})
