"""Iterative DPO with people in the loop, one round at a time (docs/training.md: "Iterative DPO with people in the
loop").

    active policy ─▶ K answers per prompt ─▶ every pair scored by the active reward model
        ├─ the `budget` most uncertain pairs (smallest reward gap, or largest disagreement between the two newest
        │  reward models) ─▶ ordinary comparison tasks (blind, random order) ─▶ annotators
        └─ the rest ─▶ labelled by the reward model (rows in the round's directory under MODEL_DIR)
    human share judged ─▶ DPO on both (human pairs weighted by consensus × confidence) ─▶ DPO gate ─▶ CANDIDATE

This package is the pure part: a round's settings (`config.DPORoundConfig`) and its maths: which pairs go to people (`pairs`) and how each pair weighs (`weights`). A round
is a `training.models.DPORound`; its two halves are runs of kind `dpo_round` (`training.runners.rounds`: `sample`,
then `train`), started and finished by the writes in `training.services.rounds`; `training.views.rounds` is its page.
"""
