"""The JSON boundary: deep nesting and malformed bodies are a 400 naming the problem, and change nothing."""

import pytest
from rest_framework.test import APIClient

from core.parsing import JSONTooDeep, loads_bounded
from feedback.models import Project


def test_bounded_loads_refuses_deep_nesting_without_recursion():
    assert loads_bounded('{"a": [[1]]}') == {"a": [[1]]}
    with pytest.raises(JSONTooDeep):
        loads_bounded("[" * 40 + "]" * 40)
    with pytest.raises(JSONTooDeep):
        loads_bounded("[" * 200_000 + "]" * 200_000)  # past the C parser's recursion limit
    with pytest.raises(ValueError):
        loads_bounded('{"a": ')


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,
    '{"slug": ' + "[" * 50 + "]" * 50 + "}",
    '{"slug": "x", ',
    b"\xff\xfe{}",
])
def test_deep_or_malformed_bodies_are_a_400_and_create_nothing(db, body):
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("root", password="x")
    client = APIClient()
    client.force_authenticate(staff)
    before = Project.objects.count()
    response = client.post("/api/v1/projects/", body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert "detail" in response.json()
    assert Project.objects.count() == before
