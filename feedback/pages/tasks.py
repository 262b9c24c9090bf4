"""The data browser: a project's tasks (reviewers and admins), one task with its judgements and consensus,
and every member's own judgement history with a way to revise a judgement while its task is open.

Server-rendered; htmx swaps the list when the filters change (the page works without it). Reads come from
`feedback.selectors.tasks`, the one write from `services.revise_judgement`. Bad query parameters get a 400
naming the parameter.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from core.exceptions import ApplicationError
from feedback import selectors, services
from feedback.models import ComparisonTask, Judgement
from feedback.pages.common import nav, project_for_reviewer
from feedback.selectors.tasks import FLAG_CHOICES


def _bad_request(exc: ValidationError) -> HttpResponseBadRequest:
    # The messages name the parameter and the allowed values; they never echo the input back.
    return HttpResponseBadRequest(" ".join(exc.messages), content_type="text/plain; charset=utf-8")


@login_required
@require_GET
def task_list(request, slug):
    project = project_for_reviewer(request, slug)
    try:
        filters = selectors.parse_task_filters(request.GET)
        after, before = selectors.parse_cursor(request.GET)
    except ValidationError as exc:
        return _bad_request(exc)
    page = selectors.task_page(project=project, filters=filters, after=after, before=before)
    return render(request, "feedback/tasks.html", {
        "project": project, "page": page, "filters": filters, "query": filters.as_params(),
        "statuses": ComparisonTask.Status.choices, "flag_choices": FLAG_CHOICES,
        **nav(request, project),
    })


@login_required
@require_GET
def task_detail(request, slug, task_id):
    """Reviewers: the task, every judgement and the consensus. Annotators: their own judgement (404 for
    tasks they never held)."""
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    task, is_reviewer = selectors.task_for_viewer(project=project, task_id=task_id, user=request.user)
    context = {"project": project, "task": task, "is_reviewer": is_reviewer,
               "own": selectors.own_view(task=task, annotator=request.user), **nav(request, project)}
    if is_reviewer:
        context["review"] = selectors.task_review_detail(task=task)
    context["ranks"] = range(1, len(context["own"]["completions"]) + 1)
    context["confidences"] = range(1, 6)
    context["flags"] = Judgement.Flag.choices
    return render(request, "feedback/task_detail.html", context)


def _ranking_from_form(post, labels: list[str]) -> list[list[str]]:
    """Rank selects (rank_a = 1, rank_b = 1, rank_c = 2) → [["a", "b"], ["c"]]; equal ranks are ties."""
    by_rank: dict[int, list[str]] = {}
    for label in labels:
        value = post.get(f"rank_{label}", "")
        if not (value.isascii() and value.isdigit() and len(value) <= 2):
            raise ValidationError({"ranking": f"Give completion {label.upper()} a rank."})
        by_rank.setdefault(int(value), []).append(label)
    return [by_rank[rank] for rank in sorted(by_rank)]


@login_required
@require_POST
def revise(request, slug, task_id):
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    task, _ = selectors.task_for_viewer(project=project, task_id=task_id, user=request.user)
    own = selectors.own_view(task=task, annotator=request.user)
    labels = [c["label"] for c in own["completions"]]
    confidence = request.POST.get("confidence", "")
    confidence = int(confidence) if confidence.isascii() and confidence.isdigit() and len(confidence) < 3 else None
    try:
        services.revise_judgement(
            task=task, annotator=request.user, ranking=_ranking_from_form(request.POST, labels),
            flags=request.POST.getlist("flags"),
            confidence=confidence,
            comment=request.POST.get("comment", ""),
        )
        messages.success(request, f"Your judgement of task {task.pk} was revised.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("feedback:task-detail", slug=project.slug, task_id=task.pk)


@login_required
@require_GET
def history(request, slug):
    """Every member's own judgements in this project, newest first."""
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    try:
        after, before = selectors.parse_cursor(request.GET)
    except ValidationError as exc:
        return _bad_request(exc)
    page = selectors.judgement_history(project=project, annotator=request.user, after=after, before=before)
    return render(request, "feedback/history.html", {"project": project, "page": page, **nav(request, project)})
