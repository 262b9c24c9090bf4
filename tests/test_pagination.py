"""Lists refuse absurd or malformed page numbers with a 400 naming the parameter, never a 500."""

import pytest
from rest_framework.test import APIClient


@pytest.mark.parametrize("query, field", [
    ("limit=99999999999999999999999", "limit"),
    ("offset=99999999999999999999999", "offset"),
    ("limit=-1", "limit"),
    ("limit=0", "limit"),
    ("offset=%D9%A3", "offset"),  # an Arabic-Indic digit: str.isdigit() says yes, the database would not
    ("limit=1e3", "limit"),
])
def test_absurd_page_numbers_are_a_400_naming_the_parameter(project_admin, query, field):
    client = APIClient()
    client.force_authenticate(project_admin)
    response = client.get(f"/api/v1/projects/?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_sane_page_numbers_page(project_admin):
    client = APIClient()
    client.force_authenticate(project_admin)
    response = client.get("/api/v1/projects/?limit=1&offset=0")
    assert response.status_code == 200
    assert response.json()["count"] == 1 and len(response.json()["results"]) == 1
