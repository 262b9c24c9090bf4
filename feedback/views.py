"""Annotator pages (server-rendered; a little JavaScript adds keyboard shortcuts)."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.exceptions import ApplicationError
from core.permissions import REVIEWER, has_project_role
from feedback import dashboard as dashboard_data
from feedback import selectors, services
from feedback.models import Judgement
from feedback.pages.common import nav

DASHBOARD_CACHE_SECONDS = 60


def _project_for_reviewer(request, slug):
    """The project if the user may review it. Annotators get the same 404 as non-members: these pages do
    not exist for them (get_project_for_user already answers 404 to non-members)."""
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    if not has_project_role(user=request.user, project=project, role=REVIEWER):
        raise Http404("No such project.")
    return project


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
    """Show the task this annotator holds, leasing the next one if they hold none."""
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    assignment = services.next_task(project=project, annotator=request.user)
    progress = selectors.annotator_progress(project=project, annotator=request.user)
    if assignment is None:
        return render(request, "feedback/nothing_left.html",
                      {"project": project, "progress": progress, **nav(request, project)})
    completions = selectors.labelled_completions(assignment=assignment)
    return render(request, "feedback/annotate.html", {
        "project": project, "assignment": assignment, "task": assignment.task, "completions": completions,
        "ranks": range(1, len(completions) + 1), "progress": progress, "idempotency_key": uuid.uuid4().hex,
        "confidences": range(1, 6), "flags": Judgement.Flag.choices, **nav(request, project),
    })


def ranking_from_form(post, labels: list[str]) -> list[list[str]]:
    """Rank selects (rank_a = 1, rank_b = 1, rank_c = 2) → [["a", "b"], ["c"]]; equal ranks are ties."""
    by_rank: dict[int, list[str]] = {}
    for label in labels:
        value = post.get(f"rank_{label}", "")
        if not (value.isascii() and value.isdigit()):
            raise ValidationError({"ranking": f"Give completion {label.upper()} a rank."})
        by_rank.setdefault(int(value), []).append(label)
    return [by_rank[rank] for rank in sorted(by_rank)]


@login_required
@require_POST
def submit(request, slug, task_id):
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    task = selectors.task_for_annotator(user=request.user, task_id=task_id)
    if task.project_id != project.pk:
        return HttpResponseBadRequest("Task is not in this project.")
    assignment = selectors.assignment_of(task=task, annotator=request.user)
    labels = list(assignment.label_map()) if assignment else []
    confidence = request.POST.get("confidence", "")
    try:
        services.submit_judgement(
            task=task, annotator=request.user, ranking=ranking_from_form(request.POST, labels),
            flags=request.POST.getlist("flags"), confidence=int(confidence) if confidence.isascii() and confidence.isdigit() else None,
            comment=request.POST.get("comment", ""), idempotency_key=request.POST.get("idempotency_key", "")[:128],
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except ApplicationError as exc:
        messages.error(request, exc.message)
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

    project = _project_for_reviewer(request, slug)
    # The figures read up to 200k judgements: computed at most once a minute per project.
    data = cache.get_or_set(f"feedback:dashboard:{project.pk}", lambda: dashboard_data.build(project=project),
                            DASHBOARD_CACHE_SECONDS)
    return render(request, "feedback/dashboard.html", {"project": project, "data": data, **nav(request, project)})

