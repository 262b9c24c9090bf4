"""Remove what a killed worker leaves on disk.

A run cleans up after itself in `finally` blocks, but a worker killed with SIGKILL (or the machine losing power)
never gets there: an `accelerate launch` run leaves its scratch directory (`$MODEL_DIR/launch/run<id>-…`: job
file, progress, output log) and a model being saved leaves its half-written temporary directory beside the
registry (`$MODEL_DIR/registry/.<name>.tmp-…`, see `save_model_atomic`). Both carry the run's id in their
name, so the maintenance tick removes them once that run is no longer queued or running (`fail_stale_runs`
ends a killed worker's run first). Registered model directories never match these names and are never touched.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from django.conf import settings

from training.models import TrainingRun

LAUNCH_SCRATCH = re.compile(r"^run(?P<run>\d+)-")
REGISTRY_TMP = re.compile(r"^\..+-run(?P<run>\d+)-\d{8}T\d{6}-[0-9a-f]{8}\.tmp-[0-9a-f]{12}$")


def remove_orphaned_scratch() -> list[str]:
    """Delete launch scratch and half-written registry directories of runs that are over (or gone).
    Returns the names removed (relative to MODEL_DIR), for the maintenance tick's result."""
    root = Path(settings.MODEL_DIR)
    candidates = [(path, pattern.match(path.name)) for folder, pattern in
                  ((root / "launch", LAUNCH_SCRATCH), (root / "registry", REGISTRY_TMP)) if folder.is_dir()
                  for path in folder.iterdir() if path.is_dir()]
    candidates = [(path, int(match["run"])) for path, match in candidates if match]
    if not candidates:
        return []
    live = set(TrainingRun.objects.filter(pk__in={run for _, run in candidates},
                                          state__in=[TrainingRun.State.QUEUED, TrainingRun.State.RUNNING])
               .values_list("pk", flat=True))
    removed = []
    for path, run in candidates:
        if run not in live:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path.relative_to(root)))
    return sorted(removed)
