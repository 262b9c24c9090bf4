"""The whole loop on tiny real models: import → judgements through the API from simulated annotators →
reward model → PPO → gate → publish → the new samples are served to annotators as tasks.

Also: a PPO run forced to NaN registers and publishes nothing; DPO registers a policy; a gated policy is a
candidate until promoted (here by an admin; tests/training/test_promotion.py: by annotators); roll back.
"""

import pytest
from rest_framework.test import APIClient

from feedback import services as feedback_services
from feedback.exports import ExportFilters
from feedback.models import ComparisonTask, Completion
from tests.feedback.factories import make_member
from training import execution, selectors, services
from training.models import ModelVersion, TrainingRun
from training.pipeline.models import manifest_sha256
from tests.training.factories import make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def default_policy(tiny_llama_dir):
    return services.register_version(
        project=None, name="tiny-default-policy", kind=ModelVersion.Kind.POLICY, path=str(tiny_llama_dir),
        sha256=manifest_sha256(tiny_llama_dir), config={}, metrics={}, activate=True,
    )


@pytest.fixture
def judged_through_the_api(project, project_admin, capital_rows):
    admin = APIClient()
    admin.force_authenticate(project_admin)
    response = admin.post(f"/api/v1/projects/{project.slug}/import/", {"rows": capital_rows}, format="json")
    assert response.status_code == 201, response.content
    for _ in range(project.overlap):
        client = APIClient()
        client.force_authenticate(make_member(project))
        while (task := client.post(f"/api/v1/projects/{project.slug}/next-task/")).status_code == 200:
            body = task.json()
            # A simulated annotator who prefers the answer that states the capital ("is the capital" / "It is").
            ranked = sorted(body["completions"], key=lambda c: "capital" not in c["text"])
            submit = client.post(f"/api/v1/tasks/{body['task']}/judgements/", {"ranking": [[c["label"]] for c in ranked]},
                                 format="json", HTTP_IDEMPOTENCY_KEY=f"{body['task']}")
            assert submit.status_code == 201, submit.content
    return project


def run_inline(project, kind, config):
    run = services.start_training(project=project, kind=kind, config=config)
    execution.execute(run.pk)
    run.refresh_from_db()
    return run


def train_accepted_reward_model(project, backbone) -> TrainingRun:
    """A reward run whose model is accepted (active). 10 of the 24 prompts are held out (fraction 0.6), so its
    acceptance can be decided on this small project: its accuracy's lower bound, clustered by task, can clear
    0.5 only from 7 tasks on, and it must beat "the longer answer wins" (here the evasions are the longer ones)."""
    snapshot = feedback_services.create_snapshot(project=project, filters=ExportFilters(test_fraction=0.6))
    run = make_run(project=project, kind=TrainingRun.Kind.REWARD, snapshot=snapshot,
                              config={"backbone": str(backbone), "max_steps": 8, "learning_rate": 1e-3,
                                      "max_length": 128})
    execution.execute(run.pk)
    run.refresh_from_db()
    assert run.state == TrainingRun.State.SUCCEEDED, run.error
    assert run.produced_version.status == ModelVersion.Status.ACTIVE
    assert run.produced_version.metrics["eval/accuracy_low"] > 0.5
    return run


def test_the_loop_closes(judged_through_the_api, default_policy, tiny_backbone):
    project = judged_through_the_api
    reward_run = train_accepted_reward_model(project, tiny_backbone)
    reward = reward_run.produced_version
    assert reward.snapshot.counts["pairs"] > 0

    ppo_run = run_inline(project, TrainingRun.Kind.PPO, {"num_iterations": 2, "batch_size": 4, "mini_batch_size": 2,
                                                         "max_new_tokens": 6, "use_lora": False, "learning_rate": 1e-3,
                                                         # Plumbing, not learning: two iterations of a random tiny
                                                         # policy cannot show a significant gain, so the gate's margin
                                                         # is opened here; the gate's verdicts have their own tests
                                                         # (tests/training/pipeline/test_gate.py, ppo/test_loop_learning.py).

                                                         "gate_margin": -1e6, "gate_min_prompts": 1, "kl_bound": 1e6})
    assert ppo_run.state == TrainingRun.State.SUCCEEDED, ppo_run.error
    policy = ppo_run.produced_version
    assert (policy.parent, policy.reward_model, policy.snapshot) == (default_policy, reward, reward.snapshot)
    # It passed the automatic gate: a candidate; annotators (head to head) or an admin decide its promotion.
    assert policy.status == ModelVersion.Status.CANDIDATE and len(selectors.run_metrics(run=ppo_run)) == 2
    assert selectors.active_policy(project=project) == default_policy

    # New prompts arrive; publishing samples them from the active policy, pits the candidate against it, and
    # they are served at once (resample_share 0: only the new prompt, no old prompt drawn again).
    admin = make_member(project, "admin")
    client = APIClient()
    client.force_authenticate(admin)
    client.post(f"/api/v1/projects/{project.slug}/import/", {"rows": [{"id": "fresh-1", "prompt": "What is the capital of Fiji?"}]}, format="json")
    publish_run = run_inline(project, TrainingRun.Kind.PUBLISH, {"max_new_tokens": 6, "completions_per_prompt": 2,
                                                                 "resample_share": 0})
    assert publish_run.state == TrainingRun.State.SUCCEEDED and publish_run.summary["published_tasks"] == 1
    # One completion from the candidate, one from the active policy: the head-to-head share of the publish.
    versions = set(Completion.objects.filter(prompt__external_id="fresh-1").values_list("model_version", flat=True))
    assert versions == {policy.pk, default_policy.pk} and publish_run.summary["head_to_head"] == 1
    assert publish_run.summary["rival"] == policy.name and publish_run.summary["promotions"] == {policy.name: "wait"}
    annotator = APIClient()
    annotator.force_authenticate(make_member(project))
    served = annotator.post(f"/api/v1/projects/{project.slug}/next-task/").json()
    assert ComparisonTask.objects.get(pk=served["task"]).prompt.external_id == "fresh-1"

    # An admin promotes the candidate by hand, then rolls back to the default policy through the API.
    forward = client.post(f"/api/v1/model-versions/{policy.pk}/activate/", {}, format="json")
    assert forward.status_code == 200, forward.content
    assert selectors.active_policy(project=project) == policy
    back = client.post(f"/api/v1/model-versions/{default_policy.pk}/activate/", {}, format="json")
    assert back.status_code == 400  # a project-less policy needs the project named
    back = client.post(f"/api/v1/model-versions/{default_policy.pk}/activate/", {"project": project.slug}, format="json")
    assert back.status_code == 200, back.content
    policy.refresh_from_db()
    assert policy.status == ModelVersion.Status.RETIRED
    assert selectors.active_policy(project=project) == default_policy


def test_a_ppo_run_its_safeguard_stops_publishes_nothing(judged_through_the_api, default_policy, tiny_backbone):
    project = judged_through_the_api
    train_accepted_reward_model(project, tiny_backbone)
    # Settings no longer admit a learning rate that turns the weights to NaN (tests/training/pipeline/ppo/test_loop.py

    # drives that safeguard directly); the KL bound is the same stop through the product: the largest learning rate
    # the settings allow moves a full fine-tune past a bound this tight in its first iteration.
    run = run_inline(project, TrainingRun.Kind.PPO, {"num_iterations": 3, "batch_size": 4, "mini_batch_size": 2,
                                                     "max_new_tokens": 4, "use_lora": False, "learning_rate": 0.99,
                                                     "kl_bound": 1e-6})
    assert run.state == TrainingRun.State.FAILED and run.produced_version is None
    assert run.summary["status"] in {"nan", "kl_bound"} and not run.summary["passes_gate"]
    assert not ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY, project=project).exists()


def test_dpo_and_retrain_chain(judged_through_the_api, default_policy, tiny_bert_dir, settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    settings.EXPORT_DIR = tmp_path / "exports"
    project = judged_through_the_api
    dpo = run_inline(project, TrainingRun.Kind.DPO, {"max_steps": 2, "batch_size": 4, "max_length": 128, "use_lora": False,
                                                     "learning_rate": 1e-4})
    # On held-out pairs this small the accuracy's task-clustered bound may not clear chance, or no held-out pair
    # may exist at all: then the gate rejects it.
    assert dpo.produced_version is not None and dpo.produced_version.snapshot == dpo.snapshot
    if dpo.state == TrainingRun.State.SUCCEEDED:  # a candidate: annotators decide its promotion
        assert dpo.produced_version.status == ModelVersion.Status.CANDIDATE
        assert selectors.active_policy(project=project) == default_policy
    else:
        assert dpo.state == TrainingRun.State.FAILED, dpo.error
        assert "not above chance" in dpo.error or "no held-out pair labelled by people" in dpo.error, dpo.error
        assert dpo.produced_version.status == ModelVersion.Status.REJECTED
    chain = run_inline(project, TrainingRun.Kind.RETRAIN, {"method": "dpo", "steps": {
        "dpo": {"max_steps": 1, "batch_size": 4, "max_length": 128, "use_lora": False, "learning_rate": 1e-4},
        "publish": {"max_new_tokens": 4, "prompts": "all", "max_prompts": 2}}})
    children = list(TrainingRun.objects.filter(parent_run=chain).order_by("id"))
    assert [c.kind for c in children][0] == TrainingRun.Kind.DPO
    dpo_step = children[0]
    assert chain.summary["dpo"] == {"run": dpo_step.pk, "state": dpo_step.state}
    assert dpo_step.produced_version is not None and dpo_step.produced_version.parent_id is not None
    if dpo_step.state == TrainingRun.State.SUCCEEDED:
        # The chain went on to publish from the active policy against the new candidate, and succeeded.
        assert chain.state == TrainingRun.State.SUCCEEDED, chain.error
        publish_step = children[1]
        assert publish_step.kind == TrainingRun.Kind.PUBLISH and publish_step.state == TrainingRun.State.SUCCEEDED
        assert chain.summary["publish"] == {"run": publish_step.pk, "state": TrainingRun.State.SUCCEEDED}
        assert selectors.active_policy(project=project) == default_policy
        assert publish_step.summary["policy"] == default_policy.name
        assert publish_step.summary["rival"] == dpo_step.produced_version.name
    else:
        # A rejected step stops the chain: the chain failed, and nothing was published after it.
        assert chain.state == TrainingRun.State.FAILED and f"step dpo (run {dpo_step.pk})" in chain.error
        assert len(children) == 1 and dpo_step.produced_version.status == ModelVersion.Status.REJECTED
