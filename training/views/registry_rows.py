"""What the registry page shows beside each version: which project samples from which policy, and each policy's
human win rate (head-to-head judgements against its project's active policy, `training.promotion`) with its 95%
Wilson interval."""

from __future__ import annotations

from training import selectors
from training.models import ModelVersion
from training.promotion import head_to_head

LIVE_WIN_RATES_LIMIT = 40  # beyond this many policies, show the figures stored at their last decision


def policies_in_use(projects) -> list[dict]:
    """[{"project", "policy"}]: the policy each project samples from (its own active one, else the default)."""
    return [{"project": p, "policy": selectors.active_policy(project=p)} for p in projects]


def _stored(version: ModelVersion) -> dict | None:
    m = version.metrics or {}
    if m.get("human/judgements") is None:
        return None
    return {"rate": m.get("human/win_rate"), "low": m.get("human/win_low"), "high": m.get("human/win_high"),
            "n": m.get("human/judgements"), "rival": m.get("human/rival", "the active policy"), "stored": True}


def annotate_versions(versions: list[ModelVersion], in_use: list[dict]) -> list[ModelVersion]:
    """Set `used_by` (project slugs sampling from it) and `win` (human win rate or None) on each version."""
    from feedback.quality import wilson_interval

    active = {row["project"].pk: row["policy"] for row in in_use}
    live = 0
    for v in versions:
        v.used_by = [row["project"].slug for row in in_use if row["policy"] is not None and row["policy"].pk == v.pk]
        v.win = None
        if v.kind != ModelVersion.Kind.POLICY or v.project_id is None:
            continue
        rival = active.get(v.project_id)
        if rival is None or rival.pk == v.pk or live >= LIVE_WIN_RATES_LIMIT:
            v.win = _stored(v)  # the active policy: the vote that promoted it
            continue
        live += 1
        wins, n = head_to_head(project=v.project, candidate=v, rival=rival)
        low, high = wilson_interval(wins, n)
        v.win = {"rate": wins / n if n else None, "low": low, "high": high, "n": n, "rival": rival.name, "stored": False}
    return versions
