"""The settings of every kind of run, as dataclasses (TRL style: a default and a `help` per field).

The trainers' own settings live beside each trainer (`training.pipeline.<trainer>.config`); publishing
 and the retrain chain have
theirs here. `validate_config` is how a run's settings are checked before the run is queued, so a bad
setting is a 400 (or a command error) naming it, never a failure inside the worker.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from training.models import ModelVersion, TrainingRun
from training.pipeline.dpo.config import DPOConfig
from training.pipeline.fields import PROMPTS_PER_RUN, ROW_ID, SHARE, Range, check_ranges, config_from_dict
from training.pipeline.online.config import GRPOConfig, RLOOConfig
from training.pipeline.ppo.config import PPOConfig
from training.pipeline.reward.config import RewardConfig
from training.pipeline.rounds.config import DPORoundConfig
from training.pipeline.sampling.config import SamplingSettings


STEP_KINDS = (TrainingRun.Kind.REWARD, TrainingRun.Kind.PPO, TrainingRun.Kind.DPO, TrainingRun.Kind.RLOO,
              TrainingRun.Kind.GRPO, TrainingRun.Kind.PUBLISH)
RETRAIN_METHODS = ("ppo", "dpo", "rloo", "grpo")


@dataclasses.dataclass
class PublishConfig(SamplingSettings):
    """Settings of a publish run: which prompts get fresh completions from the active policy, sampled how."""

    prompts: str = dataclasses.field(default="without_completions", metadata={
        "help": "'without_completions' (prompts waiting for samples) or 'all' (new samples for every prompt)."})
    max_prompts: int = dataclasses.field(default=64, metadata={"help": "At most this many prompts per run.",
        "range": PROMPTS_PER_RUN})
    completions_per_prompt: int | None = dataclasses.field(default=None, metadata={
        "help": "K; default: the project's completions_per_task.", "range": Range(2, 4)})
    head_to_head_share: float = dataclasses.field(default=0.25, metadata={
        "help": "Share of prompts where one completion comes from a rival version: the candidate policy awaiting "
                "promotion when there is one, else the previous best version (the policy's parent).", "range": SHARE})
    resample_share: float = dataclasses.field(default=0.25, metadata={
        "help": "While a candidate policy awaits the annotators' verdict: this share of max_prompts is drawn again "
                "at random from the held-out prompts that already have completions (judged or not), and each gets a "
                "head-to-head task (K-1 answers of the active policy, one of a waiting candidate's, candidates in "
                "turn) placed at random in the queue.", "range": SHARE})
    policy_version: int | None = dataclasses.field(default=None, metadata={
        "help": "ModelVersion id of the policy to sample from; default: the project's active policy.", "range": ROW_ID})

    def __post_init__(self):
        self._check_sampling()  # every number within its stated range
        if self.prompts not in {"without_completions", "all"}:
            raise ValueError("prompts must be 'without_completions' or 'all'")


@dataclasses.dataclass
class RetrainConfig:
    """Settings of the retrain chain: snapshot → reward model → PPO → publish (or DPO → publish)."""

    method: str = dataclasses.field(default="ppo", metadata={
        "help": "'ppo', 'rloo' or 'grpo' (each with a new reward model) or 'dpo'."})
    steps: dict = dataclasses.field(default_factory=dict, metadata={
        "help": "Settings of each step by kind: {'reward': {…}, 'ppo': {…}, 'rloo': {…}, 'publish': {…}, …}."})
    trigger: dict = dataclasses.field(default_factory=dict, metadata={
        "help": "Why the schedule started it (new judgements, agreement); informational."})

    def __post_init__(self):
        check_ranges(self)  # `trigger` and `steps` are stored as JSON: finite numbers only
        if self.method not in RETRAIN_METHODS:
            raise ValueError(f"method must be one of {', '.join(RETRAIN_METHODS)}")
        unknown = sorted(set(self.steps) - set(STEP_KINDS))
        if unknown:
            raise ValueError(f"steps: unknown kind(s) of run {', '.join(unknown)}")
        for kind, settings in self.steps.items():  # a bad step setting is refused now, not mid-chain
            try:
                parse_config(kind, settings)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"steps.{kind}: {exc}") from None

    def chain(self) -> list[str]:
        method = TrainingRun.Kind(self.method)
        first = [method] if method == TrainingRun.Kind.DPO else [TrainingRun.Kind.REWARD, method]
        return [*first, TrainingRun.Kind.PUBLISH]


CONFIG_CLASSES: dict[str, type] = {
    TrainingRun.Kind.REWARD: RewardConfig,
    TrainingRun.Kind.PPO: PPOConfig,
    TrainingRun.Kind.DPO: DPOConfig,
    TrainingRun.Kind.RLOO: RLOOConfig,
    TrainingRun.Kind.GRPO: GRPOConfig,
    TrainingRun.Kind.PUBLISH: PublishConfig,
    TrainingRun.Kind.RETRAIN: RetrainConfig,
    TrainingRun.Kind.DPO_ROUND: DPORoundConfig,
}


def parse_config(kind: str, config: dict | None):
    """The run's settings as its dataclass (defaults filled in), or ValueError/TypeError naming the field."""
    if kind not in CONFIG_CLASSES:
        raise ValueError(f"unknown kind of run {kind!r}")
    return config_from_dict(CONFIG_CLASSES[kind], config or {})


def validate_config(kind: str, config: dict | None) -> dict:
    """The settings to store on the run: the dataclass as a dict."""
    return dataclasses.asdict(parse_config(kind, config))


# --- the settings-path rule: a run reads only its own project's models ------------------------------------------

MODEL_PATH_FIELDS = {TrainingRun.Kind.REWARD: ("backbone",), TrainingRun.Kind.PPO: ("policy",),
                     TrainingRun.Kind.DPO: ("policy",), TrainingRun.Kind.RLOO: ("policy",),
                     TrainingRun.Kind.GRPO: ("policy",)}
MODEL_ID_FIELDS = {TrainingRun.Kind.PUBLISH: ("policy_version",)}
REGISTRY_KINDS = ("reward", "ppo", "dpo", "rloo", "grpo", "policy")
NOT_A_MODEL = ("must be a registered model name, or a directory inside MODEL_DIR that is not another project's "
               "registry directory ({detail})")
NOT_YOUR_VERSION = "must be the id of a registered policy of this project (or a default one)"


def check_model_references(kind: str, config: dict, project) -> None:
    """Refuse settings that point a run at models outside MODEL_DIR or at another project's registry directory.

    `config` is the normalised settings (`validate_config`); a retrain checks each of its steps. Raises
    ValidationError({field: message}) naming the field, e.g. {"policy": …} or {"steps.ppo.policy": …}."""
    from django.core.exceptions import ValidationError

    for field, problem in _model_reference_problems(kind, config, project, prefix=""):
        raise ValidationError({field: problem})


def _model_reference_problems(kind: str, config: dict, project, prefix: str):
    if kind == TrainingRun.Kind.RETRAIN:
        for step_kind, step_config in (config.get("steps") or {}).items():
            normalised = validate_config(step_kind, step_config)
            yield from _model_reference_problems(step_kind, normalised, project, prefix=f"{prefix}steps.{step_kind}.")
        return
    for field in MODEL_PATH_FIELDS.get(kind, ()):
        default = getattr(CONFIG_CLASSES[kind], field)
        problem = _path_problem(str(config.get(field, default)), default, project)
        if problem:
            yield f"{prefix}{field}", NOT_A_MODEL.format(detail=problem)
    for field in MODEL_ID_FIELDS.get(kind, ()):
        if config.get(field) is not None and not _visible_versions(project).filter(
                pk=config[field], kind=ModelVersion.Kind.POLICY).exists():
            yield f"{prefix}{field}", NOT_YOUR_VERSION


def _visible_versions(project):
    from django.db.models import Q

    return ModelVersion.objects.filter(Q(project=project) | Q(project__isnull=True))


def _path_problem(value: str, default: str, project) -> str | None:
    """None when `value` may be loaded by a run of `project`, else why not."""
    from django.conf import settings

    if value == default or _visible_versions(project).filter(name=value).exists():
        return None
    if ModelVersion.objects.filter(name=value).exists():
        return "another project's model"
    model_dir = Path(settings.MODEL_DIR).resolve()
    if "\x00" in value or value.startswith("~"):
        return "not a plain path"
    if Path(value).is_absolute():
        candidates = [Path(value)]
    elif len(Path(value).parts) == 1 and value not in {".", ".."}:
        # a bare name: the loader tries it relative to the working directory first, then under MODEL_DIR
        candidates = [model_dir / value] + ([Path(value)] if Path(value).is_dir() else [])
    else:
        return "a relative path; give an absolute path or a bare name under MODEL_DIR"
    for candidate in candidates:
        problem = _directory_problem(candidate.resolve(), model_dir, project)
        if problem:
            return problem
    return None


def _directory_problem(path: Path, model_dir: Path, project) -> str | None:
    if not path.is_relative_to(model_dir) or path == model_dir:
        return "outside MODEL_DIR"
    registry = model_dir / "registry"
    if path == registry:
        return "the registry itself"
    if not path.is_relative_to(registry):
        return None
    top = path.relative_to(registry).parts[0]
    kinds = "|".join(REGISTRY_KINDS)
    if re.fullmatch(rf"(?:{kinds})-{re.escape(project.slug)}-run\d+", top):
        return None
    own_paths = {Path(p).resolve() for p in _visible_versions(project).values_list("path", flat=True) if p}
    if any(path == p or path.is_relative_to(p) for p in own_paths):
        return None
    return "another project's registry directory"
