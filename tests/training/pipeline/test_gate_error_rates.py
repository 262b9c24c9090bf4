"""The PPO / RLOO / GRPO gate (pipeline/gate.py) holds the error rate it claims, by seeded simulation.

The world simulated: each held-out prompt has its own difficulty, each answer a length (the prompt's typical
length plus ±4 tokens) and a reward = difficulty + gain + slope·length + noise (normal, or Student's t with 3
degrees of freedom: heavy tails). 4 samples of each policy per prompt, as the product's default. A candidate no
better than its parent must pass at most 2.5% of the time (the percentile bootstrap this replaced passed about 5%
at 8 prompts); a true gain that comes with longer answers must not be explained away by length; a pure length
hack must be refused; a chain of retrains on the same held-out prompts must stay within the same 2.5% in all.
"""

import numpy as np
import pytest

from training.pipeline.gate import alpha_for_look, gate_samples, gate_test

ALPHA = 0.025


def world(rng, sims, prompts, noise="normal", *, gain=0.0, extra_tokens=0.0, reward_per_token=0.0, samples=4):
    """(candidate, parent, candidate_lengths, parent_lengths), each shaped (sims, prompts, samples)."""
    def noise_draw(shape):
        return rng.standard_normal(shape) if noise == "normal" else rng.standard_t(3, shape)

    shape = (sims, prompts, samples)
    difficulty = rng.standard_normal((sims, prompts, 1))
    typical = 30 + 10 * rng.standard_normal((sims, prompts, 1))
    parent_lengths = typical + 4 * rng.standard_normal(shape)
    candidate_lengths = typical + extra_tokens + 4 * rng.standard_normal(shape)
    parent = difficulty + reward_per_token * parent_lengths + noise_draw(shape)
    candidate = difficulty + gain + reward_per_token * candidate_lengths + noise_draw(shape)
    return candidate, parent, candidate_lengths, parent_lengths


def through_gate_test(arrays, **kwargs):
    """gate_test itself, one simulated run at a time."""
    candidate, parent, candidate_lengths, parent_lengths = arrays
    return [gate_test(candidate[i].tolist(), parent[i].tolist(), candidate_lengths[i].tolist(),
                      parent_lengths[i].tolist(), seed=i, **kwargs) for i in range(len(candidate))]


def test_a_null_candidate_passes_at_most_alpha_at_8_prompts_through_gate_test():
    # The size at which the percentile bootstrap failed: 8 prompts, normal and t(3) noise, 2 × 3,000 runs
    # (standard error of a 2.5% rate: 0.2%). The old rule passed 5.1% (normal) and 5.6% (t3) of these.
    rng = np.random.default_rng(20261208)
    passed = [r.passed for noise in ("normal", "t3") for r in through_gate_test(world(rng, 3000, 8, noise))]
    assert np.mean(passed) <= ALPHA


@pytest.mark.parametrize("prompts", [8, 16, 32])
@pytest.mark.parametrize("noise", ["normal", "t3"])
def test_a_null_candidate_passes_at_most_alpha(prompts, noise):
    # 20,000 runs each (standard error 0.11%): the raw bound alone, before the length control, holds the rate.
    result = gate_samples(*world(np.random.default_rng(prompts), 20_000, prompts, noise))
    assert result["raw_pass"].mean() <= ALPHA + 0.002
    assert result["test_passed"].mean() <= ALPHA


def test_the_vectorised_rule_is_the_gate():
    # The simulations here run gate_samples at a given level; gate_test (the first look on its held-out prompts
    # spends alpha·6/π² = 1.52% of the 2.5%) must say the same on every run.
    arrays = world(np.random.default_rng(7), 200, 10, "t3", gain=0.6, extra_tokens=3.0, reward_per_token=0.02)
    vectorised = gate_samples(*arrays, alpha=alpha_for_look(1))
    reports = through_gate_test(arrays)
    assert [r.test_passed for r in reports] == vectorised["test_passed"].tolist()
    assert 0 < sum(r.passed for r in reports) < 200  # both outcomes occur, so agreement means something
    assert [r.adjusted_lower for r in reports] == pytest.approx(vectorised["adjusted_lower"].tolist())
    assert [r.length_slope for r in reports] == pytest.approx(vectorised["slope"].tolist())


def test_a_true_gain_with_longer_answers_keeps_its_size():
    # +0.3 reward, +10 tokens, and length itself is worth nothing: the length adjustment must not eat the gain.
    # The old slope (both policies pooled within a prompt) absorbed the policy's own effect: 0.34 of it was left.
    reports = through_gate_test(world(np.random.default_rng(3), 600, 8, gain=0.3, extra_tokens=10.0))
    assert np.mean([r.adjusted_effect for r in reports]) >= 0.9 * 0.3
    assert np.mean([r.length_slope for r in reports]) == pytest.approx(0.0, abs=0.003)


def test_a_pure_length_hack_is_refused():
    # The judge pays only for length and the candidate is 10 tokens longer: a raw gain of +0.5 that the raw bound
    # often clears, which the length-adjusted bound (the slope's uncertainty included) refuses.
    arrays = world(np.random.default_rng(4), 20_000, 16, reward_per_token=0.05, extra_tokens=10.0)
    result = gate_samples(*arrays)
    assert result["raw_pass"].mean() > 0.5
    assert result["test_passed"].mean() <= ALPHA
    reports = through_gate_test(tuple(a[:300] for a in arrays))
    assert np.mean([r.passed for r in reports]) <= ALPHA
    assert any("explained by length" in r.verdict for r in reports)


def test_a_clear_gain_with_no_length_change_passes():
    # Power where it should be easy: +0.5 on 16 prompts, same lengths.
    result = gate_samples(*world(np.random.default_rng(5), 4000, 16, gain=0.5))
    assert result["test_passed"].mean() > 0.5


def test_ten_retrains_on_the_same_held_out_prompts_stay_within_alpha():
    # The parent's held-out answers are sampled once with a fixed seed, so every retrain is judged against the
    # same parent samples; each retrain is no better than its parent. Spending alpha·6/(π²k²) at look k keeps the
    # chance of ANY false pass over the chain under alpha; spending alpha at every look does not.
    rng = np.random.default_rng(6)
    sims, prompts, looks = 20_000, 8, 10
    _, parent, _, parent_lengths = world(rng, sims, prompts)
    spent, unspent = np.zeros(sims, bool), np.zeros(sims, bool)
    for look in range(1, looks + 1):
        candidate, _, candidate_lengths, _ = world(rng, sims, prompts)
        spent |= gate_samples(candidate, parent, candidate_lengths, parent_lengths,
                              alpha=alpha_for_look(look, ALPHA))["test_passed"]
        unspent |= gate_samples(candidate, parent, candidate_lengths, parent_lengths, alpha=ALPHA)["test_passed"]
    assert spent.mean() <= ALPHA
    assert unspent.mean() > 3 * ALPHA


def test_the_error_budget_sums_to_alpha():
    assert sum(alpha_for_look(k) for k in range(1, 100_000)) == pytest.approx(ALPHA, rel=1e-4)
    assert alpha_for_look(1) == pytest.approx(ALPHA * 6 / np.pi ** 2)
    assert gate_test(*[[[0.0, 1.0, 2.0, 3.0]] * 8] * 4, look=3).alpha == pytest.approx(alpha_for_look(3))
    with pytest.raises(ValueError):
        alpha_for_look(0)


def test_without_an_independent_judge_the_verdict_is_unjudged_and_does_not_pass():
    rng = np.random.default_rng(8)
    candidate, parent, candidate_lengths, parent_lengths = world(rng, 1, 16, gain=2.0)
    args = (candidate[0].tolist(), parent[0].tolist(), candidate_lengths[0].tolist(), parent_lengths[0].tolist())
    judged = gate_test(*args)
    unjudged = gate_test(*args, independent_judge=False)
    assert judged.passed and judged.judged and judged.test_passed
    assert not unjudged.passed and unjudged.test_passed and not unjudged.judged
    assert unjudged.verdict.startswith("unjudged: no independent judge")
    assert unjudged.effect == judged.effect and unjudged.lower == judged.lower
