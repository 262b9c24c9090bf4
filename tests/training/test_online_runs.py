"""RLOO and GRPO as kinds of run, on tiny real models: registered through the same gate, registry and lineage as
PPO (a CANDIDATE that annotators promote), started from the command line, the API and the settings form; a run
whose gate refuses it registers nothing."""

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.training.test_loop import default_policy, judged_through_the_api, run_inline, train_accepted_reward_model  # noqa: F401
from training import selectors
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db

TINY = {"max_steps": 1, "batch_size": 4, "num_generations": 2, "max_completion_length": 4, "use_lora": False,
        "learning_rate": 1e-3, "gate_samples_per_prompt": 2, "gate_bootstrap_resamples": 50}
OPEN_GATE = {"gate_margin": -1e6, "gate_min_prompts": 1, "kl_bound": 1e6}  # plumbing, not learning (as test_loop)


def test_an_rloo_run_registers_a_candidate_through_the_gate(judged_through_the_api, default_policy, tiny_backbone):
    project = judged_through_the_api
    reward = train_accepted_reward_model(project, tiny_backbone).produced_version
    run = run_inline(project, TrainingRun.Kind.RLOO, {**TINY, **OPEN_GATE})
    assert run.state == TrainingRun.State.SUCCEEDED, run.error
    policy = run.produced_version
    assert (policy.parent, policy.reward_model, policy.snapshot) == (default_policy, reward, reward.snapshot)
    assert policy.status == ModelVersion.Status.CANDIDATE and selectors.active_policy(project=project) == default_policy
    # The project's only reward model is the one RLOO optimised: no independent judge, so the gate claims nothing
    # ("unjudged") and the policy is a candidate for people to judge.
    assert run.summary["passes_gate"] and not run.summary["gate/passed"] and "/rloo-" in policy.path
    assert run.summary["gate/judged"] is False and run.summary["gate/verdict"].startswith("unjudged")
    assert selectors.run_metrics(run=run)  # TRL's per-step metrics reached the run


def test_a_failing_gate_registers_nothing(judged_through_the_api, default_policy, tiny_backbone):
    project = judged_through_the_api
    train_accepted_reward_model(project, tiny_backbone)
    run = run_inline(project, TrainingRun.Kind.GRPO, {**TINY, "gate_margin": 1e6, "gate_min_prompts": 1})
    assert run.state == TrainingRun.State.FAILED and run.produced_version is None
    assert "did not pass the gate" in run.error and not run.summary["passes_gate"]
    assert not ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY, project=project).exists()


def test_the_api_the_start_form_and_the_command_know_them(client, project, project_admin):
    api = APIClient()
    api.force_authenticate(project_admin)
    for kind in ("rloo", "grpo"):
        response = api.post("/api/v1/training-runs/", {"project": project.slug, "kind": kind,
                                                       "config": {"max_steps": 2}}, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["config"]["num_generations"] == 4
    bad = api.post("/api/v1/training-runs/", {"project": project.slug, "kind": "rloo", "config": {"batch_size": 6}},
                   format="json")
    assert bad.status_code == 400 and "batch_size" in bad.json()["config"][0]
    client.force_login(project_admin)
    page = client.get(f"/training/projects/{project.slug}/start/", {"kind": "grpo"}).content.decode()
    assert 'name="num_generations"' in page and 'name="scale_rewards"' in page
    registry = client.get("/training/").content.decode()
    assert 'value="rloo"' in registry and 'value="grpo"' in registry
    call_command("train_policy", "--project", project.slug, "--method", "rloo", "--queue", "--set", "max_steps=3")
    assert TrainingRun.objects.filter(project=project, kind=TrainingRun.Kind.RLOO).latest("id").config["max_steps"] == 3


def test_a_retrain_chain_can_use_rloo_or_grpo():
    from training.run_configs import RetrainConfig

    assert RetrainConfig(method="grpo").chain() == ["reward", "grpo", "publish"]
    assert RetrainConfig(method="dpo").chain() == ["dpo", "publish"]
    assert RetrainConfig(method="rloo", steps={"rloo": {"max_steps": 2}}).steps["rloo"]["max_steps"] == 2
    with pytest.raises(ValueError, match="method must be one of"):
        RetrainConfig(method="a2c")
    with pytest.raises(ValueError, match="steps.rloo"):
        RetrainConfig(method="rloo", steps={"rloo": {"batch_size": 3}})
