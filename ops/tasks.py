from django.utils import timezone
from django_tasks import task

from ops import services
from ops.models import WebhookDelivery


@task()
def deliver_webhook(delivery_id: int) -> str:
    """Send one delivery; on failure re-enqueue itself with exponential backoff until MAX_ATTEMPTS."""
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or delivery.state != WebhookDelivery.State.PENDING:
        return "skipped"
    if services.attempt_delivery(delivery):
        return "delivered"
    if delivery.state == WebhookDelivery.State.FAILED:
        return "failed"
    deliver_webhook.using(run_after=timezone.now() + services.retry_delay(delivery.attempts)).enqueue(delivery_id)
    return "retrying"
