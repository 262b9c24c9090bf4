"""Reward-model acceptance holds its error rate, by seeded simulation through the product's own functions.

The world: tasks of K = 4 answers, each answer with a length and a quality; people rank a task's answers, and its
K(K−1)/2 = 6 pairs go to the held-out set (they share answers and judges, so they are not independent). A reward
model scores each answer. Through `preference_metrics` (what `evaluate_reward_model` computes, clustered by the
rows' prompt) and `acceptance_verdict` (what the registry's gate reads):
- a chance-level model (scores unrelated to the ranking) is accepted at most 2.5% of the time; intervals that
  treated the 6 pairs of a task as independent accepted it about 5.5% of the time;
- a model that learned only length is refused, however many pairs, when people like longer answers;
- a model no better than the active reward model is refused (paired, on the same pairs);
- a model that learned what people reward beyond length, and beats the active one, is accepted.
"""

import itertools

import numpy as np
import pytest

from training.pipeline.reward.eval import (
    acceptance_verdict,
    clustered_difference,
    length_scores,
    pair_scores,
    preference_metrics,
    wilson_interval,
)

K = 4
PAIRS = list(itertools.combinations(range(K), 2))


def tasks(rng, sims, n_tasks, *, length_taste=0.0):
    """People's latent score per answer (quality + length_taste·length, plus their noise), quality and length."""
    quality = rng.standard_normal((sims, n_tasks, K))
    length = np.round(rng.normal(200, 60, (sims, n_tasks, K)))
    people = quality + length_taste * (length - 200) / 60 + 0.5 * rng.standard_normal((sims, n_tasks, K))
    return people, quality, length


def held_out_pairs(people, scores):
    """Per pair of each task (people's preferred answer first): the model's rewards and the answers' lengths."""
    i, j = np.array(PAIRS).T
    first = people[..., i] > people[..., j]
    chosen, rejected = np.where(first, i, j), np.where(first, j, i)
    take = lambda values, index: np.take_along_axis(values, index, -1)  # noqa: E731
    return take(scores, chosen), take(scores, rejected), chosen, rejected


class HeldOut:
    """The held-out pairs of every simulated run, computed once: rewards and lengths, people's choice first."""

    def __init__(self, people, scores, lengths):
        self.rc, self.rr, chosen, rejected = held_out_pairs(people, scores)
        self.cl, self.rl = np.take_along_axis(lengths, chosen, -1), np.take_along_axis(lengths, rejected, -1)
        self.clusters = np.repeat(np.arange(people.shape[1]), len(PAIRS)).tolist()

    def metrics(self, s):
        """`preference_metrics` on run s, each task's pairs sharing the task as their cluster."""
        return preference_metrics(self.rc[s].ravel().tolist(), self.rr[s].ravel().tolist(),
                                  chosen_lengths=self.cl[s].ravel().tolist(),
                                  rejected_lengths=self.rl[s].ravel().tolist(), clusters=self.clusters)

    def pair_scores(self, s):
        return pair_scores((self.rc[s] - self.rr[s]).ravel().tolist())


def with_previous(metrics, new: HeldOut, previous: HeldOut, s):
    """What the runner adds when the project has an active reward model: the paired, clustered difference."""
    old = previous.pair_scores(s)
    difference, low, _ = clustered_difference(new.pair_scores(s), old, new.clusters)
    return {**metrics, "eval/vs_previous": difference, "eval/vs_previous_low": low,
            "eval/previous_accuracy": sum(old) / len(old)}


def test_a_chance_level_model_is_accepted_at_most_alpha_at_k_4():
    rng = np.random.default_rng(24)
    sims, n_tasks = 4000, 20  # 120 held-out pairs a run
    people, _, lengths = tasks(rng, sims, n_tasks)
    held_out = HeldOut(people, rng.standard_normal(people.shape), lengths)  # a model that knows nothing
    bound_above_chance, accepted, pair_independent = [], [], []
    for s in range(sims):
        metrics = held_out.metrics(s)
        bound_above_chance.append(metrics["eval/accuracy_low"] > 0.5)
        accepted.append(acceptance_verdict(metrics)[0])
        wins = round(metrics["eval/accuracy"] * metrics["eval/n_pairs"])
        pair_independent.append(wilson_interval(wins, int(metrics["eval/n_pairs"]))[0] > 0.5)
    assert np.mean(pair_independent) > 0.05  # the rule this replaced: pairs as if independent
    assert np.mean(bound_above_chance) <= 0.025  # the accuracy bound alone, clustered by task
    assert np.mean(accepted) <= 0.025


def test_a_model_that_learned_only_length_is_refused_however_many_pairs():
    rng = np.random.default_rng(25)
    people, _, lengths = tasks(rng, 300, 200, length_taste=1.0)  # people like longer answers: 1,200 pairs a run
    held_out = HeldOut(people, lengths + rng.uniform(0, 0.1, lengths.shape), lengths)  # pays for length only
    metrics = [held_out.metrics(s) for s in range(300)]
    assert np.mean([m["eval/accuracy_low"] > 0.5 for m in metrics]) == 1.0  # far above chance...
    accepted = [acceptance_verdict(m) for m in metrics]
    assert np.mean([a for a, _ in accepted]) <= 0.025  # ...but no better than "the longer answer wins"
    assert all("length-only baseline" in why for a, why in accepted if not a)


def test_a_model_no_better_than_the_active_one_is_refused_on_the_same_pairs():
    rng = np.random.default_rng(26)
    sims, n_tasks = 2000, 60
    people, quality, lengths = tasks(rng, sims, n_tasks)
    active = HeldOut(people, quality + rng.standard_normal(quality.shape), lengths)  # both know quality
    new = HeldOut(people, quality + rng.standard_normal(quality.shape), lengths)  # equally well
    verdicts = [acceptance_verdict(with_previous(new.metrics(s), new, active, s)) for s in range(sims)]
    assert np.mean([new.metrics(s)["eval/accuracy_low"] > 0.5 for s in range(100)]) == 1.0  # it is good...
    assert np.mean([accepted for accepted, _ in verdicts]) <= 0.025  # ...but not better than the active one
    assert any("active reward model" in why for _, why in verdicts)


def test_a_model_that_learned_what_people_reward_and_beats_the_active_one_is_accepted():
    rng = np.random.default_rng(27)
    sims, n_tasks = 300, 60
    people, quality, lengths = tasks(rng, sims, n_tasks, length_taste=0.5)
    active = HeldOut(people, quality + 2.0 * rng.standard_normal(quality.shape), lengths)
    new = HeldOut(people, quality + 0.3 * rng.standard_normal(quality.shape), lengths)
    accepted = [acceptance_verdict(with_previous(new.metrics(s), new, active, s))[0] for s in range(sims)]
    assert np.mean(accepted) >= 0.9


def test_the_pairs_of_one_task_count_as_one_observation_when_they_all_agree():
    # One task's 6 pairs all right: no bound at all (one cluster), where 6 independent pairs would give one.
    one_task = preference_metrics([1.0] * 6, [0.0] * 6, clusters=["p1"] * 6)
    assert one_task["eval/accuracy"] == 1.0 and one_task["eval/accuracy_low"] is None
    assert one_task["eval/n_tasks"] == 1.0
    as_if_independent = preference_metrics([1.0] * 6, [0.0] * 6)
    assert as_if_independent["eval/accuracy_low"] is not None
    # Three tasks of 6 right pairs: the bound is that of 3 observations, wider than that of 18 pairs.
    three = preference_metrics([1.0] * 18, [0.0] * 18, clusters=[t for t in "abc" for _ in range(6)])
    eighteen = preference_metrics([1.0] * 18, [0.0] * 18, clusters=list(range(18)))
    assert three["eval/accuracy_low"] < eighteen["eval/accuracy_low"]


def test_the_length_baseline_is_the_longer_answer_and_a_tie_is_a_coin_flip():
    assert length_scores([10, 5, 7], [3, 9, 7]) == [1.0, 0.0, 0.5]
    metrics = preference_metrics([1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0], chosen_lengths=[5, 5, 5, 5],
                                 rejected_lengths=[1, 9, 1, 9], clusters=["a", "a", "b", "b"])
    assert metrics["eval/length_baseline_accuracy"] == 0.5 and metrics["eval/vs_length"] == 0.25


def test_a_few_pairs_that_differ_all_one_way_are_not_evidence():
    # 100 tasks; the two scorers differ on 4 pairs only, all in the new one's favour: by chance 1 time in 16, so no
    # bound at 2.5% may clear 0 (Student's t on the 100 tasks would: t = 2.0 > 1.98). From 7 such pairs on
    # (1 in 128 by chance) it does.
    clusters = list(range(100))
    for differing, clears in ((4, False), (6, False), (7, True)):
        new = [1.0] * differing + [1.0] * (100 - differing)
        old = [0.0] * differing + [1.0] * (100 - differing)
        _, low, _ = clustered_difference(new, old, clusters)
        assert (low > 0) is clears, (differing, low)
    assert clustered_difference([1.0, 1.0], [1.0, 1.0], [1, 2])[1] == 0.0  # they never differ: no evidence


def test_the_label_ceiling_comes_from_the_snapshots_agreement_not_from_the_pairs_left_after_ties():
    """Coin-flip judges at overlap 2 with equal trust: every disagreement is a tie and is left out, so each held-out
    pair shows agreement 1. Fitted from those rows the ceiling reads 1.0; fitted from the snapshot's agreement
    (ties included, about 0.5 for coin flips) it reads what a model that knows the truth can expect: about 0.5."""
    from training.pipeline.reward.eval import with_judge_agreement

    rows = [{"agreement": 1.0, "n_judgements": 2, "margin": 1.0} for _ in range(40)]
    metrics = {"eval/accuracy": 0.55, "eval/label_ceiling": 1.0}
    fixed = with_judge_agreement(metrics, rows, 0.5)
    assert fixed["eval/label_ceiling"] == pytest.approx(0.5, abs=0.01)
    assert fixed["eval/accuracy_vs_label_ceiling"] == pytest.approx(0.55 / fixed["eval/label_ceiling"])
    judges_right_80 = with_judge_agreement(metrics, rows, 0.8 ** 2 + 0.2 ** 2)  # 0.68: each judge right 80%
    assert 0.8 < judges_right_80["eval/label_ceiling"] < 1.0
    assert with_judge_agreement(metrics, rows, None) == {}  # no snapshot agreement: the trainer's figure stands
