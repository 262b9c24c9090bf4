"""What every runner shares: its context (callbacks into the run's records), cancellation, where files go."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone

from training import services
from training.models import TrainingRun
from training.pipeline.callbacks import Budget

logger = logging.getLogger("training.runners")

Gate = Callable[[Any], tuple[bool, str]]


class RunCancelled(Exception):
    pass


def no_gate(result) -> tuple[bool, str]:
    """The gate of kinds whose result needs no verdict (reward models are judged by PPO and by people)."""
    return True, ""


def cancel_was_requested(run_id: int) -> bool:
    """Whether someone asked the run (or the chain it is a step of) to stop; False when the database refused to
    answer (the next poll, or the heartbeat, asks again)."""
    try:
        return TrainingRun.objects.filter(
            Q(cancel_requested=True) | Q(parent_run__cancel_requested=True), pk=run_id).exists()
    except DatabaseError:
        return False


@dataclass
class RunContext:
    """One run as its runner sees it. `run_child(kind, config) -> (run id, end state)` runs another kind
    of run as a step of this one (the retrain chain); execution provides it. `budget` is what the run may
    spend (execution counts its generated tokens into it)."""

    run: TrainingRun
    config: Any
    gate: Gate = no_gate
    run_child: Callable[[str, dict], tuple[int, str]] | None = None
    total_steps: int | None = None
    cancel_requested: bool = False
    last_step: int = field(default=0)
    budget: Budget = field(default_factory=Budget)
    cancel_polled_at: float = field(default_factory=time.monotonic, repr=False)  # the run was claimed just now

    def on_step(self, step: int, metrics: dict) -> None:
        self.last_step = step
        progress = (step / self.total_steps) if self.total_steps else None
        self.cancel_requested = services.record_step(run_id=self.run.pk, step=step, metrics=metrics, progress=progress)

    def on_progress(self, fraction: float) -> None:
        """Progress between steps (a long sampling pass): the run page's bar moves, no metrics row is written."""
        self.cancel_requested = services.beat(run_id=self.run.pk, progress=fraction)

    def should_stop(self) -> bool:
        """True once the run was asked to stop or spent its budget. Polled by the pipeline after every decode step
        and training step, and it reads the cancel flag itself (at most every RUN_CANCEL_POLL_SECONDS): a cancel
        reaches a busy sampling loop within a decode step of that, even when the heartbeat thread is starved."""
        if not self.cancel_requested:
            now = time.monotonic()
            if now - self.cancel_polled_at >= settings.RUN_CANCEL_POLL_SECONDS:
                self.cancel_polled_at = now
                if cancel_was_requested(self.run.pk):  # only ever set: the heartbeat thread may set it too
                    self.cancel_requested = True
        return self.cancel_requested or self.budget.spent() is not None

    def log(self, line: str) -> None:
        logger.info("run %s: %s", self.run.pk, line)
        services.append_log(run_id=self.run.pk, line=line)


def registry_dir(kind: str, run: TrainingRun) -> Path:
    """Where a run's model files are written (atomically) before the version is registered.

    The name carries a timestamp and a random suffix besides the run id: run ids start again at 1 with a
    new database, and registered model directories are never overwritten. Directories an older database
    left at this run's name are reported (in the log and the run's log) and left alone."""
    root = Path(settings.MODEL_DIR) / "registry"
    stem = f"{kind}-{run.project.slug}-run{run.pk}"
    leftovers = sorted(p.name for p in root.glob(f"{stem}*") if p.name == stem or p.name.startswith(f"{stem}-")) \
        if root.is_dir() else []
    if leftovers:
        line = (f"the registry already holds {', '.join(leftovers[:5])} (left by an earlier database?); "
                "kept as they are, this run writes to a new directory")
        logger.warning("run %s: %s", run.pk, line)
        services.append_log(run_id=run.pk, line=line)
    return root / f"{stem}-{timezone.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def failed(summary: dict, error: str, produced_version=None) -> dict:
    """The outcome of a run that finished but did not succeed (its gate refused the result)."""
    return {"state": TrainingRun.State.FAILED, "summary": summary, "error": error, "produced_version": produced_version}
