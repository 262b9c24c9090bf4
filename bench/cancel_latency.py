#!/usr/bin/env python
"""Cancel latency: seconds from a cancel request to the run's end, while the run samples, through the real worker.

    .venv/bin/python bench/cancel_latency.py [--tiny] [--repeats 5] [--load 2] [--max-new-tokens 256]

Set-up (as bench/loop.py): a throw-away SQLite database and MODEL_DIR, `create_project`, prompts imported,
`bootstrap_models` (SmolLM2-135M as the policy; --tiny: a tiny random Llama). A `manage.py db_worker` process
(default settings: heartbeat every RUN_HEARTBEAT_SECONDS = 5) executes publishing runs (K=2 answers for 16 prompts:
two batches of 16 rows, `--max-new-tokens` each); `--load N` starts N busy processes beside it, as other work on
the box would. Each run is cancelled `--after` seconds into its second batch (once the first batch's progress is
recorded: loading the model, which nothing interrupts, is over), through `services.request_cancel`, the service
the run page and the API call; its latency is the run's `finished_at` minus the moment of the request.

Two modes, interleaved run by run, in their own worker each:
- direct: the sampling loop reads the cancel flag itself (RUN_CANCEL_POLL_SECONDS = 0.2, the default);
- heartbeat only: RUN_CANCEL_POLL_SECONDS = 10⁹, i.e. the flag arrives only with the heartbeat thread (the
  behaviour before the direct path), which a busy sampler can starve.
Prints each latency and, per mode, the median and the maximum. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import timedelta

import _env  # noqa: E402  (the project root on sys.path; the hub off)

ROOT = _env.ROOT

import loop  # noqa: E402  (set-up and commands of bench/loop.py)

SLUG = "bench"
PROMPTS, K = 16, 2  # 32 rows: two batches of 16 (the sampler's batch size); the cancel lands in the second
MODES = {"direct": "0.2", "heartbeat only": "1000000000"}


def burn() -> None:
    while True:
        pass


def start_worker(poll_seconds: str) -> subprocess.Popen:
    env = {**os.environ, "RUN_CANCEL_POLL_SECONDS": poll_seconds}
    return subprocess.Popen([sys.executable, "manage.py", "db_worker", "--queue-name", "*", "--interval", "0.2",
                             "--no-startup-delay"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_for(predicate, timeout: float = 900, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(poll)
    raise SystemExit("timed out")


def one_cancel(project, max_new_tokens: int, after: float) -> tuple[float, str, int]:
    """(seconds from the request to the run's end, end state, tokens generated before it stopped)."""
    from django.utils import timezone

    from training import services
    from training.models import TrainingRun

    run = services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH, config={
        "max_new_tokens": max_new_tokens, "completions_per_prompt": K, "temperature": 1.0, "prompts": "all"})
    # The first batch drawn (its progress recorded): the model is loaded and decoding, which nothing interrupts
    # before it (loading takes seconds). Then `after` seconds into the second batch.
    wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, progress__gt=0).exists())
    time.sleep(after)  # a benchmark may wait; a test never does
    asked = timezone.now()
    services.request_cancel(run=TrainingRun.objects.get(pk=run.pk))
    ended = wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, finished_at__isnull=False).first())
    return (ended.finished_at - asked) / timedelta(seconds=1), ended.state, ended.summary.get("generated_tokens", -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama instead of SmolLM2-135M")
    parser.add_argument("--repeats", type=int, default=5, help="cancels per mode")
    parser.add_argument("--load", type=int, default=os.cpu_count() or 2, help="busy processes beside the worker")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--after", type=float, default=2.0, help="seconds into the second batch to cancel")
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", str(ROOT / "models")))
    args = parser.parse_args()

    work = loop.setup(args)
    from feedback import importing
    from feedback import services as feedback_services
    from feedback.models import Project
    from training import services
    from training.models import ModelVersion

    loop.command("create_project", SLUG, "--completions-per-task", str(K), quiet=True)
    loop.command("bootstrap_models", quiet=True)
    project = Project.objects.get(slug=SLUG)
    if args.tiny:
        from training.pipeline.models import (DEFAULT_POLICY, load_tokenizer, manifest_sha256,
                                              save_pretrained_atomic, tiny_causal_lm)

        tokenizer = load_tokenizer(work / "models" / DEFAULT_POLICY)
        save_pretrained_atomic(tiny_causal_lm(tokenizer), tokenizer, work / "models" / "tiny-llama", {"kind": "policy"})
        services.register_version(project=None, name="tiny-llama", kind=ModelVersion.Kind.POLICY,
                                  path=str(work / "models" / "tiny-llama"),
                                  sha256=manifest_sha256(work / "models" / "tiny-llama"), config={}, metrics={},
                                  activate=True)
    rows = [importing.clean_row({"id": f"q-{i}", "prompt": f"Write a long story about the number {i}."}, i + 1)
            for i in range(PROMPTS)]
    feedback_services.import_prompts(project=project, rows=rows)

    hogs = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.load)]
    for hog in hogs:
        hog.start()
    results: dict[str, list[tuple[float, str, int]]] = {mode: [] for mode in MODES}
    print(f"policy: {'tiny random Llama' if args.tiny else 'SmolLM2-135M'}; {PROMPTS}×{K} rows × "
          f"{args.max_new_tokens} tokens; {args.load} busy processes on {os.cpu_count()} cores; cancel "
          f"{args.after} s into the second batch", flush=True)
    try:
        for repeat in range(args.repeats):
            for mode, poll in MODES.items():
                worker = start_worker(poll)
                try:
                    latency, state, tokens = one_cancel(project, args.max_new_tokens, args.after)
                finally:
                    worker.send_signal(signal.SIGTERM)
                    worker.wait(timeout=60)
                results[mode].append((latency, state, tokens))
                print(f"  {repeat + 1}/{args.repeats} {mode:<15} {latency:6.2f} s  {state}  "
                      f"{tokens:.0f} tokens generated", flush=True)
    finally:
        for hog in hogs:
            hog.terminate()
    print(f"\n{'mode':<15} {'median s':>9} {'max s':>7} {'runs':>5}")
    for mode, rows in results.items():
        latencies = [latency for latency, _, _ in rows]
        print(f"{mode:<15} {statistics.median(latencies):>9.2f} {max(latencies):>7.2f} {len(latencies):>5}")


if __name__ == "__main__":
    main()
