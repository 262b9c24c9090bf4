"""Agreement is leave-one-out: each judge is scored against the consensus of the OTHER judges, so judges who flip
coins read 0.5 (± noise) at any overlap, and the number can serve as a ceiling.

The old rule scored each judge against a consensus that included their own vote: coin flips read 0.728 at overlap
3 and, at overlap 2 with equal trust, every disagreement became a tie that was dropped, leaving only the pairs the
two agreed on (1.0). Seeded simulations through `quality.consensus_pairs` (what exports, the dashboard and the
review queue use) and through a real export; ties are counted in the card, not dropped in silence."""

import random

import numpy as np
import pytest

from feedback import exports, quality, services
from tests.feedback.factories import make_member, make_tasks
from tests.feedback.factories import judge


def coin_flip_votes(rng, overlap: int, k: int):
    """One task's votes: `overlap` judges each rank k completions uniformly at random (equal trust)."""
    return [([[c] for c in rng.permutation(k).tolist()], 1.0) for _ in range(overlap)]


def simulated_agreement(seed: int, overlap: int, k: int, tasks: int) -> tuple[float, float]:
    """(mean agreement over every pair, tied pairs included; mean over the pairs that get a row)."""
    rng = np.random.default_rng(seed)
    every, decided = [], []
    for _ in range(tasks):
        for pair in quality.consensus_pairs(coin_flip_votes(rng, overlap, k)):
            every.append(pair.agreement)
            if pair.chosen is not None:
                decided.append(pair.agreement)
    return float(np.mean(every)), float(np.mean(decided))


@pytest.mark.parametrize("overlap", [2, 3, 5])
@pytest.mark.parametrize("k", [2, 4])
def test_coin_flips_read_one_half_at_every_overlap(overlap, k):
    every, _ = simulated_agreement(seed=overlap * 10 + k, overlap=overlap, k=k, tasks=3000)
    assert every == pytest.approx(0.5, abs=0.02)  # the old rule: 0.75 at overlap 2, 0.728 at 3


@pytest.mark.parametrize("overlap", [3, 5])
def test_exported_rows_of_coin_flips_read_one_half_when_no_pair_ties(overlap):
    # With an odd overlap and equal trust every pair is decided, so the rows themselves average 0.5.
    _, decided = simulated_agreement(seed=overlap, overlap=overlap, k=2, tasks=3000)
    assert decided == pytest.approx(0.5, abs=0.02)


def test_judges_who_are_usually_right_read_their_agreement_by_hand():
    # Each judge right with probability 0.8: against one other judge they agree 0.8² + 0.2² = 0.68 of the time;
    # against two others: 0.64 × 0.8 + 0.04 × 0.2 + 0.32 × ½ (the others split) = 0.68 as well.
    rng = np.random.default_rng(5)
    for overlap in (2, 3):
        values = []
        for _ in range(4000):
            votes = [([[1], [2]] if rng.random() < 0.8 else [[2], [1]], 1.0) for _ in range(overlap)]
            values += [p.agreement for p in quality.consensus_pairs(votes)]
        assert np.mean(values) == pytest.approx(0.68, abs=0.02)


def test_leave_one_out_by_hand():
    a_over_b, b_over_a, tie = [[1], [2]], [[2], [1]], [[1, 2]]
    # two judges who disagree: each disagrees with the other → 0, a tie (no row)
    (pair,) = quality.consensus_pairs([(a_over_b, 1.0), (b_over_a, 1.0)])
    assert (pair.chosen, pair.agreement) == (None, 0.0)
    # trust decides the direction, but the two still disagree with each other
    (pair,) = quality.consensus_pairs([(a_over_b, 0.9), (b_over_a, 0.3)])
    assert (pair.chosen, pair.agreement) == (1, 0.0)
    # 2 against 1: each majority judge meets a split (½), the minority judge meets two against (0) → 1/3
    (pair,) = quality.consensus_pairs([(a_over_b, 1.0), (a_over_b, 1.0), (b_over_a, 1.0)])
    assert pair.agreement == pytest.approx(1 / 3)
    # a tie vote is half-way: against a preference it scores ½ each way
    (pair,) = quality.consensus_pairs([(a_over_b, 1.0), (tie, 1.0)])
    assert pair.agreement == pytest.approx(0.5)
    # one judge alone: nothing to agree with
    (pair,) = quality.consensus_pairs([(a_over_b, 1.0)])
    assert pair.agreement is None and pair.chosen == 1
    # a reviewer's decision is the "other" every judge is measured against
    (pair,) = quality.consensus_pairs([(a_over_b, 1.0), (b_over_a, 1.0)], adjudicated_ranking=b_over_a)
    assert (pair.chosen, pair.agreement) == (2, 0.5)


@pytest.mark.django_db
def test_an_export_of_coin_flips_reads_one_half_and_counts_its_ties(project, tmp_path):
    """Overlap 2, coin-flip judges, through the services and a real export: the card's mean agreement is 0.5 ±
    noise (the old export: 1.0 once the ties were dropped) and every judged pair is a row or a counted tie."""
    make_tasks(project, 60, k=3)
    alice, bob = make_member(project), make_member(project)
    rng = random.Random(11)
    for person in (alice, bob):
        for _ in range(60):
            judge(project, person, [[m] for m in rng.sample(["m0", "m1", "m2"], 3)])
    snapshot, stats = services.export_preferences(project=project, out_dir=tmp_path / "out",
                                                  filters=exports.ExportFilters(test_fraction=0.3))
    counts = stats.counts()
    assert counts["pairs"] + counts["tied_pairs"] == 60 * 3  # every pair: a row or a counted tie
    assert counts["tied_pairs"] > 0 and counts["test_tied_pairs"] + counts["train_tied_pairs"] == counts["tied_pairs"]
    assert stats.mean_agreement() == pytest.approx(0.5, abs=0.12)
    assert snapshot.agreement == pytest.approx(stats.mean_agreement())
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"{counts['tied_pairs']} pairs the judges tied on" in card
    assert f"{counts['test_tied_pairs']} of them are test pairs" in card
    assert f"| {stats.mean_agreement():.3f} |" in card
    # Rows stay TRL rows: a tie is never a chosen/rejected pair.
    rows = [r for r in exports.iter_rows(snapshot)]
    assert all(r["chosen"] != r["rejected"] for r in rows) and len(rows) == counts["pairs"]
