#!/usr/bin/env python
"""The automatic gates' error rates, by seeded simulation through the product's own functions.

    .venv/bin/python bench/stats_gates.py [--quick]

- PPO / RLOO / GRPO gate (`training/pipeline/gate.py`, its vectorised core `gate_samples`, the very rule
  `gate_test` applies): how often a candidate no better than its parent passes, on 8 / 16 / 32 held-out prompts,
  4 samples each, normal and t(3) noise; beside it the percentile bootstrap with the pooled length slope that
  it replaced. A pure length hack; the share of a true +0.3 gain (with +10 tokens, length worth nothing) left
  after the length adjustment; ten retrains judged on the same held-out prompts.
- Reward-model acceptance (`reward_eval.preference_metrics` + `acceptance_verdict`): a chance-level model at
  K = 4 (6 pairs a task), a model that learned only length, a model no better than the active one.
- DPO gate (`dpo.held_out_accuracy` + `runners.policy.dpo_gate`): a policy no better than its parent, 92% of its
  held-out pairs labelled by the reward model it agrees with.

`report(quick)` returns the printed lines (bench/stats.py prints every section). Monte-Carlo standard errors
are printed beside the rates.
"""

from __future__ import annotations

import itertools
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

from training.pipeline.gate import alpha_for_look, gate_samples  # noqa: E402
from training.pipeline.reward.eval import (  # noqa: E402
    acceptance_verdict,
    clustered_difference,
    pair_scores,
    preference_metrics,
    wilson_interval,
)

ALPHA = 0.025


# --- the PPO / RLOO / GRPO gate -------------------------------------------------------------------------------


def gate_world(rng, sims, prompts, noise="normal", *, gain=0.0, extra_tokens=0.0, reward_per_token=0.0, samples=4):
    """(candidate, parent, candidate_lengths, parent_lengths), each (sims, prompts, samples): a prompt difficulty,
    lengths of the prompt's typical length ± 4 tokens, reward = difficulty + gain + slope·length + noise."""
    def draw(shape):
        return rng.standard_normal(shape) if noise == "normal" else rng.standard_t(3, shape)

    shape = (sims, prompts, samples)
    difficulty = rng.standard_normal((sims, prompts, 1))
    typical = 30 + 10 * rng.standard_normal((sims, prompts, 1))
    parent_lengths = typical + 4 * rng.standard_normal(shape)
    candidate_lengths = typical + extra_tokens + 4 * rng.standard_normal(shape)
    parent = difficulty + reward_per_token * parent_lengths + draw(shape)
    candidate = difficulty + gain + reward_per_token * candidate_lengths + draw(shape)
    return candidate, parent, candidate_lengths, parent_lengths


def old_gate(candidate, parent, candidate_lengths, parent_lengths, *, rng, resamples=1000, chunk=500):
    """The rule gate.py used before: a 95% percentile bootstrap over prompts (pass: 2.5th percentile > 0), and the
    length slope fitted on both policies' samples pooled within a prompt. Vectorised; (passed, adjusted_effect)."""
    d = candidate.mean(-1) - parent.mean(-1)
    dl = candidate_lengths.mean(-1) - parent_lengths.mean(-1)
    y = np.concatenate([candidate, parent], -1)
    x = np.concatenate([candidate_lengths, parent_lengths], -1)
    xc, yc = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    slope = (xc * yc).sum((-1, -2)) / (xc * xc).sum((-1, -2))
    adjusted = d - slope[:, None] * dl
    sims, n = d.shape
    passed = np.zeros(sims, bool)
    for start in range(0, sims, chunk):
        picks = rng.integers(0, n, (min(chunk, sims - start), resamples, n))
        rows = np.arange(start, start + picks.shape[0])[:, None, None]
        lower = np.quantile(d[rows, picks].mean(-1), 0.025, axis=1)
        adjusted_lower = np.quantile(adjusted[rows, picks].mean(-1), 0.025, axis=1)
        passed[start:start + picks.shape[0]] = (lower > 0) & (adjusted_lower > 0)
    return passed, adjusted.mean(-1)


def rate(values) -> str:
    values = np.asarray(values, dtype=float)
    p = values.mean()
    return f"{100 * p:.2f}% ± {100 * math.sqrt(max(p * (1 - p), 1e-12) / len(values)):.2f}"


def gate_lines(quick: bool) -> list[str]:
    sims = 5_000 if quick else 40_000
    old_sims = 1_000 if quick else 6_000
    first = alpha_for_look(1, ALPHA)
    lines = [f"PPO/RLOO/GRPO gate, a candidate no better than its parent, 4 samples a prompt ({sims} runs each; "
             f"the old bootstrap {old_sims}):",
             f"  prompts  noise   t bound at 2.5%   first look ({100 * first:.2f}%)   old percentile bootstrap"]
    for prompts in (8, 16, 32):
        for noise in ("normal", "t3"):
            rng = np.random.default_rng(1000 * prompts + (noise == "t3"))
            arrays = gate_world(rng, sims, prompts, noise)
            at_alpha = gate_samples(*arrays, alpha=ALPHA)["test_passed"]
            at_first = gate_samples(*arrays, alpha=first)["test_passed"]
            old, _ = old_gate(*(a[:old_sims] for a in arrays), rng=rng)
            lines.append(f"  {prompts:>7}  {noise:<6}  {rate(at_alpha):>15}   {rate(at_first):>19}   {rate(old):>14}")

    rng = np.random.default_rng(7)
    for prompts in (8, 32):
        arrays = gate_world(rng, sims, prompts, gain=0.3, extra_tokens=10.0)
        new = gate_samples(*arrays, alpha=first)
        _, old_adjusted = old_gate(*(a[:old_sims] for a in arrays), rng=rng, resamples=10)
        lines.append(f"true gain +0.3 with +10 tokens (length worth nothing), {prompts} prompts: adjusted effect keeps "
                     f"{100 * new['adjusted_effect'].mean() / 0.3:.1f}% of the gain (old pooled slope: "
                     f"{100 * old_adjusted.mean() / 0.3:.1f}%); passes {rate(new['test_passed'])}")
    for prompts in (8, 16, 32):
        arrays = gate_world(rng, sims, prompts, reward_per_token=0.05, extra_tokens=10.0)
        new = gate_samples(*arrays, alpha=first)
        lines.append(f"pure length hack (+10 tokens × 0.05 a token = +0.5 raw), {prompts} prompts: raw bound clears "
                     f"{rate(new['raw_pass'])}, the gate passes {rate(new['test_passed'])}")
    arrays = gate_world(rng, sims, 16, gain=0.5)
    power = gate_samples(*arrays, alpha=first)["test_passed"]
    lines.append(f"power: +0.5, lengths unchanged, 16 prompts: passes {rate(power)}")

    looks = 10
    _, parent, _, parent_lengths = gate_world(rng, sims, 8)
    spent, unspent = np.zeros(sims, bool), np.zeros(sims, bool)
    for look in range(1, looks + 1):
        candidate, _, candidate_lengths, _ = gate_world(rng, sims, 8)
        args = (candidate, parent, candidate_lengths, parent_lengths)
        spent |= gate_samples(*args, alpha=alpha_for_look(look, ALPHA))["test_passed"]
        unspent |= gate_samples(*args, alpha=ALPHA)["test_passed"]
    lines.append(f"{looks} null retrains on the same 8 held-out prompts and parent samples: any false pass "
                 f"{rate(spent)} with alpha·6/(π²k²) at look k, {rate(unspent)} with 2.5% at every look")
    return lines


# --- reward-model acceptance ---------------------------------------------------------------------------------

K = 4
PAIRS = list(itertools.combinations(range(K), 2))


def rm_world(rng, sims, tasks, *, length_taste=0.0):
    quality = rng.standard_normal((sims, tasks, K))
    length = np.round(rng.normal(200, 60, (sims, tasks, K)))
    people = quality + length_taste * (length - 200) / 60 + 0.5 * rng.standard_normal((sims, tasks, K))
    return people, quality, length


class HeldOut:
    """Every simulated run's held-out pairs (people's preferred answer first): rewards, lengths, task clusters."""

    def __init__(self, people, scores, lengths):
        i, j = np.array(PAIRS).T
        first = people[..., i] > people[..., j]
        chosen, rejected = np.where(first, i, j), np.where(first, j, i)
        self.rc, self.rr = np.take_along_axis(scores, chosen, -1), np.take_along_axis(scores, rejected, -1)
        self.cl, self.rl = np.take_along_axis(lengths, chosen, -1), np.take_along_axis(lengths, rejected, -1)
        self.clusters = np.repeat(np.arange(people.shape[1]), len(PAIRS)).tolist()

    def metrics(self, s):
        return preference_metrics(self.rc[s].ravel().tolist(), self.rr[s].ravel().tolist(),
                                  chosen_lengths=self.cl[s].ravel().tolist(),
                                  rejected_lengths=self.rl[s].ravel().tolist(), clusters=self.clusters)

    def scores(self, s):
        return pair_scores((self.rc[s] - self.rr[s]).ravel().tolist())


def rm_lines(quick: bool) -> list[str]:
    sims = 1_000 if quick else 6_000
    rng = np.random.default_rng(24)
    lines = [f"reward-model acceptance, K = {K} answers a task (6 pairs), {sims} runs each:"]
    for tasks in (10, 20, 50):
        people, _, lengths = rm_world(rng, sims, tasks)
        held = HeldOut(people, rng.standard_normal(people.shape), lengths)
        metrics = [held.metrics(s) for s in range(sims)]
        bound = [m["eval/accuracy_low"] > 0.5 for m in metrics]
        accepted = [acceptance_verdict(m)[0] for m in metrics]
        old = [wilson_interval(round(m["eval/accuracy"] * m["eval/n_pairs"]), int(m["eval/n_pairs"]))[0] > 0.5
               for m in metrics]
        lines.append(f"  chance-level model, {tasks} tasks: pairs-as-independent Wilson > 0.5 {rate(old)}; "
                     f"task-clustered bound > 0.5 {rate(bound)}; accepted {rate(accepted)}")
    length_sims = sims // 10
    people, _, lengths = rm_world(rng, length_sims, 200, length_taste=1.0)
    held = HeldOut(people, lengths + rng.uniform(0, 0.1, lengths.shape), lengths)
    metrics = [held.metrics(s) for s in range(length_sims)]
    lines.append(f"  length-only model, people like length, 200 tasks ({length_sims} runs): old rule (bound > 0.5) "
                 f"{rate([m['eval/accuracy_low'] > 0.5 for m in metrics])}, accepted "
                 f"{rate([acceptance_verdict(m)[0] for m in metrics])}")
    people, quality, lengths = rm_world(rng, sims, 60)
    active = HeldOut(people, quality + rng.standard_normal(quality.shape), lengths)
    new = HeldOut(people, quality + rng.standard_normal(quality.shape), lengths)
    accepted = []
    for s in range(sims):
        old_scores = active.scores(s)
        difference, low, _ = clustered_difference(new.scores(s), old_scores, new.clusters)
        verdict = acceptance_verdict({**new.metrics(s), "eval/vs_previous": difference, "eval/vs_previous_low": low,
                                      "eval/previous_accuracy": sum(old_scores) / len(old_scores)})
        accepted.append(verdict[0])
    lines.append(f"  a model as good as the active one, 60 tasks: accepted {rate(accepted)}")
    return lines


# --- the DPO gate ----------------------------------------------------------------------------------------------


def dpo_lines(quick: bool) -> list[str]:
    import django

    django.setup()
    from training.pipeline.dpo.trainer import held_out_accuracy
    from training.runners.policy import dpo_gate

    class Result:
        def __init__(self, metrics):
            self.metrics = metrics

    sims = 1_000 if quick else 6_000
    rng = np.random.default_rng(92)
    pairs = list(itertools.combinations(range(3), 2))
    new, old = [], []
    for _ in range(sims):
        margins, rows = [], []
        for task in range(8):  # people's tasks of 3 answers: the policy ranks them at chance
            implicit = rng.standard_normal(3)
            people = rng.standard_normal(3)
            for i, j in pairs:
                chosen, rejected = (i, j) if people[i] > people[j] else (j, i)
                margins.append(float(implicit[chosen] - implicit[rejected]))
                rows.append({"prompt_id": f"h{task}", "source": "people"})
        for pair in range(276):  # 92%: the reward model's labels, which the policy learned to agree with
            size = 0.1 + float(rng.exponential(1.0))
            margins.append(size if rng.random() < 0.9 else -size)
            rows.append({"prompt_id": f"m{pair // 3}", "source": "reward_model"})
        metrics = held_out_accuracy(margins, rows)
        new.append(dpo_gate(Result(metrics))[0])
        old.append(metrics["eval/accuracy"] is None or metrics["eval/accuracy"] > 0.5)
    return [f"DPO gate, a policy no better than its parent on people's pairs (8 tasks × 3 pairs) beside 276 "
            f"reward-model pairs it agrees with 90% ({sims} runs): old rule (point accuracy > 0.5) passes {rate(old)}, "
            f"now {rate(new)}"]


def report(quick: bool = False) -> list[str]:
    return [*gate_lines(quick), *rm_lines(quick), *dpo_lines(quick)]


if __name__ == "__main__":
    for line in report(quick="--quick" in sys.argv):
        print(line, flush=True)
