from rest_framework import serializers

from training import selectors
from training.models import ModelVersion, TrainingRun


class TrainingRunCreateSerializer(serializers.Serializer):
    project = serializers.CharField(help_text="Project id or slug.")
    kind = serializers.ChoiceField(choices=TrainingRun.Kind.choices)
    config = serializers.DictField(required=False, default=dict, help_text="Settings of the trainer's config dataclass.")


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
PROMPT_SHAPE = "must be a string or a list of chat messages {'role': …, 'content': …}"


class ScoreItemSerializer(serializers.Serializer):
    prompt = serializers.JSONField(help_text=f"Text, or a list of at most {SCORE_MAX_MESSAGES} chat messages; "
                                             f"each text at most {SCORE_MAX_TEXT_CHARS} characters.")
    completion = serializers.CharField(max_length=SCORE_MAX_TEXT_CHARS, trim_whitespace=False)

    def validate_prompt(self, value):
        too_long = f"Ensure this text has no more than {SCORE_MAX_TEXT_CHARS} characters."
        if isinstance(value, str):
            if len(value) > SCORE_MAX_TEXT_CHARS:
                raise serializers.ValidationError(too_long)
            return value
        if not isinstance(value, list) or not value:
            raise serializers.ValidationError(PROMPT_SHAPE)
        if len(value) > SCORE_MAX_MESSAGES:
            raise serializers.ValidationError(f"Ensure there are no more than {SCORE_MAX_MESSAGES} messages.")
        for message in value:
            if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                    and isinstance(message.get("content"), str) and len(message["role"]) <= 32):
                raise serializers.ValidationError(PROMPT_SHAPE)
            if len(message["content"]) > SCORE_MAX_TEXT_CHARS:
                raise serializers.ValidationError(too_long)
        return value


class ScoreInputSerializer(serializers.Serializer):
    items = ScoreItemSerializer(many=True, allow_empty=False, max_length=SCORE_MAX_ITEMS)


class ScoreOutputSerializer(serializers.Serializer):
    scores = serializers.ListField(child=serializers.FloatField())
    model_version = serializers.IntegerField()


class ActivateInputSerializer(serializers.Serializer):
    project = serializers.CharField(required=False, help_text="Project id or slug; needed for a project-less (default) policy.")
