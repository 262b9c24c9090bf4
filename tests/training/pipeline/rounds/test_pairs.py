"""The pure half of an iterative-DPO round: every pair, least certain first; the budget; the reward model's rows."""

from training.pipeline.rounds.pairs import distinct, model_row, scored_pairs, split_budget


def test_pairs_are_ranked_by_reward_gap_and_split_by_the_budget():
    answers = [["a", "b", "c"], ["x", "y"]]
    rewards = [[0.0, 0.5, 2.0], [1.0, 1.1]]
    pairs = scored_pairs(answers, rewards)
    assert [(p.a, p.b) for p in pairs] == [("x", "y"), ("a", "b"), ("b", "c"), ("a", "c")]
    assert [round(p.gap, 6) for p in pairs] == [0.1, 0.5, 1.5, 2.0]
    people, machine = split_budget(pairs, 2)
    assert [(p.a, p.b) for p in people] == [("x", "y"), ("a", "b")] and len(machine) == 2
    row = model_row(machine[0], "prompt", "q-1", 1.0)
    assert (row["chosen"], row["rejected"], row["weight"]) == ("c", "b", 1.0)  # the reward model's preference


def test_disagreement_between_two_reward_models_goes_first():
    answers = [["a", "b"], ["c", "d"]]
    rewards = [[0.0, 1.0], [0.0, 0.1]]  # the newest model: a<b by 1.0, c<d by 0.1
    second = [[1.0, 0.0], [0.0, 0.1]]  # the previous one agrees on c<d, reverses a<b
    by_gap = scored_pairs(answers, rewards)
    by_disagreement = scored_pairs(answers, rewards, second, select_by="disagreement")
    assert [p.a for p in by_gap] == ["c", "a"] and [p.a for p in by_disagreement] == ["a", "c"]
    assert [p.a for p in scored_pairs(answers, rewards, None, select_by="disagreement")] == ["c", "a"]


def test_distinct_answers_drop_repeats_and_blanks():
    assert distinct(["x", "y", "x", " ", ""]) == ["x", "y"]
