"""The second half of a round: DPO on the people's pairs (weighted by consensus × confidence) and the reward
model's pairs, through the DPO gate, registered as a CANDIDATE with lineage to the judgements it learned from."""

from __future__ import annotations

import json
import time
from pathlib import Path

from feedback.quality import split_of
from training import services
from training.models import DPORound
from training.pipeline.data import pair_margin
from training.runners.base import RunCancelled, RunContext, failed, registry_dir
from training.runners.policy import register_policy_result

NO_PAIRS = "the round has no pairs to train on (no judged human pair and no reward-model pair)"


def human_rows(ctx: RunContext, dpo_round: DPORound, cfg) -> tuple[object, list[dict]]:
    """A snapshot of the project's judgements (the lineage) and the pairs of the round's tasks in it, each with
    its weight: `human_weight` × consensus margin × confidence weight (as the reward model's `margin` column)."""
    from feedback import exports
    from feedback import services as feedback_services

    snapshot = feedback_services.create_snapshot(project=dpo_round.project, actor=ctx.run.created_by)
    services.attach_snapshot(run=ctx.run, snapshot=snapshot)
    task_ids = frozenset(dpo_round.tasks.values_list("pk", flat=True))
    rows = [{**row, "source": "people", "weight": pair_margin(row, cfg.human_weight)}
            for row in exports.iter_rows(snapshot, only_tasks=task_ids)] if task_ids else []
    return snapshot, rows


def model_rows(dpo_round: DPORound) -> list[dict]:
    path = Path(dpo_round.rows_path) / "model_pairs.jsonl"
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _split(rows: list[dict], cfg) -> tuple[list[dict], list[dict]]:
    train, held_out = [], []
    for row in rows:
        (held_out if split_of(str(row["prompt_id"]), test_fraction=cfg.test_fraction, seed=cfg.split_seed) == "test"
         else train).append(row)
    return train, held_out


def _counts(people: list[dict], machine: list[dict], train: list[dict]) -> dict:
    return {"human_pairs_used": len(people), "model_pairs_used": len(machine),
            "human_pairs_trained": sum(r["source"] == "people" for r in train),
            "model_pairs_trained": sum(r["source"] != "people" for r in train),
            "human_weight_mean": sum(r["weight"] for r in people) / len(people) if people else None}


def run_train(ctx: RunContext, dpo_round: DPORound) -> dict:
    from training.pipeline.dpo import train_dpo
    from training.pipeline.reward import TrainingCancelled
    from training.runners.policy import dpo_gate

    cfg = ctx.config
    snapshot, people = human_rows(ctx, dpo_round, cfg)
    machine = model_rows(dpo_round)
    train, held_out = _split(people + machine, cfg)
    if not train:
        raise ValueError(NO_PAIRS)
    counts = _counts(people, machine, train)
    dpo_cfg = cfg.dpo_config(policy=dpo_round.policy.path)
    ctx.total_steps = dpo_cfg.max_steps if dpo_cfg.max_steps > 0 else None
    ctx.log(f"round {dpo_round.pk}: DPO from {dpo_round.policy.name} on {counts['human_pairs_trained']} pairs from "
            f"people and {counts['model_pairs_trained']} from the reward model ({len(held_out)} held out)")
    started = time.perf_counter()
    try:
        result = train_dpo(dpo_cfg, train, held_out or None, registry_dir("dpo", ctx.run), on_step=ctx.on_step,
                           should_stop=ctx.should_stop)
    except TrainingCancelled:
        raise RunCancelled() from None
    round_metrics = {"round/id": dpo_round.pk, "round/human_pairs": counts["human_pairs_trained"],
                     "round/model_pairs": counts["model_pairs_trained"], "time/train_s": time.perf_counter() - started}
    passed, message = dpo_gate(result)
    version = register_policy_result(ctx.run, path=str(result.path), sha256=result.manifest_sha256,
                                     metrics={**result.metrics, **round_metrics}, parent=dpo_round.policy,
                                     reward_model=dpo_round.reward_model, snapshot=snapshot, rejected=not passed)
    state = DPORound.State.DONE if passed else DPORound.State.REJECTED
    services.end_round(dpo_round=dpo_round, state=state, counts={**counts, "version": version.pk},
                       error=message, snapshot=snapshot)
    summary = {**result.metrics, **round_metrics}
    if not passed:
        ctx.log(message)
        return failed(summary, message, produced_version=version)
    ctx.log(f"{version.name} passed the DPO gate and is a {version.get_status_display().lower()}")
    return {"summary": summary, "produced_version": version}
