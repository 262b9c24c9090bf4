"""The simulated world of bench/loop.py: annotators agree as often as the figures in the README say."""

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import loop_sim as sim  # noqa: E402

WITH, WITHOUT = "It was built in 1889.", "It is very tall."


def judge_pairs(annotators, n_tasks):
    """{task: [1 when the answer with a digit won, else 0] per annotator} on rule-decided pairs."""
    return {t: [int(a.prefers_first(WITH, WITHOUT)) for a in annotators] for t in range(n_tasks)}


def test_two_annotators_agree_on_three_quarters_of_rule_decided_pairs():
    annotators = [sim.Annotator(random.Random(i)) for i in range(3)]
    labels = judge_pairs(annotators, 4000)
    agreement, n = sim.observed_agreement(labels)
    follows = sum(map(sum, labels.values())) / (3 * len(labels))
    assert n == 3 * 4000
    assert abs(agreement - 0.75) < 0.02
    assert abs(follows - (1 + sim.P_FOLLOW_RULE) / 2) < 0.02


def test_control_annotators_carry_no_information():
    annotators = [sim.Annotator(random.Random(i), shuffled=True) for i in range(3)]
    labels = judge_pairs(annotators, 4000)
    assert abs(sum(map(sum, labels.values())) / (3 * 4000) - 0.5) < 0.02
    assert abs(sim.observed_agreement(labels)[0] - 0.5) < 0.02


def test_rule_ties_are_coin_flips_and_the_ceiling_counts_them_half():
    annotator = sim.Annotator(random.Random(0), p=1.0)
    picks = [annotator.prefers_first(WITHOUT, "Also tall.") for _ in range(2000)]
    assert abs(sum(picks) / len(picks) - 0.5) < 0.04
    assert sim.oracle_accuracy([(WITH, WITHOUT), (WITHOUT, WITH), (WITHOUT, "Also tall.")]) == 0.5
    assert sim.rule_score([{"role": "assistant", "content": WITH}]) == 1


def test_import_file_follows_the_design_row_format(tmp_path):
    path = tmp_path / "prompts.jsonl"
    sim.write_import_file(path, 30, seed=0)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len({row["id"] for row in rows}) == 30
    decided = sum(sim.rule_preference(*[c["text"] for c in row["completions"]]) != 0 for row in rows)
    assert all(len(row["completions"]) == 2 and row["prompt"][0]["role"] == "user" for row in rows)
    assert decided >= 20  # about 90% of pairs have a digit in exactly one answer
