"""PPO end to end on a tiny Llama over SmolLM2's tokenizer, with a rule-based reward.

The tiny model's output layer gets a bias towards 32 short words, so its answers are made of them
from the start (a random 49k-token policy would need far longer to find any reward). The reward is the
share of answer words from the "good" half: learnable, cheap and exact.
"""

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from training.pipeline.ppo.config import PPOConfig
from training.pipeline.fields import config_from_dict
from training.pipeline.models import load_tokenizer, tiny_causal_lm
from training.pipeline.ppo.loop import train_ppo
from training.pipeline.ppo.save import merged_policy, save_policy

WORDS = [" yes", " no", " cat", " dog", " sun", " red", " big", " one", " two", " up", " sea", " tree", " blue",
         " car", " hat", " box", " run", " map", " pen", " cup", " egg", " bed", " leg", " arm", " key", " bus",
         " fox", " owl", " ant", " bee", " cow", " pig"]
GOOD = set(w.strip() for w in WORDS[:16])
TRAIN = [f"Tell me about thing number {i}." for i in range(24)]
HELD_OUT = [f"Describe object {i} briefly." for i in range(8)]


def good_share(prompts, texts):
    scores = []
    for text in texts:
        words = text.split()
        scores.append(sum(w in GOOD for w in words) / len(words) if words else 0.0)
    return scores


@pytest.fixture
def tokenizer(tiny_llama_dir):
    return load_tokenizer(tiny_llama_dir)


def word_policy(tokenizer, seed=0):
    model = tiny_causal_lm(tokenizer, seed=seed)
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in WORDS]
    head = nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    head.weight = model.lm_head.weight  # still tied to the input embeddings
    with torch.no_grad():
        head.bias.zero_()
        head.bias[ids] = 9.0
    model.lm_head = head
    return model


def config(**overrides):
    values = dict(policy="tiny", use_lora=False, num_iterations=8, batch_size=16, mini_batch_size=8, ppo_epochs=2,
                  max_new_tokens=8, learning_rate=5e-3, init_kl_coef=0.02, missing_eos_penalty_std=0.0,
                  gate_samples_per_prompt=4, kl_bound=50.0, seed=0, temperature=1.0, top_p=1.0)
    values.update(overrides)
    return PPOConfig(**values)


def test_ppo_raises_held_out_reward_and_keeps_the_reference(tokenizer):
    policy = word_policy(tokenizer)
    reference_before = {k: v.clone() for k, v in policy.state_dict().items()}
    reference = copy.deepcopy(policy)  # full fine-tuning: the frozen reference is a separate copy
    steps = []
    judged = []  # a held-out judge that agrees with the reward: the gate reads its scores
    result = train_ppo(config(), policy, tokenizer, good_share, TRAIN, HELD_OUT, on_step=lambda s, m: steps.append(m),
                       held_out_judge=lambda prompts, texts: judged.append(len(texts)) or good_share(prompts, texts),
                       ref_model=reference)
    assert result.status == "completed"
    assert result.eval_after.reward > result.eval_before.reward + 0.1
    assert judged == [len(HELD_OUT) * 4] * 2  # the parent's and the candidate's held-out samples
    assert result.gate.passed and result.gate.lower > 0 and result.gate.n_prompts == len(HELD_OUT)
    assert result.passes_gate and result.flags == []
    assert result.summary()["eval_after/held_out_reward"] == result.eval_after.held_out_reward
    assert result.summary()["gate/passed"] is True
    assert steps[0]["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # the first rollout is the reference's
    assert all(m["objective/kl"] < 50.0 for m in steps)
    assert {"objective/reward", "objective/kl", "objective/entropy", "policy/clipfrac", "policy/approx_kl",
            "losses/policy", "losses/value", "val/explained_variance", "response/length_mean", "time/sampling_s",
            "time/scoring_s", "time/reference_s", "time/update_s", "time/iteration_s",
            "time/tokens_per_s", "objective/kl_base"} <= set(steps[0])
    assert all(isinstance(v, float) for m in steps for v in m.values())  # one flat dict of floats per step
    # Full fine-tuning trains the policy itself; the reference is bit-for-bit what it was, and frozen.
    assert any(not torch.equal(reference_before[k], v) for k, v in result.model.state_dict().items())
    assert all(torch.equal(reference_before[k], v) for k, v in reference.state_dict().items())
    assert not any(p.requires_grad for p in reference.parameters())


def test_lora_reference_is_bit_for_bit_unchanged(tokenizer, tmp_path):
    policy = word_policy(tokenizer)
    base_before = {k: v.clone() for k, v in policy.state_dict().items()}
    result = train_ppo(config(use_lora=True, num_iterations=3, learning_rate=1e-2), policy, tokenizer, good_share,
                       TRAIN, HELD_OUT)
    assert result.status == "completed" and len(result.history) == 3
    with result.model.disable_adapter():
        base_after = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                      for k, v in result.model.state_dict().items() if "lora_" not in k}
    for name, tensor in base_before.items():
        assert torch.equal(base_after[name], tensor), name
    merged = merged_policy(result)
    assert not any("lora_" in k for k in merged.state_dict())


def test_nan_reward_stops_and_fails_the_gate(tokenizer):
    calls = iter(range(1000))  # the evaluation before training scores normally; the first rollout gets NaN
    result = train_ppo(config(num_iterations=3), word_policy(tokenizer), tokenizer,
                       lambda prompts, texts: [math.nan if next(calls) >= len(HELD_OUT) * 4 else 0.5 for _ in texts],
                       TRAIN, HELD_OUT)
    assert result.status == "nan" and not result.passes_gate and len(result.history) == 1
    assert "non-finite score" in result.message and result.summary()["status"] == "nan"
    # It stopped before any update learned from the NaN: the weights are finite.
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_exploding_update_stops_before_the_weights_turn_nan(tokenizer):
    cfg = config(num_iterations=3)
    cfg.learning_rate = 1e4  # past its stated range (0, 1), which every parser refuses: set after the checks, so the
    # loop's own safeguard is what stops it
    result = train_ppo(cfg, word_policy(tokenizer), tokenizer, good_share, TRAIN, HELD_OUT)
    assert result.status == "nan" and not result.passes_gate and "non-finite" in result.message
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_kl_bound_stops(tokenizer):
    result = train_ppo(config(num_iterations=6, learning_rate=5e-2, kl_bound=0.5), word_policy(tokenizer), tokenizer,
                       good_share, TRAIN, HELD_OUT)
    assert result.status == "kl_bound" and not result.passes_gate


def test_cancel(tokenizer):
    calls = []
    result = train_ppo(config(num_iterations=5), word_policy(tokenizer), tokenizer, good_share, TRAIN, HELD_OUT,
                       on_step=lambda s, m: calls.append(s), should_stop=lambda: len(calls) >= 2)
    assert result.status == "cancelled" and calls == [1, 2] and not result.passes_gate


def test_cancel_is_polled_inside_sampling(tokenizer):
    polls = []  # the first polls come from the evaluation's sampling chunks, before any iteration
    result = train_ppo(config(num_iterations=5), word_policy(tokenizer), tokenizer, good_share, TRAIN, HELD_OUT,
                       should_stop=lambda: polls.append(1) or len(polls) >= 2)
    assert result.status == "cancelled" and result.history == [] and "sampling" in result.message


def test_saved_policy_is_safetensors_with_value_head(tokenizer, tiny_llama_dir, tmp_path):
    from training.pipeline.models import load_causal_lm, verify_manifest

    policy = load_causal_lm(tiny_llama_dir)
    result = train_ppo(config(num_iterations=1, use_lora=True), policy, tokenizer, good_share, TRAIN[:4], HELD_OUT[:2])
    assert result.value_head.summary.weight.abs().sum() > 0  # it learned something from zero
    save_policy(result, tokenizer, tmp_path / "policy", {"kind": "policy"})
    manifest = verify_manifest(tmp_path / "policy")
    assert "value_head.safetensors" in manifest["files"] and not list((tmp_path / "policy").glob("*.bin"))
    reloaded = load_causal_lm(tmp_path / "policy")
    # The next run on the saved policy starts from the saved value head (found beside the policy).
    again = train_ppo(config(num_iterations=1, use_lora=True, learning_rate=1e-12), reloaded, tokenizer, good_share,
                      TRAIN[:4], [])
    for name, tensor in result.value_head.state_dict().items():
        assert torch.allclose(again.value_head.state_dict()[name], tensor, atol=1e-6), name


def test_cliprange_outside_the_usual_range_warns_and_bad_values_fail():
    with pytest.warns(UserWarning, match="cliprange"):
        PPOConfig(cliprange=0.5)
    with pytest.raises(ValueError, match="cliprange"):
        PPOConfig(cliprange=1.5)
    with pytest.raises(ValueError, match="mini_batch_size"):
        PPOConfig(batch_size=4, mini_batch_size=8)
    with pytest.raises(ValueError, match="kl_estimator"):
        PPOConfig(kl_estimator="k2")
    with pytest.raises(ValueError, match="unknown PPOConfig setting"):
        config_from_dict(PPOConfig, {"clip_range": 0.2})
    with pytest.raises(ValueError, match="unknown PPOConfig setting"):
        config_from_dict(PPOConfig, {"target_kl": 6.0})  # renamed adaptive_kl_target: it is not an early stop
    cfg = config_from_dict(PPOConfig, {"cliprange": 0.15, "adaptive_kl": True})
    assert dataclasses.asdict(cfg)["cliprange"] == 0.15
    assert all(f.metadata.get("help") for f in dataclasses.fields(PPOConfig))


def test_reward_collapse_stops(tokenizer):
    rewards = iter([1.0] * 16 + [0.9] * 16 + [-50.0] * 16 + [0.0] * 64)
    result = train_ppo(config(num_iterations=4, reward_collapse=3.0), word_policy(tokenizer), tokenizer,
                       lambda prompts, texts: [next(rewards) for _ in texts], TRAIN, [])
    assert result.status == "reward_collapse" and len(result.history) == 3 and not result.passes_gate


def test_drift_from_the_original_base_is_bounded(tokenizer):
    """Each run's reference is its parent; the KL to the original base model is bounded on its own."""
    original = word_policy(tokenizer, seed=1)  # not the policy's own weights: a large KL from the first batch
    bounded = train_ppo(config(num_iterations=3, kl_base_bound=0.01), word_policy(tokenizer), tokenizer, good_share,
                        TRAIN, HELD_OUT, base_model=original)
    assert bounded.status == "kl_bound" and not bounded.passes_gate
    assert "original base" in bounded.message
    free = train_ppo(config(num_iterations=1, kl_base_bound=None), word_policy(tokenizer), tokenizer, good_share,
                     TRAIN, HELD_OUT, base_model=word_policy(tokenizer, seed=1))
    assert free.status == "completed" and free.history[0]["objective/kl_base"] > 0.01
