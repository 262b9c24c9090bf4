"""The weights and label smoothing of an iterative-DPO round's pairs (`rounds.weights.round_pair_weights`).

- No confidence value zeroes a label (the old weight, consensus × (confidence − 1)/4, discarded every pair whose
  judges said "unsure").
- A people's label is smoothed by the probability that it is wrong, and that probability is calibrated: in a
  seeded simulation of judges who are right 75% of the time, the smoothing of unanimous and of split labels
  matches how often those labels really are wrong.
- The reward model's gaps are calibrated on people's labels (Platt slope), and its pairs weigh more the surer it is.
- Per-pair cDPO in the trainer is (1 − ε)·loss(chosen ≻ rejected) + ε·loss(rejected ≻ chosen), TRL's own losses.
"""

import copy
import math

import numpy as np
import pytest
import torch

from feedback import quality
from training.pipeline.agreement_model import expected_agreement, judge_accuracy
from training.pipeline.dpo.weighted import cdpo_from_sigmoid_loss
from training.pipeline.rounds.weights import (
    MIN_MODEL_WIN_PROBABILITY, calibrate_gap_slope, people_weight_share, round_pair_weights,
)



def people_row(confidence, *, margin=1.0, n=3):
    return {"prompt": "p", "chosen": "a", "rejected": "b", "prompt_id": "q", "margin": margin, "n_judgements": n,
            "agreement": 1.0, "confidence": confidence}


@pytest.mark.parametrize("confidence", [1, 1.5, 2, 3, 4, 5, None])
def test_no_confidence_value_zeroes_a_label(confidence):
    people, _, _ = round_pair_weights([people_row(confidence)], [], judge_agreement=0.7)
    assert people[0]["weight"] >= 0.5  # the weight of a label whose judges all said "unsure" is half, never 0


def test_surer_judges_weigh_more_and_the_scale_applies():
    people, _, _ = round_pair_weights([people_row(c) for c in (1, 3, 5)], [], judge_agreement=0.7, human_weight=2.0)
    assert [r["weight"] for r in people] == pytest.approx([1.0, 1.5, 2.0])


def simulated_rows(rng, n_tasks: int, q: float, overlap: int = 3):
    """Export-like rows of K = 2 tasks whose `overlap` judges are each right with probability q, plus whether each
    row's consensus label is wrong (the simulation knows the truth: completion 1 is better)."""
    rows, wrong, agreements = [], [], []
    for _ in range(n_tasks):
        votes = [([[1], [2]] if rng.random() < q else [[2], [1]], 1.0) for _ in range(overlap)]
        (pair,) = quality.consensus_pairs(votes)
        agreements.append(pair.agreement)
        if pair.chosen is None:
            continue
        rows.append({**people_row(None, margin=pair.margin, n=pair.n_judgements), "agreement": pair.agreement})
        wrong.append(pair.chosen != 1)
    return rows, np.array(wrong), float(np.mean(agreements))


def test_label_smoothing_matches_how_often_the_consensus_is_wrong():
    rng = np.random.default_rng(0)
    rows, wrong, agreement = simulated_rows(rng, 6000, q=0.75)
    # The agreement fixes the judges' accuracy (leave-one-out: 0.625 at q = 0.75, overlap 3, by hand).
    assert agreement == pytest.approx(0.625, abs=0.01)
    assert judge_accuracy(agreement, [3]) == pytest.approx(0.75, abs=0.02)
    people, _, figures = round_pair_weights(rows, [], judge_agreement=agreement)
    smoothing = np.array([r["smoothing"] for r in people])
    unanimous = np.array([r["margin"] == 1.0 for r in rows])
    # Bayes by hand at q = 0.75: unanimous labels are wrong 1/28 of the time (3.6%), 2-to-1 labels 25%.
    assert wrong[unanimous].mean() == pytest.approx(1 / 28, abs=0.01)
    assert wrong[~unanimous].mean() == pytest.approx(0.25, abs=0.02)
    assert smoothing[unanimous].mean() == pytest.approx(wrong[unanimous].mean(), abs=0.015)
    assert smoothing[~unanimous].mean() == pytest.approx(wrong[~unanimous].mean(), abs=0.03)


def test_coin_flip_judges_get_labels_smoothed_to_almost_nothing():
    rows, _, agreement = simulated_rows(np.random.default_rng(1), 3000, q=0.5)
    people, _, figures = round_pair_weights(rows, [], judge_agreement=agreement)
    assert figures["judge_q"] < 0.6
    assert np.mean([r["smoothing"] for r in people]) > 0.4


def test_expected_agreement_by_hand():
    assert expected_agreement(0.8, 2) == pytest.approx(0.8**2 + 0.2**2)
    # overlap 3: both others right (0.64) → 0.8; both wrong (0.04) → 0.2; split (0.32) → ½
    assert expected_agreement(0.8, 3) == pytest.approx(0.64 * 0.8 + 0.04 * 0.2 + 0.32 * 0.5)
    assert expected_agreement(0.5, 5) == pytest.approx(0.5)


def test_reward_gaps_are_calibrated_on_peoples_labels():
    rng = np.random.default_rng(2)
    gaps = rng.normal(0, 1.5, 4000)
    true_slope = 0.6  # the reward model is overconfident: its σ(gap) claims more than it knows
    right = rng.random(gaps.size) < 1 / (1 + np.exp(-true_slope * np.abs(gaps)))  # P(its label is right)
    signed = np.where(right, np.abs(gaps), -np.abs(gaps))  # r(chosen) − r(rejected) as people labelled them
    assert calibrate_gap_slope(signed.tolist()) == pytest.approx(true_slope, abs=0.06)
    assert calibrate_gap_slope([]) == 1.0  # no label: the reward model's own Bradley–Terry scale


def test_reward_model_pairs_weigh_by_their_calibrated_gap_and_unsure_ones_are_left_out():
    machine = [{"prompt": "p", "chosen": "a", "rejected": "b", "prompt_id": f"m{i}", "gap": g}
               for i, g in enumerate([0.1, 0.5, 1.0, 3.0])]
    _, kept, figures = round_pair_weights([], machine, judge_agreement=None)
    p = [1 / (1 + math.exp(-g)) for g in (0.1, 0.5, 1.0, 3.0)]
    assert [r["prompt_id"] for r in kept] == [f"m{i}" for i, x in enumerate(p) if x >= MIN_MODEL_WIN_PROBABILITY]
    assert [r["weight"] for r in kept] == pytest.approx([2 * x - 1 for x in p if x >= MIN_MODEL_WIN_PROBABILITY])
    assert [r["smoothing"] for r in kept] == pytest.approx([min(1 - x, 0.45) for x in p if x >= 0.6])
    assert figures["people_weight_share"] == 0.0


def test_people_carry_a_real_share_of_a_default_round():
    """A default round (32 prompts, K = 4, 16 pairs to people, the rest labelled by the reward model): the old
    weights gave people 16 × margin × (confidence − 1)/4 against 176 pairs of weight 1 — about 4% of the loss.
    Best-vs-worst pairs weighted by a calibrated gap leave people a real share."""
    rng = np.random.default_rng(3)
    people = [people_row(float(rng.integers(2, 6)), margin=float(rng.choice([1.0, 1 / 3]))) for _ in range(16)]
    rewards = rng.normal(0, 1, (32, 4))
    widest = rewards.max(axis=1) - rewards.min(axis=1)
    machine = [{"prompt": "p", "chosen": "a", "rejected": "b", "prompt_id": f"m{i}", "gap": float(g)}
               for i, g in enumerate(widest)]
    old_people = sum(r["margin"] * (r["confidence"] - 1) / 4 for r in people)
    old_share = old_people / (old_people + 32 * 6 - 16)
    _, _, figures = round_pair_weights(people, machine, judge_agreement=0.68)
    assert old_share < 0.06
    assert figures["people_weight_share"] > 0.25
    assert people_weight_share([{"source": "people", "weight": 1.0}, {"source": "reward_model", "weight": 3.0}]) == 0.25


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3, 0.45])
def test_cdpo_from_the_sigmoid_loss_is_the_smoothed_loss(smoothing):
    x = torch.linspace(-12, 12, 49, dtype=torch.float64, requires_grad=True)
    loss = -torch.nn.functional.logsigmoid(x)
    ours = cdpo_from_sigmoid_loss(loss, smoothing)
    expected = -(1 - smoothing) * torch.nn.functional.logsigmoid(x) - smoothing * torch.nn.functional.logsigmoid(-x)
    torch.testing.assert_close(ours, expected)
    (grad,) = torch.autograd.grad(ours.sum(), x)
    torch.testing.assert_close(grad, -(1 - smoothing) * torch.sigmoid(-x) + smoothing * torch.sigmoid(x))


def _swapped(pair: dict) -> dict:
    """The same pair with chosen and rejected exchanged (rows and reference log-probs)."""
    out = {}
    for key, value in pair.items():
        if key == "ref_chosen_logps":
            out[key] = pair["ref_rejected_logps"]
        elif key == "ref_rejected_logps":
            out[key] = pair["ref_chosen_logps"]
        else:
            out[key] = value.flip(0)
    return out


@pytest.mark.ml
@pytest.mark.parametrize("loss_type", ["sigmoid", "robust"])
def test_the_trainer_smooths_each_pair_as_its_loss_defines(loss_type, tiny_llama_dir, tmp_path):
    from tests.training.pipeline.dpo.test_trainer import marker_rows

    from training.pipeline.dpo.config import DPOConfig
    from training.pipeline.data import PREFERENCE_COLUMNS, preference_dataset_for
    from training.pipeline.dpo.trainer import trl_dpo_args
    from training.pipeline.dpo.weighted import _one_pair, weighted_trainer_class
    from training.pipeline.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(tiny_llama_dir)
    model = load_causal_lm(tiny_llama_dir)
    dataset = preference_dataset_for(tokenizer, marker_rows(2, seed=3)).select_columns(list(PREFERENCE_COLUMNS))
    dataset = dataset.add_column("weight", [1.0, 1.0]).add_column("smoothing", [0.2, 0.0])
    cfg = DPOConfig(policy=str(tiny_llama_dir), use_lora=False, batch_size=2, max_length=64, loss_type=loss_type)
    trainer = weighted_trainer_class()(model=model, ref_model=copy.deepcopy(model).eval(),
                                       args=trl_dpo_args(cfg, str(tmp_path / "scratch")), train_dataset=dataset,
                                       processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["smoothing"].tolist() == pytest.approx([0.2, 0.0])
    model.train()
    ours = trainer.compute_loss(model, dict(batch))
    inputs = {k: v for k, v in batch.items() if k not in ("weight", "smoothing")}
    first, second = _one_pair(inputs, 0, 2), _one_pair(inputs, 1, 2)
    forward = trainer._compute_loss(model, first, False)
    backward = trainer._compute_loss(model, _swapped(first), False)
    plain_second = trainer._compute_loss(model, second, False)
    if loss_type == "sigmoid":  # cDPO: the label is right with probability 0.8
        first_loss = 0.8 * forward + 0.2 * backward
    else:  # robust DPO (Chowdhury et al. 2024), TRL's formula with ε = 0.2
        first_loss = (0.8 * forward - 0.2 * backward) / 0.6
    torch.testing.assert_close(ours, (first_loss + plain_second) / 2, rtol=1e-4, atol=1e-6)
    assert trainer.label_smoothing == 0.0  # the per-pair value does not leak into the next pair
