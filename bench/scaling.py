#!/usr/bin/env python
"""PPO on 1 and 2 processes under `accelerate launch` (scaling efficiency), and RLOO / GRPO against PPO on the
same prompts and the same rule reward (episodes/s), on this CPU.

    .venv/bin/python bench/scaling.py [--iterations 2] [--batch 4] [--new-tokens 16] [--tiny]
                                      [--methods ppo,rloo,grpo] [--processes 1,2] [--model-dir DIR]

Scaling: one PPO job per process count, written and started as the Django worker does (`launch.launch_command`,
JOB.json read by `training.pipeline.launch`), same seed and same total batch (each of N processes samples and
trains on batch/N of it). The job's reward is a registered reward model, so the bench scores with a tiny random
BERT (negligible cost next to the policy): the figures are PPO's own. Per configuration: wall seconds per
iteration (mean of the iterations after the first, a warm-up), samples/s = batch / that, the peak RSS of each
training process (VmHWM of the launched processes, read from /proc while they run) and the scaling efficiency
(samples/s with N) / (N × samples/s with 1).

Methods: PPO (`ppo.train_ppo`), RLOO and GRPO (`online.train_rloo` / `train_grpo`, TRL) each in a child process
(its own peak RSS), LoRA (the CPU default of all three), the same prompts, `rule_reward` (answers that mention
"yes"), `batch` completions per iteration/step (RLOO/GRPO: 2 generations per prompt), no held-out evaluation.
Episodes/s = batch / mean seconds between the progress reports after the first.

The policy is SmolLM2-135M-Instruct from --model-dir (bootstrapped there when absent); --tiny uses a tiny
random Llama over its tokenizer instead (a quick check that the bench runs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _env  # noqa: E402  (the project root on sys.path; the hub off)

ROOT = _env.ROOT

SUBJECTS = ["cats", "dogs", "the sea", "music", "trees", "coffee", "rain", "books", "cars", "bread", "snow", "birds",
            "tea", "mountains", "trains", "jazz"]
PROMPTS = [f"Do you like {s}? Answer in a few words." for s in SUBJECTS]
SEED = 3


def rule_reward(prompts, texts):
    return [1.0 if "yes" in t.lower() else 0.0 for t in texts]


# --- models ---------------------------------------------------------------------------------------------------


def default_dirs(model_dir: Path) -> dict[str, Path]:
    """The default models in `model_dir`: used as they are when complete (nothing written), else bootstrapped."""
    from training.pipeline.models import DEFAULT_POLICY, DEFAULT_REWARD_BACKBONE, bootstrap_default_models

    names = (DEFAULT_POLICY, DEFAULT_REWARD_BACKBONE)
    if all((model_dir / name / "manifest.json").is_file() for name in names):
        return {name: model_dir / name for name in names}
    return bootstrap_default_models(model_dir)


def prepare_models(args, scratch: Path) -> tuple[Path, Path]:
    """(policy directory, reward model directory): SmolLM2 (or a tiny random Llama with --tiny) and a tiny BERT."""
    from training.pipeline.models import (DEFAULT_POLICY, DEFAULT_REWARD_BACKBONE, load_tokenizer,
                                          save_pretrained_atomic, tiny_causal_lm, tiny_reward_model)

    dirs = default_dirs(Path(args.model_dir).absolute())
    bert_tokenizer = load_tokenizer(dirs[DEFAULT_REWARD_BACKBONE])
    reward_dir = scratch / "tiny-bert"
    save_pretrained_atomic(tiny_reward_model(bert_tokenizer), bert_tokenizer, reward_dir,
                           {"kind": "reward_backbone", "name": "tiny-bert"})
    if not args.tiny:
        return dirs[DEFAULT_POLICY], reward_dir
    tokenizer = load_tokenizer(dirs[DEFAULT_POLICY])
    policy_dir = scratch / "tiny-llama"
    save_pretrained_atomic(tiny_causal_lm(tokenizer), tokenizer, policy_dir, {"kind": "policy", "name": "tiny-llama"})
    return policy_dir, reward_dir


def ppo_settings(args) -> dict:
    """rollout_chunk (prompts per generate() call under accelerate) = one process's share at the most processes:
    every configuration samples the same answers, and the 1-process run is not held to one prompt per call."""
    chunk = args.batch // max(args.processes or [1])
    return dict(use_lora=True, num_iterations=args.iterations, batch_size=args.batch, mini_batch_size=args.batch // 2,
                ppo_epochs=1, max_new_tokens=args.new_tokens, rollout_chunk=chunk, temperature=1.0, top_p=1.0,
                seed=SEED, learning_rate=1e-4, kl_bound=1e9, gate_samples_per_prompt=1, gate_min_prompts=1)


# --- PPO on 1 and N processes -------------------------------------------------------------------------------


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def vm_hwm_mib(pid: int) -> tuple[float, str] | None:
    """(peak RSS in MiB, command line) of a training process (`training.pipeline.launch`), else None."""
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        if "training.pipeline.launch" not in cmdline or "accelerate" in cmdline:
            return None
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024, cmdline
    except OSError:
        return None
    return None


def run_launched(cmd: list[str], env: dict, log: Path) -> tuple[int, dict[int, float]]:
    """Run the launch command, sampling the training processes' VmHWM every 0.2 s; (return code, {pid: MiB})."""
    peaks: dict[int, float] = {}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            for pid in descendants(proc.pid):
                seen = vm_hwm_mib(pid)
                if seen is not None:
                    peaks[pid] = max(peaks.get(pid, 0.0), seen[0])
            time.sleep(0.2)
    return proc.returncode, peaks


def ppo_launched(args, policy_dir: Path, reward_dir: Path, processes: int, scratch: Path) -> dict:
    from training.pipeline.launch import launch_command

    work = scratch / f"ppo-{processes}"
    work.mkdir()
    job = {"kind": "ppo", "config": {"policy": str(policy_dir), **ppo_settings(args)}, "policy": str(policy_dir),
           "reward_model": str(reward_dir), "judge": None, "base_model": None, "train_prompts": PROMPTS,
           "eval_prompts": [], "output_dir": str(work / "out"), "manifest_extra": {},
           "progress": str(work / "progress.jsonl"), "cancel": str(work / "cancel"), "result": str(work / "result.json")}
    job_path = work / "job.json"
    job_path.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    code, peaks = run_launched(launch_command(job_path, processes), env, work / "log.txt")
    wall = time.perf_counter() - started
    if code != 0 or not (work / "result.json").is_file():
        sys.exit(f"PPO on {processes} process(es) failed ({code}); log:\n" + (work / "log.txt").read_text()[-4000:])
    result = json.loads((work / "result.json").read_text())
    history = result["history"]
    timed = history[1:] or history
    iteration_s = sum(h["time/iteration_s"] for h in timed) / len(timed)
    return {"processes": processes, "status": result["status"], "iterations": len(history), "iteration_s": iteration_s,
            "samples_per_s": args.batch / iteration_s, "rss_mib": sorted(peaks.values(), reverse=True),
            "run_s": wall, "device": result.get("device", {})}


def scaling_table(args, policy_dir: Path, reward_dir: Path, scratch: Path) -> None:
    rows = [ppo_launched(args, policy_dir, reward_dir, n, scratch) for n in args.processes]
    one = next((r for r in rows if r["processes"] == 1), None)
    print(f"\nPPO under accelerate launch: batch {args.batch} (total), {args.new_tokens} new tokens, LoRA, "
          f"{args.iterations} iterations (first excluded), seed {SEED}, fp32 CPU, 1 torch thread per process")
    print(f"{'processes':>9} {'s/iteration':>12} {'samples/s':>10} {'efficiency':>10} {'peak RSS MiB per process':>26}"
          f" {'run s':>7} status")
    for r in rows:
        eff = f"{r['samples_per_s'] / (r['processes'] * one['samples_per_s']):.2f}" if one else "-"
        rss = ", ".join(f"{m:.0f}" for m in r["rss_mib"]) or "?"
        print(f"{r['processes']:>9} {r['iteration_s']:>12.2f} {r['samples_per_s']:>10.2f} {eff:>10} {rss:>26}"
              f" {r['run_s']:>7.1f} {r['status']}", flush=True)


# --- PPO, RLOO and GRPO in-process, one child each ------------------------------------------------------------


def run_method(method: str, args) -> dict:
    """Train `method` in this process; seconds between progress reports after the first, episodes/s, peak RSS."""
    import torch
    from transformers.utils import logging as hf_logging

    from training.pipeline.ppo.config import PPOConfig
    from training.pipeline.online.config import GRPOConfig, RLOOConfig
    from training.pipeline.models import load_causal_lm, load_tokenizer
    from training.pipeline.online.trainer import train_grpo, train_rloo
    from training.pipeline.ppo.loop import train_ppo

    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)
    path = Path(args.model)
    tokenizer, policy = load_tokenizer(path), load_causal_lm(path, verify=False)
    stamps: list[float] = []
    on_step = lambda step, metrics: stamps.append(time.perf_counter())  # noqa: E731
    if method == "ppo":
        cfg = PPOConfig(policy=str(path), **ppo_settings(args))
        result = train_ppo(cfg, policy, tokenizer, rule_reward, PROMPTS, [], on_step=on_step)
    else:
        config_class, train = (RLOOConfig, train_rloo) if method == "rloo" else (GRPOConfig, train_grpo)
        cfg = config_class(policy=str(path), max_steps=args.iterations, batch_size=args.batch, num_generations=2,
                           max_completion_length=args.new_tokens, temperature=1.0, top_p=1.0, seed=SEED,
                           kl_bound=1e9, gate_samples_per_prompt=1, gate_min_prompts=1)
        result = train(cfg, policy, tokenizer, rule_reward, PROMPTS, [], on_step=on_step)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    step_s = sum(gaps) / len(gaps) if gaps else float("nan")
    return {"method": method, "status": result.status, "steps": len(stamps), "step_s": step_s,
            "episodes_per_s": args.batch / step_s, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def methods_table(args) -> None:
    rows = []
    for method in args.methods:
        argv = [sys.executable, __file__, "--child", method, "--model", args.model, "--iterations", str(args.iterations),
                "--batch", str(args.batch), "--new-tokens", str(args.new_tokens)]
        done = subprocess.run(argv, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            sys.exit(f"{method} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        rows.append(json.loads(lines[-1]))
    print(f"\nOnline methods in one process: {args.batch} completions per iteration/step (RLOO/GRPO: {args.batch // 2} "
          f"prompts x 2 generations), {args.new_tokens} new tokens, LoRA, rule reward, {args.iterations} iterations "
          f"(first excluded), 1 torch thread")
    print(f"{'method':>6} {'s/iteration':>12} {'episodes/s':>11} {'vs PPO':>7} {'peak RSS MiB':>13} status")
    ppo = next((r for r in rows if r["method"] == "ppo"), None)
    for r in rows:
        ratio = f"{r['episodes_per_s'] / ppo['episodes_per_s']:.2f}" if ppo else "-"
        print(f"{r['method']:>6} {r['step_s']:>12.2f} {r['episodes_per_s']:>11.2f} {ratio:>7} {r['rss_mib']:>13.0f} "
              f"{r['status']}", flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2, help="iterations / steps per run (the first is warm-up)")
    parser.add_argument("--batch", type=int, default=4, help="rollouts per iteration, in total (even)")
    parser.add_argument("--new-tokens", type=int, default=16, help="max new tokens per rollout")
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama instead of SmolLM2 (quick check)")
    parser.add_argument("--methods", default="ppo,rloo,grpo", help="comma-separated: ppo, rloo, grpo (empty: none)")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts for PPO (empty: none)")
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", str(ROOT / "models")),
                        help="where the default models are (bootstrapped when absent; default: $MODEL_DIR or ./models)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.processes = [int(n) for n in args.processes.split(",") if n.strip()]
    if args.iterations < 2:
        parser.error("--iterations must be >= 2 (the first is excluded as warm-up)")
    if args.batch < 2 or any(args.batch % (2 * n) for n in args.processes):
        parser.error("--batch must be a multiple of 2 x every process count (minibatch = batch / 2 per process)")
    if set(args.methods) - {"ppo", "rloo", "grpo"}:
        parser.error("--methods takes ppo, rloo, grpo")
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(run_method(args.child, args)), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        scratch = Path(tmp)
        policy_dir, reward_dir = prepare_models(args, scratch)
        args.model = str(policy_dir)
        print(f"policy {policy_dir}; cpus {os.cpu_count()}; load {os.getloadavg()[0]:.2f} (1 min) at start", flush=True)
        if args.processes:
            scaling_table(args, policy_dir, reward_dir, scratch)
        if args.methods:
            methods_table(args)
        print(f"load {os.getloadavg()[0]:.2f} (1 min) at end", flush=True)


if __name__ == "__main__":
    main()
