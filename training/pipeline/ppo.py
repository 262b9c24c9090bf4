"""PPO for language models, readable top to bottom (after Ziegler et al. 2019, CleanRL and the old TRL PPO).

One iteration:
    rollout (batched sampling, KV cache) → score (a reward function on strings, so the reward model may
    use another tokenizer) → missing-EOS penalty → per-token KL to the frozen reference → KL-shaped
    rewards (the score lands on the last token) → [whiten rewards] → GAE → ppo_epochs × minibatches of
    the clipped policy loss + clipped value loss → metrics → stop checks (NaN/inf, KL bound, reward
    collapse, cancellation).

With LoRA the reference is the same model with its adapters disabled, so there is no second copy in
memory; without LoRA it is a frozen deep copy. The value head is a linear layer on the last hidden
state. Before and after training the policy is evaluated on held-out prompts; `PPOResult.passes_gate`
is True only when training ended normally, the new policy's eval reward beats its parent's and its
KL to the reference is under the bound — callers publish nothing otherwise.

Dropout stays off (the model is kept in eval mode; gradients flow all the same), so the old and new
log-probabilities of a token differ only through the updates; only a LoRA dropout asked for in the
settings is active, and only during the updates. A non-finite reward stops
the run before any update uses it, and a non-finite loss or gradient before the optimiser steps, so
the returned weights are never NaN.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import PPOConfig
from .data import TextOrMessages, prompt_dataset
from .generate import Samples, sample_ids

RewardFn = Callable[[list[TextOrMessages], list[str]], Sequence[float]]
OnStep = Callable[[int, dict[str, float]], None]
ShouldStop = Callable[[], bool]
AgreementFn = Callable[[list[TextOrMessages], list[str]], float]


# --- pure helpers (tested on hand-computed tensors) -----------------------------------------------------------


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of the masked values."""
    mean = masked_mean(values, mask)
    count = mask.sum()
    return ((values - mean) ** 2 * mask).sum() / (count - 1).clamp(min=1)


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x − mean) / std over the masked entries; with shift_mean=False the mean is added back."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens (mask 1), right-padded. Returns (advantages, returns)."""
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token KL estimate between the policy and the reference on the sampled tokens."""
    log_ratio = logprobs - ref_logprobs
    if kind == "k1":
        return log_ratio
    if kind == "k3":  # Schulman's unbiased, always-positive estimator
        return torch.expm1(-log_ratio) + log_ratio
    if kind == "mse":
        return 0.5 * log_ratio**2
    raise ValueError(f"unknown KL estimator {kind!r}")


@dataclass
class PPOLosses:
    policy: torch.Tensor
    value: torch.Tensor
    clipfrac: torch.Tensor
    value_clipfrac: torch.Tensor
    approx_kl: torch.Tensor


def ppo_losses(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, values: torch.Tensor,
    old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange: float, cliprange_value: float,
) -> PPOLosses:
    """The clipped surrogate objective and the clipped value loss (both to minimise), with diagnostics."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    policy_loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)

    values_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    value_loss_unclipped = (values - returns) ** 2
    value_loss_clipped = (values_clipped - returns) ** 2
    value_loss = 0.5 * masked_mean(torch.maximum(value_loss_unclipped, value_loss_clipped), mask)
    value_clipfrac = masked_mean((value_loss_clipped > value_loss_unclipped).float(), mask)
    approx_kl = 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)
    return PPOLosses(policy_loss, value_loss, clipfrac, value_clipfrac, approx_kl)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.gather(F.log_softmax(logits, dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    probs = F.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


class FixedKLController:
    def __init__(self, coef: float):
        self.value = coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon)  (Ziegler et al. 2019)."""

    def __init__(self, coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1.0))
        self.value *= 1.0 + error * n_steps / self.horizon


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    var_returns = masked_var(returns, mask)
    return float(1.0 - masked_var(returns - values, mask) / var_returns) if var_returns > 0 else float("nan")


# --- the model pieces -----------------------------------------------------------------------------------------


class ValueHead(nn.Module):
    """A scalar value per position from the policy's last hidden state."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.bias)
        nn.init.normal_(self.summary.weight, std=1.0 / math.sqrt(hidden_size + 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden).squeeze(-1)


@dataclass
class Batch:
    """Right-padded query+response sequences; response-aligned tensors cover tokens[:, 1:]."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor  # 1 on positions (in tokens[:, 1:]) that are response tokens


def make_batch(samples: Samples, pad_id: int) -> Batch:
    sequences = [q + r for q, r in zip(samples.query_ids, samples.response_ids)]
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    response_mask = torch.zeros((len(sequences), width - 1))
    for row, (query, response) in enumerate(zip(samples.query_ids, samples.response_ids)):
        seq = query + response
        input_ids[row, : len(seq)] = torch.tensor(seq)
        attention_mask[row, : len(seq)] = 1  # from lengths: a pad id inside the prompt stays visible
        response_mask[row, len(query) - 1 : len(seq) - 1] = 1
    return Batch(input_ids, attention_mask, response_mask)


def forward_logprobs(model, value_head: ValueHead | None, batch: Batch, temperature: float, with_entropy: bool = False):
    """Log-probs of the taken tokens (and values, entropy) aligned with tokens[:, 1:]."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                 output_hidden_states=value_head is not None, use_cache=False)
    logits = out.logits[:, :-1].float() / temperature
    logprobs = logprobs_from_logits(logits, batch.input_ids[:, 1:])
    values = value_head(out.hidden_states[-1][:, :-1].float()) if value_head is not None else None
    entropy = entropy_from_logits(logits) if with_entropy else None
    return logprobs, values, entropy


# --- training -------------------------------------------------------------------------------------------------


@dataclass
class EvalReport:
    reward: float
    kl: float
    length: float
    agreement: float | None = None


@dataclass
class PPOResult:
    model: Any  # the trained policy (a peft model with LoRA: `merged_policy` folds the adapters in)
    value_head: ValueHead
    status: str  # completed | nan | kl_bound | reward_collapse | cancelled
    history: list[dict[str, float]] = field(default_factory=list)
    eval_before: EvalReport | None = None
    eval_after: EvalReport | None = None
    passes_gate: bool = False
    flags: list[str] = field(default_factory=list)
    message: str = ""  # why the run stopped early, or why the gate failed, in words

    def summary(self) -> dict[str, Any]:
        report = {"status": self.status, "passes_gate": self.passes_gate, "flags": self.flags,
                  "iterations": len(self.history), "message": self.message}
        for name, ev in (("before", self.eval_before), ("after", self.eval_after)):
            if ev is not None:
                report.update({f"eval_{name}/reward": ev.reward, f"eval_{name}/kl": ev.kl,
                               f"eval_{name}/length": ev.length, f"eval_{name}/agreement": ev.agreement})
        return report


def _reference(policy, use_lora: bool, ref_model=None):
    """The frozen reference: None with LoRA (the policy with its adapters disabled), else a frozen copy
    (or the caller's `ref_model`, frozen here)."""
    if use_lora and ref_model is None:
        return None
    reference = ref_model if ref_model is not None else copy.deepcopy(policy)
    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


def _ref_logprobs(policy, reference, batch: Batch, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        if reference is None:
            with policy.disable_adapter():
                return forward_logprobs(policy, None, batch, temperature)[0]
        return forward_logprobs(reference, None, batch, temperature)[0]


def _scores(reward_fn: RewardFn, prompts, samples: Samples, missing_eos_penalty: float) -> torch.Tensor:
    raw = torch.tensor([float(x) for x in reward_fn([prompts[i] for i in samples.prompt_index], samples.texts)])
    if raw.shape != (len(samples.texts),):
        raise ValueError(f"reward_fn returned {raw.numel()} scores for {len(samples.texts)} completions")
    penalty = torch.tensor([0.0 if ended else missing_eos_penalty for ended in samples.ended])
    return raw - penalty


def evaluate(policy, reference, tokenizer, query_ids, prompts, reward_fn, cfg: PPOConfig,
             agreement_fn: AgreementFn | None = None) -> EvalReport:
    """Mean reward, summed KL to the reference and length of sampled answers to held-out prompts (fixed seed)."""
    samples = sample_ids(policy, tokenizer, query_ids, k=cfg.eval_samples_per_prompt, max_new_tokens=cfg.max_new_tokens,
                         temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed + 10_000)
    scores = _scores(reward_fn, prompts, samples, cfg.missing_eos_penalty)
    batch = make_batch(samples, tokenizer.pad_token_id)
    with torch.no_grad():
        logprobs = forward_logprobs(policy, None, batch, cfg.temperature)[0]
    ref = _ref_logprobs(policy, reference, batch, cfg.temperature)
    kl = (kl_penalty(logprobs, ref, "k1") * batch.response_mask).sum(1).mean()
    agreement = agreement_fn([prompts[i] for i in samples.prompt_index], samples.texts) if agreement_fn else None
    return EvalReport(reward=float(scores.mean()), kl=float(kl), length=float(batch.response_mask.sum(1).mean()),
                      agreement=agreement)


def train_ppo(
    cfg: PPOConfig, policy, tokenizer, reward_fn: RewardFn, train_prompts: Sequence[TextOrMessages],
    eval_prompts: Sequence[TextOrMessages], on_step: OnStep | None = None, should_stop: ShouldStop | None = None,
    agreement_fn: AgreementFn | None = None, ref_model=None,
) -> PPOResult:
    """Optimise `policy` against `reward_fn` with PPO; see the module docstring for the loop.

    reward_fn(prompts, completions) -> one float per completion (prompts as given: text or chat messages).
    agreement_fn(prompts, completions) -> one float (e.g. a held-out judge's mean score or agreement), read
    before and after training for the reward-hacking flag. ref_model: a frozen reference to use instead of
    the default (LoRA: the policy with adapters disabled; full fine-tuning: a frozen deep copy); it is
    never trained. on_step(iteration, metrics) after every iteration; should_stop() polled before each.
    """
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    # --- setup: LoRA, reference, value head, optimiser ----------------------------------------------------
    if cfg.use_lora:
        from peft import get_peft_model

        from .models import lora_config

        lora = lora_config(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
        policy = get_peft_model(policy, lora)
    reference = _reference(policy, cfg.use_lora, ref_model)
    policy.eval()  # dropout off (see the module docstring); the optimiser trains it all the same
    value_head = ValueHead(policy.config.hidden_size)
    trainable = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, eps=1e-5)
    kl_ctl = (AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl
              else FixedKLController(cfg.init_kl_coef))

    train_set = prompt_dataset(list(train_prompts), tokenizer, max_prompt_length=cfg.max_prompt_length)
    eval_set = prompt_dataset(list(eval_prompts), tokenizer, max_prompt_length=cfg.max_prompt_length)
    if len(train_set) == 0:
        raise ValueError("no training prompt fits max_prompt_length")
    train_queries = train_set["input_ids"]
    train_texts = [train_prompts[i] for i in train_set["prompt_index"]]
    eval_queries = eval_set["input_ids"]
    eval_texts = [eval_prompts[i] for i in eval_set["prompt_index"]]

    result = PPOResult(model=policy, value_head=value_head, status="completed")
    def held_out_eval() -> EvalReport:
        return evaluate(policy, reference, tokenizer, eval_queries, eval_texts, reward_fn, cfg, agreement_fn)

    result.eval_before = held_out_eval() if eval_queries else None
    first_reward: float | None = None
    seen_scores = torch.empty(0)
    order = torch.randperm(len(train_queries), generator=generator).tolist()
    cursor = 0

    for iteration in range(1, cfg.num_iterations + 1):
        if should_stop is not None and should_stop():
            result.status, result.message = "cancelled", f"cancelled before iteration {iteration}"
            break
        iteration_started = time.perf_counter()
        # --- rollout ----------------------------------------------------------------------------------------
        picks = []
        while len(picks) < cfg.batch_size:
            if cursor == len(order):
                order, cursor = torch.randperm(len(train_queries), generator=generator).tolist(), 0
            picks.append(order[cursor])
            cursor += 1
        started = time.perf_counter()
        samples = sample_ids(policy, tokenizer, [train_queries[i] for i in picks], k=1,
                             max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                             seed=cfg.seed + iteration)
        samples.prompt_index = [picks[i] for i in samples.prompt_index]
        sampling_s = time.perf_counter() - started

        # --- score ------------------------------------------------------------------------------------------
        started = time.perf_counter()
        scores = _scores(reward_fn, train_texts, samples, cfg.missing_eos_penalty)
        scoring_s = time.perf_counter() - started
        if not torch.isfinite(scores).all():  # stop before any update learns from it
            bad = int((~torch.isfinite(scores)).sum())
            result.status, result.message = "nan", f"iteration {iteration}: reward_fn gave {bad} non-finite score(s)"
            result.history.append({"objective/reward": float(scores.mean()), "time/sampling_s": sampling_s,
                                   "time/scoring_s": scoring_s})
            if on_step is not None:
                on_step(iteration, result.history[-1])
            break

        # --- old log-probs, values, reference log-probs -----------------------------------------------------
        started = time.perf_counter()
        batch = make_batch(samples, tokenizer.pad_token_id)
        mask = batch.response_mask
        with torch.no_grad():
            old_logprobs, old_values, _ = forward_logprobs(policy, value_head, batch, cfg.temperature)
        forward_s = time.perf_counter() - started
        started = time.perf_counter()
        ref_logprobs = _ref_logprobs(policy, reference, batch, cfg.temperature)
        reference_s = time.perf_counter() - started

        # --- KL-shaped rewards and GAE ----------------------------------------------------------------------
        kl = kl_penalty(old_logprobs, ref_logprobs, cfg.kl_estimator) * mask
        rewards = -kl_ctl.value * kl
        last = (mask.sum(1) - 1).long() + mask.argmax(1)  # index of each response's last token
        rewards[torch.arange(len(scores)), last] += scores
        if cfg.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False)
        advantages, returns = compute_gae(rewards, old_values * mask, mask, cfg.gamma, cfg.lam)
        advantages = whiten(advantages, mask)

        # --- epochs × minibatches ---------------------------------------------------------------------------
        started = time.perf_counter()
        stats: dict[str, list[float]] = {"policy": [], "value": [], "clipfrac": [], "approx_kl": [], "entropy": []}
        bad_update = ""
        policy.train(cfg.use_lora and cfg.lora_dropout > 0)  # dropout only if LoRA dropout was asked for
        for _ in range(cfg.ppo_epochs):
            if bad_update:
                break
            perm = torch.randperm(len(scores), generator=generator)
            for start in range(0, len(scores), cfg.mini_batch_size):
                idx = perm[start : start + cfg.mini_batch_size]
                mb = Batch(batch.input_ids[idx], batch.attention_mask[idx], mask[idx])
                logprobs, values, entropy = forward_logprobs(policy, value_head, mb, cfg.temperature, with_entropy=True)
                losses = ppo_losses(logprobs, old_logprobs[idx], advantages[idx], values, old_values[idx],
                                    returns[idx], mb.response_mask, cfg.cliprange, cfg.cliprange_value)
                loss = losses.policy + cfg.vf_coef * losses.value
                optimizer.zero_grad()
                if not torch.isfinite(loss):
                    bad_update = f"iteration {iteration}: non-finite loss (policy {losses.policy.item()}, " \
                                 f"value {losses.value.item()}; logits or values overflowed)"
                    break
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                if not torch.isfinite(grad_norm):
                    bad_update = f"iteration {iteration}: non-finite gradient norm"
                    optimizer.zero_grad()
                    break
                optimizer.step()
                stats["policy"].append(losses.policy.item())
                stats["value"].append(losses.value.item())
                stats["clipfrac"].append(losses.clipfrac.item())
                stats["approx_kl"].append(losses.approx_kl.item())
                stats["entropy"].append(float(masked_mean(entropy.detach(), mb.response_mask)))
        policy.eval()
        update_s = time.perf_counter() - started

        # --- metrics ----------------------------------------------------------------------------------------
        mean_kl = float(kl.sum(1).mean())
        mean_score = float(scores.mean())
        metrics = {
            "objective/reward": mean_score,
            "objective/kl": mean_kl,
            "objective/rlhf_reward": mean_score - kl_ctl.value * mean_kl,
            "objective/kl_coef": kl_ctl.value,
            "objective/entropy": _mean(stats["entropy"]),
            "policy/clipfrac": _mean(stats["clipfrac"]),
            "policy/approx_kl": _mean(stats["approx_kl"]),
            "losses/policy": _mean(stats["policy"]),
            "losses/value": _mean(stats["value"]),
            "val/explained_variance": explained_variance(old_values, returns, mask),
            "response/length_mean": float(mask.sum(1).mean()),
            "response/ended_share": sum(samples.ended) / len(samples.ended),
            "time/sampling_s": sampling_s, "time/scoring_s": scoring_s, "time/forward_s": forward_s,
            "time/reference_s": reference_s, "time/update_s": update_s,
        }
        iteration_s = time.perf_counter() - iteration_started
        metrics["time/iteration_s"] = iteration_s
        metrics["time/samples_per_s"] = len(scores) / iteration_s
        metrics["time/tokens_per_s"] = float(batch.attention_mask.sum()) / iteration_s
        result.history.append(metrics)
        if on_step is not None:
            on_step(iteration, metrics)

        # --- stop checks ------------------------------------------------------------------------------------
        if bad_update:
            result.status, result.message = "nan", bad_update
            break
        not_finite = [k for k, v in metrics.items() if k != "val/explained_variance" and not math.isfinite(v)]
        if not_finite or not all(torch.isfinite(p).all() for p in trainable):
            result.status = "nan"
            result.message = f"iteration {iteration}: non-finite {', '.join(not_finite) or 'weights'}"
            break
        if mean_kl > cfg.kl_bound:
            result.status = "kl_bound"
            result.message = f"iteration {iteration}: KL to the reference {mean_kl:.3g} > kl_bound {cfg.kl_bound}"
            break
        # Reward collapse: the batch mean falls far below the first batch's, measured in the spread of the
        # scores of earlier batches (pooled, so differences between prompts count as noise); judged from the
        # third batch on, once two batches give that spread.
        if first_reward is None:
            first_reward = mean_score
        elif len(seen_scores) > len(scores) and \
                mean_score < first_reward - cfg.reward_collapse * max(float(seen_scores.std()), 1e-6):
            result.status = "reward_collapse"
            result.message = (f"iteration {iteration}: mean reward {mean_score:.3g} fell more than "
                              f"{cfg.reward_collapse} std below the first batch's {first_reward:.3g}")
            break
        seen_scores = torch.cat([seen_scores, scores])
        kl_ctl.update(mean_kl, cfg.batch_size)

    # --- evaluation, gate and flags -----------------------------------------------------------------------------
    if result.status in {"completed", "kl_bound", "reward_collapse"} and eval_queries:
        result.eval_after = held_out_eval()
    before, after = result.eval_before, result.eval_after
    result.passes_gate = bool(
        result.status == "completed" and before is not None and after is not None
        and math.isfinite(after.reward) and after.reward > before.reward + cfg.gate_min_improvement
        and after.kl < cfg.kl_bound
    )
    if not result.passes_gate and not result.message:
        if before is None or after is None:
            result.message = "no held-out prompts to evaluate on: the gate cannot pass"
        elif not (math.isfinite(after.reward) and after.reward > before.reward + cfg.gate_min_improvement):
            result.message = (f"held-out reward {after.reward:.4g} does not beat the parent's {before.reward:.4g} "
                              f"by more than {cfg.gate_min_improvement}")
        else:
            result.message = f"held-out KL to the reference {after.kl:.3g} >= kl_bound {cfg.kl_bound}"
    if before is not None and after is not None and after.reward > before.reward:
        if before.agreement is not None and after.agreement is not None and after.agreement < before.agreement:
            result.flags.append("possible_reward_hacking: reward rose while the held-out judge's agreement fell")
        if after.length > 1.3 * max(before.length, 1.0):
            result.flags.append("possible_reward_hacking: reward rose while answers grew much longer")
    return result


def merged_policy(result: PPOResult):
    """The trained policy as a plain transformers model (LoRA merged into the weights)."""
    model = result.model
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def save_policy(result: PPOResult, tokenizer, dest: Path, metadata: dict[str, Any]) -> str:
    """Save the merged policy, its tokenizer and the value head (all safetensors) atomically into `dest` (which
    must not exist) with a manifest; returns the manifest's sha256."""
    from safetensors.torch import save_file

    from .models import save_model_atomic

    model = merged_policy(result)

    def write(tmp_dir: Path) -> None:
        model.save_pretrained(tmp_dir, safe_serialization=True)
        tokenizer.save_pretrained(tmp_dir)
        head = {k: v.contiguous() for k, v in result.value_head.state_dict().items()}
        save_file(head, str(tmp_dir / "value_head.safetensors"))

    return save_model_atomic(write, Path(dest), metadata)
