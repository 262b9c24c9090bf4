#!/usr/bin/env python
"""One round of iterative DPO with people in the loop, wall time per stage, through the real command.

    .venv/bin/python bench/dpo_round.py [--tiny] [--prompts 120] [--seed 0] [--model-dir DIR]

Set-up (not timed as part of the round): a throw-away SQLite database and MODEL_DIR (as bench/loop.py),
`create_project` (K=2, overlap 3), `import_prompts` of loop_sim's prompts with two synthesised answers each
(digit rule), the simulated annotators judge them (loop_sim.Annotator: the rule with p = 0.707), and
`train_reward_model` makes the active reward model (MiniLM). --tiny: a tiny random Llama policy and a tiny random
BERT reward model (registered directly), few prompts, a quick check that every stage runs (`make bench`).

The round, `manage.py dpo_round --project bench` twice:
1. start: the active policy samples K=4 answers per prompt (sample), the reward model scores every pair (score),
   the `budget` most uncertain pairs become comparison tasks and the rest are written as the reward model's rows
   (publish); the figures come from the round's own timings (`DPORound.counts["time/…"]`);
2. simulated judging through `next_task` / `submit_judgement` (overlap 3);
3. finish: DPO on both kinds of pairs, human pairs weighted (train: the trainer's runtime), then the held-out
   implicit-reward accuracy, the merge and save and the registration (gate: the rest of the DPO run's time).
Prints one table: stage, wall seconds, figures. A benchmark: it asserts nothing.

`--weighting-cost`: instead of a round, the price of per-pair weights alone: `train_dpo` on the same 16 pairs,
weighted (all weights 1: `dpo_weighted`, one forward per pair) and unweighted (TRL's batch forward), interleaved,
`--repeats` times each; seconds per step from the trainer's runtime.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import _env  # noqa: E402  (the project root on sys.path; the hub off)

ROOT = _env.ROOT

import loop  # noqa: E402  (set-up, commands and the simulated judging of bench/loop.py)
import loop_sim as sim  # noqa: E402

SLUG = "bench"
ROUND = {  # the round's settings (--set), per size
    "full": ["completions_per_prompt=4", "max_prompts=24", "budget=12", "max_new_tokens=32",
             "dpo={max_steps: 16, batch_size: 4, max_length: 256}"],
    "tiny": ["completions_per_prompt=4", "max_prompts=8", "budget=6", "max_new_tokens=8", "test_fraction=0.25",
             "dpo={max_steps: 2, batch_size: 4, max_length: 128}"],
}


def tiny_models(work: Path) -> None:
    """A tiny random Llama as the active policy and a tiny random BERT (head scaled: distinct gaps) as the
    project's active reward model."""
    import torch

    from feedback.models import Project
    from training import services
    from training.models import ModelVersion
    from training.pipeline.models import (DEFAULT_POLICY, DEFAULT_REWARD_BACKBONE, load_tokenizer, manifest_sha256,
                                          save_pretrained_atomic, tiny_causal_lm, tiny_reward_model)

    models = work / "models"
    policy_tokenizer, bert_tokenizer = load_tokenizer(models / DEFAULT_POLICY), load_tokenizer(models / DEFAULT_REWARD_BACKBONE)
    save_pretrained_atomic(tiny_causal_lm(policy_tokenizer), policy_tokenizer, models / "tiny-llama", {"kind": "policy"})
    reward = tiny_reward_model(bert_tokenizer)
    with torch.no_grad():
        reward.classifier.weight.mul_(1e4)
    save_pretrained_atomic(reward, bert_tokenizer, models / "tiny-reward", {"kind": "reward"})
    project = Project.objects.get(slug=SLUG)
    services.register_version(project=None, name="tiny-llama", kind=ModelVersion.Kind.POLICY,
                              path=str(models / "tiny-llama"), sha256=manifest_sha256(models / "tiny-llama"),
                              config={}, metrics={}, activate=True)
    services.register_version(project=project, name="tiny-reward", kind=ModelVersion.Kind.REWARD,
                              path=str(models / "tiny-reward"), sha256=manifest_sha256(models / "tiny-reward"),
                              config={}, metrics={"eval/accuracy": 1.0, "eval/accuracy_low": 0.6}, activate=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random models, few prompts: a quick check")
    parser.add_argument("--prompts", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", str(ROOT / "models")))
    parser.add_argument("--weighting-cost", action="store_true", help="time weighted against plain DPO steps")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.weighting_cost:
        return weighting_cost(args)
    size = "tiny" if args.tiny else "full"
    n_prompts = 12 if args.tiny else args.prompts
    work = loop.setup(args)
    table = loop.Table()
    with table.stage("set-up (not the round)") as stage:
        loop.command("bootstrap_models", quiet=True)
        import_file = work / "prompts.jsonl"
        sim.write_import_file(import_file, n_prompts, args.seed)
        users = loop.make_project(SLUG, import_file)
        annotators = [sim.Annotator(random.Random(args.seed * 100 + i)) for i in range(len(users))]
        loop.judge_all(SLUG, users, annotators)
        if args.tiny:
            tiny_models(work)
        else:
            loop.command("train_reward_model", "--project", SLUG, *loop.set_args(loop.SIZES["full"]["reward"]),
                         "--verbosity", "0")
        stage.add(f"{n_prompts} prompts judged, {size} models")
    run_round(table, users, annotators, size)
    load = os.getloadavg()
    table.print(f"iterative DPO round ({size}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
                f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")


def run_round(table, users, annotators, size: str) -> None:
    from training.models import DPORound

    with table.stage("round start (command)") as stage:
        loop.command("dpo_round", "--project", SLUG, *loop.set_args(ROUND[size]), "--verbosity", "0")
        dpo_round = DPORound.objects.get(project__slug=SLUG)
        counts = dpo_round.counts
        stage.add(f"{counts['prompts']} prompts, {counts['pairs']} pairs: {counts['human_pairs']} to people, "
                  f"{counts['model_pairs']} to the reward model")
    for name, key in (("  sample", "time/sample_s"), ("  score", "time/score_s"), ("  publish", "time/publish_s")):
        table.rows.append((name, counts[key], ""))
    with table.stage("simulated judging") as stage:
        labels = loop.judge_all(SLUG, users, annotators)
        stage.add(f"{sum(len(v) for v in labels.values())} judgements on {len(labels)} tasks")
    started = time.perf_counter()
    with table.stage("round finish (command)") as stage:
        loop.command("dpo_round", "--project", SLUG, "--verbosity", "0")
        dpo_round.refresh_from_db()
        version = dpo_round.train_run.produced_version
        stage.add(f"{dpo_round.counts['human_pairs_trained']} human + {dpo_round.counts['model_pairs_trained']} "
                  f"reward-model pairs; {version.name} {version.status}; held-out accuracy "
                  f"{version.metrics.get('eval/accuracy')} (n={version.metrics.get('eval/n_pairs')})")
    trained = version.metrics.get("train/runtime_s") or 0.0
    total = version.metrics.get("time/train_s") or (time.perf_counter() - started)
    table.rows.append(("  DPO train", trained, f"{version.metrics.get('train/steps'):.0f} steps"))
    table.rows.append(("  gate: eval, save, register", total - trained, ""))


def weighting_cost(args) -> None:
    """Seconds per DPO step with per-pair weights (one forward per pair) and without (one batch forward)."""
    import tempfile

    from training.pipeline.dpo.config import DPOConfig
    from training.pipeline.dpo.trainer import train_dpo
    from training.pipeline.bootstrap import bootstrap_default_models
    from training.pipeline.models import DEFAULT_POLICY

    policy_dir = bootstrap_default_models(Path(args.model_dir).absolute())[DEFAULT_POLICY]
    rng = random.Random(args.seed)
    rows = []
    for _, text in sim.prompts(16):
        topic = sim.topic_of(text)
        rows.append({"prompt": text, "chosen": sim.answer(rng, topic, True), "rejected": sim.answer(rng, topic, False)})
    cfg = DPOConfig(policy=str(policy_dir), max_steps=4, batch_size=4, max_length=256)
    timings = {"weighted": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="bench-weighting-") as scratch:
        for repeat in range(args.repeats):
            for name in ("plain", "weighted"):
                train = [{**r, "weight": 1.0} for r in rows] if name == "weighted" else rows
                result = train_dpo(cfg, train, None, Path(scratch) / f"{name}-{repeat}")
                timings[name].append(result.metrics["train/runtime_s"] / result.metrics["train/steps"])
                print(f"{name:<9} repeat {repeat}: {timings[name][-1]:.2f} s/step", flush=True)
    load = os.getloadavg()
    plain, weighted = (sum(timings[k]) / len(timings[k]) for k in ("plain", "weighted"))
    print(f"\nDPO step, SmolLM2-135M + LoRA, batch 4, max_length 256 (load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}): "
          f"plain {plain:.2f} s, weighted {weighted:.2f} s, ratio {weighted / plain:.2f} "
          f"(n={args.repeats} each, interleaved)")


if __name__ == "__main__":
    main()
