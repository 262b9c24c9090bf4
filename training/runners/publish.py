"""Publishing samples: K completions per prompt from a policy, made into comparison tasks at once."""

from __future__ import annotations

from training import selectors, services
from training.models import ModelVersion, TrainingRun
from training.runners.base import RunCancelled, RunContext

NO_POLICY = "no policy to sample from: run `manage.py bootstrap_models` first"


def _policy_for(run: TrainingRun, version_id: int | None) -> ModelVersion:
    version = ModelVersion.objects.filter(pk=version_id, kind=ModelVersion.Kind.POLICY).first() if version_id else None
    version = version or selectors.active_policy(project=run.project)
    if version is None:
        raise ValueError(NO_POLICY)
    return version


def _uncertainty(scorer, prompt, texts: list[str]) -> float:
    """How unsure the reward model is about a prompt's completions: the smallest reward gap (lower = less sure)."""
    if scorer is None or len(texts) < 2:
        return 0.0
    rewards = sorted(scorer.score([prompt] * len(texts), texts))
    return min(b - a for a, b in zip(rewards, rewards[1:]))


def _prompt_pool(project, cfg, reward: ModelVersion | None) -> list:
    from feedback.models import Prompt

    prompts = Prompt.objects.filter(project=project).order_by("id")
    if cfg.prompts == "without_completions":
        prompts = prompts.filter(completions__isnull=True)
    return list(prompts.distinct()[: cfg.max_prompts * (2 if reward and cfg.prompts == "all" else 1)])


def _sample(version: ModelVersion, payloads: list, cfg, k: int, seed: int, should_stop=None) -> list[list[str]]:
    """Sampling stops between decode steps when the run is cancelled (RunCancelled)."""
    from training.pipeline.callbacks import TrainingCancelled
    from training.pipeline.generate import sample_completions
    from training.pipeline.models import load_causal_lm, load_tokenizer

    try:
        return sample_completions(load_causal_lm(version.path), load_tokenizer(version.path), payloads, k=k,
                                  max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                  seed=seed, should_stop=should_stop)
    except TrainingCancelled:
        raise RunCancelled() from None


def _head_to_head(policy: ModelVersion, ranked: list, cfg, should_stop=None) -> tuple[ModelVersion | None, dict]:
    """One completion of the previous best version (the policy's parent) for a share of the prompts."""
    rival = policy.parent if policy.parent and policy.parent.kind == ModelVersion.Kind.POLICY else None
    if rival is None or cfg.head_to_head_share <= 0 or not ranked:
        return None, {}
    rival_pool = ranked[: max(1, int(len(ranked) * cfg.head_to_head_share))]
    samples = _sample(rival, [p.payload for p, _ in rival_pool], cfg, k=1, seed=cfg.seed + 1, should_stop=should_stop)
    return rival, {p.pk: s[0] for (p, _), s in zip(rival_pool, samples) if s}


def run_publish(ctx: RunContext) -> dict:
    """Prompts: those waiting for completions, or (prompts="all") any, sampled for twice as many as will be
    published, and those where the newest reward model is least certain (smallest reward gap between
    completions) go first. A share of tasks pits one completion of the previous best version against
    the new ones (head to head), so the leaderboard compares versions directly."""
    from training.pipeline.reward import RewardScorer

    run, cfg, project = ctx.run, ctx.config, ctx.run.project
    k = cfg.completions_per_prompt or project.completions_per_task
    policy = _policy_for(run, cfg.policy_version)
    reward = selectors.newest_reward_model(project=project)
    pool = _prompt_pool(project, cfg, reward)
    if not pool:
        ctx.log("no prompts to sample for")
        return {"summary": {"published_tasks": 0}}
    ctx.log(f"sampling {k} completions for {len(pool)} prompts from {policy.name}")
    texts = _sample(policy, [p.payload for p in pool], cfg, k=k, seed=cfg.seed, should_stop=ctx.should_stop)
    ctx.on_step(1, {"publish/prompts_sampled": len(pool)})

    scorer = RewardScorer(reward.path) if reward else None
    ranked = sorted(zip(pool, texts), key=lambda item: _uncertainty(scorer, item[0].payload, item[1]))
    ranked = [(p, t) for p, t in ranked if len(set(t)) >= 2][: cfg.max_prompts]
    rival, rival_texts = _head_to_head(policy, ranked, cfg, should_stop=ctx.should_stop)
    if ctx.should_stop():  # the last moment a cancel can land: nothing has been published yet
        raise RunCancelled()

    generation = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed}
    published = 0
    for priority, (prompt, samples) in enumerate(ranked):
        rows = [(text, policy) for text in dict.fromkeys(samples)]
        if prompt.pk in rival_texts and rival_texts[prompt.pk] not in samples:
            rows = rows[: k - 1] + [(rival_texts[prompt.pk], rival)]
        published += services.publish_prompt(project=project, prompt=prompt, samples=rows, generation=generation,
                                             priority=priority)
    services.record_published(project=project, run=run, policy=policy, tasks=published)
    ctx.log(f"published {published} comparison tasks")
    return {"summary": {"published_tasks": published, "policy": policy.name,
                        "reward_model": reward.name if reward else None, "head_to_head": len(rival_texts)}}
