import json

from rest_framework import serializers

from core.converters import is_project_ref
from feedback import importing
from training import selectors
from training.models import DPORound, ModelVersion, TrainingRun


MAX_CONFIG_KEYS = 64
MAX_CONFIG_BYTES = 64 * 1024
PROJECT_REF_INVALID = "must be a project's numeric id (ASCII digits) or its slug."
CONFIG_TOO_BIG = f"must hold at most {MAX_CONFIG_KEYS} settings and {MAX_CONFIG_BYTES} bytes of JSON."


def validate_project_ref(value: str) -> str:
    """The same rule as the URLs' <ref:…>: '٣' or a 30-digit number never reaches the lookup."""
    if not is_project_ref(value):
        raise serializers.ValidationError(PROJECT_REF_INVALID)
    return value


class ProjectRefField(serializers.CharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=64, validators=[validate_project_ref], **kwargs)


class TrainingRunCreateSerializer(serializers.Serializer):
    project = ProjectRefField(help_text="Project id or slug.")
    kind = serializers.ChoiceField(choices=TrainingRun.Kind.choices)
    config = serializers.DictField(
        required=False, default=dict,
        help_text="Settings of the kind's config dataclass. Each number must be finite, in ASCII digits and within its "
                  "stated range (docs/settings-ranges.md); else a 400 naming the setting, and no run is created.")

    def validate_config(self, value: dict) -> dict:
        if len(value) > MAX_CONFIG_KEYS or len(json.dumps(value, ensure_ascii=False)) > MAX_CONFIG_BYTES:
            raise serializers.ValidationError(CONFIG_TOO_BIG)
        return value


class TrainingRunSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    log_tail = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField(help_text="One flat dict per logged step: [{'step': 1, 'loss': …}, …].")

    class Meta:
        model = TrainingRun
        fields = ["id", "project", "kind", "state", "progress", "config", "snapshot", "base_version", "produced_version",
                  "parent_run", "metrics", "summary", "error", "log_tail", "cancel_requested", "heartbeat_at",
                  "created_at", "started_at", "finished_at"]

    def get_metrics(self, run) -> list[dict]:
        return selectors.run_metrics(run=run)

    def get_log_tail(self, run) -> str:
        return "\n".join(run.log.splitlines()[-40:])


class ModelVersionSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "name", "kind", "status", "project", "parent", "reward_model", "snapshot", "sha256", "config",
                  "metrics", "created_at"]


SCORE_MAX_ITEMS = 64  # one request scores at most this many (prompt, completion) pairs
SCORE_MAX_TEXT_CHARS = 8_000  # per prompt text, chat message content and completion
SCORE_MAX_MESSAGES = 32  # per chat prompt


class ScoreItemSerializer(serializers.Serializer):
    prompt = serializers.JSONField(help_text=f"Text, or a list of at most {SCORE_MAX_MESSAGES} chat messages; "
                                             f"each text at most {SCORE_MAX_TEXT_CHARS} characters.")
    completion = serializers.CharField(max_length=SCORE_MAX_TEXT_CHARS, trim_whitespace=False)

    def validate_prompt(self, value):
        """A string or a chat, checked as an imported prompt is (types, roles, lengths, NUL): never an object
        or a number handed to the tokenizer."""
        if isinstance(value, list) and len(value) > SCORE_MAX_MESSAGES:
            raise serializers.ValidationError(f"Ensure there are no more than {SCORE_MAX_MESSAGES} messages.")
        texts = [value] if isinstance(value, str) else [m.get("content") for m in value if isinstance(m, dict)] \
            if isinstance(value, list) else []
        if any(isinstance(t, str) and len(t) > SCORE_MAX_TEXT_CHARS for t in texts):
            raise serializers.ValidationError(f"Ensure this text has no more than {SCORE_MAX_TEXT_CHARS} characters.")
        if not isinstance(value, (str, list)):
            got = type(value).__name__
            raise serializers.ValidationError(f"must be a string or a list of chat messages, got {got}.")
        try:
            _, messages = importing.clean_prompt(value)
        except importing.RowError as exc:
            raise serializers.ValidationError(f"{exc.field_name} {exc.message}") from None
        return value if messages is None else messages


class ScoreInputSerializer(serializers.Serializer):
    items = ScoreItemSerializer(many=True, allow_empty=False, max_length=SCORE_MAX_ITEMS)


class ScoreOutputSerializer(serializers.Serializer):
    scores = serializers.ListField(child=serializers.FloatField())
    model_version = serializers.IntegerField()


class ActivateInputSerializer(serializers.Serializer):
    project = ProjectRefField(required=False, help_text="Project id or slug; needed for a project-less (default) policy.")


class DPORoundAbandonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="",
                                   help_text="Why the round is abandoned (kept in its error and on the audit trail).")


class DPORoundSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    tasks_complete = serializers.SerializerMethodField(help_text="The round's comparison tasks that are complete.")
    tasks = serializers.SerializerMethodField(help_text="Ids of the comparison tasks it published.")
    produced_version = serializers.SerializerMethodField(help_text="The candidate its DPO run registered, if any.")

    class Meta:
        model = DPORound
        fields = ["id", "project", "state", "policy", "reward_model", "k", "budget", "config", "counts", "tasks",
                  "tasks_complete", "sample_run", "train_run", "produced_version", "snapshot", "error", "created_at",
                  "finished_at"]

    def get_tasks_complete(self, dpo_round) -> int:
        return selectors.round_judged(dpo_round=dpo_round)[0]

    def get_tasks(self, dpo_round) -> list[int]:
        return sorted(dpo_round.tasks.values_list("pk", flat=True))

    def get_produced_version(self, dpo_round) -> int | None:
        return dpo_round.train_run.produced_version_id if dpo_round.train_run_id else None
