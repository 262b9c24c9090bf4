"""Pages to watch training: the registry with lineage, and a live run page (htmx polling, Chart.js plots)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from core.exceptions import ApplicationError
from core.permissions import ADMIN, has_project_role, require_project_role
from training import selectors, services
from training.models import TrainingRun
from training.views.present import live_context, settings_rows
from training.views.registry_rows import annotate_versions, policies_in_use
from training.views.rounds import round_context


@login_required
def registry(request):
    reviewable = selectors.reviewable_projects(user=request.user)
    if not reviewable and not request.user.is_superuser:
        raise Http404("Nothing to review.")
    in_use = policies_in_use(reviewable)
    versions = annotate_versions(list(selectors.versions_for_user(user=request.user).order_by("-created_at")[:200]),
                                 in_use)
    runs = selectors.runs_for_user(user=request.user).order_by("-created_at")[:50]
    rounds = selectors.rounds_for_user(user=request.user).order_by("-created_at")[:50]
    administered = [p for p in reviewable if has_project_role(user=request.user, project=p, role=ADMIN)]
    return render(request, "training/registry.html", {"versions": versions, "runs": runs, "projects": administered,
                                                      "kinds": TrainingRun.Kind.choices, "in_use": in_use,
                                                      "rounds": rounds,
                                                      "administered_ids": {p.pk for p in administered}})


@login_required
def run_detail(request, run_id):
    run = selectors.run_for_reviewer(user=request.user, run_id=run_id)
    is_admin = has_project_role(user=request.user, project=run.project, role=ADMIN)
    return render(request, "training/run_detail.html", {"is_admin": is_admin, "settings_rows": settings_rows(run),
                                                        **live_context(run), **round_context(run)})


@login_required
def run_live(request, run_id):
    """The part of the run page that htmx refreshes every two seconds while the run is not finished."""
    run = selectors.run_for_reviewer(user=request.user, run_id=run_id)
    # HTTP 286 tells htmx to stop polling once the run has finished.
    return render(request, "training/_run_live.html", live_context(run), status=286 if run.is_finished else 200)


@login_required
@require_POST
def run_cancel(request, run_id):
    """Ask the run to stop. From the page (htmx) the answer is at once: the Cancel button becomes "cancel
    requested…" (or "cancelled" for a queued run); the worker stops the run at its next step."""
    run = selectors.run_for_reviewer(user=request.user, run_id=run_id)
    require_project_role(user=request.user, project=run.project, role=ADMIN)
    try:
        run = services.request_cancel(run=run, actor=request.user)
        answer = "cancelled" if run.state == TrainingRun.State.CANCELLED else "cancel requested…"
    except ApplicationError as exc:
        answer = exc.message
        if not request.headers.get("HX-Request"):
            messages.error(request, exc.message)
    if request.headers.get("HX-Request"):
        return HttpResponse(format_html('<span id="cancel-state" role="status">{}</span>', answer))
    return redirect("training:run-detail", run_id=run.pk)
