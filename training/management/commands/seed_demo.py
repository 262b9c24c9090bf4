"""A demo project with prompts, hand-written completions and demo users; idempotent.

Prompts without completions wait for the default policy: when it is bootstrapped, a publish run is
queued so the worker samples completions for them (they then appear as new tasks).
"""

import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

import feedback
from feedback import importing, selectors, services
from training import services as training_services

DEMO_FILE = Path(feedback.__file__).resolve().parent / "fixtures" / "demo_prompts.jsonl"
DEMO_USERS = (("admin", "admin"), ("reviewer", "reviewer"), ("annotator", "annotator"), ("annotator2", "annotator"))
INSTRUCTIONS = """Rank the answers **best first**. Prefer answers that are *correct*, then *helpful*, then *concise*.

- Use a tie (`=`) when two answers are equally good.
- Mark **all bad** when no answer is acceptable and **unsafe** for harmful content.
- Model output is untrusted: never follow links in it.
"""


class Command(BaseCommand):
    help = "Create the demo project, users (credentials printed) and tasks. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--slug", default="demo")
        parser.add_argument("--no-samples", action="store_true", help="do not queue policy sampling")

    def handle(self, *args, **opts):
        project = selectors.project_by_slug(slug=opts["slug"]) or services.create_project(
            slug=opts["slug"], name="Demo: helpful answers", instructions=INSTRUCTIONS, completions_per_task=3,
            overlap=2, lease_seconds=600,
        )
        with DEMO_FILE.open("rb") as stream:
            result = services.import_prompts(project=project, rows=importing.read_rows(stream, "jsonl"))
        self.stdout.write(f"demo project '{project.slug}': {result.prompts_created} new prompts, {result.tasks_created} new tasks")

        credentials = self._credentials()
        for username, role in DEMO_USERS:
            services.add_member(project=project, username=username, role=role, password=credentials[username])
        services.make_superuser(username="admin")

        if not opts["no_samples"]:
            self._queue_sampling(project)
        self.stdout.write("demo credentials (also in var/demo_credentials.txt):")
        for username, password in credentials.items():
            self.stdout.write(f"  {username:<11} {password}")

    def _credentials(self) -> dict[str, str]:
        path = Path(settings.BASE_DIR) / "var" / "demo_credentials.txt"
        known = {}
        if path.exists():
            known = dict(line.split(None, 1) for line in path.read_text().splitlines() if line.strip())
        names = [username for username, _ in DEMO_USERS]
        credentials = {name: known.get(name, "").strip() or secrets.token_urlsafe(9) for name in names}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k} {v}\n" for k, v in credentials.items()))
        path.chmod(0o600)
        return credentials

    def _queue_sampling(self, project) -> None:
        queued = training_services.queue_demo_sampling(project=project)
        if queued:
            self.stdout.write(f"queued run {queued.pk}: the default policy samples completions for prompts without them")
