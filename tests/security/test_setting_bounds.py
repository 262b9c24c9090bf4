"""Every numeric project and run setting is finite and within its stated range, on every parser.

One worker serves every project, so a run setting of 10^12 iterations lets one project admin starve everyone
else's training; "inf" stored in a JSON column is a 500 (SQLite's JSON_VALID, PostgreSQL's jsonb); a project's
lease of 5 seconds or 10^12 breaks its annotators' queue. Each case here goes through every door that parses a
setting — the API, the start form, a command's --set, a retrain chain's steps, the project API and settings form
— and must be refused with a 400 (or a command error) that names the setting, leaving nothing written.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DataError, IntegrityError, transaction
from django.test import Client
from rest_framework.test import APIClient

from core.models import AuditEvent
from feedback.models import PROJECT_SETTING_RANGES, Project
from tests.feedback.factories import ProjectFactory, make_member
from training.models import DPORound, TrainingRun
from training.pipeline.fields import Range
from training.run_configs import CONFIG_CLASSES, validate_config

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

# (kind, settings, the setting the refusal must name): the cases, on every kind that has the setting.
UNBOUNDED = [
    ("ppo", {"max_new_tokens": 10**9}, "max_new_tokens"),
    ("publish", {"max_new_tokens": 10**9}, "max_new_tokens"),
    ("dpo_round", {"max_new_tokens": 10**9}, "max_new_tokens"),
    ("grpo", {"max_completion_length": 10**9}, "max_completion_length"),
    ("ppo", {"num_iterations": 10**12}, "num_iterations"),
    ("rloo", {"num_iterations": 10**12}, "num_iterations"),
    ("reward", {"max_steps": 10**15}, "max_steps"),
    ("dpo", {"max_steps": 10**15}, "max_steps"),
    ("rloo", {"max_steps": 10**15}, "max_steps"),
    ("publish", {"max_prompts": 10**12}, "max_prompts"),
    ("dpo_round", {"max_prompts": 10**12}, "max_prompts"),
    ("dpo_round", {"dpo": {"max_steps": 10**15}}, "max_steps"),
    ("ppo", {"batch_size": 10**9}, "batch_size"),
    ("reward", {"num_train_epochs": 1e12}, "num_train_epochs"),
    ("ppo", {"processes": 10**6}, "processes"),
    ("reward", {"learning_rate": 1.5}, "learning_rate"),
    ("retrain", {"steps": {"ppo": {"num_iterations": 10**12}}}, "num_iterations"),
    ("retrain", {"steps": {"reward": {"learning_rate": "inf"}}}, "learning_rate"),
]
NON_FINITE = ["inf", "1e400", "Infinity", "nan", "-inf"]
NON_ASCII = ["٣", "３", "٣٠٠"]  # Arabic-Indic and full-width digits: float() reads them as 3 and 300
# (kind, a float setting, an int setting) that the non-finite and non-ASCII values are tried on
TEXT_TARGETS = [("reward", "learning_rate", "max_steps"), ("ppo", "temperature", "max_new_tokens"),
                ("publish", "top_p", "max_prompts"), ("grpo", "beta", "num_iterations")]


def nothing_written():
    return TrainingRun.objects.count() == 0 and DPORound.objects.count() == 0 and not AuditEvent.objects.filter(
        event_type=AuditEvent.Type.RUN_STARTED).exists()


@pytest.fixture
def admin(project):
    return make_member(project, "admin")


def post_run(admin, project, kind, config):
    client = APIClient()
    client.force_authenticate(admin)
    return client.post("/api/v1/training-runs/", {"project": project.slug, "kind": kind, "config": config},
                       format="json")


def start_form(admin, project, kind, config):
    """The start page's form as a browser sends it: every default, with `config`'s values typed in."""
    data = {"kind": kind, "settings_form": "1"}
    for field in dataclasses.fields(CONFIG_CLASSES[kind]):
        value = config.get(field.name, field.default if field.default is not dataclasses.MISSING else {})
        if isinstance(value, bool):
            if value:
                data[field.name] = "on"
        elif isinstance(value, (dict, list)):
            data[field.name] = json.dumps(value)
        else:
            data[field.name] = "" if value is None else str(value)
    client = Client()
    client.force_login(admin)
    return client.post(f"/training/projects/{project.slug}/start/", data)


COMMANDS = {"reward": ["train_reward_model"], "publish": ["publish_samples"], "dpo_round": ["dpo_round"],
            **{m: ["train_policy", "--method", m] for m in ("ppo", "dpo", "rloo", "grpo")}}


def run_command(project, kind, config):
    sets = []
    for name, value in config.items():
        sets += ["--set", f"{name}={json.dumps(value) if isinstance(value, dict) else value}"]
    call_command(*COMMANDS[kind], "--project", project.slug, "--queue", *sets)


# --- the API ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, config, field", UNBOUNDED)
def test_the_api_refuses_an_unbounded_run_setting_by_name(project, admin, kind, config, field):
    response = post_run(admin, project, kind, config)
    assert response.status_code == 400, response.content
    assert field in response.content.decode()
    assert nothing_written()


@pytest.mark.parametrize("kind, float_field, int_field", TEXT_TARGETS)
@pytest.mark.parametrize("text", NON_FINITE + NON_ASCII)
def test_the_api_refuses_non_finite_and_non_ascii_numbers_as_strings(project, admin, kind, float_field, int_field,
                                                                     text):
    for field in (float_field, int_field):
        response = post_run(admin, project, kind, {field: text})
        assert response.status_code == 400, (field, response.content)
        assert field in response.json()["config"][0]
    assert nothing_written()


@pytest.mark.parametrize("text", NON_FINITE + NON_ASCII)
def test_a_retrain_chain_refuses_a_bad_number_in_any_step(project, admin, text):
    for step, field in (("reward", "learning_rate"), ("ppo", "max_new_tokens"), ("publish", "max_prompts")):
        response = post_run(admin, project, "retrain", {"steps": {step: {field: text}}})
        assert response.status_code == 400, response.content
        message = response.json()["config"][0]
        assert f"steps.{step}" in message and field in message
    assert nothing_written()


def test_informational_chain_settings_hold_finite_numbers_only(project, admin):
    """`trigger` is stored as it is given (JSON): a non-finite number in it would be a 500 from the database."""
    with pytest.raises(ValueError, match=r"RetrainConfig\.trigger\.agreement must be a finite number"):
        validate_config("retrain", {"trigger": {"agreement": float("inf")}})


def test_values_in_range_still_start_runs(project, admin):
    """The bounds refuse only what is out of range: the largest stated values start runs."""
    response = post_run(admin, project, "ppo", {"max_new_tokens": 2048, "num_iterations": 10_000,
                                                "learning_rate": "3e-4"})
    assert response.status_code == 201, response.content
    assert response.json()["config"]["max_new_tokens"] == 2048
    response = post_run(admin, project, "retrain", {"steps": {"reward": {"learning_rate": "1e-3"}}})
    assert response.status_code == 201, response.content


# --- the start form ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, config, field", [case for case in UNBOUNDED if case[0] != "dpo_round"
                                                 or "dpo" not in case[1]])
def test_the_start_form_refuses_an_unbounded_setting_beside_its_field(project, admin, kind, config, field):
    response = start_form(admin, project, kind, config)
    assert response.status_code == 400
    html = response.content.decode()
    (named,) = config  # the form's field: the setting itself, or `steps` for a chain
    assert f'id="error-{named}"' in html and field in html
    assert nothing_written()


@pytest.mark.parametrize("kind, float_field, int_field", TEXT_TARGETS)
@pytest.mark.parametrize("text", NON_FINITE + NON_ASCII)
def test_the_start_form_refuses_non_finite_and_non_ascii_numbers(project, admin, kind, float_field, int_field, text):
    response = start_form(admin, project, kind, {float_field: text, int_field: text})
    assert response.status_code == 400
    html = response.content.decode()
    assert f'id="error-{float_field}"' in html and f'id="error-{int_field}"' in html
    assert nothing_written()


def test_the_start_form_states_each_range(project, admin):
    client = Client()
    client.force_login(admin)
    html = client.get(f"/training/projects/{project.slug}/start/", {"kind": "ppo"}).content.decode()
    tag = re.search(r'<input[^>]*name="max_new_tokens"[^>]*>', html).group(0)
    assert 'min="1"' in tag and 'max="2048"' in tag
    assert "Range: [1, 2048]." in html


# --- the commands -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, config, field", [case for case in UNBOUNDED if case[0] in COMMANDS])
def test_a_commands_set_refuses_an_unbounded_setting_by_name(project, kind, config, field):
    with pytest.raises(CommandError, match=field):
        run_command(project, kind, config)
    assert nothing_written()


@pytest.mark.parametrize("text", [*NON_FINITE, ".inf", "-.inf", ".nan", *NON_ASCII])  # the YAML spellings too
def test_a_commands_set_refuses_non_finite_and_non_ascii_numbers(project, text):
    for kind, float_field, int_field in TEXT_TARGETS:
        for field in (float_field, int_field):
            with pytest.raises(CommandError, match=field):
                run_command(project, kind, {field: text})
    assert nothing_written()


def test_a_commands_set_that_is_not_yaml_is_a_command_error(project):
    with pytest.raises(CommandError, match="--set learning_rate"):
        call_command("train_reward_model", "--project", project.slug, "--queue", "--set", "learning_rate=[1")
    assert nothing_written()


# --- every setting of every kind has a stated range, enforced ---------------------------------------------------


def numeric_fields():
    for kind, cls in CONFIG_CLASSES.items():
        for field in dataclasses.fields(cls):
            declared = {t for t in (field.type.replace(" ", "").split("|")) if t != "None"}
            if declared & {"int", "float"}:
                yield kind, cls, field


def test_every_numeric_run_setting_states_a_range():
    missing = [f"{cls.__name__}.{field.name}" for _, cls, field in numeric_fields()
               if not isinstance(field.metadata.get("range"), Range)]
    assert missing == []


def just_outside(bounds: Range, is_int: bool) -> list:
    step = 1 if is_int else max(abs(bounds.hi), 1.0) * 1e-3
    low = bounds.lo if bounds.lo_open else bounds.lo - step
    high = bounds.hi if bounds.hi_open else bounds.hi + step
    huge = 10**15 if bounds.hi < 10**15 else bounds.hi * 10  # the size
    return [low, high, huge if is_int else float(huge)]


@pytest.mark.parametrize("kind, cls, field", list(numeric_fields()),
                         ids=[f"{cls.__name__}.{f.name}" for _, cls, f in numeric_fields()])
def test_each_numeric_setting_is_refused_just_outside_its_range(kind, cls, field):
    bounds = field.metadata["range"]
    is_int = "int" in field.type
    for value in just_outside(bounds, is_int):
        with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field.name}\b"):
            validate_config(kind, {field.name: value})
        with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field.name}\b"):
            cls(**{field.name: value})  # built directly (a stored run, a script): its __post_init__ checks too
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field.name} must be a finite number"):
        validate_config(kind, {field.name: "inf"})


def test_the_docs_state_every_runs_range():
    """docs/settings-ranges.md lists each setting with the range the code enforces (one place states it)."""
    page = (ROOT / "docs" / "settings-ranges.md").read_text()
    missing = []
    for _, cls, field in numeric_fields():
        section = page.split(f"`{cls.__name__}`", 1)[-1].split("\n## ", 1)[0]
        if f"| `{field.name}` | {field.metadata['range'].interval()} |" not in section:
            missing.append(f"{cls.__name__}.{field.name}")
    assert missing == []
    for name, (lo, hi) in PROJECT_SETTING_RANGES.items():
        assert f"| `{name}` | [{lo}, {hi}] |" in page


# --- project settings: the API, the settings form, the create form, the database --------------------------------

BAD_PROJECT_SETTINGS = [
    ("lease_seconds", 5), ("lease_seconds", 10**12), ("lease_seconds", "٣٠٠"), ("lease_seconds", "３００"),
    ("overlap", 0), ("overlap", 10**6), ("overlap", "٣"), ("completions_per_task", 9),
    ("gold_rate", 1.5), ("gold_rate", "inf"), ("gold_rate", "nan"), ("gold_rate", "1e400"), ("gold_rate", "-Infinity"),
    ("agreement_threshold", -0.1), ("agreement_threshold", "NaN"), ("max_overlap", 10**6),
]


@pytest.mark.parametrize("field, value", BAD_PROJECT_SETTINGS)
def test_the_project_api_refuses_an_out_of_range_setting_by_name(admin, field, value):
    client = APIClient()
    client.force_authenticate(admin)
    before = Project.objects.count()
    response = client.post("/api/v1/projects/", {"slug": "fresh", "name": "Fresh", field: value}, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert Project.objects.count() == before


def settings_form(project, **changes):
    data = {"name": project.name, "instructions": project.instructions, **{
        name: "" if getattr(project, name) is None else str(getattr(project, name)) for name in PROJECT_SETTING_RANGES}}
    return {**data, **{name: str(value) for name, value in changes.items()}}


@pytest.mark.parametrize("field, value", BAD_PROJECT_SETTINGS)
def test_the_settings_form_refuses_an_out_of_range_setting_beside_its_field(project, admin, field, value):
    before = Project.objects.values().get(pk=project.pk)
    client = Client()
    client.force_login(admin)
    response = client.post(f"/p/{project.slug}/settings/", settings_form(project, **{field: value}))
    assert response.status_code in (200, 400)  # the form again, with the error; never a redirect (saved)
    assert f'class="field invalid" id="field-{field}"' in response.content.decode()
    assert Project.objects.values().get(pk=project.pk) == before


@pytest.mark.parametrize("field, value", [case for case in BAD_PROJECT_SETTINGS if isinstance(case[1], str)])
def test_the_create_form_refuses_non_ascii_and_non_finite_numbers(admin, field, value):
    client = Client()
    client.force_login(admin)
    before = Project.objects.count()
    data = {"slug": "fresh", **settings_form(ProjectFactory.build(), **{field: value})}
    response = client.post("/projects/new/", data)
    assert f'class="field invalid" id="field-{field}"' in response.content.decode()
    assert Project.objects.count() == before


def test_the_settings_form_states_each_range(project, admin):
    client = Client()
    client.force_login(admin)
    html = client.get(f"/p/{project.slug}/settings/").content.decode()
    tag = re.search(r'<input[^>]*name="lease_seconds"[^>]*>', html).group(0)
    assert 'min="30"' in tag and 'max="86400"' in tag


def test_a_valid_settings_change_is_still_saved(project, admin):
    client = Client()
    client.force_login(admin)
    response = client.post(f"/p/{project.slug}/settings/", settings_form(project, lease_seconds=30, gold_rate=1.0))
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.lease_seconds == 30 and project.gold_rate == 1.0


@pytest.mark.parametrize("field, value", [("lease_seconds", 5), ("lease_seconds", 10**12), ("overlap", 0),
                                          ("completions_per_task", 9), ("gold_rate", 2.0), ("max_overlap", 0)])
def test_the_database_refuses_an_out_of_range_setting_that_skips_validation(project, field, value):
    """A write that skips the model's validators (a bulk update, a raw script) is refused by the table itself
    (PostgreSQL's integer column refuses 10^12 before its check constraint does: a DataError)."""
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        Project.objects.filter(pk=project.pk).update(**{field: value})


def test_a_command_refuses_a_nan_project_setting(db):
    """NaN passes every Min/Max validator (each comparison is False): the fields also state they are finite."""
    with pytest.raises(CommandError, match="gold.rate"):
        call_command("create_project", "nan-project", "--gold-rate", "nan")
    assert not Project.objects.filter(slug="nan-project").exists()


@pytest.mark.parametrize("option, value", [("--lease-seconds", "٣٠٠"), ("--overlap", "３"), ("--gold-rate", "inf"),
                                           ("--gold-rate", "1e400"), ("--agreement-threshold", "٠٫٥")])
def test_a_command_refuses_non_ascii_digits_and_infinities(db, option, value):
    """argparse's int() and float() read Arabic-Indic and full-width digits and "inf": the command refuses them,
    naming the option, and creates nothing."""
    with pytest.raises(CommandError, match=option.lstrip("-")):
        call_command("create_project", "digits-project", option, value)
    assert not Project.objects.filter(slug="digits-project").exists()


@pytest.mark.django_db(transaction=True)
def test_the_range_migration_brings_stored_settings_into_range_before_constraining_them():
    """A database whose projects were stored out of range (before the bounds) still migrates: each value is moved to
    its nearest bound, then the constraints hold."""
    from importlib import import_module

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    migration = import_module("feedback.migrations.0011_project_settings_in_range").Migration
    before = [dep for dep in migration.dependencies if dep[0] == "feedback"]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps.get_model("feedback", "Project")
        stored = old.objects.create(slug="stored-long-ago", name="Old", lease_seconds=5, overlap=0, gold_rate=1.5,
                                    completions_per_task=9, agreement_threshold=-0.5)
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([("feedback", "0011_project_settings_in_range")])
        project = Project.objects.get(pk=stored.pk)
        assert (project.lease_seconds, project.overlap, project.gold_rate, project.completions_per_task,
                project.agreement_threshold) == (30, 1, 1.0, 4, 0.0)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)


@pytest.mark.parametrize("steps", ['{"reward": {"learning_rate": Infinity}}', '{"ppo": {"max_new_tokens": NaN}}',
                                   '{"ppo": {"seed": ' + "9" * 5000 + "}}"])
def test_the_start_forms_json_settings_refuse_what_json_cannot_hold(project, admin, steps):
    """A chain's `steps` typed into the form: Python's json.loads would read NaN, Infinity and a 5,000-digit
    integer (a ValueError past the int-digits limit); the form reads it as the API's parser does."""
    client = Client()
    client.force_login(admin)
    data = {"kind": "retrain", "settings_form": "1", "method": "ppo", "steps": steps, "trigger": "{}"}
    response = client.post(f"/training/projects/{project.slug}/start/", data)
    assert response.status_code == 400 and 'id="error-steps"' in response.content.decode()
    assert nothing_written()
