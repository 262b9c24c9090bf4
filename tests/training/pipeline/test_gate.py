"""The publication gate (gate.py) on small inputs whose answer is known by hand."""

import random

import pytest

from training.pipeline.gate import bootstrap_interval, gate_test, within_prompt_slope


def same_lengths(rows, length=5.0):
    return [[length] * len(r) for r in rows]


def test_bootstrap_of_equal_differences_is_that_difference():
    assert bootstrap_interval([0.3] * 7, resamples=500, seed=1) == pytest.approx((0.3, 0.3))


def test_bootstrap_of_two_prompts_by_hand():
    # Resampled means of [0, 1] (n=2): 0 w.p. 1/4, 0.5 w.p. 1/2, 1 w.p. 1/4 → 2.5th percentile 0, 97.5th 1.
    assert bootstrap_interval([0.0, 1.0], resamples=2000, seed=0) == pytest.approx((0.0, 1.0))


def test_bootstrap_is_seeded():
    d = [random.Random(3).gauss(0, 1) for _ in range(20)]
    assert bootstrap_interval(d, seed=5) == bootstrap_interval(d, seed=5)


def test_within_prompt_slope_by_hand():
    # prompt 1: lengths 1, 3 (mean 2) rewards 0, 2 (mean 1); prompt 2: lengths 10, 12 rewards 5, 7 → slope 1
    assert within_prompt_slope([[0, 2], [5, 7]], [[1, 3], [10, 12]]) == pytest.approx(1.0)
    assert within_prompt_slope([[0, 2]], [[4, 4]]) == 0.0  # lengths never vary: no length effect


def test_equal_differences_pass_with_the_bound_equal_to_the_difference():
    parent = [[0.0, 0.2, 0.4, 0.6] for _ in range(8)]
    candidate = [[x + 0.25 for x in row] for row in parent]
    report = gate_test(candidate, parent, same_lengths(candidate), same_lengths(parent), margin=0.1)
    assert report.passed and report.n_prompts == 8
    assert report.effect == pytest.approx(0.25) and report.lower == pytest.approx(0.25)
    assert report.upper == pytest.approx(0.25) and report.length_delta == 0.0
    assert report.verdict.startswith("better than the parent")


def test_candidate_equal_to_its_parent_is_refused():
    rng = random.Random(0)
    # The same policy sampled twice: per-prompt rewards differ by noise only.
    parent = [[rng.gauss(0, 1) for _ in range(4)] for _ in range(12)]
    candidate = [[rng.gauss(0, 1) for _ in range(4)] for _ in range(12)]
    report = gate_test(candidate, parent, same_lengths(candidate), same_lengths(parent))
    assert not report.passed and report.lower <= 0.0 <= report.upper
    assert report.verdict.startswith("not better than the parent")


def test_clearly_better_candidate_passes():
    rng = random.Random(1)
    parent = [[rng.gauss(0, 1) for _ in range(4)] for _ in range(12)]
    candidate = [[rng.gauss(1.5, 1) for _ in range(4)] for _ in range(12)]
    report = gate_test(candidate, parent, same_lengths(candidate), same_lengths(parent))
    assert report.passed and report.lower > 0.5 and report.effect > 1.0


def test_a_gain_explained_by_length_alone_is_refused():
    rng = random.Random(2)
    parent_lengths = [[rng.choice([10.0, 20.0]) for _ in range(4)] for _ in range(10)]
    candidate_lengths = [[n + 10.0 for n in row] for row in parent_lengths]  # 10 tokens longer
    reward = lambda n: 0.1 * n + rng.gauss(0, 0.01)  # noqa: E731  the judge likes length, nothing else
    parent = [[reward(n) for n in row] for row in parent_lengths]
    candidate = [[reward(n) for n in row] for row in candidate_lengths]
    report = gate_test(candidate, parent, candidate_lengths, parent_lengths)
    assert report.lower > 0.9  # the raw gain is real...
    assert not report.passed and report.length_delta == pytest.approx(10.0)  # ...but length explains it
    assert report.length_slope == pytest.approx(0.1, abs=0.01) and abs(report.adjusted_effect) < 0.05
    assert "explained by length" in report.verdict and "answers are 10 tokens longer" in report.verdict
    flagged_off = gate_test(candidate, parent, candidate_lengths, parent_lengths, length_control=False)
    assert flagged_off.passed


def test_too_few_prompts_samples_or_a_nan_refuse():
    rows = [[1.0] * 4 for _ in range(3)]
    assert "fewer than the 8" in gate_test(rows, rows, rows, rows).verdict
    rows = [[1.0] * 2 for _ in range(8)]
    assert "only 2 sample" in gate_test(rows, rows, rows, rows).verdict
    rows = [[1.0] * 4 for _ in range(8)]
    bad = [[float("nan")] * 4] + rows[1:]
    report = gate_test(bad, rows, rows, rows)
    assert not report.passed and "non-finite" in report.verdict
