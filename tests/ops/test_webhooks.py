"""Webhooks against a real local HTTP receiver (a thread), with the worker's task called in-process."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ops import services, validators
from ops.dispatch import notify
from ops.models import Webhook, WebhookDelivery
from ops.tasks import deliver_webhook

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    """A local receiver answering with the queued status codes (then 200), recording every request."""
    received, statuses = [], []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"headers": dict(self.headers), "body": body})
            self.send_response(statuses.pop(0) if statuses else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_port}/hook", "received": received, "statuses": statuses}
    server.shutdown()


@pytest.fixture
def local_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_BACKOFF_SECONDS = 0.01


def test_signed_delivery_after_commit(project, receiver, local_allowed, django_capture_on_commit_callbacks):
    hook = Webhook.objects.create(project=project, url=receiver["url"], secret="s3cret", events=["snapshot.created"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        with transaction.atomic():
            delivery, = notify(event="snapshot.created", project=project, payload={"snapshot": 7})
    assert len(callbacks) == 1 and not receiver["received"]  # nothing is sent before the commit
    assert deliver_webhook.call(delivery.pk) == "delivered"
    request = receiver["received"][0]
    # The receiver's side, written out: HMAC-SHA256 with the shared secret over "<timestamp>.<body>".
    signed = request["headers"]["X-Webhook-Timestamp"].encode() + b"." + request["body"]
    expected = "sha256=" + hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request["headers"]["X-Signature-256"], expected)
    wrong = "sha256=" + hmac.new(b"not-the-secret", signed, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(request["headers"]["X-Signature-256"], wrong)
    assert json.loads(request["body"])["payload"] == {"snapshot": 7}
    delivery.refresh_from_db()
    assert delivery.state == WebhookDelivery.State.DELIVERED and delivery.attempts == 1 and hook.deliveries.count() == 1


def test_rolled_back_change_sends_nothing(project, receiver, local_allowed, django_capture_on_commit_callbacks):
    Webhook.objects.create(project=project, url=receiver["url"], secret="x", events=["run.finished"])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                notify(event="run.finished", project=project, payload={})
                raise RuntimeError("the change fails")
        except RuntimeError:
            pass
    assert callbacks == [] and not WebhookDelivery.objects.exists() and not receiver["received"]


def test_retries_with_backoff_then_succeeds(project, receiver, local_allowed):
    from django_tasks_db.models import DBTaskResult

    Webhook.objects.create(project=None, url=receiver["url"], secret="x", events=["run.finished"])
    delivery, = notify(event="run.finished", project=project, payload={"run": 1})
    receiver["statuses"].extend([500, 502])
    before = timezone.now()
    assert deliver_webhook.call(delivery.pk) == "retrying"
    retry = DBTaskResult.objects.filter(task_path="ops.tasks.deliver_webhook").order_by("-enqueued_at").first()
    # re-enqueued for later: at least the first backoff after the attempt began. (Not `> enqueued_at`: with the
    # test's 10 ms backoff, a slow enqueue on a loaded machine stamps enqueued_at after run_after.)
    assert retry is not None and retry.run_after >= before + services.retry_delay(1)
    assert deliver_webhook.call(delivery.pk) == "retrying"
    assert deliver_webhook.call(delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and delivery.last_status_code == 200
    assert services.retry_delay(1).total_seconds() < services.retry_delay(3).total_seconds()


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://10.1.2.3/x", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]/x", "http://localhost:8000/x", "ftp://example.com/x"])
def test_inward_urls_are_refused(url):
    with pytest.raises(ValidationError):
        Webhook(url=url, secret="x", events=["run.finished"]).full_clean()


def test_delivery_time_check_defeats_rebinding(project, receiver, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    Webhook.objects.create(url=receiver["url"], secret="x", events=["run.finished"])
    delivery, = notify(event="run.finished", project=project, payload={})
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False  # the name now resolves inward as far as policy goes
    assert deliver_webhook.call(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.state == WebhookDelivery.State.FAILED and "public addresses" in delivery.last_error
    assert not receiver["received"]


def test_unknown_events_are_refused():
    with pytest.raises(ValidationError):
        validators.check_events(["model.exploded"])
    with pytest.raises(ValidationError):
        Webhook(url="https://example.com/hook", secret="x", events=["model.exploded"]).full_clean()
