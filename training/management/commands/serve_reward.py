"""`manage.py serve_reward`: a project's reward model over HTTP in OpenRLHF's remote-reward protocol."""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError

from feedback.models import Project
from training.models import ModelVersion
from training.pipeline.reward import server as reward_server
from training.selectors import newest_reward_model


def servable_reward_model(*, project: Project, version_ref: str | None) -> ModelVersion:
    """The version to serve: `version_ref` (an id or a name in the project), else the project's active reward
    model. Policies and versions their gate rejected are refused: a rejected reward model was judged unfit to
    rank answers, and serving it would hand that judgement to another trainer."""
    if version_ref is None:
        version = newest_reward_model(project=project)
        if version is None:
            raise CommandError(f"Project {project.slug!r} has no active reward model; train one "
                               f"(manage.py train_reward_model --project {project.slug}) or name one with --version.")
        return version
    versions = ModelVersion.objects.filter(project=project)
    version = (versions.filter(pk=int(version_ref)).first() if version_ref.isdigit() else None) \
        or versions.filter(name=version_ref).order_by("-created_at").first()
    if version is None:
        raise CommandError(f"Project {project.slug!r} has no model version {version_ref!r}.")
    if version.kind != ModelVersion.Kind.REWARD:
        raise CommandError(f"{version.name} is a {version.get_kind_display().lower()}, not a reward model; "
                           "only reward models can be served.")
    if version.status == ModelVersion.Status.REJECTED:
        raise CommandError(f"{version.name} was rejected by its gate and is not served.")
    return version


class Command(BaseCommand):
    help = ("Serve a project's reward model over HTTP in OpenRLHF's remote-reward protocol: POST /get_reward "
            '{"query": [...], "prompts": [...]} -> {"rewards": [...]} (for --remote_rm_url, TRL reward_funcs, verl).')

    def create_parser(self, prog_name, subcommand, **kwargs):
        # Here --version names the model to serve; it replaces Django's "print Django's version".
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--version", help="a reward ModelVersion id or name (default: the active reward model)")
        parser.add_argument("--host", default="127.0.0.1",
                            help="address to bind (default 127.0.0.1); any other than loopback requires a token")
        parser.add_argument("--port", type=int, default=8008, help="port (default 8008; 0 picks a free one)")
        parser.add_argument("--token-env", default=None, metavar="NAME",
                            help="environment variable holding the bearer token (default REWARD_SERVER_TOKEN)")
        parser.add_argument("--max-items", type=int, default=256, help="items per request (default 256)")
        parser.add_argument("--max-chars", type=int, default=32_000, help="characters per text (default 32000)")
        parser.add_argument("--max-body-bytes", type=int, default=16 << 20,
                            help="bytes per request body (default 16 MiB)")
        parser.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass (default 16)")
        parser.add_argument("--device", default=None, help="torch device (default: where the model loads)")

    def handle(self, *args, **opts):

        try:
            project = Project.objects.get(slug=opts["project"])
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {opts['project']!r}.") from None
        if not 0 <= opts["port"] <= 65535:
            raise CommandError("--port must be between 0 and 65535")
        for name in ("max_items", "max_chars", "max_body_bytes", "batch_size"):
            if opts[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        version = servable_reward_model(project=project, version_ref=opts["version"])
        token_env = opts["token_env"] or reward_server.DEFAULT_TOKEN_ENV
        token = os.environ.get(token_env) or None
        try:
            reward_server.check_token_policy(opts["host"], token)
        except reward_server.TokenRequired as exc:
            raise CommandError(f"{exc}; put it in ${token_env} (or name another variable with --token-env).") from None

        scorer = self._load(version, batch_size=opts["batch_size"], device=opts["device"])
        limits = reward_server.RequestLimits(max_items=opts["max_items"], max_text_chars=opts["max_chars"],
                                             max_body_bytes=opts["max_body_bytes"])
        app = reward_server.scorer_app(scorer, token=token, limits=limits, info={
            "project": project.slug, "model": version.name, "model_version": version.pk, "sha256": version.sha256})
        try:
            server = reward_server.make_server(app, host=opts["host"], port=opts["port"])
        except OSError as exc:
            raise CommandError(f"cannot listen on {opts['host']}:{opts['port']}: {exc.strerror or exc}") from None
        host = opts["host"] if ":" not in opts["host"] else f"[{opts['host'].strip('[]')}]"
        self.stdout.write(f"Serving reward model {version.name} (version {version.pk}, {version.status}) of "
                          f"{project.slug} at http://{host}:{server.server_port}{reward_server.REWARD_PATH}"
                          f"{' (bearer token required)' if token else ''}")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("stopped")
        finally:
            server.server_close()

    def _load(self, version: ModelVersion, *, batch_size: int, device: str | None):
        """Load once, after checking the files are the ones registered (the manifest's sha256 against the row,
        then every file against the manifest), as `training.scoring` does before scoring."""
        from training.pipeline.registry_files import TamperedModelError, manifest_sha256
        from training.pipeline.reward.scoring import RewardScorer

        try:
            if manifest_sha256(version.path) != version.sha256:
                raise TamperedModelError(f"{version.path}: manifest.json differs from the one registered")
            return RewardScorer(version.path, batch_size=batch_size, device=device)
        except (TamperedModelError, FileNotFoundError) as exc:
            raise CommandError(f"The files of {version.name} fail their integrity check and were not loaded: {exc}") \
                from None
