"""The promotion test keeps its false-promotion rate when it is looked at after every closed task.

Seeded simulation of head-to-head tasks: overlap 3, each task with a latent win probability drawn from a beta
distribution (intra-task correlation of the judges' votes 0.5, or 0), a tie with probability 0.1 per vote. The
candidate's task score is its mean over the task's 3 votes. Looks after every task, for 1,000 tasks."""

import math

import numpy as np
import pytest

from training.pipeline.promotion_test import (PromotionRule, promotion_evidence, sequential_verdict,
                                              verdict_paths)

RUNS, TASKS, OVERLAP, TIE = 2000, 1000, 3, 0.1
NULL_CHUNKS = 5  # 10,000 null runs: the rate's standard error is 0.16 points
# Ville's inequality bounds the rate by 2.5% exactly, and small bets come close to it (measured 2.2–2.5%), so the
# simulated rate is allowed its Monte Carlo noise: two standard errors (a rule at 3.5% or more fails).
ALPHA = 0.025
NULL_LIMIT = ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / (NULL_CHUNKS * RUNS))


def simulate_votes(seed: int, win_rate: float, icc: float, runs: int = RUNS, tasks: int = TASKS) -> np.ndarray:
    """runs × tasks × OVERLAP judgement scores (1 win, 0.5 tie, 0 loss) whose mean is `win_rate`."""
    rng = np.random.default_rng(seed)
    latent = (win_rate - TIE / 2) / (1 - TIE)  # the win probability of a vote that is not a tie
    if icc > 0:
        size = (1 - icc) / icc  # beta(a, b) with a + b = size: two votes of a task correlate 1 / (size + 1)
        p = rng.beta(latent * size, (1 - latent) * size, size=(runs, tasks, 1))
    else:
        p = np.full((runs, tasks, 1), latent)
    wins = (rng.random((runs, tasks, OVERLAP)) < p).astype(np.float32)
    return np.where(rng.random((runs, tasks, OVERLAP)) < TIE, np.float32(0.5), wins)


def promoted_by(codes, at, horizon: int) -> float:
    return float(((codes == 1) & (at <= horizon)).mean())


def wilson_low(wins: np.ndarray, n: np.ndarray, z: float = 1.959964) -> np.ndarray:
    """The old rule's bound, written out here (not the product's code): Wilson's lower 95% end."""
    p = wins / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def old_rule_promoted(votes: np.ndarray, horizon_tasks: int, every: int = 6, minimum: int = 30) -> float:
    """The rule this replaced: Wilson on judgement counts, looked at every `every` judgements once `minimum` are in;
    promoted the first time the lower end is above 0.5."""
    flat = votes[:, :horizon_tasks].reshape(votes.shape[0], -1).astype(np.float64)
    looks = np.arange(every, flat.shape[1] + 1, every)
    looks = looks[looks >= minimum]
    wins = np.cumsum(flat, axis=1)[:, looks - 1]
    return float((wilson_low(wins, looks.astype(float)) > 0.5).any(axis=1).mean())


@pytest.fixture(scope="module")
def null_votes():
    return {icc: simulate_votes(100 + int(icc * 10), 0.5, icc) for icc in (0.0, 0.5)}


def null_paths(icc: float, **rule):
    """verdict paths of NULL_CHUNKS × RUNS equal candidates, simulated a chunk at a time (memory)."""
    paths = [verdict_paths(simulate_votes(200 + chunk + int(icc * 10), 0.5, icc).mean(axis=2), **rule)
             for chunk in range(NULL_CHUNKS)]
    return np.concatenate([c for c, _ in paths]), np.concatenate([a for _, a in paths])


@pytest.mark.parametrize("icc", [0.0, 0.5])
def test_an_equal_candidate_is_promoted_at_most_alpha_however_often_and_long_one_looks(icc):
    # the promoting side alone (no futility, no horizon): the pure e-process, the hardest case for validity
    codes, at = null_paths(icc, min_gain=None, max_tasks=None)
    rates = [promoted_by(codes, at, h) for h in (90, 300, 1000)]
    assert rates == sorted(rates) and rates[-1] <= NULL_LIMIT, rates
    assert rates[-1] > 0.01  # not vacuous: it bets, and comes near its bound
    # the product's defaults (futility and horizon only take chances to promote away)
    codes, at = null_paths(icc)
    assert promoted_by(codes, at, 1000) <= rates[-1] <= NULL_LIMIT
    assert (codes != 0).all()  # every equal candidate is decided by the horizon: rejected, nothing waits forever


def test_the_old_rule_on_judgements_fails_the_same_simulation(null_votes):
    """Wilson's interval on judgements, checked every 6 judgements: it promotes an equal candidate far more often
    than 2.5% when the looks repeat and a task's judges agree."""
    votes = null_votes[0.5]
    old = [old_rule_promoted(votes, h) for h in (30, 100, 300)]
    assert old[0] > 0.10 and old[-1] > 0.20, old
    new_codes, new_at = verdict_paths(votes.mean(axis=2))
    assert promoted_by(new_codes, new_at, 300) <= 0.025 < old[0]


@pytest.mark.parametrize("icc, power", [(0.0, 0.95), (0.5, 0.80)])
def test_a_candidate_winning_60_percent_is_promoted_within_200_tasks(icc, power):
    scores = simulate_votes(7, 0.60, icc, runs=1000, tasks=400).mean(axis=2)
    codes, at = verdict_paths(scores)
    assert promoted_by(codes, at, 200) >= power
    assert (codes == -1).mean() <= 0.025  # rarely rejected (it is better than the least worthwhile gain)
    assert np.median(at[codes == 1]) < 150


def test_a_candidate_worth_the_least_gain_is_wrongly_ruled_out_at_most_alpha():
    """Futility: a candidate exactly min_gain (0.075) better is 'ruled out' at most 2.5% of the time."""
    rule = PromotionRule()
    scores = simulate_votes(11, 0.5 + rule.min_gain, 0.5, runs=RUNS, tasks=TASKS).mean(axis=2)
    codes, at = verdict_paths(scores, max_tasks=None)
    assert ((codes == -1) & (at < TASKS)).mean() <= 0.025
    worse = simulate_votes(12, 0.40, 0.5, runs=500, tasks=400).mean(axis=2)
    codes, _ = verdict_paths(worse)
    assert (codes == -1).mean() >= 0.99  # a worse candidate is rejected, not left waiting


def test_the_verdict_called_after_every_task_is_the_first_crossing_and_stays():
    """What the product does: call it at every tick on all closed tasks so far. The verdict never flips once
    reached, and it is the same as the batch paths say (so the simulation above is the product's behaviour)."""
    scores = simulate_votes(5, 0.58, 0.5, runs=12, tasks=300).mean(axis=2)
    codes, at = verdict_paths(scores)
    for row, code, when in zip(scores, codes, at):
        seen = [sequential_verdict(row[:t]) for t in range(1, len(row) + 1)]
        decided = [i + 1 for i, v in enumerate(seen) if v != "wait"]
        if code == 0:
            assert decided == []
            continue
        assert decided == list(range(when, len(row) + 1))  # first at `when`, then every look after
        assert set(seen[when - 1:]) == {"promote" if code == 1 else "reject"}


def test_the_evidence_says_the_verdict_in_words_with_a_confidence_sequence_that_agrees():
    strong = [1.0, 0.66, 1.0, 0.5, 1.0, 0.83, 1.0, 1.0, 0.66, 1.0] * 3
    evidence = promotion_evidence(strong)
    assert evidence.verdict == "promote" == sequential_verdict(strong)
    assert evidence.e_value >= evidence.threshold == 40 and evidence.low > 0.5
    assert evidence.decided_at == evidence.tasks <= len(strong)  # the evidence at the moment of decision
    assert evidence.words.startswith("promoted") and f"{evidence.tasks} tasks" in evidence.words
    waiting = promotion_evidence([1.0, 0.0, 0.5, 1.0])
    assert waiting.verdict == "wait" and waiting.low < 0.5 < waiting.high and waiting.words.startswith("waiting")
    assert promotion_evidence([]).words.startswith("waiting") and promotion_evidence([]).tasks == 0
    flat = promotion_evidence([0.5, 0.33, 0.66] * 200)
    assert flat.verdict == "reject" and flat.high < 0.5 + 0.075 and "ruled out" in flat.words
    horizon = promotion_evidence([0.6, 0.5] * 10, max_tasks=20, min_gain=None)
    assert horizon.verdict == "reject" and "not shown better within 20 tasks" in horizon.words


@pytest.mark.parametrize("bad", [[0.5, 1.2], [-0.1], [float("nan")], [[0.5]]])
def test_scores_outside_0_1_are_refused(bad):
    with pytest.raises(ValueError):
        sequential_verdict(bad)


def test_the_horizon_never_adds_a_promotion():
    scores = simulate_votes(9, 0.55, 0.5, runs=500, tasks=600).mean(axis=2)
    long, long_at = verdict_paths(scores, max_tasks=None, min_gain=None)
    short, short_at = verdict_paths(scores, max_tasks=300, min_gain=None)
    assert ((short == 1) <= (long == 1)).all() and (short != 0).all()
    assert math.isclose(promoted_by(short, short_at, 300), promoted_by(long, long_at, 300))
