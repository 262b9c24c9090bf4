from training.management.run_command import RunCommand
from training.models import TrainingRun


class Command(RunCommand):
    help = "Train a reward model on a new preference snapshot of the project (TRL RewardTrainer) and register it."
    kind = TrainingRun.Kind.REWARD
