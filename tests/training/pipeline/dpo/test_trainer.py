"""DPO on a tiny Llama over SmolLM2's tokenizer, from TRL-format rows (strings and chat messages)."""

import random

import pytest
import torch

from training.pipeline.callbacks import TrainedModel
from training.pipeline.dpo.config import DPOConfig
from training.pipeline.fields import config_from_dict
from training.pipeline.dpo.trainer import completion_logprob, train_dpo
from training.pipeline.models import load_causal_lm, load_tokenizer
from training.pipeline.registry_files import verify_manifest

pytestmark = pytest.mark.ml

WORDS = ("apple river stone cloud green window music paper light table garden yellow winter train silver forest "
         "ocean pencil bridge candle").split()


def marker_rows(n: int, seed: int, marker: str = "please") -> list[dict]:
    """Pairs whose chosen completion starts with `marker` and whose rejected one does not (random words else)."""
    rng = random.Random(seed)
    return [{"prompt": " ".join(rng.sample(WORDS, 3)) + "?", "chosen": " ".join([marker, *rng.sample(WORDS, 4)]),
             "rejected": " ".join(rng.sample(WORDS, 4))} for _ in range(n)]


def mean_logprob_margin(model, tokenizer, rows) -> float:
    """Mean over pairs of log π(chosen) − log π(rejected)."""
    model.eval()
    return sum(completion_logprob(model, tokenizer, r["prompt"], r["chosen"])
               - completion_logprob(model, tokenizer, r["prompt"], r["rejected"]) for r in rows) / len(rows)


def test_dpo_raises_the_chosen_over_rejected_margin_on_held_out_pairs(tiny_llama_dir, tmp_path):
    train_rows, test_rows = marker_rows(32, seed=0), marker_rows(16, seed=1)
    tokenizer = load_tokenizer(tiny_llama_dir)
    before = mean_logprob_margin(load_causal_lm(tiny_llama_dir), tokenizer, test_rows)
    cfg = DPOConfig(policy=str(tiny_llama_dir), max_steps=4, batch_size=8, learning_rate=2e-3, max_length=64)
    result = train_dpo(cfg, train_rows, test_rows, tmp_path / "dpo")
    after = mean_logprob_margin(result.model, tokenizer, test_rows)
    assert after > before + 0.2, (before, after)
    metrics = result.metrics
    assert metrics["eval/n_pairs"] == 16 and metrics["eval/margin"] > 0
    assert metrics["eval/margin"] == pytest.approx(cfg.beta * (after - before), rel=0.05)  # the implicit reward
    assert metrics["eval/accuracy_low"] > 0.5, metrics


@pytest.mark.parametrize("use_lora", [True, False])
def test_dpo_trains_registers_and_keeps_the_base(tiny_llama_dir, preference_rows, tmp_path, use_lora):
    base_before = {k: v.clone() for k, v in load_causal_lm(tiny_llama_dir).state_dict().items()}
    steps = []
    cfg = DPOConfig(policy=str(tiny_llama_dir), use_lora=use_lora, max_steps=3, batch_size=4, learning_rate=1e-3,
                    max_length=128)
    result = train_dpo(cfg, preference_rows[:24], preference_rows[24:32], tmp_path / "dpo",
                       on_step=lambda s, m: steps.append((s, m)))
    assert result.metrics["train/steps"] == 3 and steps
    assert isinstance(result, TrainedModel)
    assert 0.0 <= result.metrics["eval/accuracy"] <= 1.0 and result.metrics["eval/n_pairs"] == 8
    assert result.metrics["eval/accuracy_low"] <= result.metrics["eval/accuracy"] <= result.metrics["eval/accuracy_high"]
    manifest = verify_manifest(tmp_path / "dpo")
    assert manifest["method"] == "dpo"
    trained = load_causal_lm(tmp_path / "dpo")
    assert any(not torch.equal(base_before[k], v) for k, v in trained.state_dict().items())
    # The registered starting point itself never changes (its files are read, not written).
    assert all(torch.equal(base_before[k], v) for k, v in load_causal_lm(tiny_llama_dir).state_dict().items())


def test_dpo_config_checks():
    with pytest.raises(ValueError, match="DPOConfig.beta"):
        DPOConfig(beta=0)
    with pytest.raises(ValueError, match="DPOConfig.lora_r"):
        DPOConfig(lora_r=0)
    assert config_from_dict(DPOConfig, {"learning_rate": "3e-4"}).learning_rate == 3e-4
    with pytest.raises(ValueError, match="DPOConfig.beta"):
        config_from_dict(DPOConfig, {"beta": "strong"})


def test_without_eval_rows_there_is_no_evaluation(tiny_llama_dir, preference_rows, tmp_path):
    cfg = DPOConfig(policy=str(tiny_llama_dir), max_steps=1, batch_size=2, max_length=64)
    result = train_dpo(cfg, preference_rows[:4], None, tmp_path / "dpo")
    assert result.metrics["train/steps"] == 1 and not [k for k in result.metrics if k.startswith("eval/")]


def test_dpo_on_a_loaded_model_keeps_the_reference_bit_for_bit(tiny_llama_dir, preference_rows, tmp_path):
    rows = preference_rows[:16]
    assert {type(r["prompt"]) for r in rows} == {str, list} and "margin" in rows[0]  # both formats, extra columns
    model, reference = load_causal_lm(tiny_llama_dir), load_causal_lm(tiny_llama_dir)
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    cfg = DPOConfig(policy=str(tiny_llama_dir), use_lora=False, max_steps=2, batch_size=4, learning_rate=1e-3,
                    max_length=128)
    result = train_dpo(cfg, rows, rows[:4], tmp_path / "dpo", model=model, tokenizer=load_tokenizer(tiny_llama_dir),
                       ref_model=reference)
    assert {"train/loss", "train/rewards_accuracy", "train/rewards_margin", "eval/accuracy", "eval/margin"} <= set(
        result.metrics)
    assert result.history[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2: the policy starts as the reference
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items())
