"""Humans decide promotion: a policy that passed its automatic gate is a candidate until annotators' head-to-head
judgements against the active policy promote or reject it (training.promotion)."""

from itertools import pairwise

import pytest
from django.core.management import call_command

from core.models import AuditEvent
from feedback import services as feedback_services
from feedback.models import Completion
from tests.feedback.factories import ProjectFactory, make_member, make_tasks
from training import selectors, services
from training.models import ModelVersion, TrainingRun
from training.promotion import decide_all_promotions, decide_promotions, judgement_score
from training.runners.policy import register_policy_result

pytestmark = pytest.mark.django_db


def register(project, name, **kwargs):
    return services.register_version(project=project, name=name, kind=ModelVersion.Kind.POLICY,
                                     path=f"/nowhere/{name}", sha256="0" * 64, config={},
                                     metrics={"eval/accuracy": 0.8}, **kwargs)


@pytest.fixture
def duel():
    """A project (one judgement per task) with an active policy, a candidate, and n tasks pairing them."""
    project = ProjectFactory(overlap=1)
    active = register(project, "policy-active", activate=True)
    candidate = register(project, "policy-candidate")

    def tasks(n):
        made = make_tasks(project, n)
        Completion.objects.filter(prompt__project=project, model_name="m0").update(model_version=candidate)
        Completion.objects.filter(prompt__project=project, model_name="m1").update(model_version=active)
        return made
    return project, active, candidate, tasks


def judge(project, n_tasks, candidate_wins, ties=0):
    """One annotator judges every open task: the candidate's completion first in the first `candidate_wins`
    judgements, tied with the active policy's in the next `ties`, last in the rest."""
    person = make_member(project)
    for i in range(n_tasks):
        held = feedback_services.next_task(project=project, annotator=person)
        by_version = {Completion.objects.get(pk=cid).model_version.name: label
                      for label, cid in held.label_map().items()}
        cand, act = by_version["policy-candidate"], by_version["policy-active"]
        ranking = [[cand], [act]] if i < candidate_wins else [[cand, act]] if i < candidate_wins + ties else [[act], [cand]]
        feedback_services.submit_judgement(task=held.task, annotator=person, ranking=ranking)


def test_a_candidate_annotators_prefer_is_promoted(duel):
    project, active, candidate, tasks = duel
    tasks(40)
    judge(project, 40, candidate_wins=32)  # 80%
    [(version, verdict)] = decide_promotions(project=project, min_judgements=30)
    assert verdict == "promote" and version.status == ModelVersion.Status.ACTIVE
    active.refresh_from_db()
    assert active.status == ModelVersion.Status.RETIRED
    assert selectors.active_policy(project=project) == candidate
    metrics = ModelVersion.objects.get(pk=candidate.pk).metrics
    assert metrics["human/judgements"] == 40 and metrics["human/win_rate"] == pytest.approx(0.8)
    assert 0.5 < metrics["human/win_low"] < 0.8 < metrics["human/win_high"]
    assert metrics["eval/accuracy"] == 0.8  # the gate's metrics stay
    audit = AuditEvent.objects.filter(target=f"model_version:{candidate.pk}",
                                      event_type=AuditEvent.Type.POLICY_PROMOTED).get()
    assert audit.extra["promoted_by"] == "human_judgements"
    assert decide_promotions(project=project, min_judgements=30) == []  # idempotent: nothing left to decide


def test_a_candidate_annotators_reject_is_rejected(duel):
    project, active, candidate, tasks = duel
    tasks(40)
    judge(project, 40, candidate_wins=8)  # 20%
    [(version, verdict)] = decide_promotions(project=project, min_judgements=30)
    assert verdict == "reject" and version.status == ModelVersion.Status.REJECTED
    assert version.metrics["human/win_high"] <= 0.5
    assert selectors.active_policy(project=project) == active
    with pytest.raises(Exception):
        services.activate_policy(version=version)  # rejected is final


def test_a_tie_waits_below_the_minimum_and_while_the_interval_holds_a_coin_flip(duel):
    project, active, candidate, tasks = duel
    tasks(40)
    judge(project, 10, candidate_wins=9)  # convincing, but too few judgements
    [(version, verdict)] = decide_promotions(project=project, min_judgements=30)
    assert verdict == "wait" and version.status == ModelVersion.Status.CANDIDATE
    assert version.metrics["human/judgements"] == 10
    judge(project, 30, candidate_wins=10, ties=2)  # 50/50 overall: (9 + 10 + 2 × 0.5) / 40
    assert version.metrics["human/judgements"] == 10  # (the object returned before)
    version.refresh_from_db()
    [(version, verdict)] = decide_promotions(project=project, min_judgements=30)
    assert verdict == "wait" and version.status == ModelVersion.Status.CANDIDATE
    assert version.metrics["human/win_rate"] == pytest.approx(0.5) and version.metrics["human/judgements"] == 40
    assert version.metrics["human/win_low"] < 0.5 < version.metrics["human/win_high"]
    assert selectors.active_policy(project=project) == active


def test_ties_count_half_and_other_versions_do_not_count():
    assert judgement_score([[1], [2]], {1}, {2}) == 1.0
    assert judgement_score([[2], [1]], {1}, {2}) == 0.0
    assert judgement_score([[1, 2]], {1}, {2}) == 0.5
    assert judgement_score([[3], [1], [2]], {1}, {2}) == 1.0  # a third completion changes nothing
    assert judgement_score([[1], [3]], {1}, {2}) is None


def test_the_command_and_the_settings_default(duel, settings):
    project, active, candidate, tasks = duel
    tasks(12)
    judge(project, 12, candidate_wins=12)
    settings.PROMOTION_MIN_JUDGEMENTS = 30
    assert decide_all_promotions() == [(candidate, "wait")]
    settings.PROMOTION_MIN_JUDGEMENTS = 10
    call_command("decide_promotions")
    assert ModelVersion.objects.get(pk=candidate.pk).status == ModelVersion.Status.ACTIVE


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


def test_publishing_pits_the_candidate_against_the_active_policy_on_prompts_drawn_again(project, tiny_llama_dir):
    """Every prompt already has completions and a judged task: without a candidate nothing is published; with one,
    a share of the prompts is drawn again and each gets a blind task of the candidate against the active policy."""
    from training import execution
    from training.pipeline.models import manifest_sha256

    sha = manifest_sha256(tiny_llama_dir)
    active = services.register_version(project=project, name="tiny-active", kind=ModelVersion.Kind.POLICY,
                                       path=str(tiny_llama_dir), sha256=sha, config={}, metrics={"x": 1}, activate=True)
    old_tasks = make_tasks(project, 3)
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
    assert summary["rival"] == "tiny-candidate" and summary["resampled"] == 3 and summary["published_tasks"] >= 1
    assert summary["promotions"] == {"tiny-candidate": "wait"}
    new_tasks = project.tasks.exclude(pk__in=[t.pk for t in old_tasks])
    assert new_tasks.count() == summary["published_tasks"]
    duels = [t for t in new_tasks if {c.model_version_id for c in t.completions.all()} == {active.pk, candidate.pk}]
    assert len(duels) == summary["head_to_head"] >= 1
    assert ModelVersion.objects.get(pk=candidate.pk).metrics["human/judgements"] == 0


def test_prompts_drawn_again_cost_one_candidate_and_k_minus_one_policy_answers_queued_least_certain_first(
        project, tiny_llama_dir, tiny_reward_dir, monkeypatch):
    """A random draw of old prompts, each sampled K−1 times from the active policy and once from the candidate
    (nothing thrown away), and the queue serves first the tasks whose shown answers the reward model is least
    sure about (smallest reward gap)."""
    from training import execution
    from training.pipeline import generate
    from training.pipeline.models import manifest_sha256
    from training.pipeline.reward import RewardScorer

    sha = manifest_sha256(tiny_llama_dir)
    active = services.register_version(project=project, name="tiny-active", kind=ModelVersion.Kind.POLICY,
                                       path=str(tiny_llama_dir), sha256=sha, config={}, metrics={"x": 1}, activate=True)
    services.register_version(project=project, name="tiny-reward", kind=ModelVersion.Kind.REWARD,
                              path=str(tiny_reward_dir), sha256=manifest_sha256(tiny_reward_dir), config={},
                              metrics={"eval/accuracy": 0.9, "eval/accuracy_low": 0.6}, activate=True)
    old_tasks = make_tasks(project, 8)
    candidate = services.register_version(project=project, name="tiny-candidate", kind=ModelVersion.Kind.POLICY,
                                          path=str(tiny_llama_dir), sha256=sha, config={}, metrics={"x": 1})
    drawn, sample = [], generate.sample_completions
    monkeypatch.setattr(generate, "sample_completions",  # the real sampler; the test counts what it is asked for
                        lambda model, tok, prompts, **kw: drawn.append(len(prompts) * kw["k"]) or sample(model, tok, prompts, **kw))
    run = services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH,
                                  config={"max_new_tokens": 6, "completions_per_prompt": 3, "temperature": 1.0,
                                          "max_prompts": 4, "resample_share": 1.0})
    assert execution.execute(run.pk) == TrainingRun.State.SUCCEEDED
    summary = TrainingRun.objects.get(pk=run.pk).summary
    assert summary["resampled"] == 4 and drawn == [4 * 2, 4 * 1]  # the active policy's K−1, the candidate's one
    new_tasks = list(project.tasks.exclude(pk__in=[t.pk for t in old_tasks]).order_by("priority", "id"))
    assert len(new_tasks) == summary["head_to_head"] == summary["published_tasks"] >= 3
    scorer = RewardScorer(tiny_reward_dir)
    gaps = []
    for task in new_tasks:
        versions = sorted(c.model_version_id for c in task.completions.all())
        assert versions == sorted([active.pk, active.pk, candidate.pk]) or versions == sorted([active.pk, candidate.pk])
        rewards = sorted(scorer.score([task.prompt.payload] * task.completions.count(),
                                      [c.text for c in task.completions.all()]))
        gaps.append(min(b - a for a, b in pairwise(rewards)))
    assert gaps == sorted(gaps) and len(set(gaps)) > 1
