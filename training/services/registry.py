"""The model registry's writes: register a version (audit, activation and event in one transaction), activate."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from core.audit import record_audit
from core.db import lock_rows
from core.events import announce
from core.models import AuditEvent
from feedback.models import PreferenceSnapshot
from training.models import ModelVersion
from training.services.runs import json_safe

ONLY_POLICIES_ACTIVATE = "Only policies can be activated this way."
NAME_THE_PROJECT = "Name the project whose policy this becomes."
OTHER_PROJECTS_POLICY = "This policy belongs to another project."
CANNOT_ACTIVATE_REJECTED = "{name} was rejected by its gate and cannot be activated."
CANNOT_ACTIVATE_UNEVALUATED = "{name} has no evaluation metrics and cannot be activated."


# --- the model registry ------------------------------------------------------------------------------------------


def check_activatable(*, version: ModelVersion) -> None:
    """The registry's invariants for an active version: never one its gate rejected, never one nothing
    evaluated. The bootstrapped defaults (no project) are the baseline everything is measured against,
    so they are exempt from the second rule."""
    if version.status == ModelVersion.Status.REJECTED:
        raise ValidationError(CANNOT_ACTIVATE_REJECTED.format(name=version.name))
    if version.project_id is not None and not version.metrics:
        raise ValidationError(CANNOT_ACTIVATE_UNEVALUATED.format(name=version.name))


@transaction.atomic
def register_version(
    *, project, name: str, kind: str, path: str, sha256: str, config: dict, metrics: dict,
    parent: ModelVersion | None = None, reward_model: ModelVersion | None = None,
    snapshot: PreferenceSnapshot | None = None, rejected: bool = False, activate: bool = False, actor=None,
) -> ModelVersion:
    """Register a trained version, audit it, announce it and (with `activate`) make it active — in one
    transaction, so a version is never registered without its audit row or half activated.

    `rejected`: its gate refused it; it is kept for the record and can never be activated."""
    status = ModelVersion.Status.REJECTED if rejected else ModelVersion.Status.CANDIDATE
    version = ModelVersion(
        project=project, name=name, kind=kind, path=path, sha256=sha256, config=config, metrics=json_safe(metrics),
        parent=parent, reward_model=reward_model, snapshot=snapshot, status=status,
    )
    version.full_clean()
    version.save()
    record_audit(actor=actor, event_type=AuditEvent.Type.VERSION_REGISTERED, project=project,
                 target=f"model_version:{version.pk}",
                 extra={"name": version.name, "kind": version.kind, "status": status, "activate": activate})
    if activate:
        previous = _active_policy_of(project) if kind == ModelVersion.Kind.POLICY else None
        version = _activate(version=version, project=project)
        if kind == ModelVersion.Kind.POLICY:
            _audit_activation(actor=actor, project=project, version=version, previous=previous, why="registered")
    announce(event="model_version.registered", project=project, payload={
        "model_version": version.pk, "name": version.name, "kind": version.kind, "sha256": version.sha256,
        "status": version.status, "snapshot": snapshot.pk if snapshot else None, "parent": parent.pk if parent else None,
    })
    return version


def _active_policy_of(project) -> ModelVersion | None:
    scope = {"project": project} if project is not None else {"project__isnull": True}
    return ModelVersion.objects.filter(**scope, kind=ModelVersion.Kind.POLICY, status=ModelVersion.Status.ACTIVE).first()


def _audit_activation(*, actor, project, version: ModelVersion, previous: ModelVersion | None, why: str) -> None:
    """One `policy_activated` row per change of a project's active policy: from which version to which, and why
    (registered with auto-promotion, made active by hand — a roll back or forward)."""
    record_audit(actor=actor, event_type=AuditEvent.Type.POLICY_ACTIVATED, project=project,
                 target=f"model_version:{version.pk}",
                 extra={"from": previous.pk if previous else None, "from_name": previous.name if previous else None,
                        "to": version.pk, "to_name": version.name, "why": why})


def _activate(*, version: ModelVersion, project) -> ModelVersion:
    """Make `version` active. A project has one active policy (the others retire), and so has the
    project-less default scope (`project` None); reward models stay active side by side (PPO uses the
    previous one as a held-out judge)."""
    check_activatable(version=version)
    if version.kind == ModelVersion.Kind.POLICY and project is not None:
        # Activations of one project wait for each other; the constraint one_active_policy_per_project refuses
        # whatever would still slip through.
        list(lock_rows(type(project).objects.filter(pk=project.pk)).values_list("pk", flat=True))
    if version.kind == ModelVersion.Kind.POLICY:
        scope = {"project": project} if project is not None else {"project__isnull": True}
        ModelVersion.objects.filter(**scope, kind=ModelVersion.Kind.POLICY, status=ModelVersion.Status.ACTIVE
                                    ).exclude(pk=version.pk).update(status=ModelVersion.Status.RETIRED)
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.ACTIVE)
    version.refresh_from_db()
    return version


@transaction.atomic
def activate_policy(*, version: ModelVersion, project=None, actor=None) -> ModelVersion:
    """Make `version` the policy that samples for `project` (default: its own): rolling back or forward.

    The project's other active policies retire. Rolling back to a project-less default policy just
    retires the project's own, so the default samples for it again."""
    if version.kind != ModelVersion.Kind.POLICY:
        raise ValidationError(ONLY_POLICIES_ACTIVATE)
    project = project or version.project
    if project is None:
        raise ValidationError(NAME_THE_PROJECT)
    if version.project_id not in (None, project.pk):
        raise ValidationError(OTHER_PROJECTS_POLICY)
    previous = _active_policy_of(project)
    version = _activate(version=version, project=project)
    _audit_activation(actor=actor, project=project, version=version, previous=previous, why="by_hand")
    return version


def register_default_policy(*, path) -> ModelVersion:
    """The bootstrapped default policy as the active, project-less policy version (idempotent)."""
    from training.pipeline.models import DEFAULT_POLICY, manifest_sha256

    sha = manifest_sha256(path)
    version, _ = ModelVersion.objects.update_or_create(
        kind=ModelVersion.Kind.POLICY, name=DEFAULT_POLICY,
        defaults={"path": str(path), "sha256": sha, "status": ModelVersion.Status.ACTIVE, "project": None,
                  "config": {"source": "bootstrap_models"}},
    )
    return version


# --- human promotion of candidates --------------------------------------------------------------------------------

NOT_A_CANDIDATE = "{name} is not a candidate policy (status: {status})."


@transaction.atomic
def decide_candidate(*, version: ModelVersion, verdict: str, metrics: dict, actor=None) -> ModelVersion:
    """Record the annotators' verdict on a candidate policy: its human metrics, and with `verdict` "promote"
    the activation (the project's active policy retires), with "reject" the rejection, with "wait" nothing
    more. One transaction; the row is locked and must still be a candidate (two ticks decide once).

    Audit: a promotion is a `policy_promoted` row (from which active policy, `extra.promoted_by`
    "human_judgements" and the human metrics); a rejection a `version_rejected` row."""
    from core.db import lock_rows

    locked = lock_rows(ModelVersion.objects.filter(pk=version.pk)).first()
    if locked is None or locked.status != ModelVersion.Status.CANDIDATE or locked.kind != ModelVersion.Kind.POLICY:
        raise ValidationError(NOT_A_CANDIDATE.format(name=version.name, status=getattr(locked, "status", None)))
    locked.metrics = json_safe({**(locked.metrics or {}), **metrics})
    locked.save(update_fields=["metrics"])
    if verdict == "promote":
        previous = _active_policy_of(locked.project)
        locked = _activate(version=locked, project=locked.project)
        record_audit(actor=actor, event_type=AuditEvent.Type.POLICY_PROMOTED, project=locked.project,
                     target=f"model_version:{locked.pk}",
                     extra={"name": locked.name, "from": previous.pk if previous else None,
                            "from_name": previous.name if previous else None, "promoted_by": "human_judgements",
                            **metrics})
    elif verdict == "reject":
        ModelVersion.objects.filter(pk=locked.pk).update(status=ModelVersion.Status.REJECTED)
        locked.refresh_from_db()
        record_audit(actor=actor, event_type=AuditEvent.Type.VERSION_REJECTED, project=locked.project,
                     target=f"model_version:{locked.pk}",
                     extra={"name": locked.name, "kind": locked.kind, "status": locked.status,
                            "rejected_by": "human_judgements", **metrics})
    return locked
