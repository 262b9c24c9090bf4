"""DPO with a weight per pair (`dpo_weighted.WeightedDPOTrainer`): the loss is the weighted mean of TRL's own
per-pair losses, so a pair of weight 0 adds no gradient, and the weighted rows train through `train_dpo`."""

import copy

import pytest
import torch

from tests.training.pipeline.dpo.test_trainer import marker_rows, mean_logprob_margin

from training.pipeline.dpo.config import DPOConfig
from training.pipeline.data import PREFERENCE_COLUMNS, preference_dataset_for
from training.pipeline.dpo.trainer import train_dpo, trl_dpo_args
from training.pipeline.dpo.weighted import _one_pair, weighted_trainer_class
from training.pipeline.models import load_causal_lm, load_tokenizer

pytestmark = pytest.mark.ml


@pytest.fixture
def trainer(tiny_llama_dir, tmp_path):
    tokenizer = load_tokenizer(tiny_llama_dir)
    model = load_causal_lm(tiny_llama_dir)
    rows = marker_rows(2, seed=3)
    dataset = preference_dataset_for(tokenizer, rows).select_columns(list(PREFERENCE_COLUMNS))
    dataset = dataset.add_column("weight", [1.0, 1.0])
    cfg = DPOConfig(policy=str(tiny_llama_dir), use_lora=False, batch_size=2, max_length=64)
    return weighted_trainer_class()(model=model, ref_model=copy.deepcopy(model).eval(),
                                    args=trl_dpo_args(cfg, str(tmp_path / "scratch")), train_dataset=dataset,
                                    processing_class=tokenizer)


def gradients(trainer, batch, weights=None, *, weighted=True) -> list[torch.Tensor]:
    model = trainer.model
    model.train()
    model.zero_grad(set_to_none=False)
    batch = dict(batch)
    if weighted:
        batch["weight"] = torch.tensor(weights, dtype=torch.float32)
        loss = trainer.compute_loss(model, batch)
    else:  # TRL's own, unweighted loss
        loss = trainer._compute_loss(model, batch, False)
    loss.backward()
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def test_a_pair_of_weight_zero_adds_no_gradient(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["weight"].tolist() == [1.0, 1.0] and batch["input_ids"].shape[0] == 4  # chosen ×2, rejected ×2
    batch.pop("weight")
    nothing = gradients(trainer, batch, [0.0, 0.0])
    assert all(float(g.abs().max()) == 0.0 for g in nothing)
    first_only = gradients(trainer, batch, [1.0, 0.0])
    first_alone = gradients(trainer, _one_pair(batch, 0, 2), weighted=False)  # TRL's loss on pair 0 alone
    assert max(float(g.abs().max()) for g in first_alone) > 0
    for weighted_grad, alone in zip(first_only, first_alone):
        torch.testing.assert_close(weighted_grad, alone / 2, rtol=1e-4, atol=1e-7)
    # The weighted mean with equal weights is TRL's mean over the batch.
    both = gradients(trainer, batch, [1.0, 1.0])
    trl_mean = gradients(trainer, batch, weighted=False)
    for ours, theirs in zip(both, trl_mean):
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-6)


def test_weighted_rows_train_and_zero_weights_leave_the_policy_as_it_was(tiny_llama_dir, tmp_path):
    tokenizer = load_tokenizer(tiny_llama_dir)
    rows, held_out = marker_rows(16, seed=0), marker_rows(8, seed=1)
    before = mean_logprob_margin(load_causal_lm(tiny_llama_dir), tokenizer, held_out)
    cfg = DPOConfig(policy=str(tiny_llama_dir), max_steps=3, batch_size=8, learning_rate=2e-3, max_length=64,
                    use_lora=False)
    trained = train_dpo(cfg, [{**r, "weight": 1.0} for r in rows], None, tmp_path / "one")
    assert mean_logprob_margin(trained.model, tokenizer, held_out) > before + 0.1
    untouched = train_dpo(cfg, [{**r, "weight": 0.0} for r in rows], None, tmp_path / "zero")
    assert mean_logprob_margin(untouched.model, tokenizer, held_out) == pytest.approx(before, abs=1e-4)
