"""PPO for language models (CleanRL-readable): `config` (PPOConfig and the gate settings RLOO and GRPO share),
`loop` (train_ppo, top to bottom), `state` (what the loop works on: models, prompts, callbacks, optimiser state),
`math` (pure tensor maths), `model` (value head, batches, log-probs), `report` (metrics, stop reasons, the gate's
conclusion), `verdict` (GateVerdict: what the gate concluded, in-process or launched alike), `dist` (several
processes through accelerate), `save` (the merged policy with its value head)."""
