"""Executes a TrainingRun inside the worker: claim it, beat a heartbeat, call its kind's runner, record the end.

The pipeline (training/pipeline) knows nothing of Django: a runner passes it plain data and two
callbacks, `on_step(step, metrics)` and `should_stop()`, and registers what it produced.
"""

from __future__ import annotations

import logging
import threading
import traceback

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from training import services
from training.models import TrainingRun
from training.pipeline.config import config_from_dict
from training.run_kinds import run_kind
from training.runners.base import RunCancelled, RunContext

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Beats every RUN_HEARTBEAT_SECONDS while a long step (sampling, saving) keeps the main thread busy."""

    def __init__(self, context: RunContext):
        super().__init__(daemon=True, name=f"heartbeat-run-{context.run.pk}")
        self.context = context
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.RUN_HEARTBEAT_SECONDS):
                try:
                    if services.beat(run_id=self.context.run.pk):
                        self.context.cancel_requested = True
                except DatabaseError as exc:  # a missed beat is harmless; a dead heartbeat thread is not
                    logger.warning("run %s: heartbeat skipped: %s", self.context.run.pk, exc)
                    connection.close()
        finally:
            connection.close()


def _child_runner(parent: TrainingRun):
    """How a chain runs a step: a run of its own (validated, audited), executed here and now."""

    def run_child(kind: str, config: dict) -> tuple[int, str]:
        child = services.start_training(project=parent.project, kind=kind, config=config,
                                        created_by=parent.created_by, parent_run=parent, enqueue=False)
        return child.pk, execute(child.pk)

    return run_child


def _context(run: TrainingRun) -> RunContext:
    kind = run_kind(run.kind)
    return RunContext(run=run, config=config_from_dict(kind.config_class, run.config), gate=kind.gate,
                      run_child=_child_runner(run))


def _run(run: TrainingRun) -> tuple[str, dict]:
    """Call the runner; every way it can end becomes (state, outcome). Never raises for a failed run."""
    context = None
    try:
        context = _context(run)
        heartbeat = Heartbeat(context)
        heartbeat.start()
        try:
            context.log(f"started {run.kind} run for project {run.project.slug}")
            outcome = run_kind(run.kind).runner(context)
        finally:
            heartbeat.stopped.set()
            heartbeat.join(timeout=10)
        if context.cancel_requested and outcome.get("produced_version") is None:
            raise RunCancelled()  # a late cancel still counts unless something was already registered
    except RunCancelled:
        services.append_log(run_id=run.pk, line="cancelled on request; nothing was registered")
        return TrainingRun.State.CANCELLED, {}
    except Exception as exc:  # the run fails, the worker lives on
        logger.exception("run %s failed", run.pk)
        services.append_log(run_id=run.pk, line=f"failed: {exc}")
        return TrainingRun.State.FAILED, {"error": traceback.format_exc()}
    return outcome.pop("state", TrainingRun.State.SUCCEEDED), outcome


def execute(run_id: int) -> str:
    """Run one TrainingRun to its end state; returns that state. Never raises for a failed run."""
    if not connection.in_atomic_block:  # a worker's connection may have gone stale; a caller's transaction is theirs
        close_old_connections()
    services.fail_stale_runs()
    if not services.start_run(run_id=run_id):
        return TrainingRun.objects.filter(pk=run_id).values_list("state", flat=True).first() or "missing"
    run = TrainingRun.objects.select_related("project", "snapshot", "base_version", "created_by").get(pk=run_id)
    state, outcome = _run(run)
    services.finish_run(run_id=run.pk, state=state, summary=outcome.get("summary", {}), error=outcome.get("error", ""),
                        produced_version=outcome.get("produced_version"))
    services.append_log(run_id=run.pk, line=f"finished: {state}")
    return state
