"""The model registry's invariants, the run kinds' declarations, and the one way runs start."""

import dataclasses

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from core.models import AuditEvent
from tests.feedback.factories import ProjectFactory
from training import selectors, services
from training.models import ModelVersion, TrainingRun
from training.pipeline.ppo.verdict import GateVerdict
from training.run_configs import CONFIG_CLASSES, validate_config
from training.run_kinds import RUN_KINDS
from training.runners.policy import dpo_gate, ppo_gate

pytestmark = pytest.mark.django_db


def register(project, name, kind=ModelVersion.Kind.POLICY, **kwargs):
    defaults = {"path": f"/nowhere/{name}", "sha256": "0" * 64, "config": {}, "metrics": {"eval/accuracy": 0.8}}
    return services.register_version(project=project, name=name, kind=kind, **{**defaults, **kwargs})


class TestRegisterVersion:
    def test_registers_audits_and_activates_together(self, project):
        old = register(project, "p-old", activate=True)
        new = register(project, "p-new", activate=True)
        old.refresh_from_db()
        assert (old.status, new.status) == (ModelVersion.Status.RETIRED, ModelVersion.Status.ACTIVE)
        assert selectors.active_policy(project=project) == new
        rows = AuditEvent.objects.filter(event_type=AuditEvent.Type.VERSION_REGISTERED).order_by("id")
        assert [r.target for r in rows] == [f"model_version:{old.pk}", f"model_version:{new.pk}"]
        assert rows.last().extra["activate"] is True
        activations = AuditEvent.objects.filter(event_type=AuditEvent.Type.POLICY_ACTIVATED).order_by("id")
        assert [(a.extra["from"], a.extra["to"]) for a in activations] == [(None, old.pk), (old.pk, new.pk)]

    def test_reward_models_stay_active_side_by_side(self, project):
        first = register(project, "r1", kind=ModelVersion.Kind.REWARD, activate=True)
        second = register(project, "r2", kind=ModelVersion.Kind.REWARD, activate=True)
        first.refresh_from_db()
        assert first.status == second.status == ModelVersion.Status.ACTIVE
        assert selectors.newest_reward_model(project=project) == second
        assert selectors.newest_reward_model(project=project, exclude=second) == first

    def test_rejected_versions_cannot_be_activated(self, project):
        rejected = register(project, "p-bad", rejected=True)
        assert rejected.status == ModelVersion.Status.REJECTED
        with pytest.raises(ValidationError) as excinfo:
            services.activate_policy(version=rejected)
        assert services.CANNOT_ACTIVATE_REJECTED.format(name="p-bad") in excinfo.value.messages
        with pytest.raises(ValidationError):
            register(project, "p-bad-2", rejected=True, activate=True)
        assert not ModelVersion.objects.filter(name="p-bad-2").exists()  # the registration rolled back whole
        rejected.refresh_from_db()
        assert rejected.status == ModelVersion.Status.REJECTED

    def test_versions_without_evaluation_cannot_be_activated(self, project):
        unevaluated = register(project, "p-blind", metrics={})
        with pytest.raises(ValidationError) as excinfo:
            services.activate_policy(version=unevaluated)
        assert services.CANNOT_ACTIVATE_UNEVALUATED.format(name="p-blind") in excinfo.value.messages
        assert selectors.active_policy(project=project) is None

    def test_default_policy_needs_a_project_and_no_metrics(self, project):
        default = register(None, "default", metrics={}, activate=True)
        own = register(project, "own", activate=True)
        with pytest.raises(ValidationError):
            services.activate_policy(version=default)  # whose policy would it become?
        services.activate_policy(version=default, project=project)
        own.refresh_from_db()
        assert own.status == ModelVersion.Status.RETIRED and selectors.active_policy(project=project) == default
        with pytest.raises(ValidationError):
            services.activate_policy(version=own, project=ProjectFactory())  # another project's policy


class TestRunKinds:
    def test_every_kind_is_declared_once_with_its_settings(self):
        assert set(RUN_KINDS) == set(TrainingRun.Kind.values) == set(CONFIG_CLASSES)
        for kind, declared in RUN_KINDS.items():
            assert declared.config_class is CONFIG_CLASSES[kind]
            assert dataclasses.is_dataclass(declared.config_class)

    def test_gates_say_why(self):
        ok = GateVerdict(status="completed", passes_gate=True)
        nan = GateVerdict(status="nan", passes_gate=False, message="iteration 1: NaN loss")
        assert ppo_gate(ok) == (True, "")
        passed, message = ppo_gate(nan)
        assert not passed and "'nan'" in message and "NaN loss" in message
        refused = GateVerdict(status="completed", passes_gate=False, verdict="the gain's lower bound is below 0")
        assert "lower bound is below 0" in ppo_gate(refused)[1]  # the test's own words when there is no message

        def dpo(accuracy, low, pairs=30, tasks=10):
            return type("R", (), {"metrics": {"eval/accuracy": accuracy, "eval/human_accuracy": accuracy,
                                              "eval/human_accuracy_low": low, "eval/human_n_pairs": pairs,
                                              "eval/human_n_tasks": tasks}})()
        assert dpo_gate(dpo(0.75, 0.56))[0]
        passed, message = dpo_gate(dpo(0.75, 0.45))  # a good point accuracy whose task-clustered bound is not
        assert not passed and "0.75" in message and "not above chance" in message
        # no evaluation, or none on people's pairs (a round's held-out pairs all from the reward model): refused
        for refused in ({"eval/accuracy": None}, {"eval/accuracy": 0.9, "eval/accuracy_low": 0.8},
                        {"eval/accuracy": 0.9, "eval/human_n_pairs": 0.0, "eval/human_accuracy_low": None}):
            passed, message = dpo_gate(type("R", (), {"metrics": refused})())
            assert not passed and "no held-out pair labelled by people" in message

    @pytest.mark.parametrize("kind", [TrainingRun.Kind.PUBLISH, TrainingRun.Kind.DPO_ROUND])
    @pytest.mark.parametrize("setting", [{"temperature": 0.0}, {"temperature": -1.0}, {"top_p": 0.0},
                                         {"top_p": 1.5}, {"max_new_tokens": 0}])
    def test_sampling_settings_are_checked_before_the_run_is_queued(self, kind, setting):
        """Publishing and a DPO round sample K answers per prompt: at temperature 0 they would all be one answer,
        and a negative temperature or an empty nucleus would fail inside the worker. Refused up front, by name."""
        (name,) = setting
        with pytest.raises(ValueError, match=name):
            validate_config(kind, setting)

    def test_retrain_steps_are_checked_when_the_chain_starts(self):
        assert validate_config(TrainingRun.Kind.RETRAIN, {"method": "dpo"})["steps"] == {}
        with pytest.raises(ValueError, match="steps.publish"):
            validate_config(TrainingRun.Kind.RETRAIN, {"steps": {"publish": {"completions_per_prompt": 9}}})
        with pytest.raises(ValueError, match="unknown kind"):
            validate_config(TrainingRun.Kind.RETRAIN, {"steps": {"nonsense": {}}})


class TestStartingRuns:
    def test_the_command_starts_runs_like_the_api(self, project, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            call_command("publish_samples", "--project", project.slug, "--queue", "--set", "max_prompts=3")
        run = TrainingRun.objects.get()
        assert run.config["max_prompts"] == 3 and run.config["temperature"] == 0.8  # validated, defaults filled in
        audit = AuditEvent.objects.get(event_type=AuditEvent.Type.RUN_STARTED)
        assert audit.target == f"run:{run.pk}" and audit.extra["kind"] == "publish"
        from django_tasks_db.models import DBTaskResult

        assert DBTaskResult.objects.get().args_kwargs["args"] == [run.pk]  # queued after commit

    def test_the_command_refuses_bad_settings(self, project):
        from django.core.management.base import CommandError

        audited = AuditEvent.objects.count()  # the project's creation, by the factory
        with pytest.raises(CommandError, match="completions_per_prompt"):
            call_command("publish_samples", "--project", project.slug, "--queue", "--set", "completions_per_prompt=9")
        assert not TrainingRun.objects.exists() and AuditEvent.objects.count() == audited

    def test_cancelling_is_audited(self, project, project_admin):
        run = services.start_training(project=project, kind=TrainingRun.Kind.REWARD, config={}, enqueue=False)
        services.request_cancel(run=run, actor=project_admin)
        audit = AuditEvent.objects.get(event_type=AuditEvent.Type.RUN_CANCELLED)
        assert (audit.actor, audit.target, audit.extra["was"]) == (project_admin, f"run:{run.pk}", "queued")


class TestRewardModelAcceptance:
    """A reward model becomes active only when its held-out accuracy's 95% interval lies above chance."""

    @staticmethod
    def verdict(**metrics):
        from types import SimpleNamespace

        from training.runners.reward import reward_gate

        return reward_gate(SimpleNamespace(metrics=metrics))

    def test_an_interval_above_chance_passes(self):
        assert self.verdict(**{"eval/accuracy": 0.8, "eval/accuracy_low": 0.62, "eval/accuracy_high": 0.91,
                               "eval/n_pairs": 40, "eval/vs_length_low": 0.05}) == (True, "")

    def test_a_model_no_better_than_length_or_the_active_model_is_rejected(self):
        good = {"eval/accuracy": 0.8, "eval/accuracy_low": 0.62, "eval/accuracy_high": 0.91, "eval/n_pairs": 40}
        passed, message = self.verdict(**good, **{"eval/vs_length_low": -0.02, "eval/length_baseline_accuracy": 0.78})
        assert not passed and "length-only baseline" in message and "0.78" in message
        assert not self.verdict(**good)[0]  # no length comparison at all: nothing shows it learned more than length
        beaten = {**good, "eval/vs_length_low": 0.1, "eval/vs_previous": 0.01, "eval/vs_previous_low": -0.03,
                  "eval/previous_accuracy": 0.79}
        passed, message = self.verdict(**beaten)
        assert not passed and "active reward model" in message and "0.79" in message
        assert self.verdict(**{**beaten, "eval/vs_previous_low": 0.01})[0]

    def test_a_good_looking_accuracy_on_too_few_pairs_is_rejected(self):
        passed, message = self.verdict(**{"eval/accuracy": 1.0, "eval/accuracy_low": 0.21, "eval/accuracy_high": 1.0,
                                          "eval/n_pairs": 1, "eval/n_tasks": 1})
        assert not passed and "not above chance" in message and "1 pairs" in message
        passed, message = self.verdict(**{"eval/accuracy": 1.0, "eval/accuracy_low": None, "eval/n_pairs": 6,
                                          "eval/n_tasks": 1})  # one task's 6 pairs: no bound at all
        assert not passed and "1 task(s)" in message

    def test_below_chance_or_no_held_out_pairs_is_rejected(self):
        assert not self.verdict(**{"eval/accuracy": 0.44, "eval/accuracy_low": 0.35, "eval/accuracy_high": 0.53,
                                   "eval/n_pairs": 100})[0]
        passed, message = self.verdict()
        assert not passed and "no held-out preference pairs" in message


def test_ppo_bounds_drift_from_the_lineages_original_base(project, tiny_llama_dir):
    from training.runners.policy import original_base

    def version(name, parent=None):
        return services.register_version(project=project, name=name, kind=ModelVersion.Kind.POLICY,
                                         path=str(tiny_llama_dir), sha256="0" * 64, config={}, parent=parent,
                                         metrics={"eval_after/reward": 0.1})

    root = version("root")
    grandchild = version("grandchild", parent=version("child", parent=root))
    lines = []
    assert original_base(root, lines.append) is None  # a first run's reference is the base itself
    assert original_base(grandchild, lines.append) is not None and "root" in lines[0]
