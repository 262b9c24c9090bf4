"""A reward model from a preference snapshot (TRL RewardTrainer), registered and active at once."""

from __future__ import annotations


from training import services
from training.models import ModelVersion
from training.runners.base import RunContext, failed

NO_PAIRS = "the snapshot holds no preference pairs yet: collect judgements first"


def snapshot_rows(ctx: RunContext) -> tuple[object, list, list]:
    """The run's preference snapshot (a new one unless the run names one) and its train/test rows."""
    from feedback import exports
    from feedback import services as feedback_services

    run = ctx.run
    snapshot = run.snapshot or feedback_services.create_snapshot(project=run.project, actor=run.created_by)
    services.attach_snapshot(run=run, snapshot=snapshot)
    train_rows, test_rows = exports.snapshot_split_rows(snapshot)
    feedback_services.record_split_counts(snapshot=snapshot, train_pairs=len(train_rows), test_pairs=len(test_rows))
    ctx.log(f"snapshot {snapshot.pk}: {len(train_rows)} training pairs, {len(test_rows)} held-out pairs")
    if not train_rows:
        raise ValueError(NO_PAIRS)
    return snapshot, train_rows, test_rows


def reward_gate(result) -> tuple[bool, str]:
    """A reward model becomes active only when its held-out accuracy is above chance with 95% confidence
    (the Wilson interval's lower end above 0.5); otherwise it is registered as rejected and PPO never uses it."""
    metrics = result.metrics
    n_pairs = int(metrics.get("eval/n_pairs") or 0)
    if n_pairs == 0:
        return False, ("no held-out preference pairs to judge the reward model on (the snapshot's test split is "
                       "empty): collect judgements on more prompts; registered as rejected, not active.")
    accuracy, low, high = metrics["eval/accuracy"], metrics["eval/accuracy_low"], metrics["eval/accuracy_high"]
    if low > 0.5:
        return True, ""
    return False, (f"held-out accuracy {accuracy:.2f} (95% interval {low:.2f}–{high:.2f}, {n_pairs} pairs) is not "
                   "above chance with confidence: registered as rejected, not active.")


def run_reward(ctx: RunContext) -> dict:
    from training.pipeline.reward import train_reward_model
    from training.runners.launched import device_summary, train_here_or_launched

    run, cfg = ctx.run, ctx.config
    snapshot, train_rows, test_rows = snapshot_rows(ctx)
    ctx.total_steps = cfg.max_steps if cfg.max_steps > 0 else None
    result = train_here_or_launched(ctx, "reward", train_reward_model, train_rows, test_rows)
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
