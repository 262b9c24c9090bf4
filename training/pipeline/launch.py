"""One training job under `accelerate launch` (DDP on N processes; DeepSpeed ZeRO or FSDP through an accelerate
config file): reward model, DPO, PPO, RLOO or GRPO, started as

    accelerate launch --multi_gpu --num_processes N -m training.pipeline.launch JOB.json

(`--multi_gpu` is accelerate's torchrun launcher; on a machine without GPUs the processes talk over gloo).
JOB.json is written by whoever runs the job (the Django worker's `training.runners.launched`):

    {"kind": "reward" | "dpo" | "ppo" | "rloo" | "grpo", "config": {…the kind's config…}, "output_dir": …,
     "progress": PATH, "cancel": PATH, "result": PATH,
     reward, dpo: "train_rows": […], "eval_rows": […]
     ppo, rloo, grpo: "policy": DIR, "reward_model": DIR, "judge": DIR|null, "base_model": DIR|null,
          "train_prompts": […], "eval_prompts": […], "manifest_extra": {…}}

The main process appends one JSON line per step to `progress` ({"step": n, "metrics": {…}}); every process
stops, together, once the file `cancel` exists; only the main process saves weights and writes `result`
(JSON: "status", "metrics"/"summary", "path", "manifest_sha256", and for PPO, RLOO and GRPO the fields of the gate's
`ppo.verdict.GateVerdict`: the gate is computed once, on the main process). No Django here: the runner
registers the version from the result.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from .callbacks import TrainingCancelled
from .devices import PROCESS_GROUP_HOURS, apply_torch_threads, choose_device, is_main_process, world_size
from .dpo.config import DPOConfig
from .fields import config_from_dict
from .online.config import GRPOConfig, RLOOConfig
from .ppo.config import PPOConfig
from .process_lifetime import dies_with_parent
from .reward.config import RewardConfig

# The trainers (and torch, TRL, accelerate with them) are imported inside each job's function: the Django worker
# imports this module for `launch_command` and must not load torch to do so.


class Reporter:
    """The job's side of the files the runner follows: progress lines out, the cancel flag in."""

    def __init__(self, job: dict[str, Any]):
        self.progress, self.cancel = Path(job["progress"]), Path(job["cancel"])

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if not is_main_process():
            return
        with self.progress.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, "metrics": metrics}) + "\n")

    def should_stop(self) -> bool:
        """This process's view of the flag (PPO agrees across processes itself, in lockstep)."""
        return self.cancel.exists()

    def should_stop_together(self) -> bool:
        """The flag as every process sees it at once (for the TRL trainers, polled after each step by all)."""
        import torch.distributed as dist

        asked = self.should_stop()
        if world_size() == 1 or not dist.is_initialized():
            return asked
        import torch

        flag = torch.tensor([1.0 if asked else 0.0])
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag)
        return bool(flag.item() > 0)


def _run_offline_job(job: dict[str, Any], reporter: Reporter, config_class, train) -> dict[str, Any]:
    """Reward model or DPO: TRL's trainer on the job's preference rows; the main process saves."""
    cfg = config_from_dict(config_class, job["config"])
    result = train(cfg, job["train_rows"], job.get("eval_rows") or None, Path(job["output_dir"]),
                   on_step=reporter.on_step, should_stop=reporter.should_stop_together)
    return {"status": "completed", "metrics": result.metrics, "path": str(result.path),
            "manifest_sha256": result.manifest_sha256}


def run_reward_job(job: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    from .reward.trainer import train_reward_model

    return _run_offline_job(job, reporter, RewardConfig, train_reward_model)


def run_dpo_job(job: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    from .dpo.trainer import train_dpo

    return _run_offline_job(job, reporter, DPOConfig, train_dpo)


def run_ppo_job(job: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    from accelerate import Accelerator, InitProcessGroupKwargs

    from .ppo.loop import train_ppo

    cfg = config_from_dict(PPOConfig, job["config"])
    choice = choose_device()
    # The main process evaluates the parent alone before training while the others wait at the first collective.
    accelerator = Accelerator(cpu=choice.device == "cpu", mixed_precision=choice.mixed_precision,
                              kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=PROCESS_GROUP_HOURS))])
    tokenizer, policy, reward_fn, judge, base = _policy_job_models(job, cfg)
    result = train_ppo(cfg, policy, tokenizer, reward_fn, job["train_prompts"], job["eval_prompts"],
                       on_step=reporter.on_step, should_stop=reporter.should_stop, held_out_judge=judge,
                       base_model=base, accelerator=accelerator)
    return _policy_job_result(job, result, tokenizer)


def run_online_job(job: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    """RLOO or GRPO: TRL's trainer sets up the process group and shares every batch among the processes."""
    from .online.trainer import train_online

    cfg = config_from_dict(RLOOConfig if job["kind"] == "rloo" else GRPOConfig, job["config"])
    tokenizer, policy, reward_fn, judge, base = _policy_job_models(job, cfg)
    result = train_online(job["kind"], cfg, policy, tokenizer, reward_fn, job["train_prompts"], job["eval_prompts"],
                          on_step=reporter.on_step, should_stop=reporter.should_stop,
                          should_stop_training=reporter.should_stop_together, held_out_judge=judge, base_model=base)
    return _policy_job_result(job, result, tokenizer)


def _policy_job_models(job: dict[str, Any], cfg) -> tuple:
    """(tokenizer, policy, reward function, held-out judge or None, original base or None) of a policy job."""
    from .models import load_causal_lm, load_tokenizer
    from .reward.scoring import RewardScorer

    policy_dir = Path(job["policy"])
    tokenizer = load_tokenizer(policy_dir)
    policy = load_causal_lm(policy_dir, verify=cfg.verify_policy)
    judge = RewardScorer(job["judge"]).score if job.get("judge") else None
    base = load_causal_lm(Path(job["base_model"])) if job.get("base_model") else None
    return tokenizer, policy, RewardScorer(job["reward_model"]).score, judge, base


def _policy_job_result(job: dict[str, Any], result, tokenizer) -> dict[str, Any]:
    """What a PPO, RLOO or GRPO job reports; the main process alone saves a result that passed the gate."""
    from .ppo.save import save_policy

    out = {**result.gate_verdict().as_dict(), "summary": result.summary(), "history": result.history, "path": None,
           "manifest_sha256": None}
    if is_main_process() and result.status != "cancelled" and result.passes_gate:
        out["manifest_sha256"] = save_policy(result, tokenizer, Path(job["output_dir"]), job.get("manifest_extra") or {})
        out["path"] = job["output_dir"]
    return out


JOBS = {"reward": run_reward_job, "dpo": run_dpo_job, "ppo": run_ppo_job, "rloo": run_online_job,
        "grpo": run_online_job}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(job_path: Path, processes: int = 1, config_file: Path | None = None) -> list[str]:
    """`accelerate launch` for a job: with an accelerate config file, that file decides (its --num_processes
    overridden when `processes` > 1); without one, DDP on this machine with `processes` processes."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file is not None:
        cmd += ["--config_file", str(config_file)] + (["--num_processes", str(processes)] if processes > 1 else [])
    else:
        cmd += ["--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "--main_process_port", str(free_port())]
        if processes > 1:
            cmd.append("--multi_gpu")  # accelerate's torchrun launcher; without GPUs the processes use gloo
    return cmd + ["-m", "training.pipeline.launch", str(job_path)]


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, default=str), encoding="utf-8")
    os.replace(tmp, path)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in this process (one of the launched ones); returns what the main process writes."""
    apply_torch_threads(world_size())
    if job["kind"] not in JOBS:
        raise ValueError(f"unknown kind of job {job['kind']!r}; known: {', '.join(JOBS)}")
    try:
        result = JOBS[job["kind"]](job, Reporter(job))
    except TrainingCancelled as cancelled:
        result = {"status": "cancelled", "message": str(cancelled)}
    result["device"] = choose_device().summary(world_size())
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: accelerate launch [options] -m training.pipeline.launch JOB.json", file=sys.stderr)
        return 2
    dies_with_parent(os.getppid())()  # a rank ends when its launcher does (process_lifetime)
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    result = run_job(job)
    if is_main_process():
        write_json_atomic(Path(job["result"]), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
