"""What a PPO run reports: the per-iteration metrics (one flat dict of namespaced floats), why it stopped, the
held-out evaluations, the gate's report and the reward-hacking flags."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..gate import GateReport, gate_test
from .config import PPOConfig
from .math import explained_variance, mean
from .verdict import GateVerdict

STATUSES = ("completed", "nan", "kl_bound", "reward_collapse", "cancelled")


@dataclass
class EvalReport:
    """Answers to the held-out prompts (gate_samples_per_prompt each, fixed seed)."""

    reward: float  # mean score of the optimised reward
    kl: float  # mean summed KL per answer to the reference
    length: float  # mean answer length in tokens
    held_out_reward: float | None = None  # the judge's mean score (the held-out reward model, else the reward)
    kl_base: float | None = None  # mean summed KL per answer to the original base model
    judged_rewards: list[list[float]] = field(default_factory=list)  # the judge's scores, per prompt
    lengths: list[list[float]] = field(default_factory=list)  # answer lengths in tokens, per prompt


@dataclass
class PPOResult:
    model: Any  # the trained policy (a peft model with LoRA: `merged_policy` folds the adapters in)
    value_head: Any
    status: str  # one of STATUSES
    history: list[dict[str, float]] = field(default_factory=list)
    eval_before: EvalReport | None = None  # the parent
    eval_after: EvalReport | None = None  # the candidate
    gate: GateReport | None = None
    # the run completed, the held-out KL is under the bound and the gate passed, or its test passed but no
    # independent judge scored it (`gate.judged` False: registrable as a CANDIDATE for people, never activated)
    passes_gate: bool = False
    flags: list[str] = field(default_factory=list)
    message: str = ""  # why the run stopped early, or why the gate failed, in words

    def gate_verdict(self) -> GateVerdict:
        """What the gate concluded (the runner's gate reads this, as it reads a launched job's)."""
        return GateVerdict(status=self.status, passes_gate=self.passes_gate, message=self.message,
                           verdict=self.gate.verdict if self.gate is not None else "",
                           judged=self.gate is None or bool(self.gate.judged))

    def summary(self) -> dict[str, Any]:
        report = {"status": self.status, "passes_gate": self.passes_gate, "flags": self.flags,
                  "iterations": len(self.history), "message": self.message}
        for name, ev in (("before", self.eval_before), ("after", self.eval_after)):
            if ev is not None:
                report.update({f"eval_{name}/reward": ev.reward, f"eval_{name}/kl": ev.kl,
                               f"eval_{name}/length": ev.length, f"eval_{name}/held_out_reward": ev.held_out_reward,
                               f"eval_{name}/kl_base": ev.kl_base})
        if self.gate is not None:
            report.update({f"gate/{k}": v for k, v in asdict(self.gate).items()})
        return report


def iteration_metrics(t, r, stats: dict[str, list[float]] | None, times: dict[str, float]) -> dict[str, float]:
    """CleanRL/TRL-style namespaced scalars of one iteration (only the reward and timings when it never updated)."""
    metrics = {"objective/reward": float(r.raw_scores.mean()), **times}
    if stats is None:
        return metrics
    mask = r.mask
    mean_kl = float(r.kl.sum(1).mean())
    mean_score = float(r.scores.mean())
    iteration_s = times["time/iteration_s"]
    metrics.update({
        "objective/score": mean_score,  # after the missing-EOS penalty
        "objective/kl": mean_kl,
        "objective/kl_base": float(r.kl_base.sum(1).mean()) if r.kl_base is not None else mean_kl,
        "objective/rlhf_reward": mean_score - t.kl_ctl.value * mean_kl,
        "objective/kl_coef": t.kl_ctl.value,
        "objective/eos_penalty": t.cfg.missing_eos_penalty_std * t.moments.std,
        "objective/entropy": mean(stats["entropy"]),
        "policy/clipfrac": mean(stats["clipfrac"]),
        "policy/approx_kl": mean(stats["approx_kl"]),
        "losses/policy": mean(stats["policy"]),
        "losses/value": mean(stats["value"]),
        "val/explained_variance": explained_variance(r.old_values, r.returns, mask),
        "response/length_mean": float(mask.sum(1).mean()),
        "response/ended_share": sum(r.samples.ended) / len(r.samples.ended),
        "time/samples_per_s": len(r.scores) / iteration_s,
        "time/tokens_per_s": float(r.batch.attention_mask.sum()) / iteration_s,
    })
    return metrics


def stop_reason(t, r, history: list[dict[str, float]], iteration: int, bad_update: str) -> tuple[str, str]:
    """(status, message): "completed" and "" to go on. Checks non-finite scores, updates, metrics and weights,
    the KL bound and reward collapse (the batch mean far below the first batch's, in std of the earlier
    batches' scores, pooled so differences between prompts count as noise; judged from the third batch on)."""
    raw = r.all_raw if getattr(r, "all_raw", None) is not None else r.raw_scores  # every process's, under accelerate
    if not torch.isfinite(raw).all():  # stopped before any update learned from it
        bad = int((~torch.isfinite(raw)).sum())
        return "nan", f"iteration {iteration}: reward_fn gave {bad} non-finite score(s)"
    if bad_update:
        return "nan", bad_update
    metrics = history[-1]
    not_finite = [k for k, v in metrics.items() if k != "val/explained_variance" and not math.isfinite(v)]
    if not_finite or not all(torch.isfinite(p).all() for p in t.trainable):
        return "nan", f"iteration {iteration}: non-finite {', '.join(not_finite) or 'weights'}"
    if metrics["objective/kl"] > t.cfg.kl_bound:
        return "kl_bound", (f"iteration {iteration}: KL to the reference {metrics['objective/kl']:.3g} > "
                            f"kl_bound {t.cfg.kl_bound}")
    kl_base, kl_base_bound = metrics.get("objective/kl_base", 0.0), t.cfg.kl_base_bound
    if kl_base_bound is not None and kl_base > kl_base_bound:
        return "kl_bound", (f"iteration {iteration}: KL to the original base model {kl_base:.3g} > "
                            f"kl_base_bound {kl_base_bound}")
    first, now = history[0]["objective/score"], metrics["objective/score"]
    scores = r.all_scores if getattr(r, "all_scores", None) is not None else r.scores
    seen = t.seen_scores
    t.seen_scores = torch.cat([seen, scores])
    if len(seen) > len(scores) and now < first - t.cfg.reward_collapse * max(float(seen.std()), 1e-6):
        return "reward_collapse", (f"iteration {iteration}: mean reward {now:.3g} fell more than "
                                   f"{t.cfg.reward_collapse} std below the first batch's {first:.3g}")
    return "completed", ""


def reward_hacking_flags(before: EvalReport | None, after: EvalReport | None) -> list[str]:
    flags: list[str] = []
    if before is None or after is None or not after.reward > before.reward:
        return flags
    if before.held_out_reward is not None and after.held_out_reward is not None \
            and after.held_out_reward < before.held_out_reward:
        flags.append("possible_reward_hacking: the reward rose while the held-out judge's reward fell")
    if after.length > 1.3 * max(before.length, 1.0):
        flags.append("possible_reward_hacking: the reward rose while answers grew much longer")
    return flags


def run_gate(cfg: PPOConfig, before: EvalReport | None, after: EvalReport | None) -> GateReport:
    budget = {"alpha": cfg.gate_alpha, "look": cfg.gate_look, "independent_judge": cfg.gate_independent_judge}
    if before is None or after is None:
        return gate_test([], [], [], [], margin=cfg.gate_margin, min_prompts=cfg.gate_min_prompts, **budget)
    return gate_test(after.judged_rewards, before.judged_rewards, after.lengths, before.lengths,
                     margin=cfg.gate_margin, min_prompts=cfg.gate_min_prompts,
                     min_samples_per_prompt=cfg.gate_samples_per_prompt, resamples=cfg.gate_bootstrap_resamples,
                     seed=cfg.seed, length_control=cfg.gate_length_control, **budget)


def conclude(cfg, result: PPOResult) -> PPOResult:
    """The verdict on a finished run (PPO, RLOO, GRPO): the gate on the held-out evaluations, then the KL bounds;
    `passes_gate` only for a run that completed; the reward-hacking flags."""
    result.gate = run_gate(cfg, result.eval_before, result.eval_after)
    after = result.eval_after
    within_base = (after is None or after.kl_base is None or cfg.kl_base_bound is None
                   or after.kl_base < cfg.kl_base_bound)
    gate_ok = result.gate.passed or (not result.gate.judged and result.gate.test_passed)
    result.passes_gate = bool(result.status == "completed" and gate_ok and after.kl < cfg.kl_bound and within_base)
    if not result.message and not result.passes_gate:
        result.message = (f"gate: {result.gate.verdict}" if not gate_ok
                          else f"held-out KL to the reference {after.kl:.3g} >= kl_bound {cfg.kl_bound}"
                          if after.kl >= cfg.kl_bound
                          else f"held-out KL to the original base {after.kl_base:.3g} >= kl_base_bound {cfg.kl_base_bound}")
    result.flags = reward_hacking_flags(result.eval_before, after)
    return result
