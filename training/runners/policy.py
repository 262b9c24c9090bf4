"""Improving the policy: PPO, RLOO or GRPO against the project's newest reward model, or DPO on a preference snapshot.

Each kind's gate (declared with it in `training.run_kinds`) decides whether the result becomes a candidate
for the project's active policy: PPO's gate (RLOO's and GRPO's too) is a paired t test on held-out prompts against
its parent, with KL under the bound and a length control (training/pipeline/gate.py; a failed PPO result is not even
registered: its weights may not be finite). Every gate of a project judges the same held-out prompts, so the k-th
spends alpha·6/(π²k²) of the error budget (`gate_look`, counted here). With no reward model other than the one the
policy optimised there is no independent judge: the gate says "unjudged" and a result whose test passed is
registered as a CANDIDATE for people to judge, never activated on the gate. DPO's gate needs held-out pairs labelled
by people whose task-clustered lower bound of accuracy is above chance (a failed one is registered as rejected, for
the record).

A result that passes is registered as a CANDIDATE: annotators decide its promotion in head-to-head tasks
against the active policy (`training.promotion`). Only a project with `auto_promote` makes it active on the
automatic gate alone.
"""

from __future__ import annotations

from dataclasses import asdict

from training import selectors, services
from training.models import ModelVersion, TrainingRun
from training.pipeline.fields import launches
from training.pipeline.ppo.verdict import GateVerdict
from training.runners.base import RunCancelled, RunContext, failed, registry_dir
from training.runners.launched import device_summary, run_launched, train_here_or_launched, trained_model
from training.runners.reward import snapshot_rows

NO_POLICY = "no policy to start from: run `manage.py bootstrap_models` first"
NO_REWARD_MODEL = "no reward model for this project yet: train one first (train_reward_model)"
NO_PROMPTS = "the project has no prompts to train on"
ONLINE_KINDS = (TrainingRun.Kind.PPO, TrainingRun.Kind.RLOO, TrainingRun.Kind.GRPO)


def ppo_gate(verdict: GateVerdict) -> tuple[bool, str]:
    """The gate of PPO, RLOO and GRPO (the same test: `pipeline.ppo.report.conclude`), on what it concluded in the
    worker's process or under `accelerate launch` alike: True also for an unjudged result whose test passed
    (registered as a CANDIDATE only, see `register_policy_result`)."""
    if verdict.passes_gate:
        return True, ""
    why = verdict.message or verdict.verdict
    return False, f"the run ended with status '{verdict.status}' and did not pass the gate: {why} Nothing was registered."


def dpo_gate(result) -> tuple[bool, str]:
    """DPO's gate: held-out pairs labelled by people (never the reward model's), the one-sided 97.5% lower bound of
    the accuracy clustered by task (`pipeline.reward.eval.clustered_accuracy`
) above 0.5. No human pair: refused."""
    metrics = result.metrics
    n_human = int(metrics.get("eval/human_n_pairs") or 0)
    low = metrics.get("eval/human_accuracy_low")
    if n_human == 0 or low is None:
        return False, ("no held-out pair labelled by people to judge the DPO policy on: registered as rejected, "
                       "not active.")
    accuracy, n_tasks = metrics.get("eval/human_accuracy"), int(metrics.get("eval/human_n_tasks") or 0)
    if low > 0.5:
        return True, ""
    return False, (f"held-out accuracy on people's pairs {accuracy:.2f} (lower bound {low:.2f} over {n_tasks} "
                   f"task(s), {n_human} pairs) is not above chance with confidence: registered as rejected, "
                   "not active.")


def earlier_gates(run: TrainingRun) -> int:
    """How many PPO, RLOO or GRPO gates the project ran before this run: they all judged the same held-out prompts
    (one split function, `_prompt_split`), so this run's gate is look number earlier_gates + 1."""
    return TrainingRun.objects.filter(
        project=run.project, kind__in=ONLINE_KINDS, pk__lt=run.pk, summary__has_key="gate/verdict").count()


def set_gate_budget(run: TrainingRun, cfg, *, independent_judge: bool, log) -> None:
    """What the pipeline's gate cannot know: which look on the held-out prompts this is, and whether its judge is
    independent of the reward model the policy optimises."""
    from training.pipeline.gate import alpha_for_look

    cfg.gate_look = earlier_gates(run) + 1
    cfg.gate_independent_judge = independent_judge
    log(f"gate {cfg.gate_look} on these held-out prompts: one-sided level "
        f"{alpha_for_look(cfg.gate_look, cfg.gate_alpha):.3g}"
        + ("" if independent_judge else "; no independent judge (no earlier reward model): the verdict will be "
                                        "'unjudged' and only people can promote the result"))


def register_policy_result(run: TrainingRun, *, rejected: bool = False, judged: bool = True, **fields) -> ModelVersion:
    """Register a PPO or DPO result: rejected when its gate refused it; else a CANDIDATE that annotators
    promote (`training.promotion`), or ACTIVE at once when the project has `auto_promote` and an independent judge
    passed it (`judged`; an unjudged result is only ever a candidate)."""
    run.project.refresh_from_db(fields=["auto_promote"])
    return services.register_version(
        project=run.project, name=f"policy-{run.project.slug}-run{run.pk}", kind=ModelVersion.Kind.POLICY,
        config=run.config, rejected=rejected, activate=not rejected and judged and run.project.auto_promote,
        actor=run.created_by, **fields,
    )


def _registered_as(version: ModelVersion, judged: bool = True) -> str:
    if not judged:
        return (f"{version.name} is a candidate, unjudged: no independent judge (only the reward model it optimised "
                "scored it); annotators' head-to-head judgements against the active policy decide its promotion")
    if version.status == ModelVersion.Status.ACTIVE:
        return f"{version.name} passed its gate and is active (the project promotes on the automatic gate)"
    return (f"{version.name} passed its gate and is a candidate: annotators' head-to-head judgements against "
            "the active policy decide its promotion")


def _base_policy(run: TrainingRun, cfg_policy: str, default_name: str) -> tuple[ModelVersion | None, str]:
    """The version a policy run starts from: the run's base version, else the project's active policy,
    unless the settings name another model directory explicitly."""
    if cfg_policy != default_name:
        return None, cfg_policy
    version = run.base_version or selectors.active_policy(project=run.project)
    if version is None:
        raise ValueError(NO_POLICY)
    return version, version.path


def _prompt_split(project, snapshot) -> tuple[list, list]:
    """Training and held-out prompts by the same split as the reward model's snapshot (one split function,
    `feedback.quality.split_of` of `Prompt.split_key`, with the snapshot's fraction and seed): PPO's held-out
    prompts are exactly the export's test prompts, which the reward model never trained on."""
    from feedback.models import Prompt
    from feedback.quality import split_of

    filters = (snapshot.filters if snapshot is not None else {}) or {}
    fraction, seed = filters.get("test_fraction", 0.1), filters.get("split_seed", 0)
    train, held_out = [], []
    for prompt in Prompt.objects.filter(project=project).order_by("id").iterator(chunk_size=2000):
        (held_out if split_of(prompt.split_key, test_fraction=fraction, seed=seed) == "test" else train).append(
            prompt.payload)
    return train, held_out


def _held_out_judge(ctx: RunContext, reward: ModelVersion):
    """A judge PPO does not optimise (the project's previous active reward model), or None: the gate and the
    reward-hacking flag use it, so a policy that games its own reward model is caught."""
    from training.pipeline.reward.scoring import RewardScorer

    holdout = selectors.newest_reward_model(project=ctx.run.project, exclude=reward)
    if holdout is None:
        return None
    scorer = RewardScorer(holdout.path)
    ctx.log(f"held-out judge for reward hacking: {holdout.name}")
    return scorer.score


def original_base(base: ModelVersion | None, log) -> object | None:
    """The policy the lineage started from, loaded (frozen) when it is not the run's own base: PPO bounds the KL
    to it (`kl_base_bound`), because each run's reference is its parent and drift would otherwise add up."""
    from training.pipeline.models import load_causal_lm

    if base is None:
        return None
    root = selectors.lineage(version=base)[-1]
    if root.pk == base.pk:
        return None
    log(f"KL to the original base {root.name} is logged and bounded (kl_base_bound)")
    return load_causal_lm(root.path)


def _train_online(ctx: RunContext, method: str) -> dict:
    """PPO, RLOO or GRPO against the project's newest reward model, on the reward model's training prompts, judged on
    its held-out prompts by the gate; registered (as a CANDIDATE, or active under auto_promote) only when it passes."""
    from training.pipeline.models import load_causal_lm, load_tokenizer
    from training.pipeline.ppo.save import save_policy
    from training.pipeline.reward.scoring import RewardScorer

    run, cfg, (default_policy, train, total_steps) = ctx.run, ctx.config, _online_method(method, ctx.config)
    base, policy_path = _base_policy(run, cfg.policy, default_policy)
    reward = selectors.newest_reward_model(project=run.project)
    if reward is None:
        raise ValueError(NO_REWARD_MODEL)
    train_prompts, eval_prompts = _prompt_split(run.project, reward.snapshot)
    if not train_prompts:
        raise ValueError(NO_PROMPTS)
    ctx.total_steps = total_steps
    ctx.log(f"{method.upper()} from {policy_path} against {reward.name}: {len(train_prompts)} training, "
            f"{len(eval_prompts)} held-out prompts")
    if eval_prompts:  # minutes on a busy CPU with no step to show: say what the run is doing meanwhile
        ctx.log(f"the gate's baseline first: the parent answers the {len(eval_prompts)} held-out prompts "
                f"{cfg.gate_samples_per_prompt} times each; training steps follow")
    if launches(cfg):  # accelerate launch on cfg.processes processes
        return _launched_policy(ctx, method, base, policy_path, reward, train_prompts, eval_prompts)
    tokenizer = load_tokenizer(policy_path)
    policy = load_causal_lm(policy_path, verify=cfg.verify_policy)
    judge = _held_out_judge(ctx, reward)
    set_gate_budget(run, cfg, independent_judge=judge is not None, log=ctx.log)
    result = train(cfg, policy, tokenizer, RewardScorer(reward.path).score, train_prompts, eval_prompts,
                   on_step=ctx.on_step, should_stop=ctx.should_stop, held_out_judge=judge,
                   base_model=original_base(base, ctx.log))
    summary = result.summary()
    if result.status == "cancelled":
        raise RunCancelled()
    verdict = result.gate_verdict()
    passed, message = ctx.gate(verdict)
    if not passed:
        ctx.log(f"not published: {message}")
        return failed({**summary, **device_summary(cfg)}, message)
    dest = registry_dir(method, run)
    sha = save_policy(result, tokenizer, dest, _policy_manifest(method, base, policy_path, reward))
    judged = verdict.judged
    version = register_policy_result(run, path=str(dest), sha256=sha, metrics=summary, parent=base,
                                     reward_model=reward, snapshot=reward.snapshot, judged=judged)
    ctx.log(_registered_as(version, judged))
    return {"summary": {**summary, **device_summary(cfg)}, "produced_version": version}


def _policy_manifest(method: str, base, policy_path, reward) -> dict:
    return {"kind": "policy", "method": method, "reward_model": reward.name, "parent": base.name if base else policy_path}


def _launched_policy(ctx: RunContext, method: str, base, policy_path, reward, train_prompts, eval_prompts) -> dict:
    """PPO, RLOO or GRPO under `accelerate launch`: the job loads the same models by path, the main process
    computes the gate and saves a result that passed it, and this registers it as the in-process path does."""
    run, cfg = ctx.run, ctx.config
    judge = selectors.newest_reward_model(project=run.project, exclude=reward)
    if judge is not None:
        ctx.log(f"held-out judge for reward hacking: {judge.name}")
    set_gate_budget(run, cfg, independent_judge=judge is not None, log=ctx.log)
    root = selectors.lineage(version=base)[-1] if base is not None else None
    out = run_launched(ctx, method, {
        "config": asdict(cfg), "policy": str(policy_path), "reward_model": reward.path,
        "judge": judge.path if judge else None, "base_model": root.path if root and root.pk != base.pk else None,
        "train_prompts": train_prompts, "eval_prompts": eval_prompts, "output_dir": str(registry_dir(method, run)),
        "manifest_extra": _policy_manifest(method, base, policy_path, reward)})
    summary, verdict = out["summary"], GateVerdict.from_dict(out)
    passed, message = ctx.gate(verdict)
    if not passed or not out["path"]:
        ctx.log(f"not published: {message}")
        return failed({**summary, **device_summary(cfg)}, message)
    judged = verdict.judged

    version = register_policy_result(run, path=out["path"], sha256=out["manifest_sha256"], metrics=summary,
                                     parent=base, reward_model=reward, snapshot=reward.snapshot, judged=judged)
    ctx.log(_registered_as(version, judged))
    return {"summary": {**summary, **device_summary(cfg)}, "produced_version": version}


def _online_method(method: str, cfg):
    """(the config class's default policy, the trainer, the number of steps) of an online method."""
    if method == "ppo":
        from training.pipeline.ppo.config import PPOConfig
        from training.pipeline.ppo.loop import train_ppo

        return PPOConfig.policy, train_ppo, cfg.num_iterations
    from training.pipeline.online.config import OnlineConfig
    from training.pipeline.online.trainer import train_grpo, train_rloo

    return OnlineConfig.policy, train_rloo if method == "rloo" else train_grpo, cfg.max_steps


def run_ppo(ctx: RunContext) -> dict:
    return _train_online(ctx, "ppo")


def run_rloo(ctx: RunContext) -> dict:
    return _train_online(ctx, "rloo")


def run_grpo(ctx: RunContext) -> dict:
    return _train_online(ctx, "grpo")


def run_dpo(ctx: RunContext) -> dict:
    from training.pipeline.dpo.config import DPOConfig
    from training.pipeline.dpo.trainer import train_dpo

    run, cfg = ctx.run, ctx.config
    base, cfg.policy = _base_policy(run, cfg.policy, DPOConfig.policy)
    snapshot, train_rows, test_rows = snapshot_rows(ctx)
    ctx.total_steps = cfg.max_steps if cfg.max_steps > 0 else None
    ctx.log(f"DPO from {cfg.policy} on snapshot {snapshot.pk}: {len(train_rows)} pairs")
    result = train_here_or_launched(ctx, "dpo", train_dpo, train_rows, test_rows)
    passed, message = ctx.gate(result)
    version = register_policy_result(run, path=str(result.path), sha256=result.manifest_sha256,
                                     metrics=result.metrics, parent=base, snapshot=snapshot, rejected=not passed)
    summary = {**result.metrics, **device_summary(cfg)}
    if not passed:
        ctx.log(message)
        return failed(summary, message, produced_version=version)
    ctx.log(_registered_as(version))
    return {"summary": summary, "produced_version": version}
