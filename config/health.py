"""Liveness and readiness for load balancers and orchestrators.

/healthz: the process answers (no database). /readyz: the database answers and a job worker is alive —
a worker is alive when it finished or claimed a job in the last READY_WORKER_SECONDS (the worker's
maintenance task runs every minute, so an idle healthy worker always has recent activity), or when
another registered source of worker activity saw it recently: training registers its running runs'
heartbeats, so a worker busy with one long job counts as alive.
"""

from __future__ import annotations

from datetime import timedelta

from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET


# Callables returning when a worker was last seen (or None); apps above config register theirs.
_worker_activity_sources: list[Callable[[], datetime | None]] = []


def register_worker_activity(source: Callable[[], datetime | None]) -> None:
    if source not in _worker_activity_sources:
        _worker_activity_sources.append(source)


def _last_worker_activity() -> datetime | None:
    from django_tasks_db.models import DBTaskResult

    latest = DBTaskResult.objects.aggregate(last=Max("finished_at"), started=Max("started_at"))
    seen = [latest["last"], latest["started"]] + [source() for source in _worker_activity_sources]
    return max([t for t in seen if t], default=None)


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request):
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any database failure means: not ready
        checks["database"] = f"error: {type(exc).__name__}"
    if checks["database"] == "ok":
        seen = _last_worker_activity()
        window = timedelta(seconds=settings.READY_WORKER_SECONDS)
        if seen is not None and timezone.now() - seen <= window:
            checks["worker"] = "ok"
        else:
            checks["worker"] = f"error: no job finished, started or beat in the last {settings.READY_WORKER_SECONDS} s"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
