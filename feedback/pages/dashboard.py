"""The project dashboard (reviewers and admins): progress, throughput, agreement, leaderboard and length bias."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.shortcuts import render

from feedback import selectors
from feedback.pages.common import nav, project_for_reviewer

DASHBOARD_CACHE_SECONDS = 60


@login_required
def dashboard(request, slug):
    """Progress, throughput, agreement, leaderboard and length bias, as plots with the numbers underneath."""
    project = project_for_reviewer(request, slug)
    # The figures read up to 200k judgements: computed at most once a minute per project.
    data = cache.get_or_set(f"feedback:dashboard:{project.pk}", lambda: selectors.dashboard_figures(project=project),
                            DASHBOARD_CACHE_SECONDS)
    return render(request, "feedback/dashboard.html", {"project": project, "data": data, **nav(request, project)})

