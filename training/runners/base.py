"""What every runner shares: its context (callbacks into the run's records), cancellation, where files go."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from django.conf import settings
from django.utils import timezone

from training import services
from training.models import TrainingRun

logger = logging.getLogger("training.runners")

Gate = Callable[[Any], tuple[bool, str]]


class RunCancelled(Exception):
    pass


def no_gate(result) -> tuple[bool, str]:
    """The gate of kinds whose result needs no verdict (reward models are judged by PPO and by people)."""
    return True, ""


@dataclass
class RunContext:
    """One run as its runner sees it. `run_child(kind, config) -> (run id, end state)` runs another kind
    of run as a step of this one (the retrain chain); execution provides it."""

    run: TrainingRun
    config: Any
    gate: Gate = no_gate
    run_child: Callable[[str, dict], tuple[int, str]] | None = None
    total_steps: int | None = None
    cancel_requested: bool = False
    last_step: int = field(default=0)

    def on_step(self, step: int, metrics: dict) -> None:
        self.last_step = step
        progress = (step / self.total_steps) if self.total_steps else None
        self.cancel_requested = services.record_step(run_id=self.run.pk, step=step, metrics=metrics, progress=progress)

    def on_progress(self, fraction: float) -> None:
        """Progress between steps (a long sampling pass): the run page's bar moves, no metrics row is written."""
        self.cancel_requested = services.beat(run_id=self.run.pk, progress=fraction)

    def should_stop(self) -> bool:
        return self.cancel_requested

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
