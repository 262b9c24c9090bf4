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

from core.db import retry_transient
from training import services
from training.models import TrainingRun
from training.pipeline.config import config_from_dict
from training.pipeline.devices import apply_torch_threads, choose_device
from training.run_kinds import run_kind
from training.runners.base import RunCancelled, RunContext

logger = logging.getLogger(__name__)


def close_connection_quietly() -> None:
    """Drop this thread's database connection (a broken one is reopened by the next query)."""
    try:
        connection.close()
    except Exception:  # closing a broken connection may fail too; the next query opens a new one
        logger.debug("closing a broken connection failed", exc_info=True)


class Heartbeat(threading.Thread):
    """Beats every RUN_HEARTBEAT_SECONDS while a long step (sampling, saving) keeps the main thread busy.

    It has its own database connection (Django's connections are per thread) and outlives transient
    errors: a "database is locked" or a dropped connection skips one beat, and it tries again after
    RETRY_SECONDS. A running run's heartbeat is also what /readyz counts as a busy worker's liveness.
    """

    RETRY_SECONDS = 0.5

    def __init__(self, context: RunContext):
        super().__init__(daemon=True, name=f"heartbeat-run-{context.run.pk}")
        self.context = context
        self.stopped = threading.Event()
        self.beats = 0
        self.errors = 0

    def run(self) -> None:
        try:
            wait = settings.RUN_HEARTBEAT_SECONDS
            while not self.stopped.wait(wait):
                wait = settings.RUN_HEARTBEAT_SECONDS if self.beat_once() else min(self.RETRY_SECONDS, wait)
        finally:
            close_connection_quietly()

    def beat_once(self) -> bool:
        """One beat; False (logged, never raised) when the database refused it."""
        try:
            if services.beat(run_id=self.context.run.pk):
                self.context.cancel_requested = True
        except Exception as exc:  # a missed beat is harmless; a dead heartbeat thread is not
            self.errors += 1
            logger.warning("run %s: heartbeat skipped, retrying: %s", self.context.run.pk, exc)
            close_connection_quietly()
            return False
        self.beats += 1
        return True


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


def _cancel_requested(context: RunContext | None, run: TrainingRun) -> bool:
    """Whether anyone asked the run to stop (the heartbeat may not have beaten since)."""
    if context is not None and context.cancel_requested:
        return True
    try:
        return TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()
    except DatabaseError:
        return False


def _run(run: TrainingRun) -> tuple[str, dict]:
    """Call the runner; every way it can end becomes (state, outcome). Never raises for a failed run.

    A run someone asked to stop ends "cancelled" — not "failed", whatever the interrupted code raised —
    unless its version was already registered and activated (then the cancel came too late)."""
    context = None
    try:
        context = _context(run)
        heartbeat = Heartbeat(context)
        heartbeat.start()
        try:
            threads = apply_torch_threads()
            context.log(f"started {run.kind} run for project {run.project.slug} "
                        f"({choose_device().describe()}, {threads} torch thread{'s' if threads > 1 else ''})")
            outcome = run_kind(run.kind).runner(context)
        finally:
            heartbeat.stopped.set()
            heartbeat.join(timeout=30)
        state = outcome.pop("state", TrainingRun.State.SUCCEEDED)
        if _cancel_requested(context, run) and (state != TrainingRun.State.SUCCEEDED
                                                 or outcome.get("produced_version") is None):
            services.append_log(run_id=run.pk, line="cancelled on request before it finished; nothing was activated")
            return TrainingRun.State.CANCELLED, {**outcome, "error": ""}
    except RunCancelled:
        services.append_log(run_id=run.pk, line="cancelled on request; nothing was published")
        return TrainingRun.State.CANCELLED, {}
    except Exception as exc:  # the run fails, the worker lives on
        if _cancel_requested(context, run):
            services.append_log(run_id=run.pk, line=f"cancelled on request (interrupted: {exc})")
            return TrainingRun.State.CANCELLED, {}
        logger.exception("run %s failed", run.pk)
        services.append_log(run_id=run.pk, line=f"failed: {exc}")
        return TrainingRun.State.FAILED, {"error": traceback.format_exc()}
    return state, outcome


def execute(run_id: int) -> str:
    """Run one TrainingRun to its end state; returns that state. Never raises for a failed run."""
    if not connection.in_atomic_block:  # a worker's connection may have gone stale; a caller's transaction is theirs
        close_old_connections()
    services.fail_stale_runs()
    if not services.start_run(run_id=run_id):
        return TrainingRun.objects.filter(pk=run_id).values_list("state", flat=True).first() or "missing"
    run = TrainingRun.objects.select_related("project", "snapshot", "base_version", "created_by").get(pk=run_id)
    state, outcome = _run(run)
    retry_transient(services.finish_run)(  # a locked database must not leave a finished run "running"
        run_id=run.pk, state=state, summary=outcome.get("summary", {}), error=outcome.get("error", ""),
        produced_version=outcome.get("produced_version"))
    services.append_log(run_id=run.pk, line=f"finished: {state}")
    return state
