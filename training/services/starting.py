"""The one way in to start a run, for the API, the pages, the admin and the commands."""

from __future__ import annotations

from training.models import TrainingRun
from training.services.rounds import advance_dpo_round
from training.services.runs import record_run_start


def start_training(
    *, project, kind: str, config: dict | None = None, created_by=None, enqueue: bool = True, parent_run=None,
    snapshot=None,
) -> TrainingRun:
    """Start a run of `kind` (`runs.record_run_start`: validated, recorded, audited, queued after commit unless
    `enqueue` is off). A `dpo_round` run moves the project's iterative-DPO round on instead
    (`rounds.advance_dpo_round`: a new round, or DPO for the waiting one once its human share is judged)."""
    if kind == TrainingRun.Kind.DPO_ROUND:
        return advance_dpo_round(project=project, config=config, actor=created_by, enqueue=enqueue)[1]
    return record_run_start(project=project, kind=kind, config=config, created_by=created_by, enqueue=enqueue,
                            parent_run=parent_run, snapshot=snapshot)
