"""The statistics against hand-computed cases and against test oracles (krippendorff, choix)."""

import choix
import krippendorff
import numpy as np
import pytest

from feedback import quality


class TestPairs:
    def test_ties_and_orientation(self):
        assert quality.pairs_from_ranking([[12], [11, 13]]) == [(11, 12, -1), (11, 13, 0), (12, 13, 1)]
        assert len(quality.pairs_from_ranking([[1], [2], [3], [4]])) == 6

    @pytest.mark.parametrize("ranking", [[[1], [1]], [[1], []]])
    def test_bad_rankings(self, ranking):
        with pytest.raises(ValueError):
            quality.pairs_from_ranking(ranking)


class TestKrippendorff:
    @pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
    @pytest.mark.parametrize("seed", range(4))
    def test_matches_the_krippendorff_package(self, level, seed):
        rng = np.random.default_rng(seed)
        data = rng.integers(-1, 2, size=(6, 50)).astype(float)
        data[rng.random(data.shape) < 0.35] = np.nan
        expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        assert quality.krippendorff_alpha(data, level) == pytest.approx(expected, abs=1e-9)

    def test_wikipedia_example(self):
        nan = np.nan
        data = [[nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
                [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
                [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4]]
        assert quality.krippendorff_alpha(data, "nominal") == pytest.approx(0.691358, abs=1e-6)
        assert quality.krippendorff_alpha(data, "interval") == pytest.approx(0.810845, abs=1e-6)

    def test_edge_cases(self):
        assert quality.krippendorff_alpha([[1, -1, 0], [1, -1, 0]]) == pytest.approx(1.0)
        assert np.isnan(quality.krippendorff_alpha([[1, np.nan], [np.nan, 1]]))  # nothing pairable
        assert np.isnan(quality.krippendorff_alpha([[1, 1], [1, 1]]))  # one value: undefined

    def test_from_tasks(self):
        tasks = {1: [("ann", [[10], [11]]), ("bob", [[10], [11]])], 2: [("ann", [[20], [21]]), ("bob", [[21], [20]])]}
        matrix = quality.reliability_from_tasks(tasks)
        assert matrix.shape == (2, 2)
        assert quality.krippendorff_alpha_from_tasks(tasks) == pytest.approx(
            krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal"))


class TestBradleyTerry:
    def test_matches_choix(self):
        rng = np.random.default_rng(1)
        m, n = 5, 5000
        truth = np.array([-1.0, -0.3, 0.0, 0.4, 1.2])
        a = rng.integers(0, m, n)
        b = (a + rng.integers(1, m, n)) % m
        outcome = np.where(rng.random(n) < 1 / (1 + np.exp(truth[b] - truth[a])), 1, -1)
        theta = quality.bradley_terry(quality.aggregate_battles(a, b, outcome, m), prior=0.0)
        comparisons = [(int(x), int(y)) if o > 0 else (int(y), int(x)) for x, y, o in zip(a, b, outcome)]
        oracle = choix.ilsr_pairwise(m, comparisons, alpha=0.0)
        assert theta == pytest.approx(oracle - oracle.mean(), abs=1e-4)

    def test_million_judgements_recover_the_order_with_intervals(self):
        rng = np.random.default_rng(2)
        m, n = 8, 1_000_000
        truth = np.linspace(-1.5, 1.5, m)
        a = rng.integers(0, m, n)
        b = (a + rng.integers(1, m, n)) % m
        p = 1 / (1 + np.exp(truth[b] - truth[a]))
        draw = rng.random(n)
        outcome = np.where(draw < p * 0.9, 1, np.where(draw < 0.9, -1, 0))  # 10% ties
        board = quality.leaderboard(a, b, outcome, [f"v{i}" for i in range(m)], rounds=50)
        assert [row["model"] for row in board] == [f"v{i}" for i in reversed(range(m))]
        assert all(row["lower"] <= row["score"] <= row["upper"] for row in board)
        assert all(row["upper"] - row["lower"] < 10 for row in board)  # a million battles: tight
        assert sum(row["comparisons"] for row in board) == 2 * n

    def test_undefeated_model_stays_finite(self):
        board = quality.leaderboard_from_battles([("a", "b", 1)] * 20 + [("b", "c", 1)] * 5)
        assert board[0]["model"] == "a" and np.isfinite(board[0]["score"])


def test_wilson_interval():
    low, high = quality.wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert quality.wilson_interval(0, 0) == (0.0, 1.0)


def test_trust_score_is_smoothed():
    assert quality.trust_score(gold_correct=0, gold_total=0, agree=0, agree_total=0) == pytest.approx(0.8)
    assert quality.trust_score(gold_correct=0, gold_total=1, agree=0, agree_total=0) == pytest.approx(4 / 7)
    assert quality.trust_score(gold_correct=0, gold_total=50, agree=0, agree_total=50) < 0.1


class TestAdaptiveOverlap:
    def test_agreeing_judges_stop_at_the_minimum(self):
        same = [[[1], [2], [3]]] * 2
        assert quality.needs_more_judgements(same[:1], min_judgements=2, max_judgements=5) is True
        assert quality.needs_more_judgements(same, min_judgements=2, max_judgements=5) is False

    def test_disagreement_asks_again_up_to_the_maximum(self):
        split = [[[1], [2]], [[2], [1]]]
        assert quality.needs_more_judgements(split, min_judgements=2, max_judgements=5) is True
        assert quality.needs_more_judgements(split * 3, min_judgements=2, max_judgements=5) is False
