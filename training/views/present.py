"""How a run reads on its page: settings as a table, figures to 4 significant digits, server paths relative to
MODEL_DIR (never absolute), one log line per logged step, the gate's verdict in words, the human head-to-head verdict
(with its evidence and each annotator's vote) of the policy a run produced or the candidates a publish run duelled,
and the progress of step- and epoch-based runs alike."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

from django.conf import settings

from training import selectors
from training.models import TrainingRun
from training.run_kinds import RUN_KINDS

_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s/'\",:;()\[\]{}<>]+/)+([^\s/'\",:;()\[\]{}<>]*)")
STEP_LINES = 200


def _model_dir_prefixes() -> list[str]:
    model_dir = Path(settings.MODEL_DIR)
    prefixes = {str(model_dir), str(model_dir.resolve())}
    return sorted((p.rstrip("/") for p in prefixes), key=len, reverse=True)


def relative_paths(text: str) -> str:
    """`text` with paths under MODEL_DIR made relative to it, and any other absolute path cut to its last part."""
    for prefix in _model_dir_prefixes():
        text = re.sub(rf"{re.escape(prefix)}(?:/|(?=[\s'\",]|$))", "", text)
    return _ABSOLUTE_PATH.sub(lambda m: f"…/{m.group(1)}", text)


def figure(value) -> str:
    """One value as shown: numbers to 4 significant digits, paths relative, structures as compact JSON."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (dict, list, tuple)):
        return relative_paths(json.dumps(_rounded(value), ensure_ascii=False))
    return relative_paths(str(value))


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.4g}")
    return value


def settings_rows(run: TrainingRun) -> list[dict]:
    """The run's settings: name, value and the setting's help, in the order its config class declares them."""
    kind = RUN_KINDS.get(run.kind)
    fields = dataclasses.fields(kind.config_class) if kind else ()
    helps = {f.name: f.metadata.get("help", "") for f in fields}
    names = [f.name for f in fields if f.name in run.config] + [n for n in run.config if n not in helps]
    return [{"name": n, "value": figure(run.config[n]), "help": helps.get(n, "")} for n in names]


def summary_rows(run: TrainingRun) -> list[tuple[str, str]]:
    hidden = {"flags", "gate/verdict"}
    return [(name, figure(value)) for name, value in (run.summary or {}).items() if name not in hidden]


def gate(run: TrainingRun) -> dict | None:
    """The gate's verdict in words, with the effect and its one-sided bound at the level this gate spent (alpha_k:
    the k-th gate of a project on the same held-out prompts spends less), when the run reported one."""
    summary = run.summary or {}
    if not summary.get("gate/verdict"):
        return None
    effect, lower, alpha = (summary.get(f"gate/{k}") for k in ("effect", "lower", "alpha"))
    return {"passed": bool(summary.get("gate/passed")), "verdict": relative_paths(str(summary["gate/verdict"])),
            "effect": figure(effect) if effect is not None else None,
            "lower": figure(lower) if lower is not None else None,
            "level": f"{100 * (1 - alpha):.4g}%" if isinstance(alpha, (int, float)) else "97.5%",
            "n": figure(summary["gate/n"]) if summary.get("gate/n") is not None else None}


def head_to_head(run: TrainingRun) -> list[dict]:
    """[{"name", "win"}]: the promotion standing (as last stored by `decide_promotions`) of the policy the run produced
    and of the candidates a publish run decided on."""
    from training.models import ModelVersion
    from training.views.registry_rows import stored_standing

    versions = [run.produced_version] if run.produced_version is not None else []
    named = list((run.summary or {}).get("promotions") or {})
    if named:
        versions += list(ModelVersion.objects.filter(project=run.project, kind=ModelVersion.Kind.POLICY, name__in=named)
                         .exclude(pk__in=[v.pk for v in versions]).order_by("created_at", "pk"))
    rows = [{"name": v.name, "status": v.status, "win": stored_standing(v)} for v in versions
            if v.kind == ModelVersion.Kind.POLICY]
    return [row for row in rows if row["win"] is not None]


def step_lines(rows: list[dict]) -> list[str]:
    """One line per logged step (iteration): "step 3 · loss 0.6931 · accuracy 0.5"."""
    lines = []
    for row in rows[-STEP_LINES:]:
        parts = [f"{name} {figure(value)}" for name, value in row.items() if name != "step"]
        lines.append(" · ".join([f"step {row.get('step')}", *parts]))
    return lines


def progress(run: TrainingRun, rows: list[dict]) -> dict:
    """Progress as a share when the run knows its total steps; else the latest step (and epoch) and no share."""
    latest = rows[-1] if rows else {}
    known = run.is_finished and run.state == TrainingRun.State.SUCCEEDED or run.progress > 0
    return {"known": bool(known), "finished": run.is_finished, "share": run.progress, "percent": round(run.progress * 100),
            "step": latest.get("step"), "epoch": figure(latest["epoch"]) if "epoch" in latest else None}


def state_label(run: TrainingRun) -> str:
    if run.state == TrainingRun.State.RUNNING and run.cancel_requested:
        return "cancel requested…"
    return run.state


def live_context(run: TrainingRun) -> dict:
    rows = selectors.run_metrics(run=run)
    return {"run": run, "series": selectors.metric_series(run=run), "log_tail": relative_paths(selectors.log_tail(run=run)),
            "error": relative_paths(run.error), "summary_rows": summary_rows(run), "gate": gate(run),
            "step_lines": step_lines(rows), "head_to_head": head_to_head(run), "progress": progress(run, rows), "state_label": state_label(run),
            "lineage": selectors.lineage(version=run.produced_version) if run.produced_version else []}
