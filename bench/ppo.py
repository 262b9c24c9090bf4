#!/usr/bin/env python
"""PPO cost on the CPU: seconds per iteration with its split, samples/s, peak RSS, and one PPO sample
against one supervised fine-tuning step on the same tokens.

    .venv/bin/python bench/ppo.py [--iterations 2] [--batch 8] [--new-tokens 32] [--modes lora,full]

SmolLM2-135M-Instruct from $MODEL_DIR (bootstrapped first if missing); the reward is a rule (answers
that mention "yes"), so the figures are PPO's own, not a reward model's. Prints `name value unit …`.
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from training.pipeline.config import PPOConfig  # noqa: E402
from training.pipeline.models import DEFAULT_POLICY, bootstrap_default_models, load_causal_lm, load_tokenizer  # noqa: E402
from training.pipeline.ppo import Batch, forward_logprobs, make_batch, train_ppo  # noqa: E402
from training.pipeline.generate import sample_ids  # noqa: E402

SUBJECTS = ["cats", "dogs", "the sea", "music", "trees", "coffee", "rain", "books", "cars", "bread", "snow", "birds"]


def rule_reward(prompts, texts):
    return [1.0 if "yes" in t.lower() else 0.0 for t in texts]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sft_step_seconds(model, tokenizer, batch: Batch, repeats: int = 3) -> float:
    """One supervised step (forward, cross-entropy on the response tokens, backward, AdamW) on the same batch."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        logprobs, _, _ = forward_logprobs(model, None, batch, 1.0)
        loss = -(logprobs * batch.response_mask).sum() / batch.response_mask.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--modes", default="lora,full")
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", str(ROOT / "models")))
    args = parser.parse_args()
    path = bootstrap_default_models(Path(args.model_dir))[DEFAULT_POLICY]
    tokenizer = load_tokenizer(path)
    prompts = [f"Do you like {s}? Answer in a few words." for s in SUBJECTS]
    for mode in args.modes.split(","):
        policy = load_causal_lm(path)
        cfg = PPOConfig(policy=str(path), use_lora=mode == "lora", num_iterations=args.iterations, batch_size=args.batch,
                        mini_batch_size=max(1, args.batch // 2), ppo_epochs=2, max_new_tokens=args.new_tokens,
                        learning_rate=1e-4 if mode == "lora" else 1e-5, kl_bound=1e9)
        history = []
        started = time.perf_counter()
        train_ppo(cfg, policy, tokenizer, rule_reward, prompts[:8], prompts[8:], on_step=lambda s, m: history.append(m))
        total = time.perf_counter() - started
        settings = f"mode={mode} batch={args.batch} new_tokens={args.new_tokens} epochs=2 iterations={args.iterations} fp32 cpu"
        per_iteration = {k: sum(h[k] for h in history) / len(history) for k in history[0] if k.startswith("time/")}
        iteration_s = sum(per_iteration.values())
        print(f"ppo_iteration_seconds {iteration_s:.2f} s {settings}")
        for key, value in per_iteration.items():
            print(f"ppo_{key.replace('/', '_')} {value:.2f} s {settings}")
        print(f"ppo_samples_per_s {args.batch / iteration_s:.2f} 1/s {settings}")
        print(f"ppo_run_total_seconds {total:.1f} s {settings} (includes before/after evaluation)")
        print(f"ppo_peak_rss {peak_rss_mib():.0f} MiB {settings}")

        # The same tokens through one supervised step, for the "PPO costs N× SFT" comparison.
        samples = sample_ids(policy, tokenizer, [tokenizer.apply_chat_template([{"role": "user", "content": p}],
                             add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"] for p in prompts[: args.batch]],
                             max_new_tokens=args.new_tokens, temperature=1.0, seed=0)
        batch = make_batch(samples, tokenizer.pad_token_id)
        if mode == "lora":
            from peft import get_peft_model

            from training.pipeline.models import lora_config

            policy = get_peft_model(load_causal_lm(path), lora_config(load_causal_lm(path), r=16))
        sft = sft_step_seconds(policy, tokenizer, batch)
        print(f"sft_step_seconds {sft:.2f} s {settings}")
        print(f"ppo_cost_vs_sft {iteration_s / sft:.1f} x {settings} (one PPO iteration vs one SFT step on the same tokens)")


if __name__ == "__main__":
    main()
