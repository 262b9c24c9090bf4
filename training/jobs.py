"""What each kind of TrainingRun does, between the Django side (snapshots, registry) and the pipeline.

Every runner reads its settings from the run's config (validated by the trainer's dataclass),
trains through `training.pipeline`, and returns {"summary": …, "produced_version": …}. A version
is registered only after its files were completely written and verified (save_model_atomic).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from django.conf import settings

from training import services
from training.models import ModelVersion, TrainingRun
from training.runners import RunCancelled, RunContext, runner


@dataclasses.dataclass
class PublishConfig:
    """Settings of a publish run: which prompts get fresh completions from the active policy."""

    prompts: str = dataclasses.field(default="without_completions", metadata={
        "help": "'without_completions' (prompts waiting for samples) or 'all' (new samples for every prompt)."})
    max_prompts: int = dataclasses.field(default=64, metadata={"help": "At most this many prompts per run."})
    completions_per_prompt: int | None = dataclasses.field(default=None, metadata={
        "help": "K; default: the project's completions_per_task."})
    max_new_tokens: int = dataclasses.field(default=96, metadata={"help": "Longest completion in tokens."})
    temperature: float = dataclasses.field(default=0.8, metadata={"help": "Sampling temperature."})
    top_p: float = dataclasses.field(default=0.95, metadata={"help": "Nucleus sampling."})
    seed: int = dataclasses.field(default=0, metadata={"help": "Sampling seed."})
    head_to_head_share: float = dataclasses.field(default=0.25, metadata={
        "help": "Share of prompts where one completion comes from the previous best version."})
    policy_version: int | None = dataclasses.field(default=None, metadata={
        "help": "ModelVersion id of the policy to sample from; default: the project's active policy."})

    def __post_init__(self):
        if self.prompts not in {"without_completions", "all"}:
            raise ValueError("prompts must be 'without_completions' or 'all'")
        if self.max_prompts < 1:
            raise ValueError("max_prompts must be at least 1")
        if self.completions_per_prompt is not None and not 2 <= self.completions_per_prompt <= 4:
            raise ValueError("completions_per_prompt must be between 2 and 4")
        if not 0.0 <= self.head_to_head_share <= 1.0:
            raise ValueError("head_to_head_share must be between 0 and 1")


def _config_classes() -> dict[str, type]:
    from training.pipeline import config as pipeline_config

    classes = {TrainingRun.Kind.PUBLISH: PublishConfig, TrainingRun.Kind.REWARD: pipeline_config.RewardConfig}
    for kind, name in ((TrainingRun.Kind.PPO, "PPOConfig"), (TrainingRun.Kind.DPO, "DPOConfig")):
        if hasattr(pipeline_config, name):
            classes[kind] = getattr(pipeline_config, name)
    return classes


def validate_config(kind: str, config: dict) -> dict:
    """The run's settings as the trainer's dataclass sees them (defaults filled in), or ValueError naming the field."""
    from training.pipeline.config import config_from_dict

    if kind == TrainingRun.Kind.RETRAIN:
        return dict(config)
    classes = _config_classes()
    if kind not in classes:
        raise ValueError(f"unknown kind of run {kind!r}")
    return dataclasses.asdict(config_from_dict(classes[kind], config))


def registry_dir(kind: str, run: TrainingRun) -> Path:
    return Path(settings.MODEL_DIR) / "registry" / f"{kind}-{run.project.slug}-run{run.pk}"


@runner(TrainingRun.Kind.REWARD)
def run_reward(ctx: RunContext) -> dict:
    from feedback import exports
    from training.pipeline.config import RewardConfig, config_from_dict
    from training.pipeline.reward import TrainingCancelled, train_reward_model

    run = ctx.run
    cfg = config_from_dict(RewardConfig, run.config)
    snapshot = run.snapshot or exports.create_snapshot(project=run.project, actor=run.created_by)
    TrainingRun.objects.filter(pk=run.pk).update(snapshot=snapshot)
    train_rows, test_rows = exports.snapshot_split_rows(snapshot)
    ctx.log(f"snapshot {snapshot.pk}: {len(train_rows)} training pairs, {len(test_rows)} held-out pairs")
    if not train_rows:
        raise ValueError("the snapshot holds no preference pairs yet: collect judgements first")
    ctx.total_steps = cfg.max_steps if cfg.max_steps > 0 else None
    try:
        result = train_reward_model(cfg, train_rows, test_rows or None, registry_dir("reward", run),
                                    on_step=ctx.on_step, should_stop=ctx.should_stop)
    except TrainingCancelled:
        raise RunCancelled() from None
    version = services.register_model_version(
        project=run.project, name=f"reward-{run.project.slug}-run{run.pk}", kind=ModelVersion.Kind.REWARD,
        path=str(result.path), sha256=result.manifest_sha256, config=run.config, metrics=result.metrics,
        snapshot=snapshot, status=ModelVersion.Status.ACTIVE,
    )
    ctx.log(f"registered {version.name}: held-out accuracy {result.metrics.get('eval/accuracy')}")
    return {"summary": result.metrics, "produced_version": version}
