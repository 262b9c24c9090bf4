"""PPO on several processes through Hugging Face `accelerate` (DDP; DeepSpeed or FSDP through accelerate configs).

Every process draws the same global prompt batch (same generator, same seed), samples and scores its own
contiguous share of it, and trains on that share: `accelerator.backward` all-reduces the gradients, so the
weights stay identical everywhere. What decides the run is computed over all processes: the running
moments of the scores (the EOS penalty, the advantage scale) and the advantages' centring use the gathered
scores, the per-iteration metrics are averaged over the processes, and so the stop checks (NaN, KL bound,
reward collapse) and cancellation agree. The held-out evaluation and the gate run on the main process (the
only one that saves), over every held-out prompt.

Sampling is partition-invariant: the share is generated `rollout_chunk` prompts at a time, each chunk seeded
by its place in the global batch, so 1 and N processes sample the same answers (when batch_size / N is a
multiple of rollout_chunk) and their first iteration's losses agree.
"""

from __future__ import annotations

from typing import Any

import torch

from ..sampling.generate import Samples, merged_lora, sample_ids


def check_divisible(cfg, processes: int) -> None:
    """Every process must take the same number of gradient steps (DDP all-reduces each one)."""
    for name in ("batch_size", "mini_batch_size"):
        if getattr(cfg, name) % processes:
            raise ValueError(f"PPOConfig.{name} must be a multiple of the {processes} processes, "
                             f"got {getattr(cfg, name)}")


def share(picks: list[int], accelerator) -> tuple[list[int], int]:
    """This process's contiguous share of the global batch and the position where it starts."""
    size = len(picks) // accelerator.num_processes
    start = accelerator.process_index * size
    return picks[start : start + size], start


def any_process(accelerator, flag: bool) -> bool:
    """True on every process when `flag` is True on any of them (a collective: all processes must call it)."""
    if accelerator is None or accelerator.num_processes == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def gather(accelerator, values: torch.Tensor) -> torch.Tensor:
    """Every process's 1-d `values`, in process order, on the CPU (equal lengths on every process)."""
    if accelerator is None or accelerator.num_processes == 1:
        return values
    return accelerator.gather(values.to(accelerator.device).contiguous()).cpu()


def masked_mean_all(accelerator, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The masked mean over the rows of every process."""
    if accelerator is None or accelerator.num_processes == 1:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    sums = torch.stack([(values * mask).sum(), mask.sum()]).to(accelerator.device)
    total = accelerator.reduce(sums, reduction="sum").cpu()
    return total[0] / total[1].clamp(min=1)


def token_weight(accelerator, mask: torch.Tensor) -> float:
    """local tokens × processes / all tokens: a per-process token mean scaled by it and then averaged over the
    processes (DDP averages gradients) is the token mean over every process's rows, as on one process."""
    if accelerator is None or accelerator.num_processes == 1:
        return 1.0
    local = mask.sum().reshape(1).float()
    total = accelerator.reduce(local.clone(), reduction="sum")
    return float(local.item() * accelerator.num_processes / max(float(total.item()), 1.0))


RATES = ("time/samples_per_s", "time/tokens_per_s")  # per process: summed over the processes, not averaged


def reduce_metrics(accelerator, metrics: dict[str, float]) -> dict[str, float]:
    """Each metric averaged over the processes (rates summed); the same keys on every process."""
    if accelerator is None or accelerator.num_processes == 1:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=accelerator.device)
    means = accelerator.reduce(values, reduction="mean").cpu().tolist()
    n = accelerator.num_processes
    return {k: (v * n if k in RATES else v) for k, v in zip(keys, means)}


def sample_share(t: Any, picks: list[int], start: int, iteration: int) -> Samples:
    """Sample one answer per picked prompt, `rollout_chunk` prompts per generate() call, each chunk seeded by
    its global position; cancellation is polled (in lockstep) between chunks, never inside generate()."""
    out, chunk = Samples(), t.cfg.rollout_chunk
    with merged_lora(t.models.policy):  # once for every chunk, as on one process
        for offset in range(0, len(picks), chunk):
            t.poll(iteration, "PPO sampling")
            part_picks = picks[offset : offset + chunk]
            queries = [t.prompts.train_queries[i] for i in part_picks]
            part = sample_ids(t.models.policy, t.models.tokenizer, queries, k=1,
                              max_new_tokens=t.cfg.max_new_tokens, temperature=t.cfg.temperature, top_p=t.cfg.top_p,
                              seed=t.cfg.seed + iteration + 7919 * (start + offset), batch_size=chunk,
                              with_logprobs=True)
            out.prompt_index += [part_picks[i] for i in part.prompt_index]
            for name in ("query_ids", "response_ids", "texts", "ended", "logprobs", "hidden"):
                getattr(out, name).extend(getattr(part, name))
    return out


def prepare(t: Any) -> None:
    """Wrap the policy, the value head and the optimiser for the accelerator (DDP on several processes);
    the training forward passes go through the wrapped modules, everything else through the plain ones."""
    acc = t.accelerator
    check_divisible(t.cfg, acc.num_processes)
    t.models.train_policy, t.models.train_value_head, t.optimizer = acc.prepare(
        t.models.policy, t.models.value_head, t.optimizer)
    t.device = acc.device
