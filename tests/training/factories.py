"""Rows for tests of what happens to a run (pages, claims, cancels, rounds): inserted as they are, without the
validation and audit of `training.services.start_training`, which is how every door starts a real run."""

from training.models import TrainingRun


def make_run(*, project, kind: str, config: dict | None = None, snapshot=None, parent_run=None, created_by=None,
             base_version=None) -> TrainingRun:
    return TrainingRun.objects.create(project=project, kind=kind, config=config or {}, snapshot=snapshot,
                                      parent_run=parent_run, created_by=created_by, base_version=base_version)
