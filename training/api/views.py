"""Training API: start, watch and cancel runs; list and use registered model versions."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import ApplicationError, error_responses
from core.permissions import REVIEWER, IsProjectAdmin, has_project_role
from feedback import selectors as feedback_selectors
from training import scoring, selectors, services
from training.api import serializers as s
from training.models import ModelVersion, TrainingRun

ADMIN_ONLY = [IsAuthenticated, IsProjectAdmin]  # IsProjectAdmin is checked on the run or project acted on


class TrainingRunDetailApi(APIView):
    @extend_schema(responses={200: s.TrainingRunSerializer, **error_responses(401, 403, 404)})
    def get(self, request, run_id):
        run = selectors.run_for_reviewer(user=request.user, run_id=run_id)
        return Response(s.TrainingRunSerializer(run).data)


class TrainingRunCancelApi(APIView):
    permission_classes = ADMIN_ONLY

    @extend_schema(request=None, responses={200: s.TrainingRunSerializer, **error_responses(401, 403, 404, 409)})
    def post(self, request, run_id):
        run = selectors.run_for_reviewer(user=request.user, run_id=run_id)
        self.check_object_permissions(request, run)
        return Response(s.TrainingRunSerializer(services.request_cancel(run=run, actor=request.user)).data)


@extend_schema_view(get=extend_schema(responses={200: s.TrainingRunSerializer(many=True), **error_responses(400, 401, 403)}))
class TrainingRunListCreateApi(generics.ListAPIView):
    """GET: runs of the projects you review. POST: start a run (project admins)."""

    serializer_class = s.TrainingRunSerializer
    filterset_fields = ["project", "kind", "state"]
    permission_classes = ADMIN_ONLY

    @extend_schema(request=s.TrainingRunCreateSerializer,
                   responses={201: s.TrainingRunSerializer, **error_responses(400, 401, 403, 404)})
    def post(self, request):
        serializer = s.TrainingRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = feedback_selectors.get_project_for_user(user=request.user, project_ref=serializer.validated_data["project"])
        self.check_object_permissions(request, project)
        run = services.start_training(
            project=project, kind=serializer.validated_data["kind"], config=serializer.validated_data["config"],
            created_by=request.user,
        )
        return Response(s.TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return TrainingRun.objects.none()
        reviewable = [p.pk for p in feedback_selectors.projects_for_user(user=self.request.user)
                      if has_project_role(user=self.request.user, project=p, role=REVIEWER)]
        return selectors.runs_for_user(user=self.request.user).filter(project__in=reviewable).order_by("-id")


@extend_schema_view(get=extend_schema(responses={200: s.ModelVersionSerializer(many=True), **error_responses(400, 401, 403)}))
class ModelVersionListApi(generics.ListAPIView):
    serializer_class = s.ModelVersionSerializer
    filterset_fields = ["kind", "status", "project"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ModelVersion.objects.none()
        return selectors.versions_for_user(user=self.request.user).order_by("-id")


class ModelVersionScoreApi(APIView):
    @extend_schema(request=s.ScoreInputSerializer,
                   responses={200: s.ScoreOutputSerializer, **error_responses(400, 401, 403, 404, 409)})
    def post(self, request, version_id):
        version = selectors.version_for_user(user=request.user, version_id=version_id)
        serializer = s.ScoreInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        scores = scoring.score_with_reward_model(version=version, items=serializer.validated_data["items"])
        return Response({"scores": scores, "model_version": version.pk})


class ModelVersionActivateApi(APIView):
    """Make a policy version the one that samples for a project: publishing from it, and rolling back."""

    permission_classes = ADMIN_ONLY

    @extend_schema(request=s.ActivateInputSerializer,
                   responses={200: s.ModelVersionSerializer, **error_responses(400, 401, 403, 404)})
    def post(self, request, version_id):
        version = selectors.version_for_user(user=request.user, version_id=version_id)
        if version.kind != ModelVersion.Kind.POLICY:
            raise ApplicationError("Only policy versions can be activated.")
        serializer = s.ActivateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ref = serializer.validated_data.get("project") or (version.project.pk if version.project else None)
        if ref is None:
            raise ApplicationError("Name the project this policy should sample for.", extra={"field": "project"})
        project = feedback_selectors.get_project_for_user(user=request.user, project_ref=ref)
        self.check_object_permissions(request, project)
        version = services.activate_policy(version=version, project=project, actor=request.user)
        return Response(s.ModelVersionSerializer(version).data)
