"""Runs a reward, DPO, PPO, RLOO or GRPO job under `accelerate launch` when its settings ask for it (`processes` > 1
or an `accelerate_config`), and follows it as the worker follows an in-process run.

The runner writes the job (`training.pipeline.launch` reads it) into a scratch directory, starts
`accelerate launch … -m training.pipeline.launch JOB.json` in its own process group (which dies with the
worker, even one killed with SIGKILL: `training.pipeline.process_lifetime`), turns the job's
progress lines into `ctx.on_step` (so the run page, the heartbeat and cancellation work as today), creates
the cancel flag once someone asks the run to stop (and ends the process group if it has not stopped
`CANCEL_GRACE_SECONDS` later), and returns the main process's result for the runner to register.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from django.conf import settings

from training.pipeline.callbacks import TrainedModel, TrainingCancelled
from training.pipeline.devices import choose_device, torch_threads
from training.pipeline.fields import launches

from training.pipeline.launch import launch_command
from training.pipeline.process_lifetime import dies_with_parent
from training.runners.base import RunCancelled, RunContext, registry_dir

POLL_SECONDS = 0.5
CANCEL_GRACE_SECONDS = 120
OUTPUT_TAIL_CHARS = 4000


def accelerate_config_path(name: str) -> Path:
    """A run's accelerate config: a bare file name under $MODEL_DIR/accelerate/ (the config refuses paths)."""
    path = Path(settings.MODEL_DIR) / "accelerate" / name
    if not path.is_file():
        raise ValueError(f"accelerate_config: no file {name!r} in {path.parent}")
    return path


def _command(cfg, job_path: Path) -> list[str]:
    config_file = accelerate_config_path(cfg.accelerate_config) if cfg.accelerate_config else None
    return launch_command(job_path, cfg.processes, config_file)


def launch_env(processes: int) -> dict[str, str]:
    """The worker's environment with TORCH_THREADS shared out between the processes."""
    threads = str(torch_threads(processes))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "TORCH_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
           "MODEL_DIR": str(settings.MODEL_DIR)}  # bare model names resolve where the worker's do
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.BASE_DIR), env.get("PYTHONPATH", "")]))
    return env


def run_launched(ctx: RunContext, kind: str, job: dict[str, Any]) -> dict[str, Any]:
    """Launch `job` (kind, config, data, output_dir), follow it to its end and return the main process's result.
    Raises RunCancelled when the run was asked to stop, RuntimeError (with the output's tail) when it failed."""
    cfg = ctx.config
    ctx.log(f"device: {choose_device().describe(cfg.processes)} (accelerate launch)")
    scratch = Path(tempfile.mkdtemp(prefix=f"run{ctx.run.pk}-", dir=_scratch_root()))
    try:
        job = {**job, "kind": kind, "progress": str(scratch / "progress.jsonl"), "cancel": str(scratch / "cancel"),
               "result": str(scratch / "result.json")}
        job_path = scratch / "job.json"
        job_path.write_text(json.dumps(job, default=str), encoding="utf-8")
        output = scratch / "output.log"
        with output.open("wb") as out:
            proc = subprocess.Popen(_command(cfg, job_path), cwd=settings.BASE_DIR, env=launch_env(cfg.processes),
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=dies_with_parent(os.getpid()))  # a killed worker ends its launch
            cancelled = follow(ctx, proc, Path(job["progress"]), Path(job["cancel"]))
        return _outcome(proc.returncode, cancelled, Path(job["result"]), output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _scratch_root() -> Path:
    root = Path(settings.MODEL_DIR) / "launch"
    root.mkdir(parents=True, exist_ok=True)
    return root


def follow(ctx: RunContext, proc: subprocess.Popen, progress: Path, cancel: Path) -> bool:
    """Forward progress lines to ctx.on_step until the job ends; returns whether a stop was asked for."""
    read, asked_at = 0, None
    try:
        while True:
            ended = proc.poll() is not None
            read = _forward_progress(ctx, progress, read)
            if ended:
                return asked_at is not None
            if asked_at is None and ctx.should_stop():
                cancel.touch()
                asked_at = time.monotonic()
            if asked_at is not None and time.monotonic() - asked_at > CANCEL_GRACE_SECONDS:
                _kill_group(proc)
            time.sleep(POLL_SECONDS)
    except BaseException:
        _kill_group(proc)
        raise


def _forward_progress(ctx: RunContext, progress: Path, read: int) -> int:
    if not progress.is_file():
        return read
    with progress.open("rb") as fh:
        fh.seek(read)
        chunk = fh.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    for line in complete.decode("utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            ctx.on_step(int(entry["step"]), entry["metrics"])
    return read + len(complete)


def _kill_group(proc: subprocess.Popen) -> None:
    """End every process of the launch (SIGTERM, then SIGKILL 30 s later)."""
    for sig, timeout in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)


def _outcome(returncode: int, cancelled: bool, result_path: Path, output: Path) -> dict[str, Any]:
    if cancelled and (returncode != 0 or not result_path.is_file()):
        raise RunCancelled()
    if returncode != 0 or not result_path.is_file():
        tail = output.read_text(encoding="utf-8", errors="replace")[-OUTPUT_TAIL_CHARS:]
        raise RuntimeError(f"accelerate launch exited with code {returncode}:\n{tail}")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    if result.get("status") == "cancelled":
        raise RunCancelled()
    return result


def device_summary(cfg) -> dict[str, object]:
    """Where a run trains, for its summary (shown on the run page): device, dtype and processes."""
    return choose_device().summary(getattr(cfg, "processes", 1) if launches(cfg) else 1)


def trained_model(result: dict[str, Any]) -> TrainedModel:
    """A launched reward or DPO job's result as the `TrainedModel` the in-process path returns (what the gates and
    runners read)."""
    return TrainedModel(path=Path(result["path"]), manifest_sha256=result["manifest_sha256"], metrics=result["metrics"])



def train_here_or_launched(ctx: RunContext, kind: str, train_fn: Callable, train_rows: list, test_rows: list):
    """A reward or DPO run's training: under `accelerate launch` when its settings ask for it (`processes` > 1 or an
    accelerate config), else in the worker's process through `train_fn(cfg, train_rows, eval_rows, output_dir, …)`.
    Either way the model is written to the run's registry directory; returns the trained model's description."""

    cfg, output_dir = ctx.config, registry_dir(kind, ctx.run)
    if launches(cfg):
        return trained_model(run_launched(ctx, kind, {"config": asdict(cfg), "train_rows": train_rows,
                                                      "eval_rows": test_rows, "output_dir": str(output_dir)}))
    try:
        return train_fn(cfg, train_rows, test_rows or None, output_dir, on_step=ctx.on_step, should_stop=ctx.should_stop)
    except TrainingCancelled:
        raise RunCancelled() from None
