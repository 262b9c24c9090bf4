"""A reward model from a preference snapshot (TRL RewardTrainer), registered, and active when it passes its gate."""

from __future__ import annotations

from training import selectors, services
from training.models import ModelVersion
from training.runners.base import RunContext, failed
from training.runners.launched import device_summary, train_here_or_launched

NO_PAIRS = "the snapshot holds no preference pairs yet: collect judgements first"


def snapshot_rows(ctx: RunContext) -> tuple[object, list, list]:
    """The run's preference snapshot (a new one unless the run names one) and its train/test rows."""
    from feedback import services as feedback_services
    from feedback.services import snapshots

    run = ctx.run
    snapshot = run.snapshot or feedback_services.create_snapshot(project=run.project, actor=run.created_by)
    services.attach_snapshot(run=run, snapshot=snapshot)
    # The rows the snapshot stored when it was made: a queued run learns what its snapshot pinned, whatever
    # was adjudicated, marked gold or re-trusted since.
    train_rows, test_rows = snapshots.split_rows(snapshot)
    feedback_services.record_split_counts(snapshot=snapshot, train_pairs=len(train_rows), test_pairs=len(test_rows))
    ctx.log(f"snapshot {snapshot.pk}: {len(train_rows)} training pairs, {len(test_rows)} held-out pairs")
    if not train_rows:
        raise ValueError(NO_PAIRS)
    return snapshot, train_rows, test_rows


def reward_gate(result) -> tuple[bool, str]:
    """A reward model becomes active only when, on the held-out pairs and with the pairs of one task counted as
    correlated, it is above chance, beats the length-only baseline and beats the project's active reward model
    (`pipeline.reward.eval.acceptance_verdict`
). Otherwise it is registered as rejected and PPO never uses it."""
    from training.pipeline.reward.eval import acceptance_verdict

    accepted, why = acceptance_verdict(result.metrics)
    return (True, "") if accepted else (False, f"{why}: registered as rejected, not active.")


def versus_previous(project, path, test_rows: list, log) -> dict:
    """The paired comparison with the project's active reward model on the same held-out pairs (both scored the
    same way, by `RewardScorer`): `eval/vs_previous`, `eval/vs_previous_low`, `eval/previous_accuracy`; {} when
    the project has no active reward model or no held-out pairs."""
    from training.pipeline.reward.eval import clustered_difference, rows_scored_by, task_clusters
    from training.pipeline.reward.scoring import RewardScorer

    previous = selectors.newest_reward_model(project=project)
    if previous is None or not test_rows:
        return {}
    new = rows_scored_by(RewardScorer(path).score, test_rows)
    old = rows_scored_by(RewardScorer(previous.path).score, test_rows)
    difference, low, _ = clustered_difference(new, old, task_clusters(test_rows))
    log(f"against the active reward model {previous.name} on the same {len(test_rows)} held-out pairs: "
        f"{sum(new) / len(new):.3f} vs {sum(old) / len(old):.3f}")
    return {"eval/vs_previous": difference, "eval/vs_previous_low": low,
            "eval/previous_accuracy": sum(old) / len(old)}


def run_reward(ctx: RunContext) -> dict:
    from training.pipeline.reward.eval import with_judge_agreement
    from training.pipeline.reward.trainer import train_reward_model


    run, cfg = ctx.run, ctx.config
    snapshot, train_rows, test_rows = snapshot_rows(ctx)
    ctx.total_steps = cfg.max_steps if cfg.max_steps > 0 else None
    result = train_here_or_launched(ctx, "reward", train_reward_model, train_rows, test_rows)
    result.metrics.update(versus_previous(run.project, result.path, test_rows, ctx.log))
    result.metrics.update(with_judge_agreement(result.metrics, test_rows, snapshot.agreement))
    passed, message = ctx.gate(result)
    version = services.register_version(
        project=run.project, name=f"reward-{run.project.slug}-run{run.pk}", kind=ModelVersion.Kind.REWARD,
        path=str(result.path), sha256=result.manifest_sha256, config=run.config, metrics=result.metrics,
        snapshot=snapshot, rejected=not passed, activate=passed, actor=run.created_by,
    )
    ctx.log(f"registered {version.name} ({version.status}): held-out accuracy {result.metrics.get('eval/accuracy')}")
    summary = {**result.metrics, **device_summary(cfg)}
    if not passed:
        return failed(summary, message, produced_version=version)
    return {"summary": summary, "produced_version": version}
