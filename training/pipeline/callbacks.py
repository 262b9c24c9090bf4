"""How a trainer talks to whoever runs it: progress and metrics out (`on_step`), cancellation in
(`should_stop`), the exception that says training stopped on request, and what a finished trainer
returns (`TrainedModel`). Plain callables, so the pipeline stays free of Django: the worker passes
closures that write to the database. The Hugging Face `Trainer` adapter (`progress_callback`) and the
progress-bar silencer used by the TRL-based trainers live here too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OnStep = Callable[[int, dict[str, float]], None]  # (step, one flat dict of namespaced floats)
ShouldStop = Callable[[], bool]  # polled inside generation and training steps
OnBatch = Callable[[int, int], None]  # (samples drawn so far, samples to draw), after each sampling batch


class TrainingCancelled(Exception):
    """`should_stop()` returned True: training stopped at `step` and nothing was saved."""

    def __init__(self, step: int, what: str = "training"):
        super().__init__(f"{what} cancelled at step {step}; nothing was saved")
        self.step = step


@dataclass
class TrainedModel:
    """A model a trainer registered: where it is, the hash that pins it, and how training went."""

    path: Path  # the registered model directory
    manifest_sha256: str  # pins every file of it; store on the ModelVersion row
    metrics: dict[str, float | None]  # flat: train/*, eval/* (no eval/* when no held-out rows were given)
    history: list[dict[str, float]] = field(default_factory=list)  # every on_step payload, in order
    model: Any = None  # the trained model in memory (LoRA merged), as saved at `path`


@dataclass
class Budget:
    """What one run may spend: wall seconds since `started` (a `clock()` reading) and generated tokens. Spent once
    `max_seconds` have passed or more than `max_tokens` were generated (the decode step that went past is the last;
    a run that needs exactly its budget finishes). Final: `spent()` names the limit; the run must stop."""

    max_seconds: float | None = None
    max_tokens: int | None = None
    clock: Callable[[], float] = time.monotonic
    started: float | None = None
    tokens: int = 0

    TIME = "time_budget"
    TOKENS = "token_budget"

    def __post_init__(self):
        if self.started is None:
            self.started = self.clock()

    def count_tokens(self, n: int) -> None:
        self.tokens += n

    def seconds(self) -> float:
        return self.clock() - self.started

    def spent(self) -> str | None:
        """`Budget.TOKENS` or `Budget.TIME` once that limit is reached, else None."""
        if self.max_tokens is not None and self.tokens > self.max_tokens:
            return self.TOKENS
        if self.max_seconds is not None and self.seconds() >= self.max_seconds:
            return self.TIME
        return None


# Who hears about generated tokens: set by whoever runs a job (`counting_tokens`), read by the sampler at every
# decode step. A context variable and not a parameter, so every sampler a runner reaches (publishing, PPO's
# rollouts, RLOO/GRPO, a DPO round's sampling) is counted without each passing a counter down.
_token_counter: ContextVar[Callable[[int], None] | None] = ContextVar("token_counter", default=None)


@contextlib.contextmanager
def counting_tokens(counter: Callable[[int], None]) -> Iterator[None]:
    """Inside the block, `count_generated(n)` calls `counter(n)` (in this thread and context only)."""
    reset = _token_counter.set(counter)
    try:
        yield
    finally:
        _token_counter.reset(reset)


def count_generated(n: int) -> None:
    """`n` tokens were just generated (one decode step of `n` rows); a no-op outside `counting_tokens`."""
    counter = _token_counter.get()
    if counter is not None:
        counter(n)


def no_op_on_step(step: int, metrics: dict[str, float]) -> None:
    """The default `on_step`: metrics are still returned in the result's history."""


def never_stop() -> bool:
    return False


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Silence datasets' and transformers' progress bars (job logs read line by line), then restore them."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_were_on = not datasets.are_progress_bars_disabled()
    transformers_were_on = hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if datasets_were_on:
            datasets.enable_progress_bars()
        if transformers_were_on:
            hf_logging.enable_progress_bar()


def progress_callback(on_step: OnStep | None, should_stop: ShouldStop | None, history: list[dict[str, float]]):
    """A transformers `TrainerCallback` forwarding the trainer's logs to `on_step` (and into `history`) and
    polling `should_stop` after every step; its `cancelled` attribute says whether it stopped the run."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        cancelled = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            metrics = {key: float(value) for key, value in logs.items() if isinstance(value, (int, float))}
            history.append({"step": float(state.global_step), **metrics})
            if on_step is not None:
                on_step(state.global_step, metrics)

        def on_step_end(self, args, state, control, **kwargs):
            if should_stop is not None and should_stop():
                self.cancelled = True
                control.should_training_stop = True

    return ProgressCallback()
