"""Training API: start, watch and cancel runs; list and use registered model versions."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from django.core.exceptions import PermissionDenied
from django.http import Http404

from core.exceptions import ApplicationError, error_responses
from core.permissions import NEEDS_ROLE, REVIEWER, IsProjectAdmin, has_project_role, scoped_filterset
from feedback import selectors as feedback_selectors
from training import scoring, selectors, services
from training.api.serializers import (
    ActivateInputSerializer,
    DPORoundAbandonSerializer,
    DPORoundSerializer,
    ModelVersionSerializer,
    ScoreInputSerializer,
    ScoreOutputSerializer,
    TrainingRunCreateSerializer,
    TrainingRunSerializer,
)
from training.models import DPORound, ModelVersion, TrainingRun

ADMIN_ONLY = [IsAuthenticated, IsProjectAdmin]  # IsProjectAdmin is checked on the run or project acted on


def require_reviewer_somewhere(request) -> None:
    """Lists of runs and versions are for reviewers and admins: 403 for a user who reviews no project, and 403
    for `?project=` naming a project where the caller is only an annotator. A foreign or missing project in
    `?project=` is not looked at here: the scoped filter answers both with an empty list (no existence oracle)."""
    user = request.user
    if not user.is_superuser and not selectors.reviewable_projects(user=user):
        raise PermissionDenied(NEEDS_ROLE.format(role=REVIEWER))
    ref = request.query_params.get("project", "")
    if ref and len(ref) <= 64:
        try:
            project = feedback_selectors.get_project_for_user(user=user, project_ref=ref)
        except (Http404, ValueError, OverflowError):
            return
        if not has_project_role(user=user, project=project, role=REVIEWER):
            raise PermissionDenied(NEEDS_ROLE.format(role=REVIEWER))


class TrainingRunDetailApi(APIView):
    @extend_schema(responses={200: TrainingRunSerializer, **error_responses(401, 403, 404)})
    def get(self, request, run_id):
        run = selectors.run_for_reviewer(user=request.user, run_id=run_id)
        return Response(TrainingRunSerializer(run).data)


class TrainingRunCancelApi(APIView):
    permission_classes = ADMIN_ONLY

    @extend_schema(request=None, responses={200: TrainingRunSerializer, **error_responses(401, 403, 404, 409)})
    def post(self, request, run_id):
        run = selectors.run_for_reviewer(user=request.user, run_id=run_id)
        self.check_object_permissions(request, run)
        return Response(TrainingRunSerializer(services.request_cancel(run=run, actor=request.user)).data)


@extend_schema_view(get=extend_schema(responses={200: TrainingRunSerializer(many=True), **error_responses(400, 401, 403)}))
class TrainingRunListCreateApi(generics.ListAPIView):
    """GET: runs of the projects you review. POST: start a run (project admins)."""

    serializer_class = TrainingRunSerializer
    filterset_class = scoped_filterset(TrainingRun, ["project", "kind", "state"])
    permission_classes = ADMIN_ONLY

    @extend_schema(request=TrainingRunCreateSerializer,
                   responses={201: TrainingRunSerializer, **error_responses(400, 401, 403, 404)})
    def post(self, request):
        serializer = TrainingRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = feedback_selectors.get_project_for_user(user=request.user, project_ref=serializer.validated_data["project"])
        self.check_object_permissions(request, project)
        run = services.start_training(
            project=project, kind=serializer.validated_data["kind"], config=serializer.validated_data["config"],
            created_by=request.user,
        )
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return TrainingRun.objects.none()
        require_reviewer_somewhere(self.request)
        return selectors.runs_for_user(user=self.request.user).order_by("-id")


@extend_schema_view(get=extend_schema(responses={200: ModelVersionSerializer(many=True), **error_responses(400, 401, 403)}))
class ModelVersionListApi(generics.ListAPIView):
    """Versions of the projects you review, and the default models (reviewers and admins only)."""

    serializer_class = ModelVersionSerializer
    filterset_class = scoped_filterset(ModelVersion, ["kind", "status", "project"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ModelVersion.objects.none()
        require_reviewer_somewhere(self.request)
        return selectors.versions_for_user(user=self.request.user).order_by("-id")


class ModelVersionDetailApi(APIView):
    """One version (reviewers and admins of its project; non-members get 404, annotators 403)."""

    @extend_schema(responses={200: ModelVersionSerializer, **error_responses(401, 403, 404)})
    def get(self, request, version_id):
        return Response(ModelVersionSerializer(selectors.version_for_user(user=request.user, version_id=version_id)).data)


class ModelVersionScoreApi(APIView):
    """Score (prompt, completion) pairs with a reward model (reviewers and admins of its project); bounded:
    at most SCORE_MAX_ITEMS items and SCORE_MAX_TEXT_CHARS characters per text (400 naming the field)."""

    @extend_schema(request=ScoreInputSerializer,
                   responses={200: ScoreOutputSerializer, **error_responses(400, 401, 403, 404, 409)})
    def post(self, request, version_id):
        version = selectors.version_for_user(user=request.user, version_id=version_id)
        serializer = ScoreInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        scores = scoring.score_with_reward_model(version=version, items=serializer.validated_data["items"])
        return Response({"scores": scores, "model_version": version.pk})


class ModelVersionActivateApi(APIView):
    """Make a policy version the one that samples for a project: publishing from it, and rolling back."""

    permission_classes = ADMIN_ONLY

    @extend_schema(request=ActivateInputSerializer,
                   responses={200: ModelVersionSerializer, **error_responses(400, 401, 403, 404)})
    def post(self, request, version_id):
        version = selectors.version_for_user(user=request.user, version_id=version_id)
        if version.kind != ModelVersion.Kind.POLICY:
            raise ApplicationError("Only policy versions can be activated.")
        serializer = ActivateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ref = serializer.validated_data.get("project") or (version.project.pk if version.project else None)
        if ref is None:
            raise ApplicationError("Name the project this policy should sample for.", extra={"field": "project"})
        project = feedback_selectors.get_project_for_user(user=request.user, project_ref=ref)
        self.check_object_permissions(request, project)
        version = services.activate_policy(version=version, project=project, actor=request.user)
        return Response(ModelVersionSerializer(version).data)


@extend_schema_view(get=extend_schema(responses={200: DPORoundSerializer(many=True), **error_responses(400, 401, 403)}))
class DPORoundListApi(generics.ListAPIView):
    """Iterative-DPO rounds of the projects you review (`?project=`, `?state=`). Start or finish one with
    `POST /api/v1/training-runs/` and `"kind": "dpo_round"`; abandon a waiting one with `POST …/{id}/abandon/`."""

    serializer_class = DPORoundSerializer
    filterset_class = scoped_filterset(DPORound, ["project", "state"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return DPORound.objects.none()
        require_reviewer_somewhere(self.request)
        return selectors.rounds_for_user(user=self.request.user).order_by("-id")


class DPORoundDetailApi(APIView):
    @extend_schema(responses={200: DPORoundSerializer, **error_responses(401, 403, 404)})
    def get(self, request, round_id):
        return Response(DPORoundSerializer(selectors.round_for_reviewer(user=request.user, round_id=round_id)).data)


class DPORoundAbandonApi(APIView):
    """End a round whose judgements will not come (project admins): it fails with your name and reason, its open
    tasks are cancelled, and the project can start a new round. 409 naming the state for a round not waiting."""

    permission_classes = ADMIN_ONLY

    @extend_schema(request=DPORoundAbandonSerializer,
                   responses={200: DPORoundSerializer, **error_responses(400, 401, 403, 404, 409)})
    def post(self, request, round_id):
        dpo_round = selectors.round_for_reviewer(user=request.user, round_id=round_id)
        self.check_object_permissions(request, dpo_round)
        serializer = DPORoundAbandonSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dpo_round = services.abandon_dpo_round(dpo_round=dpo_round, actor=request.user,
                                               reason=serializer.validated_data["reason"])
        return Response(DPORoundSerializer(dpo_round).data)
