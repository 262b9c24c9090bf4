"""Starting a run from the settings form of its kind (project admins only)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from core.exceptions import ApplicationError
from core.permissions import ADMIN, require_project_role
from feedback import selectors as feedback_selectors
from training import services
from training.forms import MARKER, RunSettingsForm
from training.models import TrainingRun
from training.run_kinds import RUN_KINDS
from training.views.present import relative_paths


def _kind(request) -> str:
    kind = (request.POST if request.method == "POST" else request.GET).get("kind", "")
    return kind if kind in RUN_KINDS else ""


@login_required
@require_http_methods(["GET", "POST"])
def run_start(request, slug):
    """GET: the settings form of a kind of run; POST: start it (or, without the form, start it with its defaults)."""
    project = feedback_selectors.get_project_for_user(user=request.user, project_ref=slug)
    require_project_role(user=request.user, project=project, role=ADMIN)
    kind = _kind(request)
    if not kind:
        messages.error(request, "Choose a kind of run: " + ", ".join(RUN_KINDS) + ".")
        return redirect("training:registry")
    if request.method == "POST" and MARKER not in request.POST:
        return _start_with_defaults(request, project, kind)
    form = RunSettingsForm(request.POST if request.method == "POST" else None, kind=kind)
    if request.method == "POST":
        run = _start(request, project, kind, form)
        if run is not None:
            return redirect("training:run-detail", run_id=run.pk)
    return render(request, "training/start.html", {"project": project, "form": form, "kind": kind,
                                                   "kind_label": TrainingRun.Kind(kind).label, "marker": MARKER},
                  status=400 if form.is_bound else 200)


def _start(request, project, kind: str, form: RunSettingsForm) -> TrainingRun | None:
    """The started run, or None with the errors on the form (each next to the field it names)."""
    if not form.is_valid():
        return None
    try:
        return services.start_training(project=project, kind=kind, config=form.config(), created_by=request.user)
    except (ValidationError, ValueError, TypeError) as exc:
        form.add_service_error(exc, tidy=relative_paths)
        return None
    except ApplicationError as exc:  # e.g. a DPO round that cannot move on yet
        form.add_error(None, exc.message)
        return None


def _start_with_defaults(request, project, kind: str):
    """A one-click start (e.g. "Retrain now"): the kind's default settings."""
    try:
        run = services.start_training(project=project, kind=kind, config={}, created_by=request.user)
    except ValidationError as exc:
        messages.error(request, relative_paths(" ".join(exc.messages)))
        return redirect("training:registry")
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("training:registry")
    return redirect("training:run-detail", run_id=run.pk)
