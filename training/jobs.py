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


# --- publishing samples ------------------------------------------------------------------------------------------


def _policy_for(run: TrainingRun, version_id: int | None) -> ModelVersion:
    from training import selectors

    version = ModelVersion.objects.filter(pk=version_id, kind=ModelVersion.Kind.POLICY).first() if version_id else None
    version = version or selectors.active_policy(project=run.project)
    if version is None:
        raise ValueError("no policy to sample from: run `manage.py bootstrap_models` first")
    return version


def _uncertainty(scorer, prompt, texts: list[str]) -> float:
    """How unsure the reward model is about a prompt's completions: the smallest reward gap (lower = less sure)."""
    if scorer is None or len(texts) < 2:
        return 0.0
    rewards = sorted(scorer.score([prompt] * len(texts), texts))
    return min(b - a for a, b in zip(rewards, rewards[1:]))


@runner(TrainingRun.Kind.PUBLISH)
def run_publish(ctx: RunContext) -> dict:
    """Sample K completions per prompt from a policy and make comparison tasks of them at once.

    Prompts: those waiting for completions, or (prompts="all") any, sampled for twice as many as will be
    published, and those where the newest reward model is least certain (smallest reward gap between
    completions) go first. A share of tasks pits one completion of the previous best version against
    the new ones (head to head), so the leaderboard compares versions directly.
    """
    from feedback import services as feedback_services
    from feedback.models import Completion, Prompt
    from training.pipeline.generate import sample_completions
    from training.pipeline.models import load_causal_lm, load_tokenizer
    from training.pipeline.reward import RewardScorer

    run = ctx.run
    cfg = PublishConfig(**run.config)
    project = run.project
    k = cfg.completions_per_prompt or project.completions_per_task
    policy = _policy_for(run, cfg.policy_version)
    prompts = Prompt.objects.filter(project=project).order_by("id")
    if cfg.prompts == "without_completions":
        prompts = prompts.filter(completions__isnull=True)
    reward = ModelVersion.objects.filter(project=project, kind=ModelVersion.Kind.REWARD,
                                         status=ModelVersion.Status.ACTIVE).order_by("-created_at").first()
    pool = list(prompts.distinct()[: cfg.max_prompts * (2 if reward and cfg.prompts == "all" else 1)])
    if not pool:
        ctx.log("no prompts to sample for")
        return {"summary": {"published_tasks": 0}}
    ctx.log(f"sampling {k} completions for {len(pool)} prompts from {policy.name}")
    tokenizer = load_tokenizer(policy.path)
    model = load_causal_lm(policy.path)
    settings_used = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed}
    texts = sample_completions(model, tokenizer, [p.payload for p in pool], k=k, max_new_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed)
    ctx.on_step(1, {"publish/prompts_sampled": len(pool)})

    scorer = RewardScorer(reward.path) if reward else None
    ranked = sorted(zip(pool, texts), key=lambda item: _uncertainty(scorer, item[0].payload, item[1]))
    ranked = [(p, t) for p, t in ranked if len(set(t)) >= 2][: cfg.max_prompts]

    rival = policy.parent if policy.parent and policy.parent.kind == ModelVersion.Kind.POLICY else None
    rival_texts = {}
    if rival is not None and cfg.head_to_head_share > 0:
        rival_pool = ranked[: max(1, int(len(ranked) * cfg.head_to_head_share))]
        rival_model = load_causal_lm(rival.path)
        rival_samples = sample_completions(rival_model, load_tokenizer(rival.path), [p.payload for p, _ in rival_pool], k=1,
                                           max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                           top_p=cfg.top_p, seed=cfg.seed + 1)
        rival_texts = {p.pk: s[0] for (p, _), s in zip(rival_pool, rival_samples) if s}

    published = 0
    for priority, (prompt, samples) in enumerate(ranked):
        rows = [(text, policy) for text in dict.fromkeys(samples)]
        if prompt.pk in rival_texts and rival_texts[prompt.pk] not in samples:
            rows = rows[: k - 1] + [(rival_texts[prompt.pk], rival)]
        completions = [
            Completion.objects.get_or_create(
                prompt=prompt, content_hash=_completion_hash(text, version.name),
                defaults={"text": text, "model_name": version.name, "model_version": version, "generation": settings_used},
            )[0]
            for text, version in rows
        ]
        if len(completions) >= 2:
            feedback_services.create_task(project=project, prompt=prompt, completions=completions[:4], priority=priority)
            published += 1
    services.record_published(project=project, run=run, policy=policy, tasks=published)
    ctx.log(f"published {published} comparison tasks")
    return {"summary": {"published_tasks": published, "policy": policy.name,
                        "reward_model": reward.name if reward else None, "head_to_head": len(rival_texts)}}


def _completion_hash(text: str, model_name: str) -> str:
    from feedback.importing import CompletionRow

    return CompletionRow(text=text, model=model_name).content_hash
