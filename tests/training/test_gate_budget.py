"""What the runner tells the pipeline's gate: which look on the project's held-out prompts this is (the error budget
of a chain of retrains), and whether an independent judge scored the answers; an unjudged result is never active."""

import pytest

from tests.feedback.factories import ProjectFactory
from training import services
from training.models import ModelVersion, TrainingRun
from training.pipeline.ppo.config import PPOConfig
from training.pipeline.gate import alpha_for_look
from training.runners.policy import earlier_gates, register_policy_result, set_gate_budget

pytestmark = pytest.mark.django_db


def gated_run(project, kind=TrainingRun.Kind.PPO, **summary):
    return TrainingRun.objects.create(project=project, kind=kind, config={}, summary=summary)


def test_each_retrain_on_the_same_held_out_prompts_spends_a_smaller_share_of_alpha():
    project, other = ProjectFactory(), ProjectFactory()
    gated_run(project, **{"gate/verdict": "not better than the parent", "gate/passed": False})
    gated_run(project, TrainingRun.Kind.RLOO, **{"gate/verdict": "better than the parent", "gate/passed": True})
    gated_run(project, **{"status": "nan"})  # stopped before its gate: it never looked at the held-out prompts
    gated_run(project, TrainingRun.Kind.DPO, **{"eval/accuracy": 0.8})  # another gate, other held-out pairs
    gated_run(other, **{"gate/verdict": "not better than the parent"})  # another project's prompts
    run = gated_run(project, TrainingRun.Kind.GRPO)
    assert earlier_gates(run) == 2
    cfg, lines = PPOConfig(), []
    set_gate_budget(run, cfg, independent_judge=False, log=lines.append)
    assert cfg.gate_look == 3 and cfg.gate_independent_judge is False
    assert f"{alpha_for_look(3, cfg.gate_alpha):.3g}" in lines[0] and "unjudged" in lines[0]
    later = gated_run(project, TrainingRun.Kind.PPO)
    assert earlier_gates(later) == 2  # the GRPO run has not reached its gate yet


def test_an_unjudged_result_is_a_candidate_even_when_the_project_promotes_on_the_gate():
    project = ProjectFactory()
    project.auto_promote = True
    project.save(update_fields=["auto_promote"])
    active = services.register_version(project=project, name="policy-active", kind=ModelVersion.Kind.POLICY,
                                       path="/nowhere/active", sha256="0" * 64, config={},
                                       metrics={"gate/passed": True}, activate=True)
    unjudged = register_policy_result(gated_run(project), path="/nowhere/u", sha256="1" * 64,
                                      metrics={"gate/judged": False}, parent=active, judged=False)
    assert unjudged.status == ModelVersion.Status.CANDIDATE
    judged = register_policy_result(gated_run(project), path="/nowhere/j", sha256="2" * 64,
                                    metrics={"gate/judged": True}, parent=active)
    assert judged.status == ModelVersion.Status.ACTIVE
