"""Schemathesis against our own OpenAPI schema, in-process through WSGI: no 5xx, responses match the schema.

Bounded (a few derandomised examples per operation) so the suite stays fast; run as an annotator who
holds a lease and as a project admin, so both the happy paths and the refusals are exercised.
"""

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from hypothesis import HealthCheck, given, settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.authtoken.models import Token

from config.wsgi import application
from feedback import services
from tests.feedback.factories import make_member, make_tasks


@pytest.fixture
def keep_connection(db):
    # Like Django's test client: the WSGI app must not close the test's connection around each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(project):
    make_tasks(project, 3, k=3)
    annotator = make_member(project, "annotator")
    services.next_task(project=project, annotator=annotator)
    admin = make_member(project, "admin")
    return {role: Token.objects.create(user=user).key for role, user in (("annotator", annotator), ("admin", admin))}


# No 5xx; every status code is documented and every response matches its schema and content type.
# Random data being refused with a 4xx is the point of validation, so "positive data acceptance" is not a check.
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


def test_no_server_errors_and_responses_match_the_schema(keep_connection, tokens):
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=4, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case):
            for role in ("annotator", "admin"):
                case.headers = {**(case.headers or {}), "Authorization": f"Token {tokens[role]}"}
                case.call_and_validate(checks=CHECKS)

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)
