"""Model registry and training runs (preference snapshots live in feedback.models): every artefact names where it came from."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from core.parsing import validate_finite


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        POLICY = "policy", "Policy"
        REWARD = "reward", "Reward model"

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        ACTIVE = "active", "Active"
        REJECTED = "rejected", "Rejected by its gate"
        RETIRED = "retired", "Retired"

    project = models.ForeignKey(
        "feedback.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="model_versions"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    reward_model = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="policies_trained",
        help_text="For a policy: the reward model it was optimised against.",
    )
    snapshot = models.ForeignKey(
        "feedback.PreferenceSnapshot", null=True, blank=True, on_delete=models.PROTECT, related_name="model_versions"
    )
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64, help_text="sha256 of the manifest of its files.")
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "name"], name="model_version_unique_name"),
            # One active policy per project: two activations racing cannot both commit. (Project-less policies
            # are the bootstrapped defaults; a project may activate one of them, so they stay outside this rule.)
            models.UniqueConstraint(fields=["project"], name="one_active_policy_per_project",
                                    condition=Q(kind="policy", status="active", project__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class TrainingRun(models.Model):
    class Kind(models.TextChoices):
        REWARD = "reward", "Reward model"
        PPO = "ppo", "PPO"
        DPO = "dpo", "DPO"
        RLOO = "rloo", "RLOO"
        GRPO = "grpo", "GRPO"
        PUBLISH = "publish", "Publish samples"
        RETRAIN = "retrain", "Retrain chain"
        DPO_ROUND = "dpo_round", "Iterative DPO round"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey("feedback.Project", on_delete=models.CASCADE, related_name="training_runs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    config = models.JSONField(default=dict, blank=True)
    snapshot = models.ForeignKey(
        "feedback.PreferenceSnapshot", null=True, blank=True, on_delete=models.PROTECT, related_name="training_runs"
    )
    base_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="runs_based_on"
    )
    produced_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="produced_by"
    )
    parent_run = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="child_runs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    summary = models.JSONField(default=dict, blank=True, help_text="Evaluation report and final figures.")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    progress = models.FloatField(default=0.0)
    cancel_requested = models.BooleanField(default=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="run_state_heartbeat")]

    def __str__(self) -> str:
        return f"{self.kind} run {self.pk} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in {self.State.SUCCEEDED, self.State.FAILED, self.State.CANCELLED}


class TrainingRunMetric(models.Model):
    """One logged step of a run: a flat dict of figures (`objective/kl`, `loss` …). A row per step, so the
    worker appends without rewriting what it logged before."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="step_metrics")
    step = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "step"]
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="run_metric_unique_step")]

    def __str__(self) -> str:
        return f"run {self.run_id} step {self.step}"

    def as_row(self) -> dict:
        """The step as the API and the pages show it: {"step": 3, "loss": 0.61, …}."""
        return {"step": self.step, **self.metrics}


class RetrainSchedule(models.Model):
    """When a project retrains by itself: after N new judgements or T hours, if agreement is high enough."""

    class Method(models.TextChoices):
        PPO = "ppo", "PPO"
        DPO = "dpo", "DPO"
        RLOO = "rloo", "RLOO"
        GRPO = "grpo", "GRPO"

    project = models.OneToOneField("feedback.Project", on_delete=models.CASCADE, related_name="retrain_schedule")
    is_enabled = models.BooleanField(default=False)
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.PPO)
    min_new_judgements = models.PositiveIntegerField(default=500, validators=[
        MinValueValidator(1), MaxValueValidator(10_000_000)], help_text="Retrain after this many new judgements (1 to 10,000,000).")
    max_hours = models.FloatField(default=24.0, validators=[MinValueValidator(0.01), MaxValueValidator(8760.0),
                                                            validate_finite],
                                  help_text="Retrain at least this often when new judgements exist (0.01 to 8760 hours).")
    min_agreement = models.FloatField(default=0.6, validators=[MinValueValidator(0.0), MaxValueValidator(1.0),
                                                               validate_finite],
                                      help_text="Do not retrain below this pairwise agreement (0 to 1).")
    last_triggered_at = models.DateTimeField(null=True, blank=True)
    last_judgement_id = models.BigIntegerField(default=0, help_text="Judgements after this id count as new.")
    config = models.JSONField(default=dict, blank=True, help_text="Settings for each step: {'reward': {…}, 'ppo': {…}}.")

    def __str__(self) -> str:
        return f"retrain schedule of {self.project_id}"


class DPORound(models.Model):
    """One round of iterative DPO with people in the loop (`training.pipeline.rounds`):
 the policy's K answers per prompt,
    every pair scored by the reward model; the `budget` most uncertain pairs went to annotators as `tasks`, the
    reward model labelled the rest (JSONL rows in `rows_path`); DPO trains on both once the human share is judged."""

    class State(models.TextChoices):
        SAMPLING = "sampling", "Sampling and scoring"
        WAITING = "waiting_for_judgements", "Waiting for judgements"
        TRAINING = "training", "Training"
        DONE = "done", "Done: a candidate"
        REJECTED = "rejected", "Rejected by the DPO gate"
        FAILED = "failed", "Failed"

    project = models.ForeignKey("feedback.Project", on_delete=models.CASCADE, related_name="dpo_rounds")
    policy = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="dpo_rounds")
    reward_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="dpo_rounds_scored")
    state = models.CharField(max_length=32, choices=State.choices, default=State.SAMPLING)
    k = models.PositiveSmallIntegerField(help_text="Answers sampled per prompt.")
    budget = models.PositiveIntegerField(help_text="Pairs published to annotators (the most uncertain ones).")
    config = models.JSONField(default=dict, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="prompts, pairs, human_pairs, model_pairs …")
    tasks = models.ManyToManyField("feedback.ComparisonTask", blank=True, related_name="dpo_rounds")
    sample_run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="dpo_round_sampled")
    train_run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="dpo_round_trained")
    snapshot = models.ForeignKey("feedback.PreferenceSnapshot", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="dpo_rounds", help_text="The judgements of the human pairs.")
    rows_path = models.CharField(max_length=500, blank=True, help_text="The round's directory under MODEL_DIR.")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    OPEN_STATES = (State.SAMPLING, State.WAITING, State.TRAINING)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Two "DPO round" clicks at once must not open two rounds: the service checks, the database decides.
            models.UniqueConstraint(fields=["project"], name="one_open_dpo_round_per_project",
                                    condition=models.Q(state__in=["sampling", "waiting_for_judgements", "training"])),
        ]

    def __str__(self) -> str:
        return f"DPO round {self.pk} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES
