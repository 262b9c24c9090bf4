"""The one-click iterative-DPO round (project admins): start a round, or finish the waiting one; abandon a waiting
round whose judgements will not come."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.exceptions import ApplicationError
from core.permissions import ADMIN, require_project_role
from feedback import selectors as feedback_selectors
from training import selectors, services
from training.views.present import relative_paths


@login_required
@require_POST
def dpo_round_advance(request, slug):
    """Start a round with the default settings, or (its human share judged) train the waiting one. Refused with the
    reason (409 while a round cannot move on, 400 for what is missing) on a page of its own."""
    project = feedback_selectors.get_project_for_user(user=request.user, project_ref=slug)
    require_project_role(user=request.user, project=project, role=ADMIN)
    try:
        _, run = services.advance_dpo_round(project=project, config={}, actor=request.user)
    except ApplicationError as exc:
        return _refused(request, project, exc.message, exc.status_code)
    except ValidationError as exc:
        return _refused(request, project, relative_paths(" ".join(exc.messages)), 400)
    return redirect("training:run-detail", run_id=run.pk)


@login_required
@require_POST
def dpo_round_abandon(request, round_id):
    """The "Abandon round" button beside a waiting round: 404 for a round of a project the user does not review,
    403 for a reviewer, the refusal's page (409) for a round that is not waiting."""
    dpo_round = selectors.round_for_reviewer(user=request.user, round_id=round_id)
    require_project_role(user=request.user, project=dpo_round.project, role=ADMIN)
    try:
        dpo_round = services.abandon_dpo_round(dpo_round=dpo_round, actor=request.user,
                                               reason=request.POST.get("reason", ""))
    except ApplicationError as exc:
        return _refused(request, dpo_round.project, exc.message, exc.status_code)
    except ValidationError as exc:
        return _refused(request, dpo_round.project, " ".join(exc.messages), 400)
    messages.success(request, f"DPO round {dpo_round.pk} abandoned: {dpo_round.error}")
    return redirect("training:registry")


def _refused(request, project, message: str, status: int):
    return render(request, "training/round_refused.html", {"project": project, "message": message}, status=status)


def round_context(run) -> dict:
    """What the run page shows of the round a `dpo_round` run belongs to (empty for other runs)."""

    dpo_round = selectors.round_of_run(run=run)
    if dpo_round is None:
        return {}
    done, total = selectors.round_judged(dpo_round=dpo_round)
    share = dpo_round.counts.get("people_weight_share")
    return {"dpo_round": dpo_round, "round_counts": dpo_round.counts, "round_done": done, "round_total": total,
            "people_weight_percent": None if share is None else 100.0 * share}
