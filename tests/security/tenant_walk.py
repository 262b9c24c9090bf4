"""Helpers of tests/security/test_tenants.py: a foreign project full of recognisable data, the URL walker
(every route of the resolver, every Django admin URL) and a fingerprint of the whole database.

The walker reads the URL resolver, so a new endpoint or page is walked without editing the test; a URL
parameter it has no foreign value for fails the test (map it in `foreign_values`)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from django.apps import apps
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from feedback import services
from feedback.models import Judgement, PreferenceSnapshot, Project
from ops.models import Webhook
from tests.feedback.factories import make_member, make_tasks
from training import services as training_services
from training.models import DPORound, ModelVersion, RetrainSchedule, TrainingRun
from tests.training.factories import make_run

SECRET_SLUG = "zz-secret-tenant"
SECRET_TEXT = "SECRET-PROMPT-7c1e9"
SECRET_COMPLETION = "SECRET-COMPLETION-4b2d"
SECRET_HOOK = "https://secret-tenant.example/hook"
SECRETS = (SECRET_SLUG, SECRET_TEXT, SECRET_COMPLETION, SECRET_HOOK)
MISSING_ID = 987_654
# Tables that change as a side effect of merely asking (login throttling, sessions), not data of a project.
UNFINGERPRINTED = {"axes", "sessions", "contenttypes"}
PARAM = re.compile(r"<(?:(?P<conv>[^>:]+):)?(?P<name>[^>]+)>")


@dataclass
class Foreign:
    project: Project
    task: object
    run: TrainingRun
    version: ModelVersion
    snapshot: PreferenceSnapshot
    judgement: Judgement
    dpo_round: DPORound | None = None


def build_foreign_project(tmp_path) -> Foreign:
    """A project the intruders are not members of, with a row in every table that belongs to a project."""
    project = services.create_project(slug=SECRET_SLUG, name="Secret tenant", overlap=2)
    tasks = make_tasks(project, 3, texts={0: SECRET_COMPLETION})
    project.prompts.update(text=SECRET_TEXT)
    judge = make_member(project, "annotator")
    held = services.next_task(project=project, annotator=judge)
    judgement, _ = services.submit_judgement(task=held.task, annotator=judge, ranking=[["a"], ["b"]])
    make_member(project, "admin")
    snapshot = PreferenceSnapshot.objects.create(project=project, sha256="f" * 64, path=str(tmp_path / "snap"))
    version = ModelVersion.objects.create(project=project, name=f"reward-{SECRET_SLUG}-run1", kind=ModelVersion.Kind.REWARD,
                                          path=str(tmp_path / "reward"), sha256="e" * 64, snapshot=snapshot)
    run = make_run(project=project, kind=TrainingRun.Kind.REWARD)
    policy = ModelVersion.objects.create(project=project, name=f"policy-{SECRET_SLUG}-run1", kind=ModelVersion.Kind.POLICY,
                                         path=str(tmp_path / "policy"), sha256="d" * 64)
    # A waiting round (shown in the Django admin, the API and the /training/ page's rounds table) with its run.
    round_run = make_run(project=project, kind=TrainingRun.Kind.DPO_ROUND)
    dpo_round = DPORound.objects.create(project=project, policy=policy, reward_model=version, k=2, budget=1,
                                        state=DPORound.State.WAITING, sample_run=round_run,
                                        counts={"human_pairs": 1, "model_pairs": 3})
    dpo_round.tasks.set([tasks[1]])
    RetrainSchedule.objects.create(project=project)
    Webhook.objects.create(project=project, url=SECRET_HOOK, secret="s", events=["judgement.created"])
    return Foreign(project=project, task=tasks[0], run=run, version=version, snapshot=snapshot, judgement=judgement,
                   dpo_round=dpo_round)


def foreign_values(foreign: Foreign) -> dict[str, list]:
    """URL parameter name → the foreign objects' values to put there (`round_id`: the DPO round's id)."""
    return {
        "project_ref": [foreign.project.pk, foreign.project.slug], "slug": [foreign.project.slug],
        "task_id": [foreign.task.pk], "run_id": [foreign.run.pk], "version_id": [foreign.version.pk],
        "membership_id": list(foreign.project.memberships.values_list("pk", flat=True)),
        "snapshot_id": [foreign.snapshot.pk], "round_id": [foreign.dpo_round.pk],
    }


def walk_routes(resolvers=None, prefix: str = ""):
    """Every (route, view name) of the project's URLconf, outside the Django admin and static files."""
    for entry in resolvers if resolvers is not None else get_resolver().url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if route.startswith("admin/"):
                continue
            yield from walk_routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield "/" + route.lstrip("^").rstrip("$"), entry.name


def fill_route(route: str, values: dict[str, list]) -> list[str]:
    """The route with every parameter replaced by each foreign value (unknown parameter: KeyError)."""
    urls = [route]
    for match in PARAM.finditer(route):
        options = values[match.group("name")]
        urls = [url.replace(match.group(0), str(value), 1) for url in urls for value in options]
    return urls


def admin_urls(foreign: Foreign) -> list[str]:
    """Index, each app index and, for every registered model: changelist, add, change, delete, history (the
    object: a row of the foreign project when the model has one, else any row, else a missing id)."""
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        obj = _foreign_row(model, foreign)
        pk = obj.pk if obj is not None else MISSING_ID
        urls += [reverse("admin:app_list", args=[info[0]]), reverse("admin:%s_%s_changelist" % info),
                 reverse("admin:%s_%s_add" % info)]
        urls += [reverse(f"admin:%s_%s_{view}" % info, args=[pk]) for view in ("change", "delete", "history")]
    return list(dict.fromkeys(urls))


def _foreign_row(model, foreign: Foreign):
    names = {f.name for f in model._meta.get_fields()}
    if model is Project:
        return foreign.project
    for lookup in ("project", "task__project", "prompt__project", "run__project", "webhook__project"):
        if lookup.split("__")[0] in names:
            try:
                row = model._default_manager.filter(**{lookup: foreign.project}).first()
            except Exception:  # noqa: BLE001 — a lookup this model does not have
                continue
            if row is not None:
                return row
    return model._default_manager.order_by("pk").first()


def fingerprint() -> dict[str, tuple[int, str]]:
    """Model label → (row count, sha256 of every row's values): any change anywhere shows."""
    prints = {}
    for model in apps.get_models():
        if model._meta.app_label in UNFINGERPRINTED or not model._meta.managed or model._meta.proxy:
            continue
        rows = list(model._default_manager.order_by("pk").values())
        digest = hashlib.sha256(json.dumps(rows, default=str, sort_keys=True).encode()).hexdigest()
        prints[model._meta.label] = (len(rows), digest)
    return prints


def changed_tables(before: dict, after: dict) -> list[str]:
    return sorted(label for label in before if before[label] != after.get(label))


def body_text(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")


def leaked(response) -> list[str]:
    text = body_text(response)
    return [secret for secret in SECRETS if secret in text]


def write_body(foreign: Foreign) -> dict:
    """One body that names the foreign project's objects in every field an endpoint might read."""
    return {
        "project": foreign.project.slug, "kind": "reward", "config": {}, "slug": foreign.project.slug, "name": "x",
        "rows": [{"id": "x1", "prompt": "hijack"}], "ranking": [["a"], ["b"]], "confidence": 3, "flags": [],
        "items": [{"prompt": "p", "completion": "c"}], "task": foreign.task.pk, "username": "nobody",
        "password": "wrong-password",
    }
