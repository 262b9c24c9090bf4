"""Direct Preference Optimisation: `config` (DPOConfig), `trainer` (trl.DPOTrainer), `weighted` (a DPOTrainer with a
weight and a label smoothing per pair, for iterative-DPO rounds)."""
