"""Shared behaviour of the commands that start a TrainingRun: settings from YAML and --set, then
either run it here with a progress bar (default) or hand it to the worker (--queue)."""

from __future__ import annotations

import threading

import yaml
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from tqdm import tqdm

from core.exceptions import ApplicationError
from feedback.models import Project
from training import execution, services
from training.models import TrainingRun


def parse_overrides(pairs: list[str]) -> dict:
    """`--set learning_rate=1e-4 --set use_lora=true` → {"learning_rate": 1e-4, "use_lora": True} (YAML scalars).

    Values are only read here; the run's own parse checks each one (its type, its stated range, finite, ASCII
    digits), so `--set learning_rate=inf` is refused by name like the API's "inf"."""
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--set expects key=value, got {pair!r}")
        try:
            values[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise CommandError(f"--set {key.strip()}: not a YAML value ({exc.__class__.__name__})") from None
    return values


def read_config_file(path: str) -> dict:
    """The settings in a YAML file: a mapping of setting names to values (CommandError otherwise)."""
    try:
        with open(path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CommandError(f"--config {path}: cannot be read as YAML ({exc.__class__.__name__})") from None
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        raise CommandError(f"--config {path}: must be a mapping of setting names to values")
    return config


class RunCommand(BaseCommand):
    kind: str = ""

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--config", help="YAML file with the trainer's settings")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
        parser.add_argument("--queue", action="store_true", help="hand the run to the worker instead of running it here")

    def run_kind(self, opts) -> str:
        return self.kind

    def handle(self, *args, **opts):
        try:
            project = Project.objects.get(slug=opts["project"])
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {opts['project']!r}.") from None
        config = read_config_file(opts["config"]) if opts["config"] else {}
        config.update(parse_overrides(opts["set"]))
        kind = self.run_kind(opts)
        try:
            run = services.start_training(project=project, kind=kind, config=config, enqueue=opts["queue"])
        except ValidationError as exc:
            raise CommandError(f"bad settings: {' '.join(exc.messages)}") from None
        except ApplicationError as exc:  # e.g. the project's queue is full
            raise CommandError(exc.message) from None
        for line in run.log.splitlines():
            self.stderr.write(line)
        if opts["queue"]:
            self.stdout.write(f"queued {kind} run {run.pk}; the worker (manage.py db_worker) runs it")
            return
        state = self.run_here(run, quiet=opts["verbosity"] == 0)
        run.refresh_from_db()
        self.stdout.write(f"{kind} run {run.pk}: {state}")
        if run.produced_version_id:
            self.stdout.write(f"registered model version {run.produced_version_id} ({run.produced_version.name})")
        if state != TrainingRun.State.SUCCEEDED:
            raise CommandError((run.error or state).strip().splitlines()[-1])

    def run_here(self, run: TrainingRun, quiet: bool) -> str:
        outcome: dict = {}

        def execute() -> None:
            try:
                outcome["state"] = execution.execute(run.pk)
            finally:  # the thread's own connection: left open, it would outlive the thread (PostgreSQL sessions)
                connection.close()

        worker = threading.Thread(target=execute, daemon=True)
        worker.start()
        with tqdm(total=100, unit="%", desc=f"{run.kind} run {run.pk}", disable=quiet) as bar:
            while worker.is_alive():
                worker.join(timeout=1.0)
                progress = TrainingRun.objects.filter(pk=run.pk).values_list("progress", flat=True).first() or 0
                bar.update(max(0, int(progress * 100) - bar.n))
        return outcome.get("state", TrainingRun.State.FAILED)
