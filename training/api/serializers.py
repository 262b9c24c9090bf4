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


class ScoreItemSerializer(serializers.Serializer):
    prompt = serializers.JSONField(help_text="Text, or a list of chat messages.")
    completion = serializers.CharField(max_length=100_000, trim_whitespace=False)


class ScoreInputSerializer(serializers.Serializer):
    items = ScoreItemSerializer(many=True, allow_empty=False, max_length=256)


class ScoreOutputSerializer(serializers.Serializer):
    scores = serializers.ListField(child=serializers.FloatField())
    model_version = serializers.IntegerField()


class ActivateInputSerializer(serializers.Serializer):
    project = serializers.CharField(required=False, help_text="Project id or slug; needed for a project-less (default) policy.")
