"""Training API: start, watch and cancel runs; list and use registered model versions."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import ApplicationError, error_responses
from feedback import selectors as feedback_selectors
from training import selectors, services
from training.api import serializers as s
from training.models import ModelVersion, TrainingRun

ADMINS_ONLY = "Only the project's admins may start or cancel training."


class TrainingRunDetailApi(APIView):
    @extend_schema(responses={200: s.TrainingRunSerializer, **error_responses(401, 403, 404)})
    def get(self, request, run_id):
        run = selectors.run_for_reviewer(user=request.user, run_id=run_id)
        return Response(s.TrainingRunSerializer(run).data)


class TrainingRunCancelApi(APIView):
    @extend_schema(request=None, responses={200: s.TrainingRunSerializer, **error_responses(401, 403, 404, 409)})
    def post(self, request, run_id):
        run = selectors.run_for_reviewer(user=request.user, run_id=run_id)
        if not feedback_selectors.is_project_admin(user=request.user, project=run.project):
            raise ApplicationError(ADMINS_ONLY, status_code=status.HTTP_403_FORBIDDEN)
        return Response(s.TrainingRunSerializer(services.request_cancel(run=run)).data)


@extend_schema_view(get=extend_schema(responses={200: s.TrainingRunSerializer(many=True), **error_responses(400, 401, 403)}))
class TrainingRunListCreateApi(generics.ListAPIView):
    """GET: runs of the projects you review. POST: start a run (project admins)."""

    serializer_class = s.TrainingRunSerializer
    filterset_fields = ["project", "kind", "state"]

    @extend_schema(request=s.TrainingRunCreateSerializer,
                   responses={201: s.TrainingRunSerializer, **error_responses(400, 401, 403, 404)})
    def post(self, request):
        serializer = s.TrainingRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = feedback_selectors.get_project_for_user(user=request.user, project_ref=serializer.validated_data["project"])
        if not feedback_selectors.is_project_admin(user=request.user, project=project):
            raise ApplicationError(ADMINS_ONLY, status_code=status.HTTP_403_FORBIDDEN)
        run = services.start_training(
            project=project, kind=serializer.validated_data["kind"], config=serializer.validated_data["config"],
            created_by=request.user,
        )
        return Response(s.TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return TrainingRun.objects.none()
        reviewable = [p.pk for p in feedback_selectors.projects_for_user(user=self.request.user)
                      if feedback_selectors.can_review(user=self.request.user, project=p)]
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
        scores = services.score_with_reward_model(version=version, items=serializer.validated_data["items"])
        return Response({"scores": scores, "model_version": version.pk})


class ModelVersionActivateApi(APIView):
    """Make a policy version the one that samples for a project: publishing from it, and rolling back."""

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
        if version.project_id not in (None, project.pk):
            raise ApplicationError("This policy belongs to another project.")
        if not feedback_selectors.is_project_admin(user=request.user, project=project):
            raise ApplicationError(ADMINS_ONLY, status_code=status.HTTP_403_FORBIDDEN)
        version = services.activate_policy(version=version, project=project, actor=request.user, rollback=True)
        return Response(s.ModelVersionSerializer(version).data)
