import json
import logging

import pytest
from django.utils import timezone


def test_healthz_needs_no_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_a_missing_worker_then_ready(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok" and response.json()["checks"]["worker"].startswith("error")
    from training.tasks import maintenance_tick
    from django_tasks_db.models import DBTaskResult

    maintenance_tick.enqueue()
    DBTaskResult.objects.update(status="SUCCESSFUL", started_at=timezone.now(), finished_at=timezone.now())
    assert client.get("/readyz").status_code == 200


def test_request_id_is_echoed_or_generated(client):
    mine = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert mine["X-Request-ID"] == "abc-123"
    unsafe = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nInjected: yes")
    assert unsafe["X-Request-ID"] != "bad id\nInjected: yes" and len(unsafe["X-Request-ID"]) == 32


def test_log_records_carry_the_request_id_as_json():
    from config.middleware import JsonFormatter, RequestIdFilter, request_id_var

    record = logging.LogRecord("feedback", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    token = request_id_var.set("req-42")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-42" and line["message"] == "hello world" and line["level"] == "INFO"
