"""RLOO and GRPO (trl.RLOOTrainer / trl.GRPOTrainer) on a tiny Llama over SmolLM2's tokenizer.

End to end: each finishes against a tiny reward model (scoring strings, re-tokenised by the reward model's own
tokenizer), runs the PPO gate on held-out prompts and leaves finite weights that save and load back. Learning:
the policy answers with one of four words and the reward is 1 for " yes"; the exact probability of " yes" rises
within two steps, while a constant reward (no advantage in any group) leaves it where it was. Checked by breaking
the code once: with the reward's sign dropped in `online.trl_reward` the learning tests fail.
"""

import math

import pytest
import torch

from tests.training.pipeline.ppo.test_loop_learning import four_word_policy, p_yes, says_yes

from training.pipeline.fields import config_from_dict
from training.pipeline.online.config import GRPOConfig, RLOOConfig
from training.pipeline.models import load_causal_lm, load_tokenizer, tiny_causal_lm
from training.pipeline.online.trainer import train_grpo, train_rloo
from training.pipeline.ppo.save import save_policy
from training.pipeline.reward.scoring import RewardScorer

pytestmark = pytest.mark.ml

TRAIN = [f"Is number {i} a good one?" for i in range(12)]
HELD_OUT = [f"Should I pick option {i}?" for i in range(2)]
TRAINERS = {"rloo": (RLOOConfig, train_rloo), "grpo": (GRPOConfig, train_grpo)}


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    return load_tokenizer(tiny_llama_dir)


def learn(tokenizer, method, reward, **overrides):
    config_class, train = TRAINERS[method]
    values = dict(policy="tiny", max_steps=2, batch_size=8, num_generations=4, max_completion_length=1,
                  learning_rate=2e-2, temperature=1.0, top_p=1.0, beta=0.01, seed=0)
    values.update(overrides)
    policy = four_word_policy(tokenizer, 0)
    before = p_yes(policy, tokenizer, HELD_OUT)
    result = train(config_class(**values), policy, tokenizer, reward, TRAIN, [])
    assert result.status == "completed", result.message
    return before, p_yes(result.model, tokenizer, HELD_OUT), result


@pytest.mark.parametrize("method", ["rloo", "grpo"])
def test_the_rewarded_answer_becomes_more_likely(tokenizer, method):
    before, after, result = learn(tokenizer, method, says_yes)
    assert after > before + 0.15, (before, after)
    assert any("reward" in h for h in result.history)  # TRL's metrics reach on_step's history


def test_a_constant_reward_leaves_the_policy_alone(tokenizer):
    before, after, _ = learn(tokenizer, "rloo", lambda p, t: [1.0] * len(t))
    assert abs(after - before) < 0.02, (before, after)


@pytest.mark.parametrize("method", ["rloo", "grpo"])
def test_finishes_against_a_reward_model_and_goes_through_the_gate(tmp_path, tiny_llama_dir, tiny_bert_dir, method):
    config_class, train = TRAINERS[method]
    tokenizer = load_tokenizer(tiny_llama_dir)
    scorer = RewardScorer(tiny_bert_dir, verify=False)
    seen = []
    cfg = config_from_dict(config_class, {"policy": str(tiny_llama_dir), "max_steps": "1", "batch_size": "4",
                                          "num_generations": "2", "max_completion_length": "4",
                                          "gate_samples_per_prompt": "2", "gate_min_prompts": "1",
                                          "gate_bootstrap_resamples": "50"})
    result = train(cfg, tiny_causal_lm(tokenizer), tokenizer, scorer.score, TRAIN[:4], HELD_OUT,
                   on_step=lambda step, metrics: seen.append(step))
    assert result.status == "completed", result.message
    assert seen and result.gate is not None and result.gate.n_prompts == len(HELD_OUT)
    assert result.eval_before is not None and result.eval_after is not None
    assert all(math.isfinite(x) for x in (result.eval_after.reward, result.eval_after.kl))
    dest = tmp_path / "policy"
    save_policy(result, tokenizer, dest, {"kind": "policy", "method": method})
    reloaded = load_causal_lm(dest)
    assert all(torch.isfinite(p).all() for p in reloaded.parameters())
    assert not (dest / "value_head.safetensors").exists()


def test_cancelling_stops_the_run(tokenizer):
    result = train_rloo(RLOOConfig(policy="tiny", max_steps=3, batch_size=4, num_generations=2,
                                   max_completion_length=1),
                        four_word_policy(tokenizer, 0), tokenizer, says_yes, TRAIN, [], should_stop=lambda: True)
    assert result.status == "cancelled" and "cancelled" in result.message


def test_a_non_finite_reward_publishes_nothing(tokenizer):
    result = train_grpo(GRPOConfig(policy="tiny", max_steps=2, batch_size=4, num_generations=2,
                                   max_completion_length=1),
                        four_word_policy(tokenizer, 0), tokenizer, lambda p, t: [float("nan")] * len(t), TRAIN, [])
    assert result.status == "nan" and not result.passes_gate and "non-finite" in result.message


def test_settings_are_checked_by_name():
    with pytest.raises(ValueError, match="RLOOConfig.batch_size"):
        RLOOConfig(batch_size=6, num_generations=4)
    with pytest.raises(ValueError, match="GRPOConfig.num_generations"):
        GRPOConfig(num_generations=1, batch_size=4)
    with pytest.raises(ValueError, match="GRPOConfig.loss_type"):
        GRPOConfig(loss_type="nope")
    assert RLOOConfig().max_new_tokens == RLOOConfig().max_completion_length == 64
    with pytest.raises(ValueError, match="RLOOConfig.batch_size"):
        RLOOConfig(batch_size=8, num_generations=2, processes=3)  # each process takes an equal share


def test_the_gate_and_kl_settings_are_ppos_own():
    """One set of gate and KL fields (config.GateSettings) for PPO, RLOO and GRPO: same names, defaults and checks."""
    import dataclasses

    from training.pipeline.ppo.config import GateSettings, PPOConfig

    shared = [(f.name, f.default, f.metadata["help"]) for f in dataclasses.fields(GateSettings)]
    assert {name for name, _, _ in shared} >= {"kl_bound", "kl_base_bound", "gate_margin", "gate_min_prompts"}
    for cls in (PPOConfig, RLOOConfig, GRPOConfig):
        fields = {f.name: (f.name, f.default, f.metadata["help"]) for f in dataclasses.fields(cls)}
        assert [fields[name] for name, _, _ in shared] == shared
        for bad in ({"kl_bound": 0}, {"kl_base_bound": -1.0}, {"gate_min_prompts": 0}):
            with pytest.raises(ValueError, match=f"{cls.__name__}.{next(iter(bad))}"):
                cls(**bad)
    names = [f.name for f in dataclasses.fields(PPOConfig)]  # the form lists them after training, before the launch
    assert names.index("seed") < names.index("kl_bound") < names.index("gate_length_control") < names.index("processes")
