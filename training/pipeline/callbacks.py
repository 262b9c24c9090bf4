"""How a trainer talks to whoever runs it: progress and metrics out (`on_step`), cancellation in
(`should_stop`), and the exception that says training stopped on request. Plain callables, so the
pipeline stays free of Django: the worker passes closures that write to the database."""

from __future__ import annotations

from typing import Callable

OnStep = Callable[[int, dict[str, float]], None]  # (step, one flat dict of namespaced floats)
ShouldStop = Callable[[], bool]  # polled inside generation and training steps


class TrainingCancelled(Exception):
    """`should_stop()` returned True: training stopped at `step` and nothing was saved."""

    def __init__(self, step: int, what: str = "training"):
        super().__init__(f"{what} cancelled at step {step}; nothing was saved")
        self.step = step


def no_op_on_step(step: int, metrics: dict[str, float]) -> None:
    """The default `on_step`: metrics are still returned in the result's history."""


def never_stop() -> bool:
    return False
