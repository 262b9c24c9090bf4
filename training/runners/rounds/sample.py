"""The first half of a round: sample K answers per prompt from the round's policy, score every pair with its
reward model, publish the `budget` most uncertain pairs as comparison tasks and keep, per prompt, the reward
model's surest pair (best vs worst answer) as its row (`model_pairs.jsonl` in the round's directory under
MODEL_DIR). The published pairs' rewards go to `human_pairs.jsonl`: once people have judged them, they calibrate
the reward model's gaps (`pipeline.rounds.weights.calibrate_gap_slope`)
."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from django.conf import settings

from feedback.models import Prompt
from training import selectors, services
from training.models import DPORound
from training.pipeline.rounds.pairs import best_vs_worst, distinct, model_row, scored_pairs, split_budget
from training.runners.base import RunCancelled, RunContext
from training.runners.publish import sampler

NO_PROMPTS = "the project has no prompts to sample for"


def round_dir(dpo_round: DPORound) -> Path:
    return Path(settings.MODEL_DIR) / "rounds" / f"{dpo_round.project.slug}-round{dpo_round.pk}"


def _prompts(dpo_round: DPORound, cfg) -> list:
    ids = list(Prompt.objects.filter(project=dpo_round.project).order_by("id").values_list("pk", flat=True))
    chosen = sorted(random.Random(cfg.seed * 100_003 + dpo_round.pk).sample(ids, min(len(ids), cfg.max_prompts)))
    return list(Prompt.objects.filter(pk__in=chosen).order_by("id"))


def _score(scorer, prompts: list, answers: list[list[str]]) -> list[list[float]]:
    return [scorer.score([p.payload] * len(texts), texts) if texts else [] for p, texts in zip(prompts, answers)]


def _second_scores(ctx: RunContext, dpo_round: DPORound, cfg, prompts, answers):
    """The previous reward model's scores, for select_by=disagreement (None without one: the gap decides)."""
    from training.pipeline.reward.scoring import RewardScorer  # loads torch: only a worker running a round does

    if cfg.select_by != "disagreement":
        return None
    second = selectors.newest_reward_model(project=dpo_round.project, exclude=dpo_round.reward_model)
    if second is None:
        ctx.log("select_by=disagreement needs two reward models; this project has one: the smallest gaps go first")
        return None
    ctx.log(f"disagreement between {dpo_round.reward_model.name} and {second.name}")
    return _score(RewardScorer(second.path), prompts, answers)


def run_sample(ctx: RunContext, dpo_round: DPORound) -> dict:
    from training.pipeline.reward.scoring import RewardScorer  # loads torch: only a worker running a round does

    cfg, timings = ctx.config, {}
    prompts = _prompts(dpo_round, cfg)
    if not prompts:
        raise ValueError(NO_PROMPTS)
    ctx.log(f"round {dpo_round.pk}: {cfg.completions_per_prompt} answers for {len(prompts)} prompts from "
            f"{dpo_round.policy.name}, scored by {dpo_round.reward_model.name}")
    started = time.perf_counter()
    texts = sampler(dpo_round.policy, cfg, ctx.should_stop)([p.payload for p in prompts], cfg.completions_per_prompt,
                                                            cfg.seed + dpo_round.pk)
    answers = [distinct(t) for t in texts]
    timings["time/sample_s"] = time.perf_counter() - started
    ctx.on_step(1, {"round/prompts": len(prompts), **timings})

    started = time.perf_counter()
    rewards = _score(RewardScorer(dpo_round.reward_model.path), prompts, answers)
    pairs = scored_pairs(answers, rewards, _second_scores(ctx, dpo_round, cfg, prompts, answers), cfg.select_by)
    human, rest = split_budget(pairs, cfg.budget)
    by_model = best_vs_worst(pairs, skip=human)
    timings["time/score_s"] = time.perf_counter() - started
    if ctx.should_stop():  # the last moment a cancel can land: nothing has been published yet
        raise RunCancelled()

    started = time.perf_counter()
    tasks = _publish(dpo_round, prompts, human, cfg)
    rows = [model_row(p, prompts[p.prompt_index].payload, prompts[p.prompt_index].split_key, cfg.model_pair_weight)
            for p in by_model]
    directory = round_dir(dpo_round)
    directory.mkdir(parents=True, exist_ok=True)
    _write_jsonl(rows, directory / "model_pairs.jsonl")
    _write_jsonl([{"prompt_id": prompts[p.prompt_index].split_key, "a": p.a, "b": p.b, "reward_a": p.reward_a,
                   "reward_b": p.reward_b} for p in human], directory / "human_pairs.jsonl")
    timings["time/publish_s"] = time.perf_counter() - started
    counts = {"prompts": len(prompts), "pairs": len(pairs), "human_pairs": len(tasks), "model_pairs": len(rows),
              "model_pairs_unused": len(rest) - len(rows),
              "human_gap_max": max((p.gap for p in human), default=None),
              "model_gap_min": min((p.gap for p in by_model), default=None), **timings}
    services.record_round_sampled(dpo_round=dpo_round, tasks=tasks, counts=counts, rows_path=str(directory))
    ctx.on_step(2, {"round/pairs": len(pairs), "round/human_pairs": len(tasks), "round/model_pairs": len(rows),
                    **timings})
    ctx.log(f"published {len(tasks)} pairs to annotators; the reward model labelled {len(rows)} (best vs worst "
            f"answer of each prompt; {len(rest) - len(rows)} other pairs unused)")
    return {"summary": {"round": dpo_round.pk, **counts}}


def _publish(dpo_round: DPORound, prompts: list, human: list, cfg) -> list:
    """Each pair for people becomes an ordinary comparison task of its two answers (blind, in random order, as
    every task), most uncertain first in the queue."""
    generation = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
                  "seed": cfg.seed, "dpo_round": dpo_round.pk}
    tasks = []
    for priority, pair in enumerate(human):
        task = services.publish_prompt_task(
            project=dpo_round.project, prompt=prompts[pair.prompt_index],
            samples=[(pair.a, dpo_round.policy), (pair.b, dpo_round.policy)], generation=generation,
            priority=priority)
        if task is not None:
            tasks.append(task)
    return tasks


def _write_jsonl(rows: list[dict], path: Path) -> None:
    temporary = path.with_suffix(".part")
    with temporary.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    temporary.replace(path)
