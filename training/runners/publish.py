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


def _prompt_pool(project, cfg, reward: ModelVersion | None, resample: int = 0, seed: int = 0) -> tuple[list, set]:
    """(prompts to sample for, the ids of those drawn again). `resample` prompts that already have completions
    (judged or not) are drawn at random — twice as many with a reward model, which keeps the least certain —
    and keep their places even when fresh prompts alone would fill `max_prompts`."""
    import random

    from feedback.models import Prompt

    prompts = Prompt.objects.filter(project=project).order_by("id")
    if cfg.prompts == "without_completions":
        prompts = prompts.filter(completions__isnull=True)
    factor = 2 if reward else 1
    resample = min(resample, cfg.max_prompts) if cfg.prompts == "without_completions" else 0
    fresh = list(prompts.distinct()[: (cfg.max_prompts - resample) * (factor if cfg.prompts == "all" else 1)])
    if not resample:
        return fresh, set()
    seen = list(Prompt.objects.filter(project=project, completions__isnull=False).distinct()
                .order_by("id").values_list("pk", flat=True))
    drawn = random.Random(seed).sample(seen, min(len(seen), resample * factor))
    return fresh + list(Prompt.objects.filter(pk__in=drawn).order_by("id")), set(drawn)


def _keep(ranked: list, resampled: set, cfg, resample: int) -> list:
    """The most uncertain prompts (`ranked` is most uncertain first): up to `resample` drawn again, the rest fresh."""
    again = [item for item in ranked if item[0].pk in resampled][:resample]
    fresh = [item for item in ranked if item[0].pk not in resampled][: cfg.max_prompts - len(again)]
    kept = {id(item) for item in again + fresh}
    return [item for item in ranked if id(item) in kept]


def _sample(version: ModelVersion, payloads: list, cfg, k: int, seed: int, should_stop=None,
            on_batch=None) -> list[list[str]]:
    """Sampling stops between decode steps when the run is cancelled (RunCancelled)."""
    from training.pipeline.callbacks import TrainingCancelled
    from training.pipeline.generate import sample_completions
    from training.pipeline.models import load_causal_lm, load_tokenizer

    try:
        return sample_completions(load_causal_lm(version.path), load_tokenizer(version.path), payloads, k=k,
                                  max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                  seed=seed, should_stop=should_stop, on_batch=on_batch)
    except TrainingCancelled:
        raise RunCancelled() from None


def _rival(policy: ModelVersion, project) -> ModelVersion | None:
    """Who the policy meets head to head: the newest candidate awaiting promotion, else the policy's parent."""
    candidate = selectors.newest_candidate(project=project)
    if candidate is not None and candidate.pk != policy.pk:
        return candidate
    return policy.parent if policy.parent and policy.parent.kind == ModelVersion.Kind.POLICY else None


def _head_to_head(policy: ModelVersion, ranked: list, cfg, should_stop=None, *, project=None,
                  resampled: frozenset = frozenset(), on_batch=None) -> tuple[ModelVersion | None, dict]:
    """One completion of the rival version (`_rival`) for a share of the prompts, and for every prompt drawn
    again while a candidate awaits promotion."""
    rival = _rival(policy, project if project is not None else policy.project)
    if rival is None or not ranked or (cfg.head_to_head_share <= 0 and not resampled):
        return None, {}
    fresh = [item for item in ranked if item[0].pk not in resampled]
    share = fresh[: max(1, int(len(fresh) * cfg.head_to_head_share))] if cfg.head_to_head_share > 0 else []
    rival_pool = [item for item in ranked if item[0].pk in resampled] + share
    samples = _sample(rival, [p.payload for p, _ in rival_pool], cfg, k=1, seed=cfg.seed + 1, should_stop=should_stop,
                      on_batch=on_batch)
    return rival, {p.pk: s[0] for (p, _), s in zip(rival_pool, samples) if s}


def run_publish(ctx: RunContext) -> dict:
    """Prompts: those waiting for completions, or (prompts="all") any, sampled for twice as many as will be
    published, and those where the newest reward model is least certain (smallest reward gap between
    completions) go first. A share of tasks pits one completion of a rival version against the new ones
    (head to head): the candidate policy awaiting promotion when there is one (then `resample_share` of the
    prompts are drawn again, judged or not, so there is always something to compare), else the previous
    best version. Publishing ends by deciding promotions (`training.promotion.decide_promotions`)."""
    from training.pipeline.reward import RewardScorer
    from training.promotion import decide_promotions

    run, cfg, project = ctx.run, ctx.config, ctx.run.project
    k = cfg.completions_per_prompt or project.completions_per_task
    policy = _policy_for(run, cfg.policy_version)
    reward = selectors.newest_reward_model(project=project)
    waiting = _rival(policy, project)
    resample = (max(1, round(cfg.max_prompts * cfg.resample_share)) if cfg.resample_share > 0 and waiting is not None
                and waiting.status == ModelVersion.Status.CANDIDATE else 0)
    pool, resampled = _prompt_pool(project, cfg, reward, resample=resample, seed=cfg.seed + run.pk)
    if not pool:
        ctx.log("no prompts to sample for")
        return {"summary": {"published_tasks": 0, "promotions": _decide(decide_promotions, project)}}
    ctx.log(f"sampling {k} completions for {len(pool)} prompts from {policy.name} ({len(resampled)} drawn again)")
    # The bar: the policy's samples, then at most one rival sample per published prompt (an upper bound).
    planned = len(pool) * k + (min(len(pool), cfg.max_prompts) if waiting is not None else 0)
    texts = _sample(policy, [p.payload for p in pool], cfg, k=k, seed=cfg.seed, should_stop=ctx.should_stop,
                    on_batch=lambda done, _: ctx.on_progress(done / planned))
    ctx.on_step(1, {"publish/prompts_sampled": len(pool)})

    scorer = RewardScorer(reward.path) if reward else None
    ranked = sorted(zip(pool, texts), key=lambda item: _uncertainty(scorer, item[0].payload, item[1]))
    ranked = _keep([(p, t) for p, t in ranked if len(set(t)) >= 2], resampled, cfg, resample)
    rival, rival_texts = _head_to_head(policy, ranked, cfg, should_stop=ctx.should_stop, project=project,
                                       resampled=frozenset(resampled),
                                       on_batch=lambda done, _: ctx.on_progress((len(pool) * k + done) / planned))
    if ctx.should_stop():  # the last moment a cancel can land: nothing has been published yet
        raise RunCancelled()
    published = _publish(project, policy, ranked, rival, rival_texts, cfg, k)
    services.record_published(project=project, run=run, policy=policy, tasks=published)
    ctx.log(f"published {published} comparison tasks")
    return {"summary": {"published_tasks": published, "policy": policy.name,
                        "reward_model": reward.name if reward else None, "head_to_head": len(rival_texts),
                        "rival": rival.name if rival else None, "resampled": len(resampled),
                        "promotions": _decide(decide_promotions, project)}}


def _publish(project, policy, ranked, rival, rival_texts, cfg, k) -> int:
    generation = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed}
    published = 0
    for priority, (prompt, samples) in enumerate(ranked):
        rows = [(text, policy) for text in dict.fromkeys(samples)]
        if prompt.pk in rival_texts and rival_texts[prompt.pk] not in samples:
            rows = rows[: k - 1] + [(rival_texts[prompt.pk], rival)]
        published += services.publish_prompt(project=project, prompt=prompt, samples=rows, generation=generation,
                                             priority=priority)
    return published


def _decide(decide_promotions, project) -> dict:
    """The verdicts on the project's candidates, by name (after publishing, so the newest judgements count)."""
    return {version.name: verdict for version, verdict in decide_promotions(project=project)}
