from training.management.run_command import RunCommand
from training.models import TrainingRun


class Command(RunCommand):
    help = "Sample K completions per prompt from the active policy and publish them as comparison tasks."
    kind = TrainingRun.Kind.PUBLISH
