"""The runs of an iterative-DPO round (kind `dpo_round`; the round itself: `training.pipeline.rounds`): the first
samples, scores and publishes (`sample`), the second trains once people have judged their share (`train`).
A run that fails or is cancelled fails its round, with the reason."""

from __future__ import annotations

from training import services
from training.models import DPORound
from training.runners.base import RunContext
from training.runners.rounds import sample, train

NOTHING_TO_DO = "DPO round {round} is {state}: this run has nothing to do for it"


def run_dpo_round(ctx: RunContext) -> dict:
    run, cfg = ctx.run, ctx.config
    if cfg.round is None:  # started as a plain run (API, settings form): it opens its round itself
        dpo_round = services.open_round_for(run=run)
    else:
        dpo_round = DPORound.objects.select_related("project", "policy", "reward_model").get(
            pk=cfg.round, project=run.project)
    if dpo_round.state == DPORound.State.SAMPLING and dpo_round.sample_run_id == run.pk:
        phase = sample.run_sample
    elif dpo_round.state == DPORound.State.TRAINING and dpo_round.train_run_id == run.pk:
        phase = train.run_train
    else:
        raise ValueError(NOTHING_TO_DO.format(round=dpo_round.pk, state=dpo_round.get_state_display().lower()))
    try:
        return phase(ctx, dpo_round)
    except BaseException as exc:
        services.end_round(dpo_round=dpo_round, state=DPORound.State.FAILED,
                           error=str(exc) or f"run {run.pk} stopped ({type(exc).__name__})")
        raise
