from training.management.run_command import RunCommand
from training.models import TrainingRun


class Command(RunCommand):
    help = ("Improve the project's policy: PPO, RLOO or GRPO against its newest reward model, or DPO on a "
            "preference snapshot.")
    METHODS = (TrainingRun.Kind.PPO, TrainingRun.Kind.DPO, TrainingRun.Kind.RLOO, TrainingRun.Kind.GRPO)

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--method", choices=[str(kind) for kind in self.METHODS], default="ppo")

    def run_kind(self, opts) -> str:
        return TrainingRun.Kind(opts["method"])
