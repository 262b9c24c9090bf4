"""The retrain chain: snapshot → reward model → PPO → gate → publish (or DPO → publish), each step a
TrainingRun of its own, run here one after the other; the chain stops at the first step that fails."""

from __future__ import annotations

from training.models import TrainingRun
from training.runners.base import RunCancelled, RunContext, failed


def run_retrain(ctx: RunContext) -> dict:
    cfg = ctx.config
    chain = cfg.chain()
    results = {}
    for position, kind in enumerate(chain):
        if ctx.should_stop():
            raise RunCancelled()
        ctx.log(f"step {position + 1}/{len(chain)}: {kind}")
        child_id, state = ctx.run_child(kind, cfg.steps.get(kind, {}))
        results[kind] = {"run": child_id, "state": state}
        ctx.on_step(position + 1, {"retrain/steps_done": position + 1})
        if state != TrainingRun.State.SUCCEEDED:
            return failed(results, f"step {kind} (run {child_id}) ended {state}; "
                                   "the chain stopped and nothing further was published.")
    return {"summary": results}
