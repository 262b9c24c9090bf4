"""Publishing samples: K completions per prompt from a policy, made into comparison tasks at once."""

from __future__ import annotations

from itertools import pairwise

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


class _Uncertainty:
    """How unsure the reward model is about a prompt's answers: the smallest reward gap (lower = less sure).
    Remembered per prompt and answers, because a task usually shows the very answers its prompt was ranked by."""

    def __init__(self, scorer):
        self.scorer, self.known = scorer, {}

    def __call__(self, prompt, texts) -> float:
        texts = tuple(texts)
        if self.scorer is None or len(texts) < 2:
            return 0.0
        if (prompt.pk, texts) not in self.known:
            rewards = sorted(self.scorer.score([prompt.payload] * len(texts), list(texts)))
            self.known[prompt.pk, texts] = min(b - a for a, b in pairwise(rewards))
        return self.known[prompt.pk, texts]


def _prompt_pool(project, cfg, reward: ModelVersion | None, resample: int = 0, seed: int = 0) -> tuple[list, list]:
    """(fresh prompts, prompts drawn again). Fresh prompts are sampled for twice as many as will be published when
    a reward model can keep the least certain (prompts="all"). The `resample` prompts drawn again already have
    completions (judged or not): a plain random draw, because their head-to-head judgements estimate the
    candidate's win rate, and keeping only the reward model's hardest prompts would bias it."""
    import random

    from feedback.models import Prompt

    prompts = Prompt.objects.filter(project=project).order_by("id")
    if cfg.prompts == "without_completions":
        prompts = prompts.filter(completions__isnull=True)
    factor = 2 if reward and cfg.prompts == "all" else 1
    resample = min(resample, cfg.max_prompts) if cfg.prompts == "without_completions" else 0
    fresh = list(prompts.distinct()[: (cfg.max_prompts - resample) * factor])
    if not resample:
        return fresh, []
    seen = list(Prompt.objects.filter(project=project, completions__isnull=False).distinct()
                .order_by("id").values_list("pk", flat=True))
    drawn = random.Random(seed).sample(seen, min(len(seen), resample))
    return fresh, list(Prompt.objects.filter(pk__in=drawn).order_by("id"))


def sampler(version: ModelVersion, cfg, should_stop=None):
    """A function (payloads, k, seed, on_batch) → k texts per payload from `version`, loaded once. Sampling stops
    between decode steps when the run is cancelled (RunCancelled)."""
    from training.pipeline.callbacks import TrainingCancelled
    from training.pipeline.generate import sample_completions
    from training.pipeline.models import load_causal_lm, load_tokenizer

    model, tokenizer = load_causal_lm(version.path), load_tokenizer(version.path)

    def sample(payloads: list, k: int, seed: int, on_batch=None) -> list[list[str]]:
        if not payloads:
            return []
        try:
            return sample_completions(model, tokenizer, payloads, k=k, max_new_tokens=cfg.max_new_tokens,
                                      temperature=cfg.temperature, top_p=cfg.top_p, seed=seed,
                                      should_stop=should_stop, on_batch=on_batch)
        except TrainingCancelled:
            raise RunCancelled() from None

    return sample


def _rival(policy: ModelVersion, project) -> ModelVersion | None:
    """Who the policy meets head to head: the newest candidate awaiting promotion, else the policy's parent."""
    candidate = selectors.newest_candidate(project=project)
    if candidate is not None and candidate.pk != policy.pk:
        return candidate
    return policy.parent if policy.parent and policy.parent.kind == ModelVersion.Kind.POLICY else None


class _Progress:
    """The run's bar over every sample publishing plans to draw (the rival's count is an upper bound)."""

    def __init__(self, ctx: RunContext, planned: int):
        self.ctx, self.planned, self.done = ctx, max(1, planned), 0

    def batch(self, done: int, _total: int) -> None:
        self.ctx.on_progress(min(1.0, (self.done + done) / self.planned))

    def finished(self, drawn: int) -> None:
        self.done += drawn


def run_publish(ctx: RunContext) -> dict:
    """Fresh prompts (those waiting for completions, or with prompts="all" any) get K answers from the policy;
    with a reward model, those it is least certain about (smallest reward gap) are kept and go first. A share of
    them pits one answer of a rival version against the policy's (head to head): the candidate policy awaiting
    promotion when there is one, else the previous best version. While a candidate awaits, `resample_share` of
    the prompts are drawn again at random, judged or not, so there is always something to compare: each gets
    K−1 answers of the policy and one of the candidate, nothing more is sampled. Every task's place in the queue
    follows the reward model's uncertainty about the answers it shows. Publishing ends by deciding promotions
    (`training.promotion.decide_promotions`)."""
    from training.pipeline.reward import RewardScorer
    from training.promotion import decide_promotions

    run, cfg, project = ctx.run, ctx.config, ctx.run.project
    k = cfg.completions_per_prompt or project.completions_per_task
    policy = _policy_for(run, cfg.policy_version)
    reward = selectors.newest_reward_model(project=project)
    rival = _rival(policy, project)
    resample = (max(1, round(cfg.max_prompts * cfg.resample_share)) if cfg.resample_share > 0 and rival is not None
                and rival.status == ModelVersion.Status.CANDIDATE else 0)
    fresh, again = _prompt_pool(project, cfg, reward, resample=resample, seed=cfg.seed + run.pk)
    if not fresh and not again:
        ctx.log("no prompts to sample for")
        return {"summary": {"published_tasks": 0, "promotions": _decide(decide_promotions, project)}}
    ctx.log(f"sampling {k} completions for {len(fresh)} prompts from {policy.name}"
            + (f", and {k - 1} plus one of {rival.name} for {len(again)} drawn again" if again else ""))
    progress = _Progress(ctx, len(fresh) * k + len(again) * k + (min(len(fresh), cfg.max_prompts) if rival else 0))
    sample = sampler(policy, cfg, ctx.should_stop)
    fresh_texts = sample([p.payload for p in fresh], k, cfg.seed, progress.batch)
    progress.finished(len(fresh) * k)
    again_items = list(zip(again, sample([p.payload for p in again], k - 1, cfg.seed + 2, progress.batch)))
    progress.finished(len(again) * (k - 1))
    ctx.on_step(1, {"publish/prompts_sampled": len(fresh) + len(again)})

    uncertainty = _Uncertainty(RewardScorer(reward.path) if reward else None)
    kept = sorted(((p, t) for p, t in zip(fresh, fresh_texts) if len(set(t)) >= 2),
                  key=lambda item: uncertainty(*item))[: cfg.max_prompts - len(again)]
    duels = kept[: max(1, int(len(kept) * cfg.head_to_head_share))] if rival and cfg.head_to_head_share > 0 else []
    rival_texts = _rival_texts(rival, duels + again_items, cfg, ctx.should_stop, progress.batch)
    if ctx.should_stop():  # the last moment a cancel can land: nothing has been published yet
        raise RunCancelled()
    tasks = _tasks(policy, k, rival, rival_texts, kept, again_items)
    published = _publish(project, sorted(tasks, key=lambda task: uncertainty(task[0], [t for t, _ in task[1]])), cfg)
    services.record_published(project=project, run=run, policy=policy, tasks=published)
    ctx.log(f"published {published} comparison tasks")
    return {"summary": {"published_tasks": published, "policy": policy.name,
                        "reward_model": reward.name if reward else None,
                        "head_to_head": sum(any(v == rival for _, v in rows) for _, rows in tasks) if rival else 0,
                        "rival": rival.name if rival_texts else None, "resampled": len(again),
                        "promotions": _decide(decide_promotions, project)}}


def _rival_texts(rival, items: list, cfg, should_stop, on_batch) -> dict[int, str]:
    """One answer of the rival version for each (prompt, texts) in `items`, by prompt id."""
    if rival is None or not items:
        return {}
    samples = sampler(rival, cfg, should_stop)([p.payload for p, _ in items], 1, cfg.seed + 1, on_batch)
    return {p.pk: s[0] for (p, _), s in zip(items, samples) if s}


def _tasks(policy, k: int, rival, rival_texts: dict, kept: list, again: list) -> list[tuple]:
    """(prompt, rows) per task: every kept fresh prompt, and each prompt drawn again whose rival answer differs from
    the policy's (drawn again, a prompt is there for the head-to-head alone)."""
    tasks = [(prompt, _rows(policy, texts, k, rival, rival_texts.get(prompt.pk))) for prompt, texts in kept]
    for prompt, texts in again:
        rows = _rows(policy, texts, k, rival, rival_texts.get(prompt.pk))
        if len(rows) >= 2 and rows[-1][1] == rival:
            tasks.append((prompt, rows))
    return tasks


def _rows(policy, texts: list[str], k: int, rival, rival_text: str | None) -> list[tuple]:
    """A task's answers as (text, version): the policy's distinct answers, the last of K replaced by the rival's
    when it has one that differs from all of them."""
    rows = [(text, policy) for text in dict.fromkeys(texts)]
    if rival_text is not None and rival_text not in texts:
        rows = rows[: k - 1] + [(rival_text, rival)]
    return rows


def _publish(project, tasks: list, cfg) -> int:
    generation = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed}
    return sum(services.publish_prompt(project=project, prompt=prompt, samples=rows, generation=generation,
                                       priority=priority)
               for priority, (prompt, rows) in enumerate(tasks))


def _decide(decide_promotions, project) -> dict:
    """The verdicts on the project's candidates, by name (after publishing, so the newest judgements count)."""
    return {version.name: verdict for version, verdict in decide_promotions(project=project)}
