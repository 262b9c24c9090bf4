"""The REST API: validate → call a service or selector → serialize. No business rules here."""

from __future__ import annotations

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, permissions, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from core.exceptions import ApplicationError, error_responses
from core.parsing import BoundedJSONParser
from core.permissions import IsProjectAdmin, IsProjectReviewer, limit_to_token_scope, scoped_filterset
from feedback import exports, importing, selectors, services
from feedback.api.serializers import (
    BoundedAuthTokenSerializer,
    AuthTokenOutputSerializer, ExportQuerySerializer, ImportInputSerializer, ImportOutputSerializer,
    JudgementInputSerializer, JudgementOutputSerializer, NextTaskOutputSerializer, ProjectSerializer,
    ProjectStatsSerializer, judgement_input, judgement_output, next_task_output,
)
from feedback.models import Judgement, Project
from feedback.services import snapshots

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="A retry with the same key returns the first result and stores nothing twice.",
)
PROJECT_CREATE_NEEDS_ADMIN = "Only superusers and project admins may create projects."


class ProjectRoleApi(APIView):
    """An endpoint on one project that needs a role there: non-members get 404 (as for a missing project),
    members without the role 403 (the DRF permission classes of core.permissions)."""

    permission_classes = [permissions.IsAuthenticated]

    def get_project(self, request, project_ref) -> Project:
        project = selectors.get_project_for_user(user=request.user, project_ref=project_ref)
        self.check_object_permissions(request, project)
        return project


@extend_schema_view(
    get=extend_schema(responses={200: ProjectSerializer(many=True), **error_responses(400, 401, 403)}),
    post=extend_schema(responses={201: ProjectSerializer, **error_responses(400, 401, 403)}),
)
class ProjectListCreateApi(generics.ListCreateAPIView):
    serializer_class = ProjectSerializer
    filterset_fields = ["slug"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Project.objects.none()
        return selectors.projects_for_user(user=self.request.user).order_by("id")

    def perform_create(self, serializer):
        if not selectors.may_create_projects(user=self.request.user):
            raise ApplicationError(PROJECT_CREATE_NEEDS_ADMIN, status_code=status.HTTP_403_FORBIDDEN)
        serializer.instance = services.create_project(**serializer.validated_data, actor=self.request.user)


class ProjectDetailApi(APIView):
    @extend_schema(responses={200: ProjectSerializer, **error_responses(401, 403, 404)})
    def get(self, request, project_ref):
        project = selectors.get_project_for_user(user=request.user, project_ref=project_ref)
        return Response(ProjectSerializer(project).data)


class NextTaskApi(APIView):
    @extend_schema(request=None, responses={200: NextTaskOutputSerializer, 204: OpenApiResponse(description="Nothing left for you."),
                                            **error_responses(401, 403, 404)})
    def post(self, request, project_ref):
        project = selectors.get_project_for_user(user=request.user, project_ref=project_ref)
        assignment = services.next_task(project=project, annotator=request.user)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(next_task_output(assignment, selectors.labelled_completions(assignment=assignment)))


class JudgementCreateApi(APIView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "submit"

    @extend_schema(request=JudgementInputSerializer, parameters=[IDEMPOTENCY_HEADER],
                   responses={201: JudgementOutputSerializer, 200: JudgementOutputSerializer,
                              **error_responses(400, 401, 403, 404, 409, 413, 429)})
    def post(self, request, task_id):
        task = selectors.task_for_annotator(user=request.user, task_id=task_id)
        judgement, created = services.submit_judgement(
            task=task, annotator=request.user, idempotency_key=request.headers.get("Idempotency-Key", "")[:128],
            **judgement_input(request.data),
        )
        return Response(judgement_output(judgement), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class TaskSkipApi(APIView):
    @extend_schema(request=None, responses={204: OpenApiResponse(description="Skipped."), **error_responses(401, 403, 404)})
    def post(self, request, task_id):
        task = selectors.task_for_annotator(user=request.user, task_id=task_id)
        services.skip_task(task=task, annotator=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(get=extend_schema(responses={200: JudgementOutputSerializer(many=True), **error_responses(400, 401, 403)}))
class MyJudgementListApi(generics.ListAPIView):
    """The caller's own judgements; nobody sees other annotators' judgements here."""

    serializer_class = JudgementOutputSerializer
    filterset_class = scoped_filterset(Judgement, ["task", "task__project"])  # no existence oracle

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Judgement.objects.none()
        mine = Judgement.objects.filter(annotator=self.request.user)
        return limit_to_token_scope(mine, user=self.request.user, field="task__project_id").order_by("-id")


class ProjectStatsApi(ProjectRoleApi):
    permission_classes = [permissions.IsAuthenticated, IsProjectReviewer]

    @extend_schema(responses={200: ProjectStatsSerializer, **error_responses(401, 403, 404)})
    def get(self, request, project_ref):
        project = self.get_project(request, project_ref)
        return Response(ProjectStatsSerializer(selectors.project_stats(project=project)).data)


class ProjectImportApi(ProjectRoleApi):
    permission_classes = [permissions.IsAuthenticated, IsProjectAdmin]
    parser_classes = [MultiPartParser, FormParser, BoundedJSONParser]  # JSON rows: depth and numbers bounded

    @extend_schema(request=ImportInputSerializer,
                   responses={201: ImportOutputSerializer, **error_responses(400, 401, 403, 404, 413)})
    def post(self, request, project_ref):
        project = self.get_project(request, project_ref)
        serializer = ImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data.get("file")
        if upload is not None:
            fmt = serializer.validated_data.get("format") or importing.detect_format(upload.name)
            if upload.size > settings.IMPORT_MAX_UPLOAD_BYTES:
                raise ApplicationError(f"File too large: the limit is {settings.IMPORT_MAX_UPLOAD_BYTES} bytes.",
                                       status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
            rows = importing.read_rows(upload.file, fmt)
            source = f"api upload {upload.name}"
        else:
            rows = importing.read_rows_from_objects(serializer.validated_data["rows"])
            source = "api rows"
        result = services.import_prompts(project=project, rows=rows, actor=request.user, source=source)
        return Response(ImportOutputSerializer(result.as_dict()).data, status=status.HTTP_201_CREATED)


class _JsonOnlyNegotiation(DefaultContentNegotiation):
    """`?format=` names the export format here, not a DRF renderer: always answer errors in JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ProjectExportApi(ProjectRoleApi):
    """Stream the project's preference pairs (JSONL) and record the snapshot they come from."""

    permission_classes = [permissions.IsAuthenticated, IsProjectAdmin]
    content_negotiation_class = _JsonOnlyNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=["jsonl"], description="Only JSONL streams; Parquet and HF via the command."),
            OpenApiParameter("min_agreement", float), OpenApiParameter("drop_flagged", bool),
            OpenApiParameter("only_trusted", bool), OpenApiParameter("since_snapshot", int),
            OpenApiParameter("model", str, many=True), OpenApiParameter("test_fraction", float),
        ],
        responses={(200, "application/jsonl"): OpenApiResponse(description="One TRL preference row per line."),
                   **error_responses(400, 401, 403, 404)},
    )
    def get(self, request, project_ref):
        project = self.get_project(request, project_ref)
        params = ExportQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        filters = exports.ExportFilters(
            min_agreement=data["min_agreement"], drop_flagged=data["drop_flagged"], only_trusted=data["only_trusted"],
            since_snapshot=data.get("since_snapshot"), models=tuple(data.get("model", [])),
            test_fraction=data["test_fraction"],
        )
        snapshot = services.create_snapshot(project=project, filters=filters, actor=request.user)
        # The rows the snapshot stored (in the transaction that pinned its judgements): the bytes the
        # X-Snapshot-Sha256 header is the sha256 of, and what every later read of this snapshot returns.
        response = StreamingHttpResponse(snapshots.stored_lines(snapshot), content_type="application/jsonl; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-snapshot-{snapshot.pk}.jsonl"'
        response["X-Snapshot-Id"] = str(snapshot.pk)
        response["X-Snapshot-Sha256"] = snapshot.sha256
        return response


class ThrottledObtainAuthToken(ObtainAuthToken):
    """POST username and password, get the API token. Throttled, and locked out by django-axes."""

    serializer_class = BoundedAuthTokenSerializer

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
    permission_classes = [permissions.AllowAny]
    parser_classes = [FormParser, MultiPartParser, BoundedJSONParser]  # ObtainAuthToken's own JSONParser recurses

    @extend_schema(responses={200: AuthTokenOutputSerializer, **error_responses(400, 403, 429)})
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = services.own_token(user=serializer.validated_data["user"])
        return Response({"token": token.key})
