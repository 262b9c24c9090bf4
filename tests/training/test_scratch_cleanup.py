"""What a killed worker leaves on disk goes away with the maintenance tick: the `accelerate launch` scratch
directory and the half-written registry directory of a run that is over. A live run's files, registered models
and anything else under MODEL_DIR stay."""

import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from training import services, tasks
from training.models import TrainingRun
from training.runners.base import registry_dir

pytestmark = pytest.mark.django_db


def leftovers_of(run: TrainingRun, model_dir: Path) -> list[Path]:
    """The two directories a run leaves when its worker is killed mid-way, named as the code names them: the launch
    scratch (`tempfile.mkdtemp(prefix=f"run{pk}-")`) and `save_model_atomic`'s temporary twin of the registry dir."""
    (model_dir / "launch").mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"run{run.pk}-", dir=model_dir / "launch"))
    (scratch / "output.log").write_text("step 3 of 8\n")
    dest = registry_dir("ppo", run)
    half_written = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:12]}"
    half_written.mkdir(parents=True)
    (half_written / "model.safetensors").write_bytes(b"\0" * 64)
    return [scratch, half_written]


def test_a_killed_workers_leftovers_go_and_a_live_runs_stay(project, settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    model_dir = Path(settings.MODEL_DIR)
    killed = services.start_training(project=project, kind=TrainingRun.Kind.PPO, config={}, enqueue=False)
    live = services.start_training(project=project, kind=TrainingRun.Kind.PPO, config={}, enqueue=False)
    TrainingRun.objects.filter(pk__in=[killed.pk, live.pk]).update(state=TrainingRun.State.RUNNING)
    TrainingRun.objects.filter(pk=killed.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    TrainingRun.objects.filter(pk=live.pk).update(heartbeat_at=timezone.now())
    killed_files, live_files = leftovers_of(killed, model_dir), leftovers_of(live, model_dir)
    registered = model_dir / "registry" / f"ppo-{project.slug}-run{killed.pk}-20261201T000000-0123abcd"
    registered.mkdir()  # a finished model of the same run: never touched
    other = model_dir / "launch" / "notes"
    other.mkdir()

    result = tasks.run_maintenance()

    killed.refresh_from_db()
    assert killed.state == TrainingRun.State.FAILED  # fail_stale_runs ended it first
    assert not any(path.exists() for path in killed_files)
    assert sorted(result["scratch_removed"]) == sorted(str(p.relative_to(model_dir)) for p in killed_files)
    assert all(path.exists() for path in live_files) and registered.is_dir() and other.is_dir()


def test_nothing_under_model_dir_is_no_work(project, settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "absent"
    assert services.remove_orphaned_scratch() == []
