#!/usr/bin/env python
"""Reward models: training and scoring throughput per backbone, and the wrapper's overhead over TRL.

    .venv/bin/python bench/reward.py [--n-train 32] [--n-score 64] [--backbones minilm,smollm2] [--epochs 1]

Prints one line per figure, e.g.

    reward_train pairs_per_s=9.1 backbone=minilm method=full n=32 epochs=1 batch=8 max_length=512
    reward_score pairs_per_s=120.4 backbone=minilm n=64 batch=16
    reward_overhead ratio=1.18 wrapper_s=8.2 trl_s=6.9 backbone=minilm n=32 repeats=2

- reward_train: `train_reward_model` training pairs per second of the training loop (TRL's step loop only),
  the best of the timed runs.
- reward_score: `RewardScorer.score` (prompt, completion) pairs per second (one sequence each), batched.
- reward_overhead: wall time of `train_reward_model` (load, dataset, train, held-out eval, atomic save with
  manifest) divided by the wall time of calling `trl.RewardTrainer` directly on the same rows and settings
  (load, dataset, train; no eval, no save). Both include model loading. Each side runs --repeats times, in
  alternating order, and the best time of each is kept (a shared machine only ever slows a run down).

Backbones: MiniLM (all-minilm-l6-v2, full fine-tuning) and SmolLM2-135M-Instruct with LoRA (r=16), both from
$MODEL_DIR (default ./models; bootstrapped first if missing). fp32 on CPU. A benchmark, not a test: it prints.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import _env  # noqa: E402,F401  (the project root on sys.path; the hub off)

from training.pipeline.reward.config import RewardConfig  # noqa: E402
from training.pipeline.data import input_format_for, preference_dataset  # noqa: E402
from training.pipeline.bootstrap import DEFAULT_POLICY, DEFAULT_REWARD_BACKBONE, bootstrap_default_models  # noqa: E402
from training.pipeline.callbacks import quiet_progress_bars  # noqa: E402
from training.pipeline.models import load_reward_model, load_tokenizer, lora_config  # noqa: E402
from training.pipeline.reward.trainer import train_reward_model, trl_reward_args  # noqa: E402
from training.pipeline.reward.scoring import RewardScorer  # noqa: E402

BACKBONES = {
    "minilm": {"name": DEFAULT_REWARD_BACKBONE, "use_lora": False, "learning_rate": 1e-4},
    "smollm2": {"name": DEFAULT_POLICY, "use_lora": True, "learning_rate": 1e-3},
}
TOPICS = ["tides", "volcanoes", "bread", "rainbows", "magnets", "vaccines", "bridges", "glaciers", "bees", "comets"]


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """Export-format rows of realistic short lengths (a question, a one-to-three sentence answer)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        prompt = f"Explain {topic} to a ten-year-old in a few sentences. (#{i})"
        chosen = " ".join([f"{topic.capitalize()} happen because of simple forces we can observe."] * rng.randint(1, 3))
        rejected = rng.choice(["I don't know.", "Look it up.", f"{topic} are boring, ask something else."])
        prompt_value = [{"role": "user", "content": prompt}] if i % 2 else prompt
        rows.append({"prompt": prompt_value, "chosen": chosen, "rejected": rejected, "margin": 0.5, "agreement": 1.0,
                     "prompt_id": f"p{i}"})
    return rows


def figure(name: str, **values) -> None:
    print(name, " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()), flush=True)


def train_with_trl_directly(cfg: RewardConfig, backbone: Path, rows: list[dict], scratch: Path) -> float:
    """The baseline: what a user would write with TRL alone (same model, data format and settings)."""
    import trl
    from transformers import PrinterCallback

    started = time.perf_counter()
    tokenizer = load_tokenizer(backbone)
    if tokenizer.eos_token is None:
        tokenizer.eos_token = tokenizer.sep_token
    model = load_reward_model(backbone, verify=False, tokenizer=tokenizer)
    model.config.eos_token_id = tokenizer.eos_token_id
    peft_config = lora_config(model, r=cfg.lora_r, alpha=cfg.lora_alpha, reward=True) if cfg.use_lora else None
    trainer = trl.RewardTrainer(
        model=model,
        args=trl_reward_args(cfg, str(scratch), cfg.max_length),
        train_dataset=preference_dataset(rows, input_format_for(tokenizer), with_margin=cfg.use_margin),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=32, help="training pairs (default 32)")
    parser.add_argument("--n-score", type=int, default=64, help="(prompt, completion) pairs to score (default 64)")
    parser.add_argument("--backbones", default="minilm,smollm2", help="comma list of: " + ",".join(BACKBONES))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--no-overhead", action="store_true", help="skip the comparison with TRL alone")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each side (best kept)")
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", "models"))
    args = parser.parse_args()

    import torch
    import trl  # noqa: F401  imported before any timed run

    models = bootstrap_default_models(Path(args.model_dir))
    rows = synthetic_rows(args.n_train)
    score_rows = synthetic_rows(args.n_score, seed=1)
    print(f"# torch threads={torch.get_num_threads()} fp32 cpu", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-reward-") as tmp, quiet_progress_bars():
        tmp = Path(tmp)
        for key in args.backbones.split(","):
            spec = BACKBONES[key]
            backbone = models[spec["name"]]
            cfg = RewardConfig(
                backbone=str(backbone),
                use_lora=spec["use_lora"],
                learning_rate=spec["learning_rate"],
                num_train_epochs=args.epochs,
                batch_size=args.batch_size,
                max_length=args.max_length,
                logging_steps=10_000,
            )
            method = "lora" if cfg.use_lora else "full"
            load_reward_model(backbone, verify=False)  # warm the page cache, so neither timed run pays for it alone

            # Alternate the order of the two runs and keep each one's best time: other processes on a shared
            # machine only ever slow a run down, so the minimum is the least noisy estimate.
            wrapper_seconds, trl_seconds, results = [], [], []
            for repeat in range(args.repeats):
                if args.no_overhead:
                    order = ["wrapper"]
                else:
                    order = ["wrapper", "trl"] if repeat % 2 == 0 else ["trl", "wrapper"]
                for run in order:
                    if run == "wrapper":
                        started = time.perf_counter()
                        results.append(train_reward_model(cfg, rows, [], tmp / f"rm-{key}-{repeat}"))
                        results[-1].model = None  # keep the figures, not 540 MB of weights per run
                        wrapper_seconds.append(time.perf_counter() - started)
                    else:
                        trl_seconds.append(train_with_trl_directly(cfg, backbone, rows, tmp / f"trl-{key}-{repeat}"))
            best = max(results, key=lambda r: r.metrics["train/pairs_per_s"])
            figure(
                "reward_train",
                pairs_per_s=best.metrics["train/pairs_per_s"],
                backbone=key,
                method=method,
                n=args.n_train,
                epochs=args.epochs,
                batch=args.batch_size,
                max_length=int(best.metrics["train/max_length"]),
            )

            scorer = RewardScorer(best.path, batch_size=16)
            prompts = [row["prompt"] for row in score_rows]
            completions = [row["chosen"] for row in score_rows]
            scorer.score(prompts[:4], completions[:4])  # warm-up
            started = time.perf_counter()
            scorer.score(prompts, completions)
            figure(
                "reward_score",
                pairs_per_s=len(prompts) / (time.perf_counter() - started),
                backbone=key,
                n=len(prompts),
                batch=16,
            )
            del scorer

            if trl_seconds:
                figure(
                    "reward_overhead",
                    ratio=min(wrapper_seconds) / min(trl_seconds),
                    wrapper_s=min(wrapper_seconds),
                    trl_s=min(trl_seconds),
                    backbone=key,
                    n=args.n_train,
                    repeats=args.repeats,
                )
            for result in results:  # 540 MB each for SmolLM2: do not wait for the end to free the disk
                shutil.rmtree(result.path, ignore_errors=True)


if __name__ == "__main__":
    main()
