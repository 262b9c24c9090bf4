"""Iterative DPO with people in the loop, on tiny real models: a round publishes exactly `budget` tasks (the
smallest reward gaps), the reward model labels the other pairs with its own preference, people judge through
the services, and finishing trains and registers a candidate whose DPO rows count both kinds of pairs as the run
page shows. A round cannot finish before its human share is judged; other projects cannot see or move it."""

import math
import json
from pathlib import Path

import pytest
from django.test import Client

from core.exceptions import Conflict
from feedback import importing
from feedback import services as feedback_services
from feedback.models import ComparisonTask, Completion
from tests.feedback.factories import make_member
from training import execution, selectors, services, tasks
from training.models import DPORound, ModelVersion, TrainingRun
from training.pipeline.models import manifest_sha256
from training.pipeline.reward.scoring import RewardScorer
from tests.training.factories import make_run

pytestmark = pytest.mark.django_db

ROUND = {"completions_per_prompt": 3, "max_prompts": 4, "budget": 3, "max_new_tokens": 6, "temperature": 1.0,
         "test_fraction": 0.0,
         "dpo": {"max_steps": 2, "batch_size": 4, "max_length": 128, "use_lora": False, "learning_rate": 1e-4}}


@pytest.fixture
def models(project, tiny_llama_dir, tiny_reward_dir, tmp_path, settings):
    settings.MODEL_DIR = tmp_path / "models"
    settings.EXPORT_DIR = tmp_path / "exports"
    policy = services.register_version(project=None, name="tiny-policy", kind=ModelVersion.Kind.POLICY,
                                       path=str(tiny_llama_dir), sha256=manifest_sha256(tiny_llama_dir), config={},
                                       metrics={}, activate=True)
    reward = services.register_version(project=project, name="tiny-reward", kind=ModelVersion.Kind.REWARD,
                                       path=str(tiny_reward_dir), sha256=manifest_sha256(tiny_reward_dir), config={},
                                       metrics={"eval/accuracy": 0.9, "eval/accuracy_low": 0.6}, activate=True)
    rows = [importing.clean_row({"id": f"q-{i}", "prompt": f"Say something about the number {i}."}, i + 1)
            for i in range(6)]
    feedback_services.import_prompts(project=project, rows=rows)
    return policy, reward


def start_round(project, admin, config=ROUND) -> DPORound:
    dpo_round, run = services.advance_dpo_round(project=project, config=config, actor=admin, enqueue=False)
    assert execution.execute(run.pk) == TrainingRun.State.SUCCEEDED, TrainingRun.objects.get(pk=run.pk).error
    dpo_round.refresh_from_db()
    return dpo_round


def judge_everything(project, confidences=(5, 3)):
    """Two annotators (the project's overlap) each judge every task through the services: the shorter answer wins."""
    for confidence in confidences:
        person = make_member(project)
        while (held := feedback_services.next_task(project=project, annotator=person)) is not None:
            shorter_first(held, person, confidence)


def shorter_first(held, person, confidence):
    texts = dict(Completion.objects.filter(pk__in=held.label_order).values_list("pk", "text"))
    labels = sorted(held.label_map().items(), key=lambda item: (len(texts[item[1]]), item[1]))
    feedback_services.submit_judgement(task=held.task, annotator=person, ranking=[[lab] for lab, _ in labels],
                                       confidence=confidence)


def test_a_round_publishes_the_budget_trains_on_both_and_registers_a_candidate(project, models):
    policy, reward = models
    admin = make_member(project, "admin")
    dpo_round = start_round(project, admin)
    assert dpo_round.state == DPORound.State.WAITING and (dpo_round.policy, dpo_round.reward_model) == models

    # Exactly `budget` tasks, ordinary ones (two of the policy's answers), and they are the smallest reward gaps.
    published = list(dpo_round.tasks.all())
    assert len(published) == 3 == ComparisonTask.objects.filter(project=project).count()
    scorer = RewardScorer(reward.path)

    def gap(prompt, a, b):
        ra, rb = scorer.score([prompt, prompt], [a, b])
        return abs(ra - rb)

    human_gaps = []
    for task in published:
        a, b = [c.text for c in task.completions.all()]
        assert set(task.completions.values_list("model_version", flat=True)) == {policy.pk}
        human_gaps.append(gap(task.prompt.payload, a, b))
    rows = [json.loads(line) for line in (Path(dpo_round.rows_path) / "model_pairs.jsonl").open()]
    counts = dpo_round.counts
    # Every pair is accounted for once: published, the reward model's row of its prompt, or unused.
    assert counts["human_pairs"] == 3 and counts["model_pairs"] == len(rows)
    assert counts["pairs"] == 3 + len(rows) + counts["model_pairs_unused"]
    assert rows, "the reward model labels the pairs people do not see"
    assert len({row["prompt_id"] for row in rows}) == len(rows)  # one row per prompt: its best vs its worst answer
    published_pairs = {frozenset(c.text for c in t.completions.all()) for t in published}
    answers = {}
    for task in published:
        answers.setdefault(task.prompt.external_id, set()).update(c.text for c in task.completions.all())
    for row in rows:
        chosen, rejected = scorer.score([row["prompt"]] * 2, [row["chosen"], row["rejected"]])
        assert chosen >= rejected - 1e-5  # the reward model's preference
        assert abs(chosen - rejected) >= max(human_gaps) - 1e-4  # people got the least certain pairs
        assert frozenset((row["chosen"], row["rejected"])) not in published_pairs
        for other in answers.get(row["prompt_id"], ()):  # no other answer of the prompt lies outside the pair
            (other_reward,) = scorer.score([row["prompt"]], [other])
            assert rejected - 1e-4 <= other_reward <= chosen + 1e-4
    assert max(human_gaps) > 1e-3  # (gaps that differ: the check above means something)

    # Not judged yet: it cannot finish, by the service, the maintenance tick or the command.
    with pytest.raises(Conflict) as refused:
        services.finish_dpo_round(dpo_round=dpo_round)
    assert "waits for judgements: 0 of 3" in refused.value.message
    assert tasks.run_maintenance()["dpo_rounds_finished"] == []
    dpo_round.refresh_from_db()
    assert dpo_round.state == DPORound.State.WAITING and dpo_round.train_run is None

    judge_everything(project)
    assert selectors.round_judged(dpo_round=dpo_round) == (3, 3)
    assert tasks.run_maintenance()["dpo_rounds_finished"] == [dpo_round.pk]  # the tick finishes it: DPO queued
    dpo_round.refresh_from_db()
    assert dpo_round.state == DPORound.State.TRAINING
    # None of the round's 3 tasks falls in the held-out split, so no pair labelled by people can judge the policy:
    # the DPO gate refuses it (the reward model's pairs only measure agreement with the reward model), and the
    # version is registered as rejected, for the record, with its lineage.
    assert execution.execute(dpo_round.train_run_id) == TrainingRun.State.FAILED
    dpo_round.refresh_from_db()
    run = dpo_round.train_run
    version = run.produced_version
    assert "no held-out pair labelled by people" in run.error
    assert dpo_round.state == DPORound.State.REJECTED and version.status == ModelVersion.Status.REJECTED
    assert (version.parent, version.reward_model, version.snapshot) == (policy, reward, run.snapshot)
    assert version.snapshot.counts["judgements"] == 6  # lineage: the judgements it learned from
    # A reward-model row trains when its calibrated win probability σ(slope × gap) is at least 0.6; it weighs 2p − 1.
    slope = dpo_round.counts["gap_slope"]
    win = [1 / (1 + math.exp(-slope * row["gap"])) for row in rows]
    kept = [p for p in win if p >= 0.6]
    assert dpo_round.counts["human_pairs_trained"] == 3 and dpo_round.counts["model_pairs_trained"] == len(kept)
    assert dpo_round.counts["model_pairs_below_confidence"] == len(rows) - len(kept)
    assert version.metrics["train/pairs"] == 3 + len(kept)
    assert version.metrics["round/human_pairs"] == 3 and version.metrics["round/model_pairs"] == len(kept)
    # Judges' confidences 5 and 3 → mean 4 → weight ½ + ½ × (4 − 1)/4 = 0.875 (confidence 1 would still weigh ½).
    assert dpo_round.counts["human_weight_mean"] == pytest.approx(0.875)
    share = 3 * 0.875 / (3 * 0.875 + sum(2 * p - 1 for p in kept))
    assert dpo_round.counts["people_weight_share"] == pytest.approx(share)
    assert version.metrics["round/people_weight_share"] == pytest.approx(share)

    client = Client()
    client.force_login(make_member(project, "reviewer"))
    page = client.get(f"/training/runs/{run.pk}/").content.decode()
    assert "DPO round #" in page and "Rejected by the DPO gate" in page
    assert "3 published (3 of 3 tasks complete), 3 trained on" in page
    assert f"{len(rows)} labelled, {len(kept)} trained on" in page
    assert f"{100 * share:.1f}% of the DPO loss's weight came from people's labels" in page


def judge_one_task(project):
    """The project's overlap of annotators judge the first task the queue gives them (the same one)."""
    for _ in range(project.overlap):
        person = make_member(project)
        shorter_first(feedback_services.next_task(project=project, annotator=person), person, 5)


def test_a_round_cannot_finish_before_its_human_share_and_others_cannot_touch_it(project, models):
    from io import StringIO

    from django.core.management import call_command
    from rest_framework.test import APIClient

    from tests.feedback.factories import ProjectFactory

    admin = make_member(project, "admin")
    api = APIClient()
    api.force_authenticate(admin)
    config = {**ROUND, "budget": 2, "min_human_judged": 0.5}
    started = api.post("/api/v1/training-runs/", {"project": project.slug, "kind": "dpo_round", "config": config},
                       format="json")
    assert started.status_code == 201, started.content
    dpo_round = DPORound.objects.get(project=project)
    assert dpo_round.sample_run_id == started.json()["id"] and dpo_round.config["min_human_judged"] == 0.5
    assert execution.execute(dpo_round.sample_run_id) == TrainingRun.State.SUCCEEDED
    web = Client()
    web.force_login(admin)
    refused = web.post(f"/training/projects/{project.slug}/dpo-round/")
    assert refused.status_code == 409 and "waits for judgements: 0 of 2" in refused.content.decode()
    again = api.post("/api/v1/training-runs/", {"project": project.slug, "kind": "dpo_round"}, format="json")
    assert again.status_code == 409 and "needs 1 (min_human_judged 0.5)" in again.json()["detail"]
    with pytest.raises(Exception, match="waits for judgements"):
        call_command("dpo_round", "--project", project.slug, stdout=StringIO())
    dpo_round.refresh_from_db()
    assert dpo_round.state == DPORound.State.WAITING and dpo_round.train_run is None

    # Only the project's admins move it; another project's admin neither sees nor moves it.
    reviewer = Client()
    reviewer.force_login(make_member(project, "reviewer"))
    assert reviewer.post(f"/training/projects/{project.slug}/dpo-round/").status_code == 403
    other = ProjectFactory(overlap=2)
    stranger_web, stranger_api = Client(), APIClient()
    stranger = make_member(other, "admin")
    stranger_web.force_login(stranger)
    stranger_api.force_authenticate(stranger)
    assert stranger_web.post(f"/training/projects/{project.slug}/dpo-round/").status_code == 404
    assert stranger_web.get(f"/training/runs/{dpo_round.sample_run_id}/").status_code == 404
    assert stranger_api.get(f"/api/v1/dpo-rounds/{dpo_round.pk}/").status_code == 404
    assert stranger_api.get("/api/v1/dpo-rounds/").json()["results"] == []
    assert stranger_api.post("/api/v1/training-runs/", {"project": project.slug, "kind": "dpo_round"},
                             format="json").status_code == 404
    dpo_round.refresh_from_db()
    assert dpo_round.state == DPORound.State.WAITING and dpo_round.train_run is None

    # Half of its two tasks judged is its share: the command finishes it (queued for the worker here: the test
    # database is not shared with the thread the command would train in).
    judge_one_task(project)
    out = StringIO()
    call_command("dpo_round", "--project", project.slug, "--queue", stdout=out)
    dpo_round.refresh_from_db()
    assert f"DPO round {dpo_round.pk}: queued dpo_round run {dpo_round.train_run_id}" in out.getvalue()
    execution.execute(dpo_round.train_run_id)
    dpo_round.refresh_from_db()
    assert dpo_round.state in {DPORound.State.DONE, DPORound.State.REJECTED}, dpo_round.error
    assert (dpo_round.counts["human_pairs"], dpo_round.counts["human_pairs_trained"]) == (2, 1)
    # every reward-model row trains, or is counted out as too unsure (calibrated win probability below 0.6)
    assert (dpo_round.counts["model_pairs_trained"] + dpo_round.counts["model_pairs_below_confidence"]
            == dpo_round.counts["model_pairs"])
    shown = api.get(f"/api/v1/dpo-rounds/{dpo_round.pk}/").json()
    assert shown["state"] == dpo_round.state and shown["tasks_complete"] == 1 and len(shown["tasks"]) == 2
    assert shown["produced_version"] == dpo_round.train_run.produced_version_id is not None


def test_the_settings_form_starts_a_round_and_refuses_a_second_one(project, models):
    from tests.training.test_training_pages import form_data
    from training.pipeline.rounds.config import DPORoundConfig

    web = Client()
    web.force_login(make_member(project, "admin"))
    assert 'id="dpo-round-' in web.get("/training/").content.decode()  # the one-click button, for admins
    form = web.get(f"/training/projects/{project.slug}/start/", {"kind": "dpo_round"})
    assert form.status_code == 200 and 'name="budget"' in form.content.decode()
    data = form_data(DPORoundConfig, "dpo_round", budget="2", dpo='{"max_steps": 1}')
    started = web.post(f"/training/projects/{project.slug}/start/", data)
    assert started.status_code == 302, started.content.decode()[-2000:]
    dpo_round = DPORound.objects.get(project=project)
    assert dpo_round.budget == 2 and dpo_round.config["dpo"]["max_steps"] == 1
    assert dpo_round.state == DPORound.State.SAMPLING  # queued for the worker
    second = web.post(f"/training/projects/{project.slug}/start/", data)
    assert second.status_code == 400 and f"DPO round {dpo_round.pk} of this project is still sampling" in \
        second.content.decode()
    assert DPORound.objects.filter(project=project).count() == 1


def test_maintenance_fails_a_round_whose_run_died(project, tiny_llama_dir):
    policy = services.register_version(project=None, name="tiny-policy", kind=ModelVersion.Kind.POLICY,
                                       path=str(tiny_llama_dir), sha256=manifest_sha256(tiny_llama_dir), config={},
                                       metrics={}, activate=True)
    run = make_run(project=project, kind=TrainingRun.Kind.DPO_ROUND)
    dpo_round = DPORound.objects.create(project=project, policy=policy, k=2, budget=1, sample_run=run)
    assert services.finish_judged_rounds() == {"finished": [], "failed": []}  # its run is still queued
    services.finish_run(run_id=run.pk, state=TrainingRun.State.FAILED, error="the worker stopped")
    assert services.finish_judged_rounds() == {"finished": [], "failed": [dpo_round.pk]}
    dpo_round.refresh_from_db()
    assert dpo_round.state == DPORound.State.FAILED and dpo_round.error == "the worker stopped"
    # A project whose round failed can start another.
    assert selectors.open_round(project=project) is None


def test_the_database_keeps_one_open_round_per_project(project, models):
    """Two starts at once both pass the service's check; the database constraint lets one round open."""
    from django.db import IntegrityError, transaction

    policy, reward = models
    first = DPORound.objects.create(project=project, policy=policy, reward_model=reward, k=2, budget=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        DPORound.objects.create(project=project, policy=policy, reward_model=reward, k=2, budget=1,
                                state=DPORound.State.WAITING)
    DPORound.objects.filter(pk=first.pk).update(state=DPORound.State.DONE)
    DPORound.objects.create(project=project, policy=policy, reward_model=reward, k=2, budget=1)  # a new round opens
    with pytest.raises(Conflict):
        services.start_dpo_round(project=project, config=ROUND, enqueue=False)
