from django.core.management.base import BaseCommand

from training import services
from training.tasks import ensure_maintenance_scheduled


class Command(BaseCommand):
    help = "Start the retraining chain for every project whose schedule is due (idempotent); fail stale runs."

    def add_arguments(self, parser):
        parser.add_argument("--schedule", action="store_true",
                            help="also make sure the worker's self-rescheduling maintenance task is queued")

    def handle(self, *args, **opts):
        failed = services.fail_stale_runs()
        runs = services.retrain_if_due()
        for run in runs:
            self.stdout.write(f"started retrain run {run.pk} for {run.project.slug}")
        if not runs:
            self.stdout.write("no retraining due")
        if failed:
            self.stdout.write(f"marked {failed} stale run(s) failed")
        if opts["schedule"] and ensure_maintenance_scheduled():
            self.stdout.write("queued the maintenance task (runs every minute in the worker)")
