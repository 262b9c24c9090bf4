"""Online RL from a reward model: RLOO and GRPO through TRL (`config`: RLOOConfig, GRPOConfig; `trainer`), judged by
PPO's gate."""
