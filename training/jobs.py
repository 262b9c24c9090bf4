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


# --- policy optimisation -----------------------------------------------------------------------------------------


def _base_policy(run: TrainingRun, cfg_policy: str, default_name: str) -> tuple[ModelVersion | None, str]:
    """The version a policy run starts from: the run's base version, else the project's active policy,
    unless the settings name another model directory explicitly."""
    from training import selectors

    if cfg_policy != default_name:
        return None, cfg_policy
    version = run.base_version or selectors.active_policy(project=run.project)
    if version is None:
        raise ValueError("no policy to start from: run `manage.py bootstrap_models` first")
    return version, version.path


def _newest_reward_model(project) -> ModelVersion:
    reward = ModelVersion.objects.filter(project=project, kind=ModelVersion.Kind.REWARD,
                                         status=ModelVersion.Status.ACTIVE).order_by("-created_at").first()
    if reward is None:
        raise ValueError("no reward model for this project yet: train one first (train_reward_model)")
    return reward


def _prompt_split(project, test_fraction: float = 0.2) -> tuple[list, list]:
    from feedback.exports import split_of
    from feedback.models import Prompt

    train, held_out = [], []
    for prompt in Prompt.objects.filter(project=project).order_by("id").iterator(chunk_size=2000):
        key = prompt.external_id or f"prompt-{prompt.pk}"
        (held_out if split_of(key, test_fraction=test_fraction) == "test" else train).append(prompt.payload)
    if not held_out and len(train) > 1:
        held_out.append(train.pop())
    return train, held_out


@runner(TrainingRun.Kind.PPO)
def run_ppo(ctx: RunContext) -> dict:
    from training.pipeline.config import PPOConfig, config_from_dict
    from training.pipeline.models import load_causal_lm, load_tokenizer
    from training.pipeline.ppo import save_policy, train_ppo
    from training.pipeline.reward import RewardScorer

    run = ctx.run
    cfg = config_from_dict(PPOConfig, run.config)
    base, policy_path = _base_policy(run, cfg.policy, PPOConfig.policy)
    reward = _newest_reward_model(run.project)
    train_prompts, eval_prompts = _prompt_split(run.project)
    if not train_prompts:
        raise ValueError("the project has no prompts to train on")
    ctx.total_steps = cfg.num_iterations
    ctx.log(f"PPO from {policy_path} against {reward.name}: {len(train_prompts)} training, {len(eval_prompts)} held-out prompts")
    tokenizer = load_tokenizer(policy_path)
    policy = load_causal_lm(policy_path, verify=cfg.verify_policy)
    scorer = RewardScorer(reward.path)
    # A held-out judge for reward hacking: the project's previous reward model, which PPO does not optimise.
    # If the optimised reward rises while the held-out one falls, the run is flagged on its page.
    holdout = ModelVersion.objects.filter(project=run.project, kind=ModelVersion.Kind.REWARD,
                                          status=ModelVersion.Status.ACTIVE).exclude(pk=reward.pk).order_by("-created_at").first()
    agreement_fn = None
    if holdout is not None:
        holdout_scorer = RewardScorer(holdout.path)
        agreement_fn = lambda prompts, texts: sum(holdout_scorer.score(prompts, texts)) / max(1, len(texts))  # noqa: E731
        ctx.log(f"held-out judge for reward hacking: {holdout.name}")
    result = train_ppo(cfg, policy, tokenizer, scorer.score, train_prompts, eval_prompts,
                       on_step=ctx.on_step, should_stop=ctx.should_stop, agreement_fn=agreement_fn)
    summary = result.summary()
    if result.status == "cancelled":
        raise RunCancelled()
    if not result.passes_gate:
        ctx.log(f"not published: status {result.status}, gate failed ({summary})")
        return {"state": TrainingRun.State.FAILED, "summary": summary,
                "error": f"PPO ended with status '{result.status}' and did not pass the gate "
                         "(beat the parent's held-out reward with KL under the bound); nothing was registered."}
    dest = registry_dir("ppo", run)
    sha = save_policy(result, tokenizer, dest, {"kind": "policy", "method": "ppo", "reward_model": reward.name,
                                               "parent": base.name if base else policy_path})
    version = services.register_model_version(
        project=run.project, name=f"policy-{run.project.slug}-run{run.pk}", kind=ModelVersion.Kind.POLICY,
        path=str(dest), sha256=sha, config=run.config, metrics=summary, parent=base, reward_model=reward,
        snapshot=reward.snapshot, status=ModelVersion.Status.CANDIDATE,
    )
    services.activate_policy(version=version, actor=run.created_by)
    return {"summary": summary, "produced_version": version}


@runner(TrainingRun.Kind.DPO)
def run_dpo(ctx: RunContext) -> dict:
    from feedback import exports
    from training.pipeline.config import DPOConfig, config_from_dict
    from training.pipeline.dpo import train_dpo
    from training.pipeline.reward import TrainingCancelled

    run = ctx.run
    cfg = config_from_dict(DPOConfig, run.config)
    base, policy_path = _base_policy(run, cfg.policy, DPOConfig.policy)
    cfg.policy = policy_path
    snapshot = run.snapshot or exports.create_snapshot(project=run.project, actor=run.created_by)
    TrainingRun.objects.filter(pk=run.pk).update(snapshot=snapshot)
    train_rows, test_rows = exports.snapshot_split_rows(snapshot)
    if not train_rows:
        raise ValueError("the snapshot holds no preference pairs yet: collect judgements first")
    ctx.total_steps = cfg.max_steps if cfg.max_steps > 0 else None
    ctx.log(f"DPO from {policy_path} on snapshot {snapshot.pk}: {len(train_rows)} pairs")
    try:
        result = train_dpo(cfg, train_rows, test_rows or None, registry_dir("dpo", run),
                           on_step=ctx.on_step, should_stop=ctx.should_stop)
    except TrainingCancelled:
        raise RunCancelled() from None
    accuracy = result.metrics.get("eval/accuracy")
    version = services.register_model_version(
        project=run.project, name=f"policy-{run.project.slug}-run{run.pk}", kind=ModelVersion.Kind.POLICY,
        path=str(result.path), sha256=result.manifest_sha256, config=run.config, metrics=result.metrics,
        parent=base, snapshot=snapshot,
        status=ModelVersion.Status.CANDIDATE if accuracy is None or accuracy > 0.5 else ModelVersion.Status.REJECTED,
    )
    if version.status == ModelVersion.Status.REJECTED:
        return {"state": TrainingRun.State.FAILED, "summary": result.metrics, "produced_version": version,
                "error": f"held-out preference accuracy {accuracy:.2f} is not above chance: registered as rejected, not active."}
    services.activate_policy(version=version, actor=run.created_by)
    return {"summary": result.metrics, "produced_version": version}


@runner(TrainingRun.Kind.RETRAIN)
def run_retrain(ctx: RunContext) -> dict:
    """snapshot → reward model → PPO → gate → publish (or DPO → publish), each step a TrainingRun of its own."""
    from training import runners

    run = ctx.run
    method = run.config.get("method", "ppo")
    steps_config = run.config.get("steps", {})
    chain = ([TrainingRun.Kind.REWARD, TrainingRun.Kind.PPO] if method == "ppo" else [TrainingRun.Kind.DPO])
    chain.append(TrainingRun.Kind.PUBLISH)
    results = {}
    for position, kind in enumerate(chain):
        if ctx.should_stop():
            raise RunCancelled()
        child = services.create_run(project=run.project, kind=kind, config=validate_config(kind, steps_config.get(kind, {})),
                                    created_by=run.created_by, parent_run=run, enqueue=False)
        ctx.log(f"step {position + 1}/{len(chain)}: {kind} run {child.pk}")
        state = runners.execute(child.pk)
        results[kind] = {"run": child.pk, "state": state}
        ctx.on_step(position + 1, {"retrain/steps_done": position + 1})
        if state != TrainingRun.State.SUCCEEDED:
            return {"state": TrainingRun.State.FAILED, "summary": results,
                    "error": f"step {kind} (run {child.pk}) ended {state}; the chain stopped and nothing further was published."}
    return {"summary": results}
