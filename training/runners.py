"""Executes a TrainingRun inside the worker: claim it, beat a heartbeat, call the pipeline, record the result.

The pipeline (training/pipeline) knows nothing of Django: a runner passes it plain data and two
callbacks, `on_step(step, metrics)` and `should_stop()`, and registers what it produced.
"""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass, field
from typing import Callable

from django.conf import settings
from django.db import close_old_connections, connection

from training import services
from training.models import TrainingRun

logger = logging.getLogger(__name__)


class RunCancelled(Exception):
    pass


@dataclass
class RunContext:
    run: TrainingRun
    total_steps: int | None = None
    cancel_requested: bool = False
    last_step: int = field(default=0)

    def on_step(self, step: int, metrics: dict) -> None:
        self.last_step = step
        progress = (step / self.total_steps) if self.total_steps else None
        self.cancel_requested = services.record_step(run_id=self.run.pk, step=step, metrics=metrics, progress=progress)

    def should_stop(self) -> bool:
        return self.cancel_requested

    def log(self, line: str) -> None:
        logger.info("run %s: %s", self.run.pk, line)
        services.append_log(run_id=self.run.pk, line=line)


class Heartbeat(threading.Thread):
    """Beats every RUN_HEARTBEAT_SECONDS while a long step (sampling, saving) keeps the main thread busy."""

    def __init__(self, context: RunContext):
        super().__init__(daemon=True, name=f"heartbeat-run-{context.run.pk}")
        self.context = context
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.RUN_HEARTBEAT_SECONDS):
                if services.beat(run_id=self.context.run.pk):
                    self.context.cancel_requested = True
        finally:
            connection.close()


RUNNERS: dict[str, Callable[[RunContext], dict]] = {}


def runner(kind: str):
    def register(fn):
        RUNNERS[kind] = fn
        return fn

    return register


def execute(run_id: int) -> str:
    """Run one TrainingRun to its end state; returns that state. Never raises for a failed run."""
    if not connection.in_atomic_block:  # a worker's connection may have gone stale; a caller's transaction is theirs
        close_old_connections()
    services.fail_stale_runs()
    if not services.start_run(run_id=run_id):
        return TrainingRun.objects.filter(pk=run_id).values_list("state", flat=True).first() or "missing"
    run = TrainingRun.objects.select_related("project", "snapshot", "base_version").get(pk=run_id)
    context = RunContext(run=run)
    heartbeat = Heartbeat(context)
    heartbeat.start()
    try:
        context.log(f"started {run.kind} run for project {run.project.slug}")
        outcome = RUNNERS[run.kind](context)
        if context.cancel_requested and outcome.get("produced_version") is None:
            raise RunCancelled()  # a late cancel still counts unless something was already registered
    except RunCancelled:
        context.log("cancelled on request; nothing was registered")
        services.finish_run(run_id=run.pk, state=TrainingRun.State.CANCELLED)
        return TrainingRun.State.CANCELLED
    except Exception as exc:  # the run fails, the worker lives on
        logger.exception("run %s failed", run.pk)
        context.log(f"failed: {exc}")
        services.finish_run(run_id=run.pk, state=TrainingRun.State.FAILED, error=traceback.format_exc())
        return TrainingRun.State.FAILED
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=10)
    state = outcome.pop("state", TrainingRun.State.SUCCEEDED)
    services.finish_run(
        run_id=run.pk, state=state, summary=outcome.get("summary", {}), error=outcome.get("error", ""),
        produced_version=outcome.get("produced_version"),
    )
    context.log(f"finished: {state}")
    return state
