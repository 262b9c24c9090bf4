import pytest
from rest_framework.test import APIClient

from tests.feedback.factories import ProjectFactory, make_member


@pytest.fixture
def project(db):
    return ProjectFactory(overlap=2)


@pytest.fixture
def annotator(project):
    return make_member(project, "annotator")


@pytest.fixture
def project_admin(project):
    return make_member(project, "admin")


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def annotator_client(annotator):
    client = APIClient()
    client.force_authenticate(annotator)
    return client


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The locmem cache outlives each test's database rollback; start every test with it empty."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
