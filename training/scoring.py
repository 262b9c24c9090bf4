"""Scoring (prompt, completion) pairs with a registered reward model, loaded once per process."""

from __future__ import annotations

from core.exceptions import ApplicationError
from training.models import ModelVersion

ONLY_REWARD_MODELS_SCORE = "Only reward models can score; this version is a policy."

_SCORERS: dict[str, object] = {}


def score_with_reward_model(*, version: ModelVersion, items: list[dict]) -> list[float]:
    """Rewards for `items` ({"prompt", "completion"}), after checking the files are the ones registered."""
    from training.pipeline.models import TamperedModelError, manifest_sha256
    from training.pipeline.reward.scoring import RewardScorer

    if version.kind != ModelVersion.Kind.REWARD:
        raise ApplicationError(ONLY_REWARD_MODELS_SCORE)
    scorer = _SCORERS.get(version.sha256)
    if scorer is None:
        try:
            if manifest_sha256(version.path) != version.sha256:
                raise TamperedModelError(f"{version.path}: manifest.json differs from the one registered")
            scorer = _SCORERS[version.sha256] = RewardScorer(version.path)
        except (TamperedModelError, FileNotFoundError) as exc:
            raise ApplicationError(f"The files of {version.name} fail their integrity check and were not loaded: {exc}",
                                   status_code=409) from None
    return [float(x) for x in scorer.score([i["prompt"] for i in items], [i["completion"] for i in items])]
