"""The PPO pieces against values computed by hand."""

import pytest
import torch

from training.pipeline.sampling.generate import Samples
from training.pipeline.ppo.math import (
    AdaptiveKLController,
    FixedKLController,
    RunningMoments,
    compute_gae,
    entropy_from_logits,
    explained_variance,
    kl_penalty,
    kl_shaped_rewards,
    logprobs_from_logits,
    ppo_losses,
    warp_logits,
    whiten,
)
from training.pipeline.ppo.model import ValueHead, make_batch


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3]])
    mask = torch.ones(1, 3)
    advantages, returns = compute_gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # δ2 = 1 − 0.3 = 0.7; δ1 = 0 + 0.3 − 0.4 = −0.1; δ0 = 0 + 0.4 − 0.5 = −0.1
    # A2 = 0.7; A1 = −0.1 + 0.5·0.7 = 0.25; A0 = −0.1 + 0.5·0.25 = 0.025
    assert advantages.tolist()[0] == pytest.approx([0.025, 0.25, 0.7])
    assert returns.tolist()[0] == pytest.approx([0.525, 0.65, 1.0])


def test_gae_ignores_padding_and_prompt_positions():
    rewards = torch.tensor([[9.0, 0.0, 1.0, 9.0]])
    values = torch.tensor([[9.0, 0.2, 0.1, 9.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    advantages, _ = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert advantages.tolist()[0] == pytest.approx([0.0, 0.8, 0.9, 0.0])


def test_whiten():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    out = whiten(values, mask)
    assert out[0, :3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-4)  # unbiased std of 1, 2, 3 is 1
    assert out[0, 3] == 0
    assert whiten(values, mask, shift_mean=False)[0, :3].tolist() == pytest.approx([1.0, 2.0, 3.0], abs=1e-4)


def test_kl_estimators():
    logp, ref = torch.tensor([-1.0]), torch.tensor([-2.0])
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(1.0)
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(torch.exp(torch.tensor(-1.0)).item() - 1 + 1)
    assert kl_penalty(logp, ref, "mse").item() == pytest.approx(0.5)
    assert kl_penalty(ref, ref, "k3").item() == 0.0


def test_clipped_objective_by_hand():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    advantages = torch.tensor([[1.0, -1.0]])
    values, old_values, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    losses = ppo_losses(new, old, advantages, values, old_values, returns, torch.ones(1, 2), cliprange=0.2,
                        cliprange_value=0.2)
    # token 1: max(−1·1.5, −1·1.2) = −1.2 (clipped); token 2: max(1·0.5, 1·0.8) = 0.8 (clipped)
    assert losses.policy.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert losses.clipfrac.item() == pytest.approx(1.0)
    # values: token 1 moves 0 → 1, clipped to 0.2: max((1−1)², (0.2−1)²) = 0.64; token 2: max(1, 1) = 1
    assert losses.value.item() == pytest.approx(0.5 * (0.64 + 1.0) / 2)
    assert losses.value_clipfrac.item() == pytest.approx(0.5)  # only token 1's clipped value loss is the larger
    assert losses.approx_kl.item() == pytest.approx(0.5 * ((torch.log(torch.tensor(1.5)) ** 2
                                                             + torch.log(torch.tensor(0.5)) ** 2) / 2).item())


def test_adaptive_kl_controller():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(current_kl=12.0, n_steps=10)  # error clipped to +0.2 → β·(1 + 0.2·10/100)
    assert ctl.value == pytest.approx(0.1 * 1.02)
    ctl.update(current_kl=6.0, n_steps=10)
    assert ctl.value == pytest.approx(0.1 * 1.02)


def test_logprobs_and_entropy():
    logits = torch.log(torch.tensor([[[0.25, 0.75]]]))
    assert logprobs_from_logits(logits, torch.tensor([[1]])).item() == pytest.approx(torch.log(torch.tensor(0.75)).item())
    expected = -(0.25 * torch.log(torch.tensor(0.25)) + 0.75 * torch.log(torch.tensor(0.75)))
    assert entropy_from_logits(logits).item() == pytest.approx(expected.item())


def test_batch_masks_responses_from_lengths_even_when_pad_is_inside_the_prompt():
    samples = Samples(prompt_index=[0, 1], query_ids=[[5, 0, 6], [7]], response_ids=[[8, 9], [0]], texts=["", ""],
                      ended=[True, True])
    batch = make_batch(samples, pad_id=0)
    assert batch.input_ids.tolist() == [[5, 0, 6, 8, 9], [7, 0, 0, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch.response_mask.tolist() == [[0, 0, 1, 1], [1, 0, 0, 0]]


def test_gae_with_discount_by_hand():
    rewards, values = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.2, 0.4]])
    advantages, returns = compute_gae(rewards, values, torch.ones(1, 2), gamma=0.5, lam=1.0)
    # δ1 = 1 − 0.4 = 0.6 → A1 = 0.6; δ0 = 0 + 0.5·0.4 − 0.2 = 0 → A0 = 0 + 0.5·1·0.6 = 0.3
    assert advantages.tolist()[0] == pytest.approx([0.3, 0.6])
    assert returns.tolist()[0] == pytest.approx([0.5, 1.0])


def test_clipfrac_counts_only_tokens_where_the_clip_binds():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.1, 1.5, 1.5]]))
    advantages = torch.tensor([[1.0, 1.0, -1.0]])
    zeros = torch.zeros(1, 3)
    losses = ppo_losses(new, old, advantages, zeros, zeros, zeros, torch.ones(1, 3), cliprange=0.2, cliprange_value=0.2)
    # −1.1 (inside the range), max(−1.5, −1.2) = −1.2 (clipped), max(1.5, 1.2) = 1.5 (pessimistic: unclipped)
    assert losses.policy.item() == pytest.approx((-1.1 - 1.2 + 1.5) / 3)
    assert losses.clipfrac.item() == pytest.approx(1 / 3)


def test_masked_tokens_do_not_count_in_the_losses():
    new, old = torch.log(torch.tensor([[1.5, 9.0]])), torch.zeros(1, 2)
    advantages, zeros = torch.tensor([[1.0, 5.0]]), torch.zeros(1, 2)
    losses = ppo_losses(new, old, advantages, zeros, zeros, zeros, torch.tensor([[1.0, 0.0]]), 0.2, 0.2)
    assert losses.policy.item() == pytest.approx(-1.2) and losses.clipfrac.item() == pytest.approx(1.0)


def test_adaptive_kl_controller_lowers_beta_below_target_and_fixed_stays():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(current_kl=3.0, n_steps=10)  # 3/6 − 1 = −0.5, clipped to −0.2
    assert ctl.value == pytest.approx(0.1 * 0.98)
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(current_kl=6.6, n_steps=10)  # +0.1, inside the clip
    assert ctl.value == pytest.approx(0.1 * 1.01)
    fixed = FixedKLController(0.05)
    fixed.update(current_kl=100.0, n_steps=10)
    assert fixed.value == 0.05


def test_explained_variance():
    returns, mask = torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3)
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.zeros(1, 3), returns, mask) == pytest.approx(0.0)


def test_entropy_ignores_filtered_tokens():
    logits = torch.tensor([[[0.0, 0.0, -float("inf")]]])
    assert entropy_from_logits(logits).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_warp_logits_temperature_top_p_top_k_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.3, 0.15, 0.05]]]))
    # top-p 0.8: ascending cumulative probs 0.05, 0.20, 0.50, 1.0; "<= 1 − 0.8" removes the 0.05 and 0.15 tokens
    warped = warp_logits(logits, top_p=0.8)
    assert torch.isinf(warped[0, 0, 2:]).all() and torch.isfinite(warped[0, 0, :2]).all()
    assert logprobs_from_logits(warped, torch.tensor([[0]])).exp().item() == pytest.approx(0.5 / 0.8)
    # the kept token stays in the support, so its log-prob is finite
    kept = warp_logits(logits, top_p=0.8, keep=torch.tensor([[3]]))
    assert torch.isfinite(kept[0, 0, 3]) and torch.isinf(kept[0, 0, 2])
    assert warp_logits(logits, temperature=0.5)[0, 0].tolist() == pytest.approx((logits[0, 0] / 0.5).tolist())
    assert torch.isinf(warp_logits(logits, top_k=1)[0, 0, 1:]).all()


def test_kl_shaped_rewards_put_the_score_on_the_last_response_token():
    kl = torch.tensor([[9.0, 1.0, 2.0, 9.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    rewards = kl_shaped_rewards(torch.tensor([5.0]), kl, mask, kl_coef=0.5)
    assert rewards.tolist() == [[0.0, -0.5, 5.0 - 1.0, 0.0]]


def test_running_moments_match_the_pooled_std():
    moments = RunningMoments()
    moments.update(torch.tensor([1.0, 2.0]))
    moments.update(torch.tensor([3.0, 4.0, 5.0]))
    assert moments.mean == pytest.approx(3.0) and moments.std == pytest.approx(torch.tensor([1.0, 2, 3, 4, 5]).std().item())


def test_value_head_starts_at_zero():
    assert ValueHead(8)(torch.randn(2, 3, 8)).abs().max().item() == 0.0


def test_top_p_shortcut_matches_the_full_sort():
    from training.pipeline.ppo.math import top_p_removed

    torch.manual_seed(0)
    logits = torch.randn(6, 1000) * torch.tensor([0.1, 1.0, 3.0, 6.0, 10.0, 20.0]).unsqueeze(1)
    for top_p in (0.5, 0.9, 0.95):
        sorted_logits, index = torch.sort(logits, descending=False)
        removed = sorted_logits.softmax(-1).cumsum(-1) <= 1 - top_p
        removed[..., -1:] = False
        expected = removed.scatter(-1, index, removed)
        for candidates in (1, 16, 1000):
            assert torch.equal(top_p_removed(logits, top_p, candidates), expected), (top_p, candidates)
