"""The tables of the annotation platform. Models hold data and invariants; writes live in services."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from core.parsing import validate_finite

LABELS = "abcd"  # anonymous labels shown to annotators, by display position

# The one statement of each project setting's range (both ends included): the fields' validators (so the API's
# serializer, the settings form, the admin and `create_project` refuse what is outside), the table's check
# constraints (so no write stores it) and docs/settings-ranges.md read it from here.
PROJECT_SETTING_RANGES = {
    "completions_per_task": (2, 4), "overlap": (1, 50), "max_overlap": (1, 50), "agreement_threshold": (0.0, 1.0),
    "lease_seconds": (30, 24 * 3600), "gold_rate": (0.0, 1.0),
}


def _within(name: str) -> list:
    lo, hi = PROJECT_SETTING_RANGES[name]
    bounds = [MinValueValidator(lo), MaxValueValidator(hi)]
    return [*bounds, validate_finite] if isinstance(lo, float) else bounds


def _range_constraints() -> list:
    checks = []
    for name, (lo, hi) in PROJECT_SETTING_RANGES.items():
        within = Q(**{f"{name}__gte": lo, f"{name}__lte": hi})
        checks.append(models.CheckConstraint(condition=within | Q(**{f"{name}__isnull": True}) if name == "max_overlap"
                                             else within, name=f"project_{name}_in_range"))
    return checks


class Project(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, help_text="Markdown shown to annotators (rendered safely).")
    completions_per_task = models.PositiveSmallIntegerField(
        default=2, validators=_within("completions_per_task"),
        help_text="K: completions shown side by side in one comparison task (2–4).",
    )
    overlap = models.PositiveSmallIntegerField(
        default=3, validators=_within("overlap"),
        help_text="Judgements wanted per task, each from a different annotator.",
    )
    max_overlap = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=_within("max_overlap"),
        help_text="Adaptive overlap: when set above `overlap`, a task whose judges disagree is served again, "
        "up to this many judgements; one whose judges agree stops at `overlap`.",
    )
    agreement_threshold = models.FloatField(
        default=0.75, validators=_within("agreement_threshold"),
        help_text="Adaptive overlap: below this mean pair agreement a task asks for another judgement.",
    )
    lease_seconds = models.PositiveIntegerField(
        default=600, validators=_within("lease_seconds"),
        help_text="How long an annotator holds a task before it returns to the pool.",
    )
    gold_rate = models.FloatField(
        default=0.0, validators=_within("gold_rate"),
        help_text="Share of served tasks that are gold tasks with a known answer.",
    )
    auto_promote = models.BooleanField(
        default=False, db_default=False,  # a database default: rows written without the field (old code) are False
        help_text="Make a new policy active as soon as it passes its automatic gate. Off (the default): it "
        "stays a candidate until annotators' head-to-head judgements against the active policy promote it.",
    )
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = _range_constraints()

    def __str__(self) -> str:
        return self.slug

    def role_of(self, user) -> str | None:
        """The user's role here ("annotator", "reviewer", "admin"), or None; superusers are admins everywhere.
        Read fresh on every call, so a role change takes effect at once (core.permissions asks this)."""
        if user.is_superuser:
            return Membership.Role.ADMIN
        return Membership.objects.filter(user=user, project=self).values_list("role", flat=True).first()

    def clean(self):
        from django.core.exceptions import ValidationError

        if self.max_overlap is not None and self.max_overlap < self.overlap:
            raise ValidationError({"max_overlap": "must be at least `overlap` (the minimum number of judgements)"})


class Membership(models.Model):
    class Role(models.TextChoices):
        ANNOTATOR = "annotator", "Annotator"
        REVIEWER = "reviewer", "Reviewer"
        ADMIN = "admin", "Admin"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    trust = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Weight of this annotator's judgements in consensus (from gold accuracy and agreement).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


# Foreign keys marked `db_index=False` below are served by a unique index that leads with the same
# column; an index of their own would only cost every insert (the bulk import writes millions of rows).


def split_key_of(external_id: str, pk: int) -> str:
    """What a prompt's held-out split hashes (`feedback.quality.split_of`) and export rows name it by (`prompt_id`):
    its external id, else `prompt-<pk>`. The export, the reward model's snapshot, PPO's held-out prompts, a DPO
    round and publishing's duels all split by this one key, so a prompt held out in one is held out in all."""
    return external_id or f"prompt-{pk}"


class Prompt(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts",
                                db_index=False)  # prompt_unique_content leads with it
    external_id = models.CharField(max_length=200, blank=True, help_text="The id in the imported file.")
    text = models.TextField(help_text="Plain-text prompt, or the chat rendered as text.")
    messages = models.JSONField(null=True, blank=True, help_text="Chat messages [{role, content}], if a chat.")
    content_hash = models.CharField(max_length=64, help_text="sha256 of the canonical prompt.")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="prompt_unique_content"),
            models.UniqueConstraint(
                fields=["project", "external_id"], condition=~Q(external_id=""), name="prompt_unique_external_id"
            ),
        ]

    def __str__(self) -> str:
        return self.external_id or f"prompt {self.pk}"

    @property
    def payload(self):
        """What a client sees: the chat messages when there are any, else the text."""
        return self.messages if self.messages else self.text

    @property
    def split_key(self) -> str:
        """The key every held-out split hashes (see `split_key_of`)."""
        return split_key_of(self.external_id, self.pk)


class Completion(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions",
                               db_index=False)  # completion_unique leads with it
    text = models.TextField()
    model_name = models.CharField(max_length=200, blank=True)
    model_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="completions"
    )
    generation = models.JSONField(default=dict, blank=True, help_text="Sampling settings that produced it.")
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prompt", "content_hash"], name="completion_unique")]

    def __str__(self) -> str:
        return f"completion {self.pk} of {self.prompt_id}"


class ComparisonTask(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        COMPLETE = "complete", "Complete"
        CANCELLED = "cancelled", "Cancelled"

    # Keeps its own index although task_browse_status leads with project too: on SQLite (project_id, rowid) is the
    # index that pages a project's tasks in id order (the task browser's unfiltered list) without a sort.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="tasks")
    completions = models.ManyToManyField(Completion, related_name="tasks", through="TaskCompletion")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    judgements_needed = models.PositiveSmallIntegerField(default=3)
    judgements_done = models.PositiveSmallIntegerField(default=0)
    # Submitted judgements plus live leases: a task is offered while this is below the need.
    slots_taken = models.PositiveSmallIntegerField(default=0)
    priority = models.IntegerField(default=0, help_text="Lower is served first.")
    is_gold = models.BooleanField(default=False)
    gold_ranking = models.JSONField(null=True, blank=True, help_text="Known answer of a gold task.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # The queue: open tasks of a project in serving order. Partial, so finished tasks cost
            # nothing and picking the next task stays flat as the project grows to millions.
            models.Index(
                fields=["project", "priority", "id"], condition=Q(status="open", is_gold=False), name="task_queue_open"
            ),
            models.Index(fields=["project", "id"], condition=Q(status="open", is_gold=True), name="task_gold_open"),
            # The data browser's status and gold filters walk these in id order (keyset pages).
            models.Index(fields=["project", "status", "id"], name="task_browse_status"),
            models.Index(fields=["project", "is_gold", "id"], name="task_browse_gold"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(judgements_done__lte=models.F("judgements_needed")), name="task_done_within_need"
            ),
        ]

    def __str__(self) -> str:
        return f"task {self.pk}"


class TaskCompletion(models.Model):
    """A completion shown in a comparison task: the table Django created for `ComparisonTask.completions`,
    declared so that its task column has no index of its own (the unique (task, completion) index leads with it)."""

    comparisontask = models.ForeignKey(ComparisonTask, on_delete=models.CASCADE, related_name="+", db_index=False)
    completion = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")

    class Meta:
        db_table = "feedback_comparisontask_completions"
        # unique_together, not a UniqueConstraint: the index Django made for the implicit table keeps its name.
        unique_together = [("comparisontask", "completion")]


class Assignment(models.Model):
    """A lease of one task to one annotator; it also fixes the random label order they saw."""

    class State(models.TextChoices):
        LEASED = "leased", "Leased"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"

    task = models.ForeignKey(ComparisonTask, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    state = models.CharField(max_length=16, choices=State.choices, default=State.LEASED)
    label_order = models.JSONField(help_text="Completion ids in display order: label a, b, c, d.")
    leased_at = models.DateTimeField()
    leased_until = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "annotator"], name="assignment_once_per_annotator")]
        indexes = [
            models.Index(fields=["annotator", "project", "state"], name="assignment_by_annotator"),
            models.Index(fields=["project", "leased_until"], condition=Q(state="leased"), name="assignment_live"),
        ]

    def label_map(self) -> dict[str, int]:
        return {LABELS[i]: cid for i, cid in enumerate(self.label_order)}

    def labels_sorted_by_completion_id(self) -> list[str]:
        """This annotator's labels, ordered by the completion id they stand for (e.g. ["c", "a", "b"]):
        handy to state "the lower id wins" in anonymous labels."""
        by_id = {cid: LABELS[i] for i, cid in enumerate(self.label_order)}
        return [by_id[cid] for cid in sorted(by_id)]


class Judgement(models.Model):
    class Flag(models.TextChoices):
        ALL_BAD = "all_bad", "All bad"
        UNSAFE = "unsafe", "Unsafe"

    task = models.ForeignKey(ComparisonTask, on_delete=models.CASCADE, related_name="judgements")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgements")
    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="judgement")
    ranking = models.JSONField(help_text="Completion ids, best first; inner lists are ties.")
    ranking_labels = models.JSONField(help_text="The ranking as submitted, in the annotator's labels.")
    flags = models.JSONField(default=list, blank=True)
    confidence = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    comment = models.TextField(blank=True)
    seconds_spent = models.FloatField()
    idempotency_key = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="judgement_once_per_annotator"),
            models.UniqueConstraint(
                fields=["annotator", "idempotency_key"], condition=~Q(idempotency_key=""),
                name="judgement_idempotency_key",
            ),
        ]
        indexes = [models.Index(fields=["annotator", "created_at"], name="judgement_by_annotator")]

    def __str__(self) -> str:
        return f"judgement {self.pk} on task {self.task_id}"


class Adjudication(models.Model):
    """A reviewer's decision on a disputed task, stored beside (never over) the annotators' judgements."""

    task = models.OneToOneField(ComparisonTask, on_delete=models.CASCADE, related_name="adjudication")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="adjudications")
    ranking = models.JSONField(help_text="Completion ids, best first; inner lists are ties.")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)


class PreferenceSnapshot(models.Model):
    """A frozen set of judgements and the rows made from them, which an export holds and a reward model or DPO
    run learns from.

    Its table was `training_preferencesnapshot` until the model moved here (migrations keep the rows).
    Its rows are materialised when it is made (`SnapshotRowChunk`, written in the transaction that pins its
    judgements), so every reader gets the same bytes forever, whatever is adjudicated, marked gold, trusted or
    revised later; `sha256` is the sha256 of those bytes (the JSONL a download returns).
    A snapshot covers its judgements only when `state` is complete: at once for one without files (training
    runs, the streamed API export), once its files were written whole for a file export.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending: files being written"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed: files not written"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="snapshots")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    judgement_ids = models.JSONField(default=list, help_text="The judgements it holds, as runs [first id, last id].")
    filters = models.JSONField(default=dict, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="pairs, train/test pairs, prompts, judgements …")
    agreement = models.FloatField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True,
                              help_text="sha256 of its rows as JSONL bytes: what a download returns, byte for byte.")
    judgements_sha256 = models.CharField(
        max_length=64, blank=True, db_index=True,
        help_text="sha256 of its judgements' ids and rankings: the same judgements give the same value.")
    rows_stored = models.BooleanField(
        default=False, help_text="Its rows are materialised (false only for snapshots made before rows were stored, "
        "until their first read stores them).")
    path = models.CharField(max_length=500, blank=True, help_text="Where its export files live.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    error = models.TextField(blank=True, help_text="Why writing its files failed.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"snapshot {self.pk} of {self.project_id} ({self.sha256[:12]})"

    @property
    def is_complete(self) -> bool:
        return self.state == self.State.COMPLETE


class SnapshotRowChunk(models.Model):
    """A run of a snapshot's rows as they were when it was made: JSON lines (the exact bytes its sha256 covers),
    gzip-compressed. Rows live beside the snapshot, not in its row, so listing snapshots never loads them;
    in chunks, so neither writing nor reading a large snapshot holds all of it in memory."""

    # No index of its own: the unique (snapshot, seq) index leads with it.
    snapshot = models.ForeignKey(PreferenceSnapshot, on_delete=models.CASCADE, related_name="row_chunks",
                                 db_index=False)
    seq = models.PositiveIntegerField()
    rows = models.PositiveIntegerField()
    jsonl_gz = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["snapshot", "seq"], name="snapshot_row_chunk_seq")]
