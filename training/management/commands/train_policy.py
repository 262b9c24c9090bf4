from training.management.run_command import RunCommand
from training.models import TrainingRun


class Command(RunCommand):
    help = "Improve the project's policy: PPO against its newest reward model, or DPO on a preference snapshot."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--method", choices=["ppo", "dpo"], default="ppo")

    def run_kind(self, opts) -> str:
        return TrainingRun.Kind.PPO if opts["method"] == "ppo" else TrainingRun.Kind.DPO
