"""Webhooks: URLs that receive a signed POST when a snapshot, model version, run or retrain finishes."""

from django.db import models

from ops.validators import EVENTS, check_events, check_url


class Webhook(models.Model):
    project = models.ForeignKey("feedback.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="webhooks", help_text="Empty: events of every project.")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200, help_text="Shared secret of the HMAC-SHA256 signature.")
    events = models.JSONField(default=list, help_text=f"Any of: {', '.join(EVENTS)}.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.url

    def clean(self):
        check_events(self.events)
        check_url(self.url)


class WebhookDelivery(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64)
    event_id = models.UUIDField()
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
