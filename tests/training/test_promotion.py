"""Humans decide promotion: a policy that passed its automatic gate is a candidate until annotators' head-to-head
judgements against the active policy promote or reject it (training.promotion)."""

from datetime import timedelta
from io import StringIO
from itertools import pairwise

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from core.models import AuditEvent
from feedback import services as feedback_services
from feedback.models import Completion, Judgement
from tests.feedback.factories import ProjectFactory, make_member, make_tasks
from training import selectors, services
from training.models import ModelVersion, TrainingRun
from training.promotion import decide_all_promotions, decide_promotions, head_to_head, judgement_score
from training.runners.policy import register_policy_result

pytestmark = pytest.mark.django_db


def register(project, name, **kwargs):
    return services.register_version(project=project, name=name, kind=ModelVersion.Kind.POLICY,
                                     path=f"/nowhere/{name}", sha256="0" * 64, config={},
                                     metrics={"eval/accuracy": 0.8}, **kwargs)


@pytest.fixture
def duel():
    """A project (one judgement per task unless told) with an active policy, a candidate, and n tasks pairing them."""
    def make(overlap=1):
        project = ProjectFactory(overlap=overlap)
        active = register(project, "policy-active", activate=True)
        candidate = register(project, "policy-candidate")

        def tasks(n):
            made = make_tasks(project, n)
            Completion.objects.filter(prompt__project=project, model_name="m0").update(model_version=candidate)
            Completion.objects.filter(prompt__project=project, model_name="m1").update(model_version=active)
            return made
        return project, active, candidate, tasks
    return make


def judge(project, outcomes: str, person=None):
    """One annotator judges the next len(outcomes) tasks served: "w" the candidate's completion first, "t" tied with
    the active policy's, "l" last. Returns the task ids in the order judged."""
    person = person or make_member(project)
    judged = []
    for outcome in outcomes:
        held = feedback_services.next_task(project=project, annotator=person)
        by_version = {Completion.objects.get(pk=cid).model_version.name: label
                      for label, cid in held.label_map().items()}
        cand, act = by_version["policy-candidate"], by_version["policy-active"]
        ranking = {"w": [[cand], [act]], "t": [[cand, act]], "l": [[act], [cand]]}[outcome]
        feedback_services.submit_judgement(task=held.task, annotator=person, ranking=ranking)
        judged.append(held.task.pk)
    return judged


def test_a_candidate_annotators_prefer_is_promoted_on_the_evidence_of_tasks(duel):
    project, active, candidate, tasks = duel()
    tasks(40)
    judge(project, "wwwwl" * 8)  # 80%
    [(version, verdict)] = decide_promotions(project=project)
    assert verdict == "promote" and version.status == ModelVersion.Status.ACTIVE
    active.refresh_from_db()
    assert active.status == ModelVersion.Status.RETIRED
    assert selectors.active_policy(project=project) == candidate
    metrics = ModelVersion.objects.get(pk=candidate.pk).metrics
    # the evidence at the task where the e-value first reached 1/alpha = 40 (not at the 40th)
    assert metrics["human/tasks_closed"] == 40 and metrics["human/tasks"] == metrics["human/decided_at_task"] < 40
    assert metrics["human/e_value"] >= metrics["human/e_threshold"] == 40
    assert 0.5 < metrics["human/win_low"] < metrics["human/win_rate"] < metrics["human/win_high"]
    assert metrics["human/verdict"] == "promote" and metrics["human/verdict_words"].startswith("promoted")
    assert metrics["human/by_annotator"] == [{"annotator": metrics["human/by_annotator"][0]["annotator"],
                                              "judgements": 40, "win_rate": pytest.approx(0.8)}]
    assert metrics["eval/accuracy"] == 0.8  # the gate's metrics stay
    audit = AuditEvent.objects.filter(target=f"model_version:{candidate.pk}",
                                      event_type=AuditEvent.Type.POLICY_PROMOTED).get()
    assert audit.extra["promoted_by"] == "human_judgements" and audit.extra["human/e_value"] >= 40
    assert audit.extra["from"] == active.pk
    assert decide_promotions(project=project) == []  # idempotent: nothing left to decide


def test_a_candidate_annotators_reject_is_rejected_when_a_worthwhile_gain_is_ruled_out(duel):
    project, active, candidate, tasks = duel()
    tasks(40)
    judge(project, "llllw" * 8)  # 20%
    [(version, verdict)] = decide_promotions(project=project)
    assert verdict == "reject" and version.status == ModelVersion.Status.REJECTED
    assert AuditEvent.objects.filter(target=f"model_version:{version.pk}",
                                     event_type=AuditEvent.Type.VERSION_REJECTED).count() == 1
    assert version.metrics["human/win_high"] < 0.5 + version.metrics["human/min_gain"]
    assert "ruled out" in version.metrics["human/verdict_words"]
    assert selectors.active_policy(project=project) == active
    with pytest.raises(Exception):
        services.activate_policy(version=version)  # rejected is final


def test_a_few_convincing_tasks_wait_and_so_does_a_coin_flip(duel):
    project, active, candidate, tasks = duel()
    tasks(40)
    judge(project, "wwwwlwwwww")  # 9 of 10: promising, not yet evidence (the e-value is below 40)
    [(version, verdict)] = decide_promotions(project=project)
    assert verdict == "wait" and version.status == ModelVersion.Status.CANDIDATE
    assert version.metrics["human/tasks"] == 10 and 1 < version.metrics["human/e_value"] < 40
    assert version.metrics["human/verdict_words"].startswith("waiting")
    judge(project, "l" * 8 + "wl" * 10 + "tt")  # 50/50 overall: (9 + 10 + 2 × 0.5) / 40
    [(version, verdict)] = decide_promotions(project=project)
    assert verdict == "wait" and version.status == ModelVersion.Status.CANDIDATE
    assert version.metrics["human/win_rate"] == pytest.approx(0.5) and version.metrics["human/tasks"] == 40
    assert version.metrics["human/win_low"] < 0.5 < version.metrics["human/win_high"]
    assert selectors.active_policy(project=project) == active


def test_tasks_count_not_judgements_and_only_closed_tasks_in_the_order_they_closed(duel):
    """Overlap 3: three annotators' votes make one task score; a task still open does not count yet; the scores
    follow the time the tasks closed, not their ids."""
    project, active, candidate, tasks = duel(overlap=3)
    tasks(6)
    people = [make_member(project) for _ in range(3)]
    order = judge(project, "wwwwwl", people[0])
    judge(project, "wwwwwl", people[1])
    judge(project, "ltwwlw", people[2])  # the votes differ: task 1 scores (1 + 1 + 0) / 3
    h2h = head_to_head(project=project, candidate=candidate, rival=active)
    assert h2h.judgements == 18 and len(h2h.scores) == 6
    by_id = dict(zip(order, h2h.scores))
    assert by_id[order[0]] == pytest.approx(2 / 3) and by_id[order[1]] == pytest.approx(2.5 / 3)
    # the tasks closed in reverse order of their ids: the scores follow the closing
    now = timezone.now()
    for rank, task_id in enumerate(sorted(order, reverse=True)):
        Judgement.objects.filter(task_id=task_id).update(created_at=now + timedelta(seconds=rank))
    scores = head_to_head(project=project, candidate=candidate, rival=active).scores
    assert scores == [by_id[t] for t in sorted(order, reverse=True)]
    per_person = {row["annotator"]: row for row in
                  head_to_head(project=project, candidate=candidate, rival=active).by_annotator}
    assert per_person[people[2].username] == {"annotator": people[2].username, "judgements": 6,
                                              "win_rate": pytest.approx(3.5 / 6)}
    from feedback import importing
    feedback_services.import_prompts(project=project, rows=[importing.clean_row(
        {"id": "one-more", "prompt": "One more?", "completions": [{"text": "x", "model": "m0"}, {"text": "y", "model": "m1"}]},
        1)])
    tasks(0)  # its completions get their versions: a new task, one judgement of three, open, not counted
    judge(project, "w", people[0])
    assert project.tasks.filter(status="open").count() == 1
    assert len(head_to_head(project=project, candidate=candidate, rival=active).scores) == 6


def test_ties_count_half_and_other_versions_do_not_count():
    assert judgement_score([[1], [2]], {1}, {2}) == 1.0
    assert judgement_score([[2], [1]], {1}, {2}) == 0.0
    assert judgement_score([[1, 2]], {1}, {2}) == 0.5
    assert judgement_score([[3], [1], [2]], {1}, {2}) == 1.0  # a third completion changes nothing
    assert judgement_score([[1], [3]], {1}, {2}) is None


def test_the_command_the_tick_and_the_horizon_setting(duel, settings):
    project, active, candidate, tasks = duel()
    tasks(12)
    judge(project, "wl" * 6)
    assert decide_all_promotions() == [(candidate, "wait")]
    settings.PROMOTION_MAX_TASKS = 12  # a coin flip after the horizon: not shown better
    out = StringIO()
    call_command("decide_promotions", stdout=out)
    assert ModelVersion.objects.get(pk=candidate.pk).status == ModelVersion.Status.REJECTED
    assert "not shown better within 12 tasks" in out.getvalue()


def test_the_command_refuses_a_horizon_below_one(duel):
    with pytest.raises(CommandError):
        call_command("decide_promotions", "--max-tasks", "0")


@pytest.mark.parametrize("auto_promote, status", [(False, ModelVersion.Status.CANDIDATE),
                                                  (True, ModelVersion.Status.ACTIVE)])
def test_a_gated_policy_is_a_candidate_unless_the_project_auto_promotes(auto_promote, status):
    project = ProjectFactory()
    project.auto_promote = auto_promote
    project.save(update_fields=["auto_promote"])
    active = register(project, "policy-active", activate=True)
    run = TrainingRun.objects.create(project=project, kind=TrainingRun.Kind.PPO, config={})
    version = register_policy_result(run, path="/nowhere/new", sha256="1" * 64, metrics={"eval/reward": 1.0},
                                     parent=active)
    assert version.status == status
    assert selectors.active_policy(project=project) == (version if auto_promote else active)
    rejected = register_policy_result(TrainingRun.objects.create(project=project, kind=TrainingRun.Kind.DPO),
                                      path="/nowhere/bad", sha256="2" * 64, metrics={"eval/accuracy": 0.4},
                                      rejected=True)
    assert rejected.status == ModelVersion.Status.REJECTED


HELD_OUT = {"p2", "p30", "p55"}  # of p0…p59, the prompts `split_of` holds out (fraction 0.1, seed 0)


def test_the_held_out_prompts_are_the_ones_the_split_holds_out():
    from feedback.quality import split_of

    assert {f"p{i}" for i in range(60) if split_of(f"p{i}", test_fraction=0.1, seed=0) == "test"} == HELD_OUT


def test_publishing_pits_the_candidate_against_the_active_policy_on_held_out_prompts_drawn_again(project, tiny_llama_dir):
    """Every prompt already has completions and a judged task: without a candidate nothing is published; with one,
    held-out prompts are drawn again and each gets a blind task of the candidate against the active policy."""
    from training import execution
    from training.pipeline.models import manifest_sha256

    sha = manifest_sha256(tiny_llama_dir)
    active = services.register_version(project=project, name="tiny-active", kind=ModelVersion.Kind.POLICY,
                                       path=str(tiny_llama_dir), sha256=sha, config={}, metrics={"x": 1}, activate=True)
    old_tasks = make_tasks(project, 3)  # p0, p1, p2: only p2 is held out
    judge_everything = make_member(project)
    while (held := feedback_services.next_task(project=project, annotator=judge_everything)) is not None:
        feedback_services.submit_judgement(task=held.task, annotator=judge_everything, ranking=[["a"], ["b"]])
    settings = {"max_new_tokens": 6, "completions_per_prompt": 2, "temperature": 1.0}

    run = services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH, config=settings)
    assert execution.execute(run.pk) == TrainingRun.State.SUCCEEDED
    assert TrainingRun.objects.get(pk=run.pk).summary["published_tasks"] == 0  # no candidate: nothing drawn again

    candidate = services.register_version(project=project, name="tiny-candidate", kind=ModelVersion.Kind.POLICY,
                                          path=str(tiny_llama_dir), sha256=sha, config={}, metrics={"x": 1})
    run = services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH, config=settings)
    assert execution.execute(run.pk) == TrainingRun.State.SUCCEEDED
    summary = TrainingRun.objects.get(pk=run.pk).summary
    assert summary["resampled"] == 1 and summary["published_tasks"] <= 1
    assert summary["promotions"] == {"tiny-candidate": "wait"}
    new_tasks = project.tasks.exclude(pk__in=[t.pk for t in old_tasks])
    assert new_tasks.count() == summary["published_tasks"] == summary["head_to_head"]
    for task in new_tasks:
        assert {c.model_version_id for c in task.completions.all()} == {active.pk, candidate.pk}
        assert task.prompt.external_id in HELD_OUT
    assert ModelVersion.objects.get(pk=candidate.pk).metrics["human/tasks"] == 0


def test_prompts_drawn_again_are_held_out_cost_k_minus_one_policy_answers_and_every_candidate_gets_duels(
        project, tiny_llama_dir, tiny_reward_dir, monkeypatch):
    """A random draw of held-out old prompts, each sampled K−1 times from the active policy and once from a
    candidate (nothing thrown away), dealt in turn to every waiting candidate, not only the newest; the reward model
    does not choose them."""
    from training import execution
    from training.pipeline.sampling import generate
    from training.pipeline.models import manifest_sha256

    sha = manifest_sha256(tiny_llama_dir)
    active = services.register_version(project=project, name="tiny-active", kind=ModelVersion.Kind.POLICY,
                                       path=str(tiny_llama_dir), sha256=sha, config={}, metrics={"x": 1}, activate=True)
    services.register_version(project=project, name="tiny-reward", kind=ModelVersion.Kind.REWARD,
                              path=str(tiny_reward_dir), sha256=manifest_sha256(tiny_reward_dir), config={},
                              metrics={"eval/accuracy": 0.9, "eval/accuracy_low": 0.6}, activate=True)
    old_tasks = make_tasks(project, 60)
    older = services.register_version(project=project, name="tiny-older", kind=ModelVersion.Kind.POLICY,
                                      path=str(tiny_llama_dir), sha256=sha, config={}, metrics={"x": 1})
    newer = services.register_version(project=project, name="tiny-newer", kind=ModelVersion.Kind.POLICY,
                                      path=str(tiny_llama_dir), sha256=sha, config={}, metrics={"x": 1})
    drawn, sample = [], generate.sample_completions
    monkeypatch.setattr(generate, "sample_completions",  # the real sampler; the test counts what it is asked for
                        lambda model, tok, prompts, **kw: drawn.append(len(prompts) * kw["k"]) or sample(model, tok, prompts, **kw))
    run = services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH,
                                  config={"max_new_tokens": 6, "completions_per_prompt": 3, "temperature": 1.0,
                                          "max_prompts": 4, "resample_share": 1.0})
    assert execution.execute(run.pk) == TrainingRun.State.SUCCEEDED
    summary = TrainingRun.objects.get(pk=run.pk).summary
    # 4 wanted, 3 held out: the active policy's K−1 for each, then each candidate's one per prompt dealt to it
    assert summary["resampled"] == 3 and drawn[0] == 3 * 2 and sorted(drawn[1:]) == [1, 2]
    new_tasks = list(project.tasks.exclude(pk__in=[t.pk for t in old_tasks]))
    assert len(new_tasks) == summary["head_to_head"] == summary["published_tasks"] >= 2
    assert {task.prompt.external_id for task in new_tasks} <= HELD_OUT
    per_candidate = {older.pk: 0, newer.pk: 0}
    for task in new_tasks:
        versions = [c.model_version_id for c in task.completions.all()]
        [rival] = set(versions) - {active.pk}
        assert sorted(versions) in (sorted([active.pk, active.pk, rival]), sorted([active.pk, rival]))
        per_candidate[rival] += 1
    assert summary["duels"] == {"tiny-older": per_candidate[older.pk], "tiny-newer": per_candidate[newer.pk]}
    assert min(per_candidate.values()) >= 1  # the older candidate gets duels too
