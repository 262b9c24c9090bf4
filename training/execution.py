"""Executes a TrainingRun inside the worker: claim it, beat a heartbeat, call its kind's runner, record the end.

The pipeline (training/pipeline) knows nothing of Django: a runner passes it plain data and two
callbacks, `on_step(step, metrics)` and `should_stop()`, and registers what it produced.

A run has a budget (TRAINING_RUN_MAX_SECONDS, TRAINING_RUN_MAX_GENERATED_TOKENS; a retrain chain's steps share
their parent's): `should_stop()` turns True once it is spent, and the run ends failed with the limit named in its
error and summary (`summary["stopped"]`), nothing registered. A cancelled run's summary says `"cancelled"`.
Both carry `generated_tokens`, the decode work done before it stopped.
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
from training.pipeline.callbacks import Budget, counting_tokens
from training.pipeline.fields import config_from_dict
from training.pipeline.devices import apply_torch_threads, choose_device
from training.run_kinds import run_kind
from training.runners.base import RunCancelled, RunContext

logger = logging.getLogger(__name__)

BUDGET_SPENT = {
    Budget.TIME: "The run reached its time budget (TRAINING_RUN_MAX_SECONDS = {max_seconds} s) after {seconds:.0f} s "
                 "and stopped; nothing was registered.",
    Budget.TOKENS: "The run reached its token budget (TRAINING_RUN_MAX_GENERATED_TOKENS = {max_tokens}) after "
                   "generating {tokens} tokens and stopped; nothing was registered.",
}


def run_budget() -> Budget:
    """A fresh budget from the settings, its clock started now."""
    return Budget(max_seconds=settings.TRAINING_RUN_MAX_SECONDS, max_tokens=settings.TRAINING_RUN_MAX_GENERATED_TOKENS)


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


def _child_runner(parent: TrainingRun, budget: Budget):
    """How a chain runs a step: a run of its own (validated, audited), executed here and now, on the chain's budget."""

    def run_child(kind: str, config: dict) -> tuple[int, str]:
        child = services.start_training(project=parent.project, kind=kind, config=config,
                                        created_by=parent.created_by, parent_run=parent, enqueue=False)
        return child.pk, execute(child.pk, budget=budget)

    return run_child


def _context(run: TrainingRun, budget: Budget) -> RunContext:
    kind = run_kind(run.kind)
    return RunContext(run=run, config=config_from_dict(kind.config_class, run.config), gate=kind.gate,
                      run_child=_child_runner(run, budget), budget=budget)


def _cancel_requested(context: RunContext | None, run: TrainingRun) -> bool:
    """Whether anyone asked the run to stop (the heartbeat may not have beaten since)."""
    if context is not None and context.cancel_requested:
        return True
    try:
        return TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()
    except DatabaseError:
        return False


def _stopped(context: RunContext | None, run: TrainingRun, how: str) -> tuple[str, dict]:
    """The end of a run that stopped before it finished: "cancelled" when someone asked, else "failed" on the
    budget it spent; `how` ends the log line (what was interrupted)."""
    tokens = context.budget.tokens if context is not None else 0
    spent = context.budget.spent() if context is not None else None
    if _cancel_requested(context, run) or spent is None:
        services.append_log(run_id=run.pk, line=f"cancelled on request{how}")
        return TrainingRun.State.CANCELLED, {"summary": {"stopped": "cancelled", "generated_tokens": tokens}}
    budget = context.budget
    error = BUDGET_SPENT[spent].format(max_seconds=budget.max_seconds, seconds=budget.seconds(),
                                       max_tokens=budget.max_tokens, tokens=tokens)
    services.append_log(run_id=run.pk, line=f"failed: {error}")
    return TrainingRun.State.FAILED, {"error": error, "summary": {
        "stopped": spent, "generated_tokens": tokens, "seconds": round(budget.seconds(), 3),
        "max_seconds": budget.max_seconds, "max_generated_tokens": budget.max_tokens}}


def _run(run: TrainingRun, budget: Budget) -> tuple[str, dict]:
    """Call the runner; every way it can end becomes (state, outcome). Never raises for a failed run.

    A run someone asked to stop ends "cancelled" — not "failed", whatever the interrupted code raised —
    unless its version was already registered and activated (then the cancel came too late). A run stopped by
    its budget ends "failed", with the limit it reached named."""
    context = None
    try:
        context = _context(run, budget)
        heartbeat = Heartbeat(context)
        heartbeat.start()
        try:
            threads = apply_torch_threads()
            context.log(f"started {run.kind} run for project {run.project.slug} "
                        f"({choose_device().describe()}, {threads} torch thread{'s' if threads > 1 else ''})")
            with counting_tokens(budget.count_tokens):
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
        return _stopped(context, run, "; nothing was published")
    except Exception as exc:  # the run fails, the worker lives on
        if _cancel_requested(context, run) or (context is not None and context.budget.spent() is not None):
            return _stopped(context, run, f" (interrupted: {exc})")
        logger.exception("run %s failed", run.pk)
        services.append_log(run_id=run.pk, line=f"failed: {exc}")
        return TrainingRun.State.FAILED, {"error": traceback.format_exc()}
    return state, outcome


def execute(run_id: int, *, budget: Budget | None = None) -> str:
    """Run one TrainingRun to its end state; returns that state. Never raises for a failed run. `budget`: what
    the run may spend (a chain passes its own to its steps); by default a fresh one from the settings."""
    if not connection.in_atomic_block:  # a worker's connection may have gone stale; a caller's transaction is theirs
        close_old_connections()
    services.fail_stale_runs()
    if not services.claim_run(run_id=run_id):
        return TrainingRun.objects.filter(pk=run_id).values_list("state", flat=True).first() or "missing"
    run = TrainingRun.objects.select_related("project", "snapshot", "base_version", "created_by").get(pk=run_id)
    state, outcome = _run(run, budget or run_budget())
    retry_transient(services.finish_run)(  # a locked database must not leave a finished run "running"
        run_id=run.pk, state=state, summary=outcome.get("summary", {}), error=outcome.get("error", ""),
        produced_version=outcome.get("produced_version"))
    services.append_log(run_id=run.pk, line=f"finished: {state}")
    return state
