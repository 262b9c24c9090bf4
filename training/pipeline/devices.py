"""Where training runs: one device choice for every pipeline entry point, and how many torch threads it uses.

`choose_device()`: CUDA (bf16 mixed precision when the GPU supports it, else fp32), else Apple MPS (fp32),
else the CPU in fp32 (bf16 on this kind of CPU is ~300x slower). Weights stay fp32 everywhere; bf16 is
autocast (accelerate's / transformers' `mixed_precision`), so a checkpoint never depends on the device.

`torch_threads()`: `TORCH_THREADS` when set, else the cores left after the web workers (cores − 1, at least
one). A default torch on a shared 2-core box (one thread per core, spinning OpenMP waits) was measured 6×
slower than one thread next to gunicorn. Under `accelerate launch` the threads are shared by the processes.

`passive_openmp()`: the OpenMP side of the same policy, set once for the worker by its entry module
(`training.tasks`) before anything loads torch: idle OpenMP threads sleep instead of spinning against the web
server (default active waits made generation 7–9× slower under load), and OpenMP starts with `torch_threads()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# How long a launched process waits for the others at a collective: the main process evaluates the held-out
# prompts alone (before and after training) while the others wait at the next one.
PROCESS_GROUP_HOURS = 6


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda", "mps" or "cpu"
    dtype: str  # the compute dtype: "bfloat16" (autocast) or "float32"

    @property
    def mixed_precision(self) -> str:
        """accelerate's name for it: "bf16" or "no"."""
        return "bf16" if self.dtype == "bfloat16" else "no"

    @property
    def bf16(self) -> bool:
        return self.dtype == "bfloat16"

    def summary(self, processes: int = 1) -> dict[str, object]:
        """What a run records (and its page shows) about where it ran."""
        return {"device/name": self.device, "device/dtype": self.dtype, "device/processes": processes}

    def describe(self, processes: int = 1) -> str:
        return f"{self.device} {self.dtype}" + (f" on {processes} processes" if processes > 1 else "")


def choose_device() -> DeviceChoice:
    """CUDA (bf16 where supported) or Apple MPS when present, the CPU in fp32 otherwise."""
    import torch

    if torch.cuda.is_available():
        return DeviceChoice("cuda", "bfloat16" if torch.cuda.is_bf16_supported() else "float32")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return DeviceChoice("mps", "float32")
    return DeviceChoice("cpu", "float32")


def torch_threads(processes: int = 1) -> int:
    """Threads per process: TORCH_THREADS (default: cores − 1, at least 1) shared by `processes` processes."""
    raw = os.environ.get("TORCH_THREADS", "").strip()
    cores = os.cpu_count() or 1
    total = int(raw) if raw.isdigit() and int(raw) > 0 else max(1, cores - 1 if cores > 2 else 1)
    return max(1, total // max(1, processes))


def passive_openmp() -> None:
    """OMP_WAIT_POLICY=PASSIVE and OMP_NUM_THREADS=torch_threads() unless the environment sets them. OpenMP reads
    both once, when torch loads it: call this before the first `import torch` (child processes inherit it)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OMP_NUM_THREADS", str(torch_threads()))


def apply_torch_threads(processes: int = 1) -> int:
    """Set torch's intra-op threads from `torch_threads`; returns the number set."""
    import torch

    threads = torch_threads(processes)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def is_main_process() -> bool:
    """True outside `accelerate launch` and in its process of rank 0 (the only one that saves)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)
