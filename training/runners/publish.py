"""Publishing samples: K completions per prompt from a policy, made into comparison tasks at once."""

from __future__ import annotations

import random
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


def held_out_test(project, reward: ModelVersion | None):
    """A function prompt → True when the prompt is held out: the reward model's snapshot split (its fraction and
    seed; 0.1 and 0 without one), keyed like every split (`Prompt.split_key`, `feedback.quality.split_of`),
    so duels are on prompts no reward model or policy trained on."""
    from feedback.quality import split_of

    filters = ((reward.snapshot.filters if reward is not None and reward.snapshot is not None else {}) or {})
    fraction, seed = filters.get("test_fraction", 0.1), filters.get("split_seed", 0)
    return lambda prompt: split_of(prompt.split_key, test_fraction=fraction, seed=seed) == "test"


def _prompt_pool(project, cfg, reward: ModelVersion | None, resample: int = 0, seed: int = 0,
                 held_out=None) -> tuple[list, list]:
    """(fresh prompts, prompts drawn again). Fresh prompts are sampled for twice as many as will be published when
    a reward model can keep the least certain (prompts="all"). The `resample` prompts drawn again already have
    completions (judged or not): a plain random draw from the held-out ones (all of them when none is held out),
    because their head-to-head judgements estimate the candidate's win rate, and keeping only the reward model's
    hardest prompts would bias it."""
    from feedback.models import Prompt

    prompts = Prompt.objects.filter(project=project).order_by("id")
    if cfg.prompts == "without_completions":
        prompts = prompts.filter(completions__isnull=True)
    factor = 2 if reward and cfg.prompts == "all" else 1
    resample = min(resample, cfg.max_prompts) if cfg.prompts == "without_completions" else 0
    fresh = list(prompts.distinct()[: (cfg.max_prompts - resample) * factor])
    if not resample:
        return fresh, []
    seen = list(Prompt.objects.filter(project=project, completions__isnull=False).distinct().order_by("id")
                .only("id", "external_id"))
    held = [p.pk for p in seen if held_out is not None and held_out(p)] or [p.pk for p in seen]
    drawn = random.Random(seed).sample(held, min(len(held), resample))
    return fresh, list(Prompt.objects.filter(pk__in=drawn).order_by("id"))


def sampler(version: ModelVersion, cfg, should_stop=None):
    """A function (payloads, k, seed, on_batch) → k texts per payload from `version`, loaded once. Sampling stops
    between decode steps when the run is cancelled (RunCancelled)."""
    from training.pipeline.callbacks import TrainingCancelled
    from training.pipeline.sampling.generate import sample_completions
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


def _rivals(policy: ModelVersion, project) -> list[ModelVersion]:
    """Who the policy meets head to head: every candidate awaiting promotion (oldest first, each gets duels), else
    the policy's parent."""
    candidates = [c for c in selectors.promotion_candidates(project=project) if c.pk != policy.pk]
    if candidates:
        return candidates
    return [policy.parent] if policy.parent and policy.parent.kind == ModelVersion.Kind.POLICY else []


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
    them pits one answer of a rival version against the policy's (head to head): every candidate policy awaiting
    promotion (in turn), else the previous best version. Duel prompts are a seeded random draw of the held-out
    prompts (all prompts when none is held out), never the reward model's least certain: their judgements estimate
    the candidate's win rate, which a selected sample would bias. While candidates await, `resample_share` of the
    prompts (at least one per candidate) are drawn again at random from the held-out prompts, judged or not, so
    there is always something to compare: each gets K−1 answers of the policy and one of a candidate, nothing more
    is sampled. Plain tasks are queued by the reward model's uncertainty; duel tasks take random places among them.
    Publishing ends by deciding promotions (`training.promotion.decide_promotions`)."""
    from training.pipeline.reward.scoring import RewardScorer
    from training.promotion import decide_promotions

    run, cfg, project = ctx.run, ctx.config, ctx.run.project
    k = cfg.completions_per_prompt or project.completions_per_task
    policy = _policy_for(run, cfg.policy_version)
    reward = selectors.newest_reward_model(project=project)
    rivals = _rivals(policy, project)
    candidates = [r for r in rivals if r.status == ModelVersion.Status.CANDIDATE]
    resample = (max(len(candidates), round(cfg.max_prompts * cfg.resample_share))
                if cfg.resample_share > 0 and candidates else 0)
    held_out = held_out_test(project, reward)
    draw = random.Random(cfg.seed + run.pk)
    fresh, again = _prompt_pool(project, cfg, reward, resample=resample, seed=cfg.seed + run.pk, held_out=held_out)
    if not fresh and not again:
        ctx.log("no prompts to sample for")
        return {"summary": {"published_tasks": 0, "promotions": _decide(decide_promotions, project)}}
    ctx.log(f"sampling {k} completions for {len(fresh)} prompts from {policy.name}"
            + (f", and {k - 1} plus one of a candidate ({', '.join(c.name for c in candidates)}) for {len(again)} "
               "held-out prompts drawn again" if again else ""))
    progress = _Progress(ctx, len(fresh) * k + len(again) * k + (min(len(fresh), cfg.max_prompts) if rivals else 0))
    sample = sampler(policy, cfg, ctx.should_stop)
    fresh_texts = sample([p.payload for p in fresh], k, cfg.seed, progress.batch)
    progress.finished(len(fresh) * k)
    again_items = list(zip(again, sample([p.payload for p in again], k - 1, cfg.seed + 2, progress.batch)))
    progress.finished(len(again) * (k - 1))
    ctx.on_step(1, {"publish/prompts_sampled": len(fresh) + len(again)})

    uncertainty = _Uncertainty(RewardScorer(reward.path) if reward else None)
    eligible = [(p, t) for p, t in zip(fresh, fresh_texts) if len(set(t)) >= 2]
    room = cfg.max_prompts - len(again)
    duels = []
    if rivals and cfg.head_to_head_share > 0 and eligible:
        pool = [item for item in eligible if held_out(item[0])] or eligible
        duels = draw.sample(pool, min(len(pool), max(1, int(min(len(eligible), room) * cfg.head_to_head_share))))
    chosen = {p.pk for p, _ in duels}
    kept = duels + sorted((item for item in eligible if item[0].pk not in chosen),
                          key=lambda item: uncertainty(*item))[: max(0, room - len(duels))]
    rival_of = _assign_rivals(duels, rivals, again_items, candidates, draw)
    rival_texts = _rival_texts(rival_of, duels + again_items, cfg, ctx.should_stop, progress.batch)
    if ctx.should_stop():  # the last moment a cancel can land: nothing has been published yet
        raise RunCancelled()
    tasks = _tasks(policy, k, rival_of, rival_texts, kept, again_items)
    published = _publish(project, _queue_order(tasks, uncertainty, draw), cfg)
    services.record_published(project=project, run=run, policy=policy, tasks=published)
    ctx.log(f"published {published} comparison tasks")
    return {"summary": {"published_tasks": published, "policy": policy.name,
                        "reward_model": reward.name if reward else None,
                        "head_to_head": sum(_is_duel(rows) for _, rows in tasks),
                        "duels": {r.name: sum(any(v == r for _, v in rows) for _, rows in tasks) for r in rivals},
                        "rival": ", ".join(r.name for r in rivals if any(v == r for _, rows in tasks for _, v in rows))
                        or None, "resampled": len(again),
                        "promotions": _decide(decide_promotions, project)}}


def _assign_rivals(duels: list, rivals: list, again: list, candidates: list, draw) -> dict[int, ModelVersion]:
    """Prompt id → the rival version its task shows: the fresh duels and the prompts drawn again are dealt in turn
    (a seeded shuffle) to every rival, so each waiting candidate gets duels; prompts drawn again go to candidates."""
    rival_of: dict[int, ModelVersion] = {}
    for items, versions in ((duels, rivals), (again, candidates)):
        order = list(items)
        draw.shuffle(order)
        for i, (prompt, _) in enumerate(order):
            if versions:
                rival_of[prompt.pk] = versions[i % len(versions)]
    return rival_of


def _rival_texts(rival_of: dict, items: list, cfg, should_stop, on_batch) -> dict[int, str]:
    """One answer of its rival version for each (prompt, texts) in `items`, by prompt id (each rival loaded once)."""
    texts: dict[int, str] = {}
    by_rival: dict[int, list] = {}
    for prompt, _ in items:
        if prompt.pk in rival_of:
            by_rival.setdefault(rival_of[prompt.pk].pk, []).append(prompt)
    for prompts in by_rival.values():
        rival = rival_of[prompts[0].pk]
        samples = sampler(rival, cfg, should_stop)([p.payload for p in prompts], 1, cfg.seed + 1, on_batch)
        texts.update({p.pk: s[0] for p, s in zip(prompts, samples) if s})
    return texts


def _is_duel(rows: list) -> bool:
    return len({version.pk for _, version in rows}) > 1


def _queue_order(tasks: list, uncertainty, draw) -> list:
    """Plain tasks by the reward model's uncertainty about the answers they show; duel tasks at random places among
    them, so the order duels close in (the order the promotion test reads them) owes nothing to the reward model."""
    ordered = sorted((t for t in tasks if not _is_duel(t[1])), key=lambda task: uncertainty(task[0], [x for x, _ in task[1]]))
    for task in (t for t in tasks if _is_duel(t[1])):
        ordered.insert(draw.randrange(len(ordered) + 1), task)
    return ordered


def _tasks(policy, k: int, rival_of: dict, rival_texts: dict, kept: list, again: list) -> list[tuple]:
    """(prompt, rows) per task: every kept fresh prompt, and each prompt drawn again whose rival answer differs from
    the policy's (drawn again, a prompt is there for the head-to-head alone)."""
    tasks = [(prompt, _rows(policy, texts, k, rival_of.get(prompt.pk), rival_texts.get(prompt.pk)))
             for prompt, texts in kept]
    for prompt, texts in again:
        rival = rival_of.get(prompt.pk)
        rows = _rows(policy, texts, k, rival, rival_texts.get(prompt.pk))
        if len(rows) >= 2 and rows[-1][1] == rival:
            tasks.append((prompt, rows))
    return tasks


def _rows(policy, texts: list[str], k: int, rival, rival_text: str | None) -> list[tuple]:
    """A task's answers as (text, version): the policy's distinct answers, the last of K replaced by the rival's
    when it has one that differs from all of them."""
    rows = [(text, policy) for text in dict.fromkeys(texts)]
    if rival is not None and rival_text is not None and rival_text not in texts:
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
