"""PPO for language models, readable top to bottom (after Ziegler et al. 2019, CleanRL and the old TRL PPO).

One iteration (`train_ppo`'s loop):
    sample a prompt batch → score (a reward function on strings, so the reward model may use another
    tokenizer; a response that never ends loses `missing_eos_penalty_std` running std of the scores) → old
    log-probs and values (the sampler's own, no second forward), reference log-probs → KL-shaped rewards (the score lands on the last token) → GAE →
    ppo_epochs × minibatches of the clipped policy loss + clipped value loss → metrics → stop reason (NaN/inf,
    KL bound, reward collapse, cancellation).

The pure pieces live in `math.py`, the publication gate in `gate.py`. With LoRA the reference is the same model
with its adapters disabled (no second copy); without LoRA a frozen deep copy. The value head is a linear layer on the
last hidden state, initialised to output zero, saved next to the policy and loaded back from it.

Sampling goes through `sampling.generate.sample_ids`, publishing's sampler, with the LoRA adapters merged into the base
weights for the whole rollout (`sampling.generate.merged_lora`) and unmerged bit for bit before the reference pass.

Modes: every pass without gradients (sampling, reference, evaluation) runs with the policy in eval mode (dropout
off); only the updates run in train mode, and eval mode is restored after them. The ratio's old log-probs are the
sampler's own (taken at each decode step, with its temperature and top-p), and the old values the value head on
the hidden states the sampler drew from; the updates' forward applies the same temperature and top-p
(`math.warp_logits`). The sampler's merged-LoRA, KV-cached, left-padded steps and the updates' unmerged,
right-padded forward agree to float rounding (SmolLM2 with a trained-looking LoRA: |Δ log-prob| ≤ 2.3e-5,
|Δ value| ≤ 1.1e-5), so the first ratio is 1 to 2e-5. A non-finite reward stops the run before any update uses it, and a non-finite loss or gradient before
the optimiser steps, so the returned weights are never NaN.

Before and after training the policy answers held-out prompts, `gate_samples_per_prompt` times each; a judge
(`held_out_judge`, else the reward) scores them, and `report.conclude` decides: `result.gate`, and `result.passes_gate`
is True only when the run also ended normally with the KL under the bound.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..callbacks import OnStep, ShouldStop, TrainingCancelled
from ..data import TextOrMessages, prompt_dataset
from ..devices import choose_device
from ..models import lora_config
from ..sampling.generate import Samples, merged_lora, sample_ids
from . import dist
from .config import PPOConfig
from .math import (
    AdaptiveKLController, FixedKLController, compute_gae, kl_penalty, kl_shaped_rewards, masked_mean, ppo_losses, whiten,
)
from .model import Batch, ValueHead, forward_logprobs, load_value_head, make_batch, value_head_path_for
from .report import EvalReport, PPOResult, conclude, iteration_metrics, stop_reason
from .state import Callbacks, Models, Prompts, RewardFn, Trainer

SAMPLING_CHUNK = 16  # sequences per generate() call; should_stop is polled between chunks


@contextmanager
def timed(times: dict[str, float], name: str) -> Iterator[None]:
    """Adds the seconds spent in the block to times[f"time/{name}_s"]."""
    started = time.perf_counter()
    try:
        yield
    finally:
        times[f"time/{name}_s"] = times.get(f"time/{name}_s", 0.0) + time.perf_counter() - started


def prompt_batches(n_prompts: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Endless batches of prompt indices: shuffled passes over the prompts, a batch may span two passes."""
    order: list[int] = []
    while True:
        while len(order) < batch_size:
            order += torch.randperm(n_prompts, generator=generator).tolist()
        yield order[:batch_size]
        order = order[batch_size:]


@dataclass
class Rollout:
    """One iteration's experience: the samples, their scores and everything the updates need."""

    samples: Samples
    batch: Batch
    raw_scores: torch.Tensor  # the reward function's scores
    scores: torch.Tensor  # after the missing-EOS penalty
    old_logprobs: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    kl: torch.Tensor | None = None  # per token, masked
    kl_base: torch.Tensor | None = None  # per token to the original base model (when one is given)
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    all_raw: torch.Tensor | None = None  # every process's raw scores (the local ones on one process)
    all_scores: torch.Tensor | None = None  # every process's penalised scores

    @property
    def mask(self) -> torch.Tensor:
        return self.batch.response_mask


def sample(t: Trainer, model, queries: list[list[int]], k: int, seed: int, iteration: int) -> Samples:
    """Sample k answers per query in chunks, polling should_stop between chunks; prompt_index points into queries.
    Each token's log-prob and last hidden state come along (`Samples.logprobs`, `.hidden`)."""
    out, per_chunk = Samples(), max(1, SAMPLING_CHUNK // k)
    with merged_lora(model):  # once for every chunk; unmerged (bit for bit) before anything else runs
        for chunk, start in enumerate(range(0, len(queries), per_chunk)):
            t.poll(iteration, "PPO sampling")
            part = sample_ids(model, t.models.tokenizer, queries[start : start + per_chunk], k=k,
                              max_new_tokens=t.cfg.max_new_tokens, temperature=t.cfg.temperature, top_p=t.cfg.top_p,
                              seed=seed + 7919 * chunk, batch_size=SAMPLING_CHUNK, should_stop=t.callbacks.should_stop,
                              with_logprobs=True)
            out.prompt_index += [start + i for i in part.prompt_index]
            for name in ("query_ids", "response_ids", "texts", "ended", "logprobs", "hidden"):
                getattr(out, name).extend(getattr(part, name))
    return out


def score(reward_fn: RewardFn, prompts: Sequence[TextOrMessages], samples: Samples) -> torch.Tensor:
    raw = torch.tensor([float(x) for x in reward_fn([prompts[i] for i in samples.prompt_index], samples.texts)])
    if raw.shape != (len(samples.texts),):
        raise ValueError(f"reward_fn returned {raw.numel()} scores for {len(samples.texts)} completions")
    return raw


def collect_rollout(t: Trainer, picks: list[int], iteration: int, times: dict[str, float]) -> Rollout:
    """Sample one answer per picked prompt and score it (the missing-EOS penalty in running std of the scores).
    Under accelerate each process takes its share of `picks`; the moments see every process's scores."""
    with timed(times, "sampling"):
        if t.accelerator is not None:
            samples = dist.sample_share(t, *dist.share(picks, t.accelerator), iteration)
        else:
            samples = sample(t, t.models.policy, [t.prompts.train_queries[i] for i in picks], 1, t.cfg.seed + iteration,
                             iteration)
            samples.prompt_index = [picks[i] for i in samples.prompt_index]
    with timed(times, "scoring"):
        raw = score(t.callbacks.reward_fn, t.prompts.train_texts, samples)
    all_raw = dist.gather(t.accelerator, raw)
    if torch.isfinite(all_raw).all():
        t.moments.update(all_raw)
    penalty = t.cfg.missing_eos_penalty_std * t.moments.std
    scores = raw - torch.tensor([0.0 if ended else penalty for ended in samples.ended])
    return Rollout(samples, make_batch(samples, t.models.tokenizer.pad_token_id), raw, scores, all_raw=all_raw,
                   all_scores=dist.gather(t.accelerator, scores))


@torch.no_grad()
def logprobs_under(t: Trainer, model, batch: Batch, value_head: ValueHead | None = None):
    """Log-probs (and values) under `model` in eval mode; model None means the policy with adapters disabled."""
    if model is None:
        with t.models.policy.disable_adapter():
            return logprobs_under(t, t.models.policy, batch, value_head)
    model.eval()
    logprobs, values, _ = forward_logprobs(model, value_head, batch.to(t.device), t.cfg.temperature, t.cfg.top_p)
    return logprobs.cpu(), values.cpu() if values is not None else None


@torch.no_grad()
def old_logprobs_and_values(t: Trainer, r: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    """The ratio's old log-probs and the old values from the sampler's own forward passes, laid out like the
    batch (response positions; 0 elsewhere): the log-probs the tokens were drawn with and the value head on the
    hidden states they were drawn from, with no second forward. The sampler ran the same policy in eval mode
    with its LoRA merged (equal to the unmerged forward up to float rounding) and the same temperature and
    top-p as `forward_logprobs`; test_ppo_learning pins both against a recomputing forward."""
    where = r.mask.bool()
    logprobs = torch.zeros(r.mask.shape).masked_scatter(where, torch.cat(r.samples.logprobs))
    t.models.value_head.eval()
    step_values = t.models.value_head(torch.cat(r.samples.hidden).to(t.device)).cpu()
    return logprobs, torch.zeros(r.mask.shape).masked_scatter(where, step_values)


def add_old_and_reference(t: Trainer, r: Rollout, times: dict[str, float]) -> None:
    with timed(times, "forward"):
        r.old_logprobs, r.old_values = old_logprobs_and_values(t, r)
    with timed(times, "reference"):
        r.ref_logprobs = logprobs_under(t, t.models.reference, r.batch)[0]
        r.kl = kl_penalty(r.old_logprobs, r.ref_logprobs, t.cfg.kl_estimator) * r.mask
        if t.models.base_model is not None:
            r.kl_base = kl_penalty(r.old_logprobs, logprobs_under(t, t.models.base_model, r.batch)[0], "k1") * r.mask


def add_advantages(t: Trainer, r: Rollout) -> None:
    """KL-shaped rewards → [whitened] → GAE with the old values → advantages centred and divided by the running
    std of the scores (the reward's scale), not by their own std: under an uninformative reward the advantages
    are value-estimate errors, and whitening would blow that noise up to unit-size updates."""
    rewards = kl_shaped_rewards(r.scores, r.kl, r.mask, t.kl_ctl.value)
    if t.cfg.whiten_rewards:
        rewards = whiten(rewards, r.mask, shift_mean=False)
    advantages, r.returns = compute_gae(rewards, r.old_values * r.mask, r.mask, t.cfg.gamma, t.cfg.lam)
    scale = t.moments.std if t.moments.std > 1e-8 else 1.0
    r.advantages = (advantages - dist.masked_mean_all(t.accelerator, advantages, r.mask)) / scale * r.mask


def evaluate(t: Trainer, model) -> EvalReport:
    """gate_samples_per_prompt answers to each held-out prompt (fixed seed): reward, judge's reward per prompt,
    lengths, KL to the reference (and to the base)."""
    k = t.cfg.gate_samples_per_prompt
    samples = sample(t, model, t.prompts.eval_queries, k, t.cfg.seed + 10_000, 0)
    prompts = [t.prompts.eval_texts[i] for i in samples.prompt_index]
    rewards = score(t.callbacks.reward_fn, t.prompts.eval_texts, samples)
    judged = rewards if t.callbacks.judge is t.callbacks.reward_fn else torch.tensor([float(x) for x in t.callbacks.judge(prompts, samples.texts)])
    batch = make_batch(samples, t.models.tokenizer.pad_token_id)
    logprobs = torch.zeros(batch.response_mask.shape).masked_scatter(batch.response_mask.bool(),
                                                                     torch.cat(samples.logprobs))
    kl = (kl_penalty(logprobs, logprobs_under(t, t.models.reference, batch)[0], "k1") * batch.response_mask).sum(1)
    kl_base = kl
    if t.models.base_model is not None:
        kl_base = (kl_penalty(logprobs, logprobs_under(t, t.models.base_model, batch)[0], "k1") * batch.response_mask).sum(1)
    lengths = [float(len(ids)) for ids in samples.response_ids]
    per_prompt = [[] for _ in t.prompts.eval_queries], [[] for _ in t.prompts.eval_queries]
    for i, prompt in enumerate(samples.prompt_index):
        per_prompt[0][prompt].append(float(judged[i]))
        per_prompt[1][prompt].append(lengths[i])
    return EvalReport(reward=float(rewards.mean()), kl=float(kl.mean()), length=sum(lengths) / len(lengths),
                      held_out_reward=float(judged.mean()), kl_base=float(kl_base.mean()),
                      judged_rewards=per_prompt[0], lengths=per_prompt[1])


def setup(cfg: PPOConfig, policy, tokenizer, reward_fn: RewardFn, train_prompts, eval_prompts, *, held_out_judge,
          ref_model, base_model, value_head_path, on_step, should_stop, accelerator=None) -> Trainer:
    """LoRA, the frozen reference, the value head (loaded from beside the policy if saved), AdamW, the prompts."""
    torch.manual_seed(cfg.seed)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    head_path = value_head_path_for(policy, value_head_path)
    if cfg.use_lora:
        from peft import get_peft_model

        policy = get_peft_model(policy, lora_config(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout))
    reference = None if cfg.use_lora and ref_model is None else ref_model if ref_model is not None else copy.deepcopy(policy)
    for frozen in (reference, base_model):
        if frozen is not None:
            frozen.eval().requires_grad_(False)
    policy.eval()
    value_head = load_value_head(policy.config.hidden_size, head_path)
    trainable = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
    horizon = cfg.adaptive_kl_horizon_iterations * cfg.batch_size
    kl_ctl = (AdaptiveKLController(cfg.init_kl_coef, cfg.adaptive_kl_target, horizon) if cfg.adaptive_kl
              else FixedKLController(cfg.init_kl_coef))
    train_set = prompt_dataset(list(train_prompts), tokenizer, max_prompt_length=cfg.max_prompt_length)
    eval_set = prompt_dataset(list(eval_prompts), tokenizer, max_prompt_length=cfg.max_prompt_length)
    if len(train_set) == 0:
        raise ValueError("no training prompt fits max_prompt_length")
    t = Trainer(
        cfg=cfg,
        models=Models(policy=policy, tokenizer=tokenizer, reference=reference, base_model=base_model,
                      value_head=value_head),
        prompts=Prompts(train_queries=list(train_set["input_ids"]),
                        train_texts=[train_prompts[i] for i in train_set["prompt_index"]],
                        eval_queries=list(eval_set["input_ids"]),
                        eval_texts=[eval_prompts[i] for i in eval_set["prompt_index"]]),
        callbacks=Callbacks(reward_fn=reward_fn, judge=held_out_judge or reward_fn, on_step=on_step,
                            should_stop=should_stop),
        optimizer=torch.optim.AdamW(trainable, lr=cfg.learning_rate, eps=1e-5), trainable=trainable, kl_ctl=kl_ctl,
        generator=torch.Generator().manual_seed(cfg.seed), accelerator=accelerator)
    if accelerator is not None:
        dist.prepare(t)
    else:
        t.device = torch.device(choose_device().device)
    for module in (t.models.policy, t.models.value_head, t.models.reference, t.models.base_model):
        if module is not None:
            module.to(t.device)
    return t


def update_epochs(t: Trainer, r: Rollout, iteration: int) -> tuple[dict[str, list[float]], str]:
    """ppo_epochs × shuffled minibatches of the clipped losses, the policy in train mode (eval mode after).
    Returns the per-minibatch stats and, if a loss or gradient was not finite, why (no step was taken then).
    Under accelerate each process's minibatch is its share of mini_batch_size; the gradients are all-reduced."""
    stats: dict[str, list[float]] = {"policy": [], "value": [], "clipfrac": [], "approx_kl": [], "entropy": []}
    size = t.cfg.mini_batch_size // (t.accelerator.num_processes if t.accelerator is not None else 1)
    t.models.policy.train()
    try:
        for _ in range(t.cfg.ppo_epochs):
            perm = torch.randperm(len(r.scores), generator=t.generator)
            for start in range(0, len(r.scores), size):
                t.poll(iteration, "PPO update")
                idx = perm[start : start + size]
                mb, on = r.batch.rows(idx).to(t.device), (lambda x: x[idx].to(t.device))
                logprobs, values, entropy = forward_logprobs(
                    t.models.train_policy or t.models.policy, t.models.train_value_head or t.models.value_head, mb,
                    t.cfg.temperature, t.cfg.top_p, with_entropy=True)
                losses = ppo_losses(logprobs, on(r.old_logprobs), on(r.advantages), values, on(r.old_values),
                                    on(r.returns), mb.response_mask, t.cfg.cliprange, t.cfg.cliprange_value)
                weight = dist.token_weight(t.accelerator, mb.response_mask)  # 1.0 on one process
                loss = (losses.policy + t.cfg.vf_coef * losses.value) * weight
                t.optimizer.zero_grad()
                if dist.any_process(t.accelerator, not torch.isfinite(loss)):
                    return stats, (f"iteration {iteration}: non-finite loss (policy {losses.policy.item()}, "
                                   f"value {losses.value.item()}; logits or values overflowed)")
                t.accelerator.backward(loss) if t.accelerator is not None else loss.backward()
                if not torch.isfinite(nn.utils.clip_grad_norm_(t.trainable, t.cfg.max_grad_norm)):
                    t.optimizer.zero_grad()
                    return stats, f"iteration {iteration}: non-finite gradient norm"
                t.optimizer.step()
                for name in ("policy", "value", "clipfrac", "approx_kl"):
                    stats[name].append(getattr(losses, name).item() * weight)
                stats["entropy"].append(float(masked_mean(entropy, mb.response_mask)) * weight)
    finally:
        t.models.policy.eval()
    return stats, ""


def train_loop(t: Trainer, result: PPOResult) -> None:
    """sample → score → old and reference log-probs → KL-shaped rewards and GAE → update epochs → metrics → stop."""
    batches = prompt_batches(len(t.prompts.train_queries), t.cfg.batch_size, t.generator)
    for iteration, picks in zip(range(1, t.cfg.num_iterations + 1), batches):
        t.poll(iteration, "PPO")
        times: dict[str, float] = {}
        stats, bad_update = None, ""
        with timed(times, "iteration"):
            rollout = collect_rollout(t, picks, iteration, times)
            if torch.isfinite(rollout.all_raw).all():
                add_old_and_reference(t, rollout, times)
                add_advantages(t, rollout)
                with timed(times, "update"):
                    stats, bad_update = update_epochs(t, rollout, iteration)
        metrics = dist.reduce_metrics(t.accelerator, iteration_metrics(t, rollout, stats, times))
        result.history.append(metrics)
        if t.callbacks.on_step is not None:
            t.callbacks.on_step(iteration, metrics)
        result.status, result.message = stop_reason(t, rollout, result.history, iteration, bad_update)
        if result.status != "completed":
            return
        t.kl_ctl.update(metrics["objective/kl"], t.cfg.batch_size)


def train_ppo(
    cfg: PPOConfig, policy, tokenizer, reward_fn: RewardFn, train_prompts: Sequence[TextOrMessages],
    eval_prompts: Sequence[TextOrMessages], *, on_step: OnStep | None = None, should_stop: ShouldStop | None = None,
    held_out_judge: RewardFn | None = None, ref_model=None, base_model=None, value_head_path: Path | None = None,
    accelerator=None,
) -> PPOResult:
    """Optimise `policy` against `reward_fn` with PPO; see the module docstring for the loop.

    reward_fn(prompts, completions) and held_out_judge(prompts, completions) -> one float per completion (prompts
    as given: text or chat messages); the judge (a reward model PPO does not optimise; default: reward_fn) scores
    the gate's held-out samples. ref_model: a frozen reference instead of the default (LoRA: the policy with
    adapters disabled; full fine-tuning: a frozen deep copy). base_model: the original base, for the
    `objective/kl_base` log (default: the reference). value_head_path: a saved value head (default: the
    policy directory's value_head.safetensors, if any). on_step(iteration, metrics) after every iteration;
    should_stop() polled before each iteration, between sampling chunks and minibatches: status "cancelled".
    accelerator: accelerate's Accelerator when the run is launched on several processes (see `dist`); the
    held-out evaluation and the gate then run on the main process only.
    """
    t = setup(cfg, policy, tokenizer, reward_fn, train_prompts, eval_prompts, held_out_judge=held_out_judge,
              ref_model=ref_model, base_model=base_model, value_head_path=value_head_path, on_step=on_step,
              should_stop=should_stop, accelerator=accelerator)
    result = PPOResult(model=t.models.policy, value_head=t.models.value_head, status="completed")
    try:
        result.eval_before = evaluate(t, t.models.policy) if t.prompts.eval_queries and t.is_main else None
        t.lockstep = accelerator is not None
        train_loop(t, result)
        t.lockstep = False
        if result.status in {"completed", "kl_bound", "reward_collapse"} and t.prompts.eval_queries and t.is_main:
            result.eval_after = evaluate(t, t.models.policy)
    except TrainingCancelled as cancelled:
        result.status, result.message = "cancelled", str(cancelled)
        return result
    return conclude(cfg, result)

