"""Reward models: `config` (RewardConfig), `trainer` (trl.RewardTrainer), `scoring` (RewardScorer, as TRL presented
the pairs), `eval` (held-out metrics and the acceptance test), `server` and `client` (OpenRLHF's remote-reward
protocol over HTTP, for distributed RL engines)."""
