"""Bad input never reaches a 500: every API operation (enumerated from the OpenAPI schema) × malformed input.

For each operation the cases are: deep nesting, an oversize body, bad encodings, NUL bytes, huge and
non-finite numbers, the wrong JSON type for each body field (the other fields valid), absurd or non-ASCII
query values, and non-ASCII / over-long / non-numeric ids in the URL. Each must be a 4xx and leave every
table's row count unchanged.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from django.apps import apps
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from feedback import services
from feedback.api.views import JudgementCreateApi, ThrottledObtainAuthToken
from tests.feedback.factories import make_member, make_tasks
from training.models import ModelVersion, TrainingRun

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
OPERATIONS = [(method, path, op) for path, ops in SCHEMA["paths"].items() for method, op in ops.items()
              if method in {"get", "post", "put", "patch", "delete"}]
# Rows these write on purpose, whatever the input: login attempts (django-axes) and the throttle's cache.
IGNORED_TABLES = {"axes"}

DEEP = "[" * 50_000 + "]" * 50_000
HUGE_INT = "9" * 30
NON_ASCII_IDS = ["٣", "３", "१", "¹", HUGE_INT, "1" * 19, "-1", "1.0", "%00", "a%00b", "1e3", " 1"]
RAW_BODIES = {
    "deep nesting": DEEP.encode(),
    "deep object": ('{"a":' * 5_000 + "1" + "}" * 5_000).encode(),
    "not utf-8": b'{"name": "\xff\xfe\xfa"}',
    "utf-16": json.dumps({"name": "x"}).encode("utf-16"),
    "truncated": b'{"ranking": [["a"',
    "huge integer": ('{"x": ' + "9" * 5000 + "}").encode(),
    "huge float": b'{"x": 1e999}',
    "nan": b'{"x": NaN}',
    "nul": b'{"x": "\x00"}',
    "bare NUL": b"\x00\x00\x00",
    "array": b"[]",
    "number": b"5",
    "string": b'"x"',
    "null": b"null",
}
OVERSIZE = b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}'
BAD_VALUES_BY_TYPE = {
    "string": [{}, [], True, "a\x00b", "x" * 200_000],
    "integer": ["abc", {}, [], 1.5, 10**30, -(10**30), "٣", True],
    "number": ["abc", {}, [], 10**30, "nan", "inf"],
    "boolean": [{}, [], "maybe"],
    "array": ["x", {}, 5, ["\x00"], list(range(100_000))],
    "object": ["x", [], 5],
    None: [{"a" * 10: [None] * 50_000}, "\x00", [[[[]]]], 10**30],  # JSONField: any type
}
PROJECT_REFERENCES = {"project", "task__project"}  # filters taking a project id or slug
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")
QUERY_VALUES = ["٣", HUGE_INT, "-" + HUGE_INT, "1e999", "nan", "\x00", "%00", "x" * 5000, "1.5", "[]"]


@pytest.fixture
def world(project):
    """A staff project admin holding a lease, a model version and a run, so validation is reached."""
    user = make_member(project, "admin", is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="add_project"))
    tasks = make_tasks(project, 2, k=2)
    assignment = services.next_task(project=project, annotator=user)
    version = ModelVersion.objects.create(project=project, name="rm", kind=ModelVersion.Kind.REWARD, path="x",
                                          sha256="0" * 64)
    policy = ModelVersion.objects.create(project=project, name="pi", kind=ModelVersion.Kind.POLICY, path="y",
                                         sha256="1" * 64)
    run = TrainingRun.objects.create(project=project, kind=TrainingRun.Kind.choices[0][0], created_by=user)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)
    labels = sorted(assignment.label_map()) if assignment else ["a", "b"]
    return {
        "client": client, "user": user,
        "path_values": {"project_ref": project.slug, "task_id": assignment.task_id if assignment else tasks[0].pk,
                        "run_id": run.pk, "version_id": version.pk},
        "policy_id": policy.pk,
        "valid": {
            "/api/v1/tasks/{task_id}/judgements/": {"ranking": [[label] for label in labels], "flags": [],
                                                    "confidence": 3},
            "/api/v1/projects/": {"slug": "fresh-project", "name": "Fresh"},
            "/api/v1/projects/{project_ref}/import/": {"rows": [{"id": "n1", "prompt": "Hello?"}]},
            "/api/v1/training-runs/": {"project": project.slug, "kind": TrainingRun.Kind.choices[0][0]},
            "/api/v1/model-versions/{version_id}/score/": {"items": [{"prompt": "p", "completion": "c"}]},
            "/api/v1/model-versions/{version_id}/activate/": {"project": project.slug},
            "/api/v1/auth/token/": {"username": user.username, "password": "pass-word-123"},
        },
    }


def row_counts() -> dict[str, int]:
    return {m._meta.label: m._default_manager.count() for m in apps.get_models()
            if m._meta.app_label not in IGNORED_TABLES and not m._meta.proxy}


def body_fields(op) -> dict[str, str | None]:
    """Request body fields and their JSON types (None for any-type JSON fields), from the schema."""
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if not content:
        return {}
    schema = content["schema"]
    if "$ref" in schema:
        schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return {name: prop.get("type") for name, prop in schema.get("properties", {}).items()
            if not prop.get("readOnly")}


def fill(path: str, values: dict) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", str(value))
    return path


def call(client, method, url, *, data=None, raw=None, content_type="application/json", **extra):
    if raw is not None:
        return getattr(client, method)(url, data=raw, content_type=content_type, **extra)
    if data is not None:
        return getattr(client, method)(url, data=json.dumps(data), content_type=content_type, **extra)
    return getattr(client, method)(url, **extra)


def cases(method, path, op, world):
    """(description, kwargs for call) for one operation."""
    url = fill(path, world["path_values"])
    params = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
    for name in params:
        for bad in NON_ASCII_IDS:
            yield f"path {name}={bad!r}", {"url": fill(path, {**world["path_values"], name: bad})}
    for param in (p for p in op.get("parameters", []) if p["in"] == "query"):
        for bad in QUERY_VALUES:
            if param["name"] in {"slug", "model"} and bad != "\x00":
                continue  # any short string is a valid (empty) filter there
            if param["name"] in PROJECT_REFERENCES and SLUG.fullmatch(bad) and not bad.isdigit():
                continue  # "nan" or "1e999" could be a project's slug: an empty list is the right answer
            query = f"{param['name']}={quote(bad)}"
            yield f"query {param['name']}={bad!r}", {"url": url, "extra": {"QUERY_STRING": query}}
    if method == "get" or not op.get("requestBody"):
        return
    for name, raw in RAW_BODIES.items():
        yield f"body {name}", {"url": url, "raw": raw}
    yield "oversize body", {"url": url, "raw": OVERSIZE}
    yield "bad form encoding", {"url": url, "raw": b"name=%ff%fe&x=\xff",
                                "content_type": "application/x-www-form-urlencoded"}
    base = world["valid"].get(path, {})
    for field, kind in body_fields(op).items():
        for bad in BAD_VALUES_BY_TYPE.get(kind, BAD_VALUES_BY_TYPE[None]):
            yield f"field {field}={str(bad)[:30]!r}", {"url": url, "data": {**base, field: bad}}


def _op_id(item):
    method, path, _ = item
    return f"{method.upper()} {path}"


@pytest.mark.parametrize("operation", OPERATIONS, ids=[_op_id(o) for o in OPERATIONS])
def test_malformed_input_is_a_4xx_and_changes_nothing(world, operation, monkeypatch):
    # A 429 is a 4xx too, but it would hide every case after the first few.
    monkeypatch.setattr(ThrottledObtainAuthToken, "throttle_classes", [])
    monkeypatch.setattr(JudgementCreateApi, "throttle_classes", [])
    method, path, op = operation
    client = world["client"]
    before = row_counts()
    failures = []
    for description, kwargs in cases(method, path, op, world):
        url = kwargs.pop("url")
        extra = kwargs.pop("extra", {})
        response = call(client, method, url, **kwargs, **extra)
        if not 400 <= response.status_code < 500:
            failures.append(f"{description}: {response.status_code} {getattr(response, 'content', b'')[:200]!r}")
    assert not failures, f"{method.upper()} {path}:\n" + "\n".join(failures)
    assert row_counts() == before


def test_every_operation_is_covered():
    assert len(OPERATIONS) >= 18
    assert {"post /api/v1/tasks/{task_id}/judgements/", "post /api/v1/projects/{project_ref}/import/",
            "post /api/v1/model-versions/{version_id}/score/"} <= {f"{m} {p}" for m, p, _ in OPERATIONS}


# --- Targeted cases that name the field --------------------------------------------------------------------

@pytest.mark.parametrize("prompt", [{"role": "user"}, 5, 1.5, True, None, [1, 2], [{"role": "bot", "content": "x"}],
                                    "a\x00b", [{"role": "user", "content": "x"}] * 65])
def test_score_prompt_of_the_wrong_type_names_the_field(world, prompt):
    url = fill("/api/v1/model-versions/{version_id}/score/", world["path_values"])
    response = call(world["client"], "post", url, data={"items": [{"prompt": prompt, "completion": "c"}]})
    assert response.status_code == 400, response.content
    assert "prompt" in json.dumps(response.json()["items"])


@pytest.mark.parametrize("body, field", [
    ({"ranking": [["a"]] * 17}, "ranking"),
    ({"ranking": [["a" * 17]]}, "ranking"),
    ({"ranking": {"a": 1}}, "ranking"),
    ({"ranking": [[["a"]]]}, "ranking"),
    ({"ranking": [["a"], ["b"]], "flags": ["x"] * 5}, "flags"),
    ({"ranking": [["a"], ["b"]], "confidence": 6}, "confidence"),
    ({"ranking": [["a"], ["b"]], "confidence": 10**30}, "confidence"),
    ({"ranking": [["a"], ["b"]], "comment": "x" * 5001}, "comment"),
])
def test_judgement_bounds_name_the_field(world, body, field):
    url = fill("/api/v1/tasks/{task_id}/judgements/", world["path_values"])
    response = call(world["client"], "post", url, data=body)
    assert response.status_code == 400, response.content
    assert field in response.json()


@pytest.mark.parametrize("ref", ["٣", HUGE_INT, "a" * 65, "a b", "x\x00"])
def test_project_refs_in_bodies_are_ascii_and_bounded(world, ref):
    response = call(world["client"], "post", "/api/v1/training-runs/", data={"project": ref, "kind": "reward"})
    assert response.status_code == 400 and "project" in response.json()


def test_non_ascii_digit_in_the_url_is_a_404_not_project_3(world, project):
    client = world["client"]
    assert client.get(f"/api/v1/projects/{project.pk}/").status_code == 200
    arabic = "".join(chr(0x0660 + int(d)) for d in str(project.pk))
    assert client.get(f"/api/v1/projects/{arabic}/").status_code == 404
    assert client.get(f"/api/v1/tasks/{HUGE_INT}/skip/").status_code == 404
    assert client.post(f"/api/v1/tasks/{HUGE_INT}/skip/").status_code == 404


def test_import_rows_per_request_are_bounded(world, settings):
    settings.IMPORT_MAX_ROWS_PER_REQUEST = 3  # read at import time: bound via the serializer's own field
    from feedback.api.serializers import ImportInputSerializer

    field = ImportInputSerializer().fields["rows"]
    assert field.max_length >= 1
    rows = [{"prompt": f"p{i}"} for i in range(field.max_length + 1)]
    url = fill("/api/v1/projects/{project_ref}/import/", world["path_values"])
    before = row_counts()
    response = call(world["client"], "post", url, data={"rows": rows})
    assert response.status_code in (400, 413) and row_counts() == before
