"""What every runner shares: its context (callbacks into the run's records), cancellation, where files go."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from django.conf import settings

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

    def should_stop(self) -> bool:
        return self.cancel_requested

    def log(self, line: str) -> None:
        logger.info("run %s: %s", self.run.pk, line)
        services.append_log(run_id=self.run.pk, line=line)


def registry_dir(kind: str, run: TrainingRun) -> Path:
    """Where a run's model files are written (atomically) before the version is registered."""
    return Path(settings.MODEL_DIR) / "registry" / f"{kind}-{run.project.slug}-run{run.pk}"


def failed(summary: dict, error: str, produced_version=None) -> dict:
    """The outcome of a run that finished but did not succeed (its gate refused the result)."""
    return {"state": TrainingRun.State.FAILED, "summary": summary, "error": error, "produced_version": produced_version}
