import os

# Before anything imports transformers: never reach for a model hub, and quiet tokenizers' fork warning.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two xdist workers on a 2-core machine: one torch/OpenMP thread each, or they fight for the
    # cores (torch's default is one thread per core per process, spinning while it waits).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from tests.feedback.factories import ProjectFactory, make_member  # noqa: E402


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


def pytest_collection_modifyitems(items):
    """The pure-ML pipeline tests do not touch the database: mark them `ml` so the PostgreSQL pass skips them."""
    for item in items:
        if "/training/pipeline/" in str(item.path):
            item.add_marker(pytest.mark.ml)
