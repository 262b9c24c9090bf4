from django.conf import settings
from django.db import models
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer

from core.fields import AsciiFloatField, AsciiIntegerField
from feedback.models import Judgement, Project
from feedback.services.leases import lease_token

MAX_RANKING_GROUPS = 16  # more than any task's completions; the service checks the labels themselves
MAX_LABEL_CHARS = 16
RANKING_SHAPE = ('must be a list of at most {groups} groups, best first, each a label or a list of labels '
                 '(strings of at most {chars} characters): [["a"], ["b", "c"]].')
MAX_EXPORT_MODELS = 32
LEASE_TOKEN_LIMIT = 2000  # a signed, compressed note of a lease is ~150 characters
MAX_DB_ID = 10**18 - 1  # fits every database's 64-bit integer (see core.converters)


def _is_label(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_LABEL_CHARS and "\x00" not in value


def validate_ranking_shape(value):
    """Bound the ranking's size and types before the service maps labels to completions."""
    ok = isinstance(value, list) and 0 < len(value) <= MAX_RANKING_GROUPS and all(
        _is_label(group) or (isinstance(group, list) and 0 < len(group) <= MAX_RANKING_GROUPS
                             and all(_is_label(label) for label in group))
        for group in value
    )
    if not ok:
        raise serializers.ValidationError(RANKING_SHAPE.format(groups=MAX_RANKING_GROUPS, chars=MAX_LABEL_CHARS))
    return value


MAX_INSTRUCTIONS_CHARS = 20_000


class ProjectSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.PositiveSmallIntegerField: AsciiIntegerField, models.PositiveIntegerField: AsciiIntegerField,
        models.IntegerField: AsciiIntegerField, models.FloatField: AsciiFloatField,
    }

    class Meta:
        model = Project
        fields = ["id", "slug", "name", "instructions", "completions_per_task", "overlap", "max_overlap",
                  "agreement_threshold", "lease_seconds", "gold_rate", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"instructions": {"max_length": MAX_INSTRUCTIONS_CHARS}}


class CompletionOutputSerializer(serializers.Serializer):
    label = serializers.CharField()
    text = serializers.CharField()


class NextTaskOutputSerializer(serializers.Serializer):
    task = serializers.IntegerField(source="task_id")
    project = serializers.IntegerField(source="project_id")
    prompt = serializers.JSONField(source="task.prompt.payload")
    completions = CompletionOutputSerializer(many=True)
    lease_expires_at = serializers.DateTimeField(source="leased_until")
    lease_token = serializers.SerializerMethodField(help_text="Send it back with the judgement: a ranking that "
                                                    "arrives after the lease ran out is then stored when the task "
                                                    "still has a free place.")

    def get_lease_token(self, assignment) -> str:
        return lease_token(assignment)


_DATETIME = serializers.DateTimeField()  # DRF's rendering of datetimes (ISO 8601, "Z"), shared by the fast paths


def next_task_output(assignment, completions: list[dict]) -> dict:
    """What NextTaskOutputSerializer gives, built directly: the hottest response skips DRF's field machinery."""
    return {"task": assignment.task_id, "project": assignment.project_id, "prompt": assignment.task.prompt.payload,
            "completions": completions, "lease_expires_at": _DATETIME.to_representation(assignment.leased_until),
            "lease_token": lease_token(assignment)}


def judgement_output(judgement) -> dict:
    """What JudgementOutputSerializer gives (the schema documents that one), built directly."""
    return {"id": judgement.pk, "task": judgement.task_id, "ranking": judgement.ranking_labels, "flags": judgement.flags,
            "confidence": judgement.confidence, "comment": judgement.comment,
            "seconds_spent": judgement.seconds_spent, "created_at": _DATETIME.to_representation(judgement.created_at)}


class JudgementInputSerializer(serializers.Serializer):
    ranking = serializers.JSONField(help_text='Groups of labels, best first; inner lists are ties: [["a"], ["b", "c"]].',
                                    validators=[validate_ranking_shape])
    flags = serializers.ListField(child=serializers.CharField(max_length=32), required=False, default=list, max_length=4)
    confidence = AsciiIntegerField(required=False, allow_null=True, min_value=1, max_value=5)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000, trim_whitespace=False)
    lease_token = serializers.CharField(required=False, allow_blank=True, default="", max_length=LEASE_TOKEN_LIMIT,
                                        help_text="The lease_token next-task gave with this task.")


def _is_plain_flag(flag) -> bool:
    return type(flag) is str and 0 < len(flag) <= 32 and flag.isascii() and flag == flag.strip() and "\x00" not in flag


def judgement_input(data) -> dict:
    """What JudgementInputSerializer(data=data) validates to, built directly for the everyday body (a JSON object
    with a well-shaped ranking, ASCII flags, an integer confidence, no comment). Anything else, every error
    included, goes through the serializer, so messages and edge cases stay the serializer's own."""
    if type(data) is dict:
        ranking, flags = data.get("ranking"), data.get("flags", [])
        confidence, comment = data.get("confidence"), data.get("comment", "")
        token = data.get("lease_token", "")
        try:
            validate_ranking_shape(ranking)
            plain = (type(flags) is list and len(flags) <= 4 and all(_is_plain_flag(f) for f in flags)
                     and (confidence is None or (type(confidence) is int and 1 <= confidence <= 5))
                     and comment == "" and type(token) is str and len(token) <= LEASE_TOKEN_LIMIT and "\x00" not in token)
        except serializers.ValidationError:
            plain = False
        if plain:
            validated = {"ranking": ranking, "flags": flags, "comment": "", "lease_token": token}
            if "confidence" in data:
                validated["confidence"] = confidence
            return validated
    serializer = JudgementInputSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class JudgementOutputSerializer(serializers.ModelSerializer):
    task = serializers.IntegerField(source="task_id")
    ranking = serializers.JSONField(source="ranking_labels")

    class Meta:
        model = Judgement
        fields = ["id", "task", "ranking", "flags", "confidence", "comment", "seconds_spent", "created_at"]


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField(required=False, help_text="A JSONL, CSV or Parquet file.")
    format = serializers.ChoiceField(choices=["jsonl", "csv", "parquet"], required=False)
    rows = serializers.ListField(child=serializers.JSONField(), required=False,
                                 max_length=settings.IMPORT_MAX_ROWS_PER_REQUEST,
                                 help_text="Rows as in a JSONL file, when not uploading a file.")

    def validate(self, attrs):
        if bool(attrs.get("file")) == bool(attrs.get("rows")):
            raise serializers.ValidationError({"file": "Send either a file or rows, not both and not neither."})
        return attrs


class ImportOutputSerializer(serializers.Serializer):
    prompts_created = serializers.IntegerField()
    completions_created = serializers.IntegerField()
    tasks_created = serializers.IntegerField()
    rows_skipped = serializers.IntegerField()


class ProjectStatsSerializer(serializers.Serializer):
    tasks_total = serializers.IntegerField()
    tasks_open = serializers.IntegerField()
    tasks_complete = serializers.IntegerField()
    judgements_done = serializers.IntegerField()
    judgements_needed = serializers.IntegerField()
    progress = serializers.FloatField()
    annotators = serializers.IntegerField()
    prompts_without_tasks = serializers.IntegerField()


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["jsonl"], default="jsonl")
    min_agreement = AsciiFloatField(default=0.0, min_value=0.0, max_value=1.0)
    drop_flagged = serializers.BooleanField(default=False)
    only_trusted = serializers.BooleanField(default=False)
    since_snapshot = AsciiIntegerField(required=False, min_value=1, max_value=MAX_DB_ID)
    model = serializers.ListField(child=serializers.CharField(max_length=200), required=False,
                                  max_length=MAX_EXPORT_MODELS)
    test_fraction = AsciiFloatField(default=0.1, min_value=0.0, max_value=0.9)


class AuthTokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()


class BoundedAuthTokenSerializer(AuthTokenSerializer):
    """Bounded before authentication: django-axes records failed usernames in a 255-character column, which
    PostgreSQL enforces (a 5,000-character username was a 500 there)."""

    username = serializers.CharField(label="Username", max_length=150, write_only=True)
    password = serializers.CharField(label="Password", max_length=4096, style={"input_type": "password"},
                                     trim_whitespace=False, write_only=True)
