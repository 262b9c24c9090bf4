"""The annotator's pages (server-rendered; a little JavaScript adds keyboard shortcuts): their projects, a
project's home, and the annotate page — its context (with a ranking kept after a refused submit), storing a
ranking (also one that arrives after the lease ran out), skipping, and the lease-renewal endpoint the page calls
while the annotator works."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.exceptions import ApplicationError
from core.permissions import REVIEWER, has_project_role
from feedback import selectors, services
from feedback.errors import AlreadyJudged
from feedback.models import Assignment, Judgement
from feedback.pages.common import nav
from feedback.services.leases import lease_token, read_lease_token, renew_lease


def ranking_from_form(post, labels: list[str]) -> list[list[str]]:
    """Rank selects (rank_a = 1, rank_b = 1, rank_c = 2) → [["a", "b"], ["c"]]; equal ranks are ties."""
    by_rank: dict[int, list[str]] = {}
    for label in labels:
        value = post.get(f"rank_{label}", "")
        if not (value.isascii() and value.isdigit()):
            raise ValidationError({"ranking": f"Give completion {label.upper()} a rank."})
        by_rank.setdefault(int(value), []).append(label)
    return [by_rank[rank] for rank in sorted(by_rank)]


def shown_assignment(*, task, annotator, token: str) -> Assignment | None:
    """The assignment whose labels the annotator saw: theirs, or (after its release) rebuilt from the signed token."""
    assignment = selectors.assignment_of(task=task, annotator=annotator)
    if assignment is not None:
        return assignment
    note = read_lease_token(token, task=task, annotator=annotator)
    if note is None:
        return None
    return Assignment(task=task, annotator=annotator, project=task.project, label_order=note[0], leased_at=note[1],
                      leased_until=timezone.now())


def submit_from_form(*, task, annotator, post) -> Judgement:
    """Store the ranking in the form; the form's signed lease token lets the service take the task back when the
    lease ran out meanwhile (the same rule as the API's), otherwise its refusal goes up (LeaseTaken, …)."""
    token = post.get("lease_token", "")
    assignment = shown_assignment(task=task, annotator=annotator, token=token)
    confidence = post.get("confidence", "")
    return services.submit_judgement(
        task=task, annotator=annotator, ranking=ranking_from_form(post, list(assignment.label_map()) if assignment else []),
        flags=post.getlist("flags"), comment=post.get("comment", ""),
        confidence=int(confidence) if confidence.isascii() and confidence.isdigit() else None,
        idempotency_key=post.get("idempotency_key", "")[:128], lease_token=token)[0]


def kept_from_form(post) -> dict:
    """The form's answers, to show them again after a refused submit."""
    confidence = post.get("confidence", "")
    return {"ranks": {k[5:]: v for k, v in post.items() if k.startswith("rank_")}, "flags": post.getlist("flags"),
            "confidence": int(confidence) if confidence.isascii() and confidence.isdigit() else 3,
            "comment": post.get("comment", ""), "idempotency_key": post.get("idempotency_key", "")[:128]}


def annotate_context(request, *, project, assignment: Assignment, kept: dict | None = None) -> dict:
    """Everything annotate.html shows; `kept` holds a refused form's answers so nothing the annotator did is lost."""
    kept = kept or {"ranks": {}, "flags": [], "confidence": 3, "comment": "", "idempotency_key": uuid.uuid4().hex}
    completions = selectors.labelled_completions(assignment=assignment)
    for c in completions:
        value = kept["ranks"].get(c["label"], "")
        c["kept_rank"] = int(value) if value.isascii() and value.isdigit() else None
    return {
        "project": project, "assignment": assignment, "task": assignment.task, "completions": completions,
        "ranks": range(1, len(completions) + 1), "kept": kept, "lease_token": lease_token(assignment),
        "progress": selectors.annotator_progress(project=project, annotator=request.user),
        "idempotency_key": kept["idempotency_key"] or uuid.uuid4().hex,
        "confidences": range(1, 6), "flags": Judgement.Flag.choices, **nav(request, project),
    }


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
            "why": selectors.why_nothing_waiting(project=project, annotator=request.user)})
    return render(request, "feedback/annotate.html", annotate_context(request, project=project,
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
        submit_from_form(task=task, annotator=request.user, post=request.POST)
    except (ValidationError, ApplicationError) as exc:
        status = getattr(exc, "status_code", 200)  # an incomplete form comes back as Django forms do (200)
        messages.error(request, exc.message if isinstance(exc, ApplicationError) else " ".join(exc.messages))
        shown = shown_assignment(task=task, annotator=request.user,
                                            token=request.POST.get("lease_token", ""))
        if shown is None or isinstance(exc, AlreadyJudged):
            return redirect("feedback:annotate", slug=project.slug)
        context = annotate_context(request, project=project, assignment=shown,
                                              kept=kept_from_form(request.POST))
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
@require_POST
def lease_renew(request, slug, task_id):
    """POST from the annotate page while the annotator is active: extend (or take back) the lease. JSON answer:
    {"leased_until": ISO 8601 with offset, "seconds_left": n}, or {"detail": why} with 403/409."""
    project = selectors.get_project_for_user(user=request.user, project_ref=slug)
    task = selectors.task_for_annotator(user=request.user, task_id=task_id)
    if task.project_id != project.pk:
        raise Http404("No such task.")
    try:
        assignment = renew_lease(task=task, annotator=request.user, token=request.POST.get("lease_token", ""))
    except ApplicationError as exc:
        return JsonResponse({"detail": exc.message}, status=exc.status_code)
    seconds_left = (assignment.leased_until - timezone.now()).total_seconds()
    return JsonResponse({"leased_until": assignment.leased_until.isoformat(), "seconds_left": round(seconds_left)})
