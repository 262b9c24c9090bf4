"""Annotator pages (server-rendered; a little JavaScript adds keyboard shortcuts)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.exceptions import ApplicationError
from feedback.errors import AlreadyJudged
from core.permissions import REVIEWER, has_project_role
from feedback import dashboard as dashboard_data
from feedback import selectors, services
from feedback.pages import annotating
from feedback.pages.common import nav, project_for_reviewer
from feedback.waiting import why_nothing_waiting

DASHBOARD_CACHE_SECONDS = 60


@login_required
def project_list(request):
    projects = selectors.projects_for_user(user=request.user)
    rows = [
        {"project": p, "progress": selectors.annotator_progress(project=p, annotator=request.user),
         "role": p.role_of(request.user)}
        for p in projects
    ]
    return render(request, "feedback/project_list.html", {"rows": rows, **nav(request)})


@login_required
def project_detail(request, slug):
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    progress = selectors.annotator_progress(project=project, annotator=request.user)
    return render(request, "feedback/project_detail.html", {
        "project": project, "progress": progress, **nav(request, project),
        "can_review": has_project_role(user=request.user, project=project, role=REVIEWER),
    })


@login_required
def annotate(request, slug):
    """Show the task this annotator holds, leasing the next one if they hold none; say why when there is none."""
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    assignment = services.next_task(project=project, annotator=request.user)
    if assignment is None:
        progress = selectors.annotator_progress(project=project, annotator=request.user)
        return render(request, "feedback/nothing_left.html", {
            "project": project, "progress": progress, **nav(request, project),
            "why": why_nothing_waiting(project=project, annotator=request.user)})
    return render(request, "feedback/annotate.html", annotating.annotate_context(request, project=project,
                                                                                 assignment=assignment))


@login_required
@require_POST
def submit(request, slug, task_id):
    """Store the ranking (taking the task back if the lease ran out and a place is free). When it cannot be
    stored, the same page comes back with the ranking still filled in and the reason on top — never discarded."""
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    task = selectors.task_for_annotator(user=request.user, task_id=task_id)
    if task.project_id != project.pk:
        return HttpResponseBadRequest("Task is not in this project.")
    try:
        annotating.submit_from_form(task=task, annotator=request.user, post=request.POST)
    except (ValidationError, ApplicationError) as exc:
        status = getattr(exc, "status_code", 200)  # an incomplete form comes back as Django forms do (200)
        messages.error(request, exc.message if isinstance(exc, ApplicationError) else " ".join(exc.messages))
        shown = annotating.shown_assignment(task=task, annotator=request.user,
                                            token=request.POST.get("lease_token", ""))
        if shown is None or isinstance(exc, AlreadyJudged):
            return redirect("feedback:annotate", slug=project.slug)
        context = annotating.annotate_context(request, project=project, assignment=shown,
                                              kept=annotating.kept_from_form(request.POST))
        return render(request, "feedback/annotate.html", context, status=status)
    selectors.forget_judgements_left(project=project)  # "left in project" counts this judgement at once
    return redirect("feedback:annotate", slug=project.slug)


@login_required
@require_POST
def skip(request, slug, task_id):
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    task = selectors.task_for_annotator(user=request.user, task_id=task_id)
    try:
        services.skip_task(task=task, annotator=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("feedback:annotate", slug=project.slug)


@login_required
def dashboard(request, slug):
    """Progress, throughput, agreement, leaderboard and length bias, as plots with the numbers underneath."""
    from django.core.cache import cache

    project = project_for_reviewer(request, slug)
    # The figures read up to 200k judgements: computed at most once a minute per project.
    data = cache.get_or_set(f"feedback:dashboard:{project.pk}", lambda: dashboard_data.build(project=project),
                            DASHBOARD_CACHE_SECONDS)
    return render(request, "feedback/dashboard.html", {"project": project, "data": data, **nav(request, project)})

