"""Pure ML code for the RLHF loop: data, models, reward training, PPO, DPO, generation.

This package never imports Django (tests/training/pipeline/test_purity.py enforces it), so every
trainer runs alone: Django passes plain data in and receives metrics through callbacks.
"""
