"""Sampling answers from a policy: `generate` (batched, seeded, LoRA merged; publishing's and PPO's sampler) and
`config` (SamplingSettings, shared by publishing and a DPO round)."""
