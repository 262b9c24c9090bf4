"""The training pages as each role sees them: the settings form that starts a run, the run page, Cancel."""

import dataclasses
import time

import pytest
from django.conf import settings
from django.test import Client

from tests.feedback.factories import ProjectFactory, make_member
from training import services
from training.models import TrainingRun
from training.pipeline.reward.config import RewardConfig
from tests.training.factories import make_run

pytestmark = pytest.mark.django_db


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def start_url(project):
    return f"/training/projects/{project.slug}/start/"


def form_data(cls=RewardConfig, kind="reward", **changes):
    """What a browser sends for the untouched form (checkboxes: only the ticked ones), with `changes`."""
    data = {"kind": kind, "settings_form": "1"}
    for field in dataclasses.fields(cls):
        value = field.default
        if isinstance(value, bool):
            if value:
                data[field.name] = "on"
        else:
            data[field.name] = "" if value is None else str(value)
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


# --- starting a run ----------------------------------------------------------------------------------------------


def test_admin_sees_a_typed_form_with_help(project):
    page = client_for(make_member(project, "admin")).get(start_url(project), {"kind": "reward"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="learning_rate"' in html and 'type="number"' in html and 'step="any"' in html
    assert 'type="checkbox" name="use_lora"' in html and 'type="text" name="backbone"' in html
    assert "Peak AdamW learning rate" in html  # the field's help
    assert 'id="start-run"' in html
    registry = client_for(make_member(project, "admin")).get("/training/").content.decode()
    assert "Settings…" in registry and "Retrain now" in registry


def test_admin_starts_a_run_with_typed_values(project):
    admin = client_for(make_member(project, "admin"))
    data = form_data(learning_rate="3e-4", max_steps="2", center_rewards_coefficient="", use_lora=None)
    response = admin.post(start_url(project), data)
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/training/runs/{run.pk}/"
    assert run.kind == "reward" and run.config["learning_rate"] == pytest.approx(3e-4)
    assert isinstance(run.config["learning_rate"], float) and run.config["max_steps"] == 2
    assert run.config["center_rewards_coefficient"] is None  # None-able: blank is None
    assert run.config["use_lora"] is False and run.config["verify_backbone"] is True


@pytest.mark.parametrize("value, words", [("fast", "must be float"), ("-1", "must be &gt; 0")])
def test_a_bad_value_is_the_fields_error_and_starts_nothing(project, value, words):
    admin = client_for(make_member(project, "admin"))
    response = admin.post(start_url(project), form_data(learning_rate=value))
    assert response.status_code == 400 and TrainingRun.objects.count() == 0
    html = response.content.decode()
    error = html[html.index('id="setting-learning_rate"'):]
    error = error[:error.index("</tr>")]
    assert 'id="error-learning_rate"' in error and words in error
    assert f'value="{value}"' in error  # the value stays for correction


def test_a_blank_required_value_is_refused(project):
    response = client_for(make_member(project, "admin")).post(start_url(project), form_data(batch_size=""))
    assert response.status_code == 400 and 'id="error-batch_size"' in response.content.decode()
    assert TrainingRun.objects.count() == 0


def test_every_kind_has_a_form(project):
    admin = client_for(make_member(project, "admin"))
    for kind in TrainingRun.Kind.values:
        assert admin.get(start_url(project), {"kind": kind}).status_code == 200


def test_reviewer_sees_no_form_or_buttons_and_is_refused(project):
    run = make_run(project=project, kind="reward", config={})
    services.claim_run(run_id=run.pk)
    reviewer = client_for(make_member(project, "reviewer"))
    registry = reviewer.get("/training/").content.decode()
    assert "Settings…" not in registry and "Retrain now" not in registry and "run-start" not in registry
    page = reviewer.get(f"/training/runs/{run.pk}/").content.decode()
    assert "cancel-run" not in page and "Cancel run" not in page
    assert reviewer.get(start_url(project), {"kind": "reward"}).status_code == 403
    assert reviewer.post(start_url(project), form_data()).status_code == 403
    assert reviewer.post(f"/training/runs/{run.pk}/cancel/", HTTP_HX_REQUEST="true").status_code == 403
    assert TrainingRun.objects.count() == 1 and not TrainingRun.objects.get().cancel_requested


def test_non_members_get_404(project):
    stranger = client_for(make_member(ProjectFactory(), "admin"))
    assert stranger.get(start_url(project), {"kind": "reward"}).status_code == 404
    assert stranger.post(start_url(project), form_data()).status_code == 404
    assert TrainingRun.objects.count() == 0


# --- the run page ------------------------------------------------------------------------------------------------


@pytest.fixture
def finished_run(project):
    model_dir = settings.MODEL_DIR
    run = make_run(project=project, kind="ppo", config={
        "policy": str(model_dir / "ppo-demo-run1"), "learning_rate": 0.0001234567, "num_iterations": 3})
    services.claim_run(run_id=run.pk)
    services.record_step(run_id=run.pk, step=1, metrics={"objective/kl": 0.123456789, "objective/reward": 1.0},
                         progress=0.5)
    services.append_log(run_id=run.pk, line=f"saved to {model_dir / 'ppo-demo-run1'} " + "x" * 600)
    services.finish_run(run_id=run.pk, state=TrainingRun.State.SUCCEEDED, summary={
        "eval_after/reward": 0.987654321, "path": str(model_dir / "ppo-demo-run1"),
        "gate/passed": True, "gate/effect": 0.2345678, "gate/lower": 0.0123456, "gate/upper": 0.45678901,
        "gate/n": 8, "gate/alpha": 0.0038, "gate/verdict": "better than the parent: reward gain 0.235."})
    return run


def test_run_page_reads_well(project, finished_run):
    html = client_for(make_member(project, "reviewer")).get(f"/training/runs/{finished_run.pk}/").content.decode()
    assert str(settings.MODEL_DIR) not in html and str(settings.MODEL_DIR.resolve()) not in html
    assert "ppo-demo-run1" in html
    table = html[html.index('id="run-settings"'):]
    assert "<th>learning_rate</th>" in table and "0.0001235" in table and "AdamW learning rate" in table
    assert "{&#x27;" not in html and "{'policy'" not in html  # a table, not a Python dict
    assert "0.9877" in html and "0.987654321" not in html  # 4 significant digits
    assert "step 1 · objective/kl 0.1235 · objective/reward 1" in html  # per-iteration lines
    assert 'id="run-gate"' in html and "Gate: passed" in html and "better than the parent" in html
    # the second gate of the project spent 0.38%: the bound is one-sided at 99.62%, not a 95% interval
    assert "Effect 0.2346, one-sided 99.62% lower bound 0.01235 over 8 prompts" in html
    assert "training/run.css" in html and 'class="wrap" id="run-log"' in html


def test_progress_without_a_total_shows_the_step(project):
    run = make_run(project=project, kind="reward", config={})
    services.claim_run(run_id=run.pk)
    reviewer = client_for(make_member(project, "reviewer"))
    assert "no step yet" in reviewer.get(f"/training/runs/{run.pk}/live/").content.decode()
    services.record_step(run_id=run.pk, step=7, metrics={"loss": 0.5, "epoch": 0.25})
    html = reviewer.get(f"/training/runs/{run.pk}/live/").content.decode()
    assert 'aria-label="progress unknown"' in html and "step 7 (epoch 0.25)" in html and "0%" not in html
    services.record_step(run_id=run.pk, step=8, metrics={"loss": 0.4}, progress=0.4)
    html = reviewer.get(f"/training/runs/{run.pk}/live/").content.decode()
    assert 'value="0.4"' in html and "40%" in html


def test_cancel_answers_at_once_and_the_run_ends_cancelled(project):
    run = make_run(project=project, kind="reward", config={})
    services.claim_run(run_id=run.pk)
    admin = client_for(make_member(project, "admin"))
    page = admin.get(f"/training/runs/{run.pk}/").content.decode()
    assert 'id="cancel-run"' in page and "hx-post=" in page
    began = time.monotonic()
    response = admin.post(f"/training/runs/{run.pk}/cancel/", HTTP_HX_REQUEST="true")
    assert time.monotonic() - began < 5
    assert response.status_code == 200 and "cancel requested…" in response.content.decode()
    run.refresh_from_db()
    assert run.cancel_requested and run.state == TrainingRun.State.RUNNING
    page = admin.get(f"/training/runs/{run.pk}/").content.decode()
    assert "cancel requested…" in page and 'id="cancel-run"' not in page
    services.finish_run(run_id=run.pk, state=TrainingRun.State.CANCELLED)
    live = admin.get(f"/training/runs/{run.pk}/live/")
    assert live.status_code == 286 and '<strong id="run-state">cancelled</strong>' in live.content.decode()


def test_cancelling_a_queued_run_says_cancelled(project):
    run = make_run(project=project, kind="reward", config={})
    response = client_for(make_member(project, "admin")).post(f"/training/runs/{run.pk}/cancel/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and ">cancelled<" in response.content.decode()
    run.refresh_from_db()
    assert run.state == TrainingRun.State.CANCELLED and run.cancel_requested


def test_a_model_outside_model_dir_is_the_policy_fields_error(project):
    from training.pipeline.ppo.config import PPOConfig

    admin = client_for(make_member(project, "admin"))
    response = admin.post(start_url(project), form_data(PPOConfig, "ppo", policy="/etc/elsewhere/model"))
    html = response.content.decode()
    assert response.status_code == 400 and 'id="error-policy"' in html and TrainingRun.objects.count() == 0
    assert str(settings.MODEL_DIR) not in html


def test_retrain_and_publish_forms_start_runs(project):
    from training.run_configs import PublishConfig, RetrainConfig

    admin = client_for(make_member(project, "admin"))
    bad = admin.post(start_url(project), form_data(RetrainConfig, "retrain", steps="{not json"))
    assert bad.status_code == 400 and 'id="error-steps"' in bad.content.decode()
    ok = admin.post(start_url(project), form_data(RetrainConfig, "retrain", steps='{"ppo": {"learning_rate": "3e-4"}}',
                                                  trigger=""))
    assert ok.status_code == 302
    published = admin.post(start_url(project), form_data(PublishConfig, "publish", max_prompts="8",
                                                         completions_per_prompt=""))
    assert published.status_code == 302
    run = TrainingRun.objects.get(kind="publish")
    assert run.config["max_prompts"] == 8 and run.config["completions_per_prompt"] is None
