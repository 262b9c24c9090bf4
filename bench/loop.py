#!/usr/bin/env python
"""The learning loop end to end, through the real commands, with simulated annotators whose preference is a rule.

    .venv/bin/python bench/loop.py [--quick] [--prompts 200] [--seed 0] [--skip-dpo] [--skip-control] [--keep]

The rule (bench/loop_sim.py): an answer containing a digit beats one without. A simulated annotator follows the
rule with probability 0.707 and otherwise flips a coin, so two annotators agree on 75% of the pairs the rule decides.

Stages, each a real management command (`call_command`) or the real annotation services, in a throw-away SQLite
database and MODEL_DIR under a temp directory (the default models are bootstrapped once into --model-dir, default
$MODEL_DIR or ./models, from the wheels, then hard-linked in; nothing is downloaded):

1. `create_project` (K=2, overlap 3, no gold), `add_member` ×5, `bootstrap_models` (registers the default policy);
2. `import_prompts`: N prompts, each with two SYNTHESISED completions (templated sentences, 90% of pairs with a digit
   in exactly one answer, 10% both or neither); synthesised rather than sampled so the bench spends its CPU on training, not on sampling;
3. judge: the simulated annotators take tasks with `feedback.services.next_task` and answer with `submit_judgement`;
4. `train_reward_model` (MiniLM): held-out accuracy of the run (its snapshot's test split) next to the agreement
   ceiling (the rule itself scored against the same held-out majority labels), and on 400 fresh pairs: accuracy
   against the rule and against one simulated annotator's labels, beside the rule's own accuracy on those labels;
5. `train_policy --method ppo` (SmolLM2-135M + LoRA) against that reward model: the gate's verdict, KL, reward;
6. `publish_samples`: the active (base) policy against the PPO candidate, head to head, on already-judged prompts;
   the simulated annotators judge those tasks; the candidate's win rate with its Wilson interval
   (`training.promotion.head_to_head` / `verdict_of`) and `decide_promotions`' verdict;
7. `train_policy --method dpo` on the same judgements (held-out preference accuracy), then its candidate head to
   head against the active policy as in 6;
8. control: a second project judged by annotators whose labels carry no information (coin flips: the labels
   shuffled with respect to the answers) — its reward model should sit at 50% against the rule and be rejected
   by the acceptance test (Wilson lower bound <= 0.5), so PPO has nothing to train against.

Settings the bench passes with `--set` are printed with each command; none of the product's defaults change.
Prints progress, then one table: stage, wall seconds, figures. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import _env  # noqa: E402  (the project root on sys.path; the hub off)

ROOT = _env.ROOT

import loop_sim as sim  # noqa: E402

SLUG, CONTROL_SLUG = "loop", "loop-control"
ANNOTATORS = 5

SIZES = {  # the settings each stage gets through --set (quick: just enough to see every stage run)
    "full": {"reward": ["num_train_epochs=3", "max_length=128"],
             # top-p 1.0 for PPO's rollouts and publishing alike (the product's default is 0.95): after temperature
             # 0.8 the 0.95 nucleus kept so few tokens that PPO explored too little (bench/RESULTS.md, the loop's seeds)
             "ppo": ["num_iterations=8", "batch_size=16", "mini_batch_size=8", "max_new_tokens=32",
                     "learning_rate=1e-3", "top_p=1.0"],
             "publish": ["max_prompts=80", "resample_share=1.0", "max_new_tokens=32", "top_p=1.0"],
             "dpo": ["max_steps=30", "max_length=192"], "max_tasks": None, "probe": 400},
    "quick": {"reward": ["num_train_epochs=3", "max_length=128"],
              "ppo": ["num_iterations=2", "batch_size=4", "mini_batch_size=2", "max_new_tokens=16",
                      "learning_rate=2e-4", "gate_samples_per_prompt=2", "gate_min_prompts=2"],
              "publish": ["max_prompts=8", "resample_share=1.0", "max_new_tokens=16"],
              "dpo": ["max_steps=2", "max_length=192"], "max_tasks": 10, "probe": 100},
}


class Table:
    def __init__(self):
        self.rows: list[tuple[str, float, float, str]] = []

    def stage(self, name: str):
        table = self

        class _Stage:
            def __enter__(self):
                print(f"\n== {name}", flush=True)
                self.started, self.cpu_started, self.figures = time.perf_counter(), time.process_time(), []
                return self

            def add(self, text: str):
                print(f"   {text}", flush=True)
                self.figures.append(text)

            def __exit__(self, *exc):
                table.rows.append((name, time.perf_counter() - self.started, time.process_time() - self.cpu_started,
                                   "; ".join(self.figures)))
                return False

        return _Stage()

    def print(self, header: str) -> None:
        # cpu_s: this process's CPU time (all its threads), comparable across runs on a loaded machine
        print(f"\n{header}\n{'stage':<26} {'wall_s':>8} {'cpu_s':>8}  figures")
        for name, seconds, cpu_seconds, figures in self.rows:
            print(f"{name:<26} {seconds:>8.1f} {cpu_seconds:>8.1f}  {figures}")


def setup(args) -> Path:
    """Environment for a private database and MODEL_DIR, the default models linked in, Django migrated."""
    from training.pipeline.bootstrap import bootstrap_default_models

    work = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    cache = bootstrap_default_models(Path(args.model_dir).absolute())
    for name, path in cache.items():  # hard links: no copy of 540 MB, and registry writes never modify files
        shutil.copytree(path, work / "models" / name, copy_function=os.link)
    os.environ.update(
        DATABASE_URL=f"sqlite:///{work / 'db.sqlite3'}", MODEL_DIR=str(work / "models"),
        EXPORT_DIR=str(work / "exports"), DJANGO_SETTINGS_MODULE="config.settings.base", DEBUG="0",
        SECRET_KEY="bench-only-secret-key-" + "x" * 40, LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    command("migrate", "--noinput", quiet=True)
    return work


def command(*argv: str, quiet: bool = False) -> str:
    """A management command in this process; its output echoed (unless quiet) and returned."""
    from django.core.management import call_command

    if not quiet:
        print(f"   $ manage.py {' '.join(argv)}", flush=True)
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*argv, stdout=out, stderr=err)
    finally:
        if not quiet:
            for line in (err.getvalue() + out.getvalue()).splitlines():
                print(f"   | {line}", flush=True)
    return out.getvalue()


def try_command(*argv: str) -> str | None:
    """Like `command`, but a refusal (CommandError) is an outcome to report: its message, else None."""
    from django.core.management import CommandError

    try:
        command(*argv)
    except CommandError as exc:
        print(f"   | refused: {exc}", flush=True)
        return str(exc)
    return None


def set_args(settings: list[str]) -> list[str]:
    return [arg for pair in settings for arg in ("--set", pair)]


def make_project(slug: str, import_file: Path) -> list:
    from django.contrib.auth import get_user_model

    command("create_project", slug, "--completions-per-task", "2", "--overlap", "3")
    for i in range(ANNOTATORS):
        command("add_member", f"{slug}-sim-{i}", "--project", slug, "--role", "annotator", quiet=True)
    command("import_prompts", str(import_file), "--project", slug)
    return list(get_user_model().objects.filter(username__startswith=f"{slug}-sim-").order_by("username"))


def judge_all(slug: str, users: list, annotators: list) -> dict[int, list[int]]:
    """Every open task judged by the simulated annotators through next_task / submit_judgement, round robin.
    Returns {task id: [winning completion id per judgement]}."""
    from tqdm import tqdm

    from feedback import services
    from feedback.models import Completion, Project

    project = Project.objects.get(slug=slug)
    labels: dict[int, list[int]] = defaultdict(list)
    idle, turn = 0, 0
    with tqdm(unit="judgement", desc=f"judge {slug}", mininterval=5) as bar:
        while idle < len(users):
            user, annotator = users[turn % len(users)], annotators[turn % len(users)]
            turn += 1
            assignment = services.next_task(project=project, annotator=user)
            if assignment is None:
                idle += 1
                continue
            idle = 0
            (label_a, id_a), (label_b, id_b) = sorted(assignment.label_map().items())
            texts = dict(Completion.objects.filter(pk__in=[id_a, id_b]).values_list("pk", "text"))
            first = annotator.prefers_first(texts[id_a], texts[id_b])
            ranking = [[label_a], [label_b]] if first else [[label_b], [label_a]]
            services.submit_judgement(task=assignment.task, annotator=user, ranking=ranking,
                                      idempotency_key=uuid.uuid4().hex)
            labels[assignment.task_id].append(id_a if first else id_b)
            bar.update(1)
    return labels


def agreement_figures(stage, labels: dict[int, list[int]]) -> None:
    """Pairwise agreement between annotators (all tasks, and tasks the rule decides: expected 0.75 there), and how
    often one judgement follows the rule where it decides (expected (1+p)/2 = 0.854)."""
    from feedback.models import ComparisonTask, Completion

    agreement, n = sim.observed_agreement(labels)
    texts = dict(Completion.objects.filter(pk__in={c for w in labels.values() for c in w}).values_list("pk", "text"))
    decided_tasks = {task.pk for task in ComparisonTask.objects.filter(pk__in=labels).prefetch_related("completions")
                     if sim.rule_preference(*[c.text for c in task.completions.all()][:2]) != 0}
    decided_agreement, n_decided = sim.observed_agreement({t: w for t, w in labels.items() if t in decided_tasks})
    follow = [sim.rule_score(texts[w]) for t in decided_tasks for w in labels[t]]
    stage.add(f"judgements={sum(map(len, labels.values()))} pairwise_agreement={agreement:.3f} (annotator pairs "
              f"n={n}); on rule-decided tasks {decided_agreement:.3f} (n={n_decided})")
    if follow:
        stage.add(f"single_judgement_follows_rule={sum(follow) / len(follow):.3f} (n={len(follow)} on rule-decided tasks)")


def reward_figures(stage, slug: str, probe_n: int, seed: int) -> dict:
    """The reward run's held-out accuracy beside the agreement ceiling, and accuracies on fresh probe pairs."""
    from feedback.quality import wilson_interval
    from feedback.services import snapshots
    from training.models import TrainingRun
    from training.pipeline.reward.scoring import RewardScorer

    run = TrainingRun.objects.filter(project__slug=slug, kind="reward").order_by("-pk").first()
    version = run.produced_version
    if version is None:
        stage.add(f"no reward model registered: {run.error.strip()[-200:]}")
        return {}
    m = version.metrics
    _, test_rows = snapshots.split_rows(version.snapshot)
    ceiling = sim.oracle_accuracy([(r["chosen"], r["rejected"]) for r in test_rows])
    stage.add(f"status={version.status} held_out_accuracy={m.get('eval/accuracy', float('nan')):.3f} "
              f"[{m.get('eval/accuracy_low', float('nan')):.2f}, {m.get('eval/accuracy_high', float('nan')):.2f}] "
              f"n={int(m.get('eval/n_pairs') or 0)} agreement_ceiling={ceiling:.3f} (rule on the same held-out pairs)")
    probe = sim.probe_pairs(probe_n, seed)
    scorer = RewardScorer(version.path)
    chat = [[{"role": "user", "content": p}] for p, _, _ in probe]
    scores_a = scorer.score(chat, [a for _, a, _ in probe])
    scores_b = scorer.score(chat, [b for _, _, b in probe])
    decided = [(sa > sb) == (sim.rule_preference(a, b) > 0)
               for (_, a, b), sa, sb in zip(probe, scores_a, scores_b) if sim.rule_preference(a, b) != 0]
    low, high = wilson_interval(sum(decided), len(decided))
    rule_accuracy = sum(decided) / len(decided)
    # The reward model's own Bradley–Terry probability that the rule's winner wins, averaged over the decided pairs:
    # near 0.5 for a model that learned nothing (even when the signs of its tiny margins happen to lean one way).
    p_rule_winner = [1 / (1 + math.exp(-(sa - sb) * sim.rule_preference(a, b)))
                     for (_, a, b), sa, sb in zip(probe, scores_a, scores_b) if sim.rule_preference(a, b) != 0]
    labeller = sim.Annotator(random.Random(seed + 20_000))
    labels = [labeller.prefers_first(a, b) for _, a, b in probe]
    rm_on_labels = sum((sa > sb) == first for sa, sb, first in zip(scores_a, scores_b, labels)) / len(probe)
    oracle_on_labels = sim.oracle_accuracy([(a, b) if first else (b, a) for (_, a, b), first in zip(probe, labels)])
    stage.add(f"fresh pairs: accuracy_vs_rule={rule_accuracy:.3f} [{low:.2f}, {high:.2f}] n={len(decided)} "
              f"mean_p_rule_winner={sum(p_rule_winner) / len(p_rule_winner):.3f}; "
              f"accuracy_vs_annotator={rm_on_labels:.3f} vs ceiling={oracle_on_labels:.3f} "
              f"(gap {100 * (oracle_on_labels - rm_on_labels):+.1f} points) n={len(probe)}")
    return {"accuracy_vs_rule": rule_accuracy, "status": version.status}


def ppo_stage(table: Table, size: dict) -> None:
    from training.models import TrainingRun

    with table.stage("train_policy --method ppo") as stage:
        refused = try_command("train_policy", "--project", SLUG, "--method", "ppo", *set_args(size["ppo"]))
        run = TrainingRun.objects.filter(project__slug=SLUG, kind="ppo").order_by("-pk").first()
        s = run.summary or {}
        last = run.step_metrics.order_by("-step").first()
        kl = (last.metrics if last else {}).get("objective/kl", float("nan"))
        stage.add(f"state={run.state} iterations={s.get('iterations')} status={s.get('status')} "
                  f"passes_gate={s.get('passes_gate')}")
        stage.add(f"eval reward before={s.get('eval_before/reward', float('nan')):.3f} "
                  f"after={s.get('eval_after/reward', float('nan')):.3f}; KL after={s.get('eval_after/kl', float('nan')):.3f} "
                  f"(held-out eval, summed per response), last iteration KL={kl:.3f}")
        rows = [m.metrics for m in run.step_metrics.order_by("step")]
        rewards = [m.get("objective/reward", float("nan")) for m in rows]
        seconds = sorted(m.get("time/iteration_s", float("nan")) for m in rows)
        if rows:
            stage.add(f"batch reward first={rewards[0]:.3f} last 3={sum(rewards[-3:]) / len(rewards[-3:]):.3f}; "
                      f"median iteration {seconds[len(seconds) // 2]:.1f} s")
        stage.add(f"gate: effect={s.get('gate/effect', float('nan')):.3f} lower={s.get('gate/lower', float('nan')):.3f} "
                  f"verdict: {s.get('gate/verdict') or refused or ''}")
        if run.produced_version_id:
            stage.add(f"registered {run.produced_version.name} as {run.produced_version.status}")


def rule_rates(project, candidate, rival) -> tuple[float, float, int]:
    """Share of answers with a digit, candidate's and rival's, over the head-to-head tasks; and their count."""
    from feedback.models import ComparisonTask

    tasks = (ComparisonTask.objects.filter(project=project, completions__model_version=candidate)
             .filter(completions__model_version=rival).distinct().prefetch_related("completions"))
    mine, theirs = [], []
    for task in tasks:
        for completion in task.completions.all():
            (mine if completion.model_version_id == candidate.pk else theirs).append(sim.rule_score(completion.text))
    return (sum(mine) / max(1, len(mine)), sum(theirs) / max(1, len(theirs)), len(tasks))


def head_to_head_stage(table: Table, size: dict, users: list, annotators: list, method: str) -> bool:
    """The newest candidate policy (from `method`) against the active policy, judged by the simulated annotators.
    False when there is no candidate."""
    from feedback.models import Project
    from training import selectors
    from training.promotion import head_to_head, verdict_of

    project = Project.objects.get(slug=SLUG)
    candidate = selectors.newest_candidate(project=project)
    if candidate is None:
        with table.stage(f"h2h {method}") as stage:
            stage.add(f"no candidate policy ({method} registered none): no head-to-head")
        return False
    rival = selectors.active_policy(project=project)
    with table.stage(f"publish_samples (h2h {method})") as stage:
        command("publish_samples", "--project", SLUG, *set_args(size["publish"]))
        candidate_rate, rival_rate, n_tasks = rule_rates(project, candidate, rival)
        stage.add(f"head_to_head_tasks={n_tasks} answers_with_digit candidate={candidate_rate:.2f} "
                  f"active={rival_rate:.2f}")
    with table.stage(f"judge h2h {method}") as stage:
        labels = judge_all(SLUG, users, annotators)
        stage.add(f"judgements={sum(map(len, labels.values()))}")
    with table.stage(f"decide_promotions {method}") as stage:
        verdict, m = verdict_of(head_to_head(project=project, candidate=candidate, rival=rival))
        stage.add(f"candidate {candidate.name} vs {rival.name}: {m['human/verdict_words']}")
        extra = ["--max-tasks", str(size["max_tasks"])] if size["max_tasks"] else []
        command("decide_promotions", "--project", SLUG, *extra)
        candidate.refresh_from_db()
        stage.add(f"verdict={verdict}; candidate is now {candidate.status}")
    return True


def dpo_stage(table: Table, size: dict) -> None:
    from training.models import TrainingRun

    with table.stage("train_policy --method dpo") as stage:
        refused = try_command("train_policy", "--project", SLUG, "--method", "dpo", *set_args(size["dpo"]))
        run = TrainingRun.objects.filter(project__slug=SLUG, kind="dpo").order_by("-pk").first()
        s = run.summary or {}
        stage.add(f"state={run.state} held_out_preference_accuracy={s.get('eval/accuracy', float('nan')):.3f} "
                  f"steps={s.get('train/steps', s.get('train/global_step', '?'))}"
                  + (f" refused: {refused}" if refused else ""))
        if run.produced_version_id:
            stage.add(f"registered {run.produced_version.name} as {run.produced_version.status}")


def control_stage(table: Table, size: dict, import_file: Path, args) -> None:
    with table.stage("control: import+judge") as stage:
        users = make_project(CONTROL_SLUG, import_file)
        coin_flippers = [sim.Annotator(random.Random(args.seed * 100 + 50 + i), shuffled=True) for i in range(ANNOTATORS)]
        agreement_figures(stage, judge_all(CONTROL_SLUG, users, coin_flippers))
    with table.stage("control: train_reward_model") as stage:
        refused = try_command("train_reward_model", "--project", CONTROL_SLUG, *set_args(size["reward"]))
        reward_figures(stage, CONTROL_SLUG, size["probe"], args.seed)
        stage.add("acceptance test: " + ("REJECTED (not above chance)" if refused else "ACCEPTED"))
    with table.stage("control: train_policy ppo") as stage:
        refused = try_command("train_policy", "--project", CONTROL_SLUG, "--method", "ppo", *set_args(size["ppo"]))
        stage.add("PPO " + (f"refused: {refused}" if refused else "ran (it should have been refused)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every stage runs")
    parser.add_argument("--prompts", type=int, default=None, help="prompts in the project (default 200; quick 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-dpo", action="store_true")
    parser.add_argument("--skip-control", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own); 1 is faster when other work loads the CPUs")
    parser.add_argument("--ppo-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra setting for train_policy --method ppo (after the size's own; later wins)")
    parser.add_argument("--publish-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra setting for publish_samples (keep max_new_tokens equal to PPO's)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (database, registry)")
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", str(ROOT / "models")),
                        help="where the default models are bootstrapped once (default: $MODEL_DIR or ./models)")
    args = parser.parse_args()
    size = dict(SIZES["quick" if args.quick else "full"])
    # --seed reaches every stage that draws at random: the imported answers and the simulated annotators (below),
    # the reward model's head init and shuffling (42 + seed: seed 0 keeps the product's default), PPO's sampling,
    # shuffling and gate bootstrap, and publishing's sampling. Later settings win, so --ppo-set seed=… still can.
    seeds = {"reward": [f"seed={42 + args.seed}"], "ppo": [f"seed={args.seed}"], "publish": [f"seed={args.seed}"],
             "dpo": [f"seed={args.seed}"]}
    for kind, extra in seeds.items():
        size[kind] = size[kind] + extra
    size["ppo"], size["publish"] = size["ppo"] + args.ppo_set, size["publish"] + args.publish_set
    n_prompts = args.prompts or (100 if args.quick else 200)
    load_before, started = os.getloadavg(), time.perf_counter()
    # The queue shuffles each task's labels with the module-level `random` (a fresh anonymous order per annotator),
    # and the simulated annotators see the answers in that order: seeding it makes a run's judgements repeatable.
    random.seed(args.seed)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    work = setup(args)

    table = Table()
    try:
        import_file = work / "prompts.jsonl"
        sim.write_import_file(import_file, n_prompts, args.seed)
        annotators = [sim.Annotator(random.Random(args.seed * 100 + i)) for i in range(ANNOTATORS)]
        with table.stage("setup+import") as stage:
            command("bootstrap_models")
            users = make_project(SLUG, import_file)
            stage.add(f"prompts={n_prompts} annotators={ANNOTATORS} overlap=3 p_follow_rule={sim.P_FOLLOW_RULE}")
        with table.stage("judge (simulated)") as stage:
            agreement_figures(stage, judge_all(SLUG, users, annotators))
        with table.stage("train_reward_model") as stage:
            try_command("train_reward_model", "--project", SLUG, *set_args(size["reward"]))
            reward_figures(stage, SLUG, size["probe"], args.seed)
        ppo_stage(table, size)
        head_to_head_stage(table, size, users, annotators, "ppo")
        loop_seconds = time.perf_counter() - started
        if not args.skip_dpo:
            dpo_stage(table, size)
            head_to_head_stage(table, size, users, annotators, "dpo")
        if not args.skip_control:
            control_stage(table, size, import_file, args)
    finally:
        load_after = os.getloadavg()
        table.print(f"bench/loop.py {'--quick ' if args.quick else ''}prompts={n_prompts} seed={args.seed} "
                    f"torch_threads={torch.get_num_threads()} cpus={os.cpu_count()} fp32 sqlite; "
                    f"load average before={load_before[0]:.1f} after={load_after[0]:.1f}")
        if "loop_seconds" in locals():
            print(f"loop_wall_s {loop_seconds:.0f} (setup to the PPO candidate's promotion decision, or its gate's refusal)")
        print(f"total_wall_s {time.perf_counter() - started:.0f}")
        for kind, settings in size.items():
            if isinstance(settings, list):
                print(f"# --set for {kind}: {' '.join(settings)}")
        if args.keep:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
