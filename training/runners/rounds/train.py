"""The second half of a round: DPO on the people's pairs and the reward model's pairs, each with a weight and a
label smoothing (`pipeline.rounds.weights.round_pair_weights`
: people's labels smoothed by how often such a consensus is wrong,
given the judges' agreement; the reward model's by its win probability calibrated on the people's labels), through
the DPO gate, registered as a CANDIDATE with lineage to the judgements it learned from."""

from __future__ import annotations

import json
import time
from pathlib import Path

from feedback import selectors as feedback_selectors
from feedback import services as feedback_services
from feedback.quality import split_of
from feedback.services import snapshots
from training import services
from training.models import DPORound
from training.pipeline.callbacks import TrainingCancelled
from training.pipeline.rounds.weights import people_weight_share, round_pair_weights
from training.runners.base import RunCancelled, RunContext, failed, registry_dir
from training.runners.policy import dpo_gate, register_policy_result

NO_PAIRS = "the round has no pairs to train on (no judged human pair and no reward-model pair)"
# The round's own tasks say how well its judges agree on these (hard) pairs, but a round has few; the project's
# recent agreement stands in for this many pairs judged twice, so a handful cannot swing the smoothing.
AGREEMENT_PRIOR_PAIRS = 30


def human_rows(ctx: RunContext, dpo_round: DPORound, cfg) -> tuple[object, list[dict]]:
    """A snapshot of the judgements of the round's tasks (the lineage) and their pairs, as the snapshot stored
    them (weighed later, by `weigh`)."""
    task_ids = frozenset(dpo_round.tasks.values_list("pk", flat=True))
    snapshot = feedback_services.create_snapshot(project=dpo_round.project, actor=ctx.run.created_by,
                                                 only_tasks=task_ids)
    services.attach_snapshot(run=ctx.run, snapshot=snapshot)
    rows = [{**row, "source": "people"} for row in snapshots.stored_rows(snapshot)]
    return snapshot, rows


def _round_file(dpo_round: DPORound, name: str) -> list[dict]:
    path = Path(dpo_round.rows_path) / name
    if not dpo_round.rows_path or not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def model_rows(dpo_round: DPORound) -> list[dict]:
    return _round_file(dpo_round, "model_pairs.jsonl")


def _text(value) -> str:
    return value if isinstance(value, str) else "\n".join(m.get("content", "") for m in value)


def signed_gaps(dpo_round: DPORound, people: list[dict]) -> list[float | None]:
    """The reward model's r(chosen) − r(rejected) on each of people's rows (as it scored them when the round
    sampled), None for a row it did not score."""
    rewards = {}
    for pair in _round_file(dpo_round, "human_pairs.jsonl"):
        rewards[(str(pair["prompt_id"]), pair["a"])] = pair["reward_a"]
        rewards[(str(pair["prompt_id"]), pair["b"])] = pair["reward_b"]
    gaps = []
    for row in people:
        chosen = rewards.get((str(row["prompt_id"]), _text(row["chosen"])))
        rejected = rewards.get((str(row["prompt_id"]), _text(row["rejected"])))
        gaps.append(None if chosen is None or rejected is None else chosen - rejected)
    return gaps


def judge_agreement(dpo_round: DPORound, snapshot) -> float | None:
    """The judges' leave-one-out agreement on the round's pairs (ties included), shrunk towards the project's
    recent agreement by AGREEMENT_PRIOR_PAIRS pairs."""
    counts = snapshot.counts or {}
    judged_twice = counts.get("pairs", 0) + counts.get("tied_pairs", 0) - counts.get("pairs_judged_once", 0)
    own = snapshot.agreement
    project = feedback_selectors.recent_agreement(project=dpo_round.project)
    if own is None or judged_twice <= 0:
        return project
    if project is None:
        return own
    return (own * judged_twice + project * AGREEMENT_PRIOR_PAIRS) / (judged_twice + AGREEMENT_PRIOR_PAIRS)


def weigh(dpo_round: DPORound, cfg, snapshot, people: list[dict], machine: list[dict]):
    """(people's rows, the reward model's rows kept, figures): weights and label smoothing of every pair."""
    return round_pair_weights(people, machine, judge_agreement=judge_agreement(dpo_round, snapshot),
                              human_weight=cfg.human_weight, model_pair_weight=cfg.model_pair_weight,
                              signed_gaps=signed_gaps(dpo_round, people))


def _split(rows: list[dict], cfg) -> tuple[list[dict], list[dict]]:
    train, held_out = [], []
    for row in rows:
        (held_out if split_of(str(row["prompt_id"]), test_fraction=cfg.test_fraction, seed=cfg.split_seed) == "test"
         else train).append(row)
    return train, held_out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _counts(people: list[dict], machine: list[dict], train: list[dict]) -> dict:
    trained_people = [r for r in train if r["source"] == "people"]
    trained_model = [r for r in train if r["source"] != "people"]
    return {"human_pairs_used": len(people), "model_pairs_used": len(machine),
            "human_pairs_trained": len(trained_people), "model_pairs_trained": len(trained_model),
            "human_weight_mean": _mean([r["weight"] for r in people]),
            "human_smoothing_mean": _mean([r["smoothing"] for r in people]),
            "model_weight_mean": _mean([r["weight"] for r in machine]),
            "model_smoothing_mean": _mean([r["smoothing"] for r in machine]),
            # the share of the DPO loss's weight that people's labels carry (on the pairs it trains on)
            "people_weight_share": people_weight_share(train)}


def run_train(ctx: RunContext, dpo_round: DPORound) -> dict:
    from training.pipeline.dpo.trainer import train_dpo  # loads torch and TRL: only a worker running a round does

    cfg = ctx.config
    snapshot, people = human_rows(ctx, dpo_round, cfg)
    labelled = model_rows(dpo_round)
    people, machine, figures = weigh(dpo_round, cfg, snapshot, people, labelled)
    train, held_out = _split(people + machine, cfg)
    if not train:
        raise ValueError(NO_PAIRS)
    counts = {**_counts(people, machine, train), "model_pairs_below_confidence": len(labelled) - len(machine),
              "judge_accuracy": figures["judge_q"], "gap_slope": figures["gap_slope"]}
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
                     "round/model_pairs": counts["model_pairs_trained"],
                     "round/people_weight_share": counts["people_weight_share"],
                     "time/train_s": time.perf_counter() - started}
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
