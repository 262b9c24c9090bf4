"""What the registry page shows beside each version: which project samples from which policy, and each policy's
head-to-head standing against its project's active policy (`training.promotion`): the sequential test's verdict in
words, its evidence (tasks, win rate, the confidence sequence, the e-value) and the vote of each annotator."""

from __future__ import annotations

from training import selectors
from training.models import ModelVersion
from training.promotion import head_to_head, verdict_of

LIVE_WIN_RATES_LIMIT = 40  # beyond this many policies, show the figures stored at their last decision


def policies_in_use(projects) -> list[dict]:
    """[{"project", "policy"}]: the policy each project samples from (its own active one, else the default)."""
    return [{"project": p, "policy": selectors.active_policy(project=p)} for p in projects]


def standing(metrics: dict, *, rival: str, stored: bool) -> dict:
    """The head-to-head as the pages show it, from the `human/…` metrics `verdict_of` makes."""
    return {"rate": metrics.get("human/win_rate"), "low": metrics.get("human/win_low"),
            "high": metrics.get("human/win_high"), "tasks": metrics.get("human/tasks") or 0,
            "judgements": metrics.get("human/judgements") or 0, "e_value": metrics.get("human/e_value"),
            "threshold": metrics.get("human/e_threshold"), "verdict": metrics.get("human/verdict"),
            "words": metrics.get("human/verdict_words") or _old_words(metrics),
            "by_annotator": metrics.get("human/by_annotator") or [], "rival": rival, "stored": stored}


def _old_words(metrics: dict) -> str:
    """Versions decided before the sequential test stored only a Wilson interval on judgements."""
    if metrics.get("human/verdict") is None:
        return ""
    return f"{metrics['human/verdict']} (decided by the earlier rule on {metrics.get('human/judgements')} judgements)"


def stored_standing(version: ModelVersion) -> dict | None:
    m = version.metrics or {}
    if m.get("human/judgements") is None and m.get("human/tasks") is None:
        return None
    return standing(m, rival=m.get("human/rival", "the active policy"), stored=True)


def annotate_versions(versions: list[ModelVersion], in_use: list[dict]) -> list[ModelVersion]:
    """Set `used_by` (project slugs sampling from it) and `win` (the head-to-head standing, or None) on each."""
    active = {row["project"].pk: row["policy"] for row in in_use}
    live = 0
    for v in versions:
        v.used_by = [row["project"].slug for row in in_use if row["policy"] is not None and row["policy"].pk == v.pk]
        v.win = None
        if v.kind != ModelVersion.Kind.POLICY or v.project_id is None:
            continue
        rival = active.get(v.project_id)
        if rival is None or rival.pk == v.pk or live >= LIVE_WIN_RATES_LIMIT or v.status != ModelVersion.Status.CANDIDATE:
            v.win = stored_standing(v)  # the active policy: the vote that promoted it; a decided one: its verdict
            continue
        live += 1
        _, metrics = verdict_of(head_to_head(project=v.project, candidate=v, rival=rival))
        v.win = standing(metrics, rival=rival.name, stored=False)
    return versions
