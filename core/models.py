"""The audit trail: who did what to which project, when. Append-only.

The project is a string reference ("feedback.Project") so that core imports no app; the row survives
the project (SET_NULL) because an audit trail outlives what it describes.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """Append-only record of who did what to which project, when (imports, exports, training, publishing)."""

    class Type(models.TextChoices):
        PROJECT_CREATED = "project_created", "Project created"
        PROJECT_CHANGED = "project_changed", "Project settings changed"
        MEMBER_ADDED = "member_added", "Member added"
        MEMBER_REMOVED = "member_removed", "Member removed"
        MEMBER_ROLE_CHANGED = "member_role_changed", "Member's role changed"
        PROMPTS_IMPORTED = "prompts_imported", "Prompts imported"
        PREFERENCES_EXPORTED = "preferences_exported", "Preferences exported"
        GOLD_MARKED = "gold_marked", "Gold task marked"
        TASK_ADJUDICATED = "task_adjudicated", "Task adjudicated"
        RUN_STARTED = "run_started", "Training run started"
        RUN_CANCELLED = "run_cancelled", "Training run cancelled"
        VERSION_REGISTERED = "version_registered", "Model version registered"
        SAMPLES_PUBLISHED = "samples_published", "Samples published"
        POLICY_ROLLED_BACK = "policy_rolled_back", "Policy rolled back (rows before policy_activated)"
        POLICY_ACTIVATED = "policy_activated", "Policy made active (from, to)"
        POLICY_PROMOTED = "policy_promoted", "Candidate policy promoted by annotators"
        VERSION_REJECTED = "version_rejected", "Candidate rejected by annotators"
        TOKEN_CREATED = "token_created", "API token created"
        TOKEN_REVOKED = "token_revoked", "API token revoked"
        JUDGEMENT_REVISED = "judgement_revised", "Judgement revised"
        DPO_ROUND_OPENED = "dpo_round_opened", "DPO round opened"
        DPO_ROUND_FINISHED = "dpo_round_finished", "DPO round finished: its DPO run queued"
        DPO_ROUND_FINISH_REFUSED = "dpo_round_finish_refused", "DPO round finish refused"
        DPO_ROUND_ENDED = "dpo_round_ended", "DPO round ended (done, rejected or failed)"
        DPO_ROUND_ABANDONED = "dpo_round_abandoned", "DPO round abandoned by an admin: its open tasks cancelled"

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="audit_events")
    event_type = models.CharField(max_length=40, choices=Type.choices)
    project = models.ForeignKey("feedback.Project", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="audit_events")
    target = models.CharField(max_length=200, blank=True, help_text="What was acted on, e.g. 'run:12'.")
    extra = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.event_type} {self.target}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")


class TokenScope(models.Model):
    """Where an API token works, when someone other than its owner minted it.

    DRF's token is the user's and would open every project the user belongs to, also projects they join later.
    A key a project admin minted for someone else (the admin saw it, so a copy may stay with them) opens only the
    projects that admin administered at that moment: `projects`, fixed at minting and checked on every request
    (core.authentication puts it on the request's user, core.permissions answers "not a member" outside it).
    A token without a row is its owner's own (asked for with their password, made by a superuser or by the
    operator's `add_member` command) and works wherever the owner is a member. Replacing or revoking the token
    deletes its row (cascade), so a scope never outlives its key."""

    token = models.OneToOneField("authtoken.Token", primary_key=True, on_delete=models.CASCADE, related_name="scope")
    projects = models.ManyToManyField("feedback.Project", blank=True, related_name="+",
                                      help_text="The only projects this token opens.")
    minted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+",
                                  help_text="Who created the key (and saw it); not its owner.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"scope of {self.token.user_id}'s token (minted by {self.minted_by_id})"
