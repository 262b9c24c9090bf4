"""Pure ML code for the RLHF loop, one package per trainer (each with its `config.py` beside it, TRL style):
`ppo/`, `reward/`, `dpo/`, `online/` (RLOO, GRPO), `rounds/` (iterative DPO), `sampling/`; the shared modules at
the top: `fields` (the config field helpers), `gate`, `promotion_test`, `agreement_model`, `data`, `tensors`,
`callbacks`, `devices`, `launch`, `models`, `registry_files`, `bootstrap`, `process_lifetime`.

This package never imports Django (tests/training/pipeline/test_purity.py enforces it), so every
trainer runs alone: Django passes plain data in and receives metrics through callbacks.
"""
