"""A demo project with prompts, hand-written completions and demo users; idempotent.

Prompts without completions wait for the default policy: when it is bootstrapped, a publish run is
queued so the worker samples completions for them (they then appear as new tasks).
"""

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from feedback import importing, services
from feedback.models import Project

DEMO_FILE = Path(__file__).resolve().parent.parent.parent / "fixtures" / "demo_prompts.jsonl"
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
        project = Project.objects.filter(slug=opts["slug"]).first() or services.create_project(
            slug=opts["slug"], name="Demo: helpful answers", instructions=INSTRUCTIONS, completions_per_task=3,
            overlap=2, lease_seconds=600,
        )
        with DEMO_FILE.open("rb") as stream:
            result = services.import_prompts(project=project, rows=importing.read_rows(stream, "jsonl"))
        self.stdout.write(f"demo project '{project.slug}': {result.prompts_created} new prompts, {result.tasks_created} new tasks")

        credentials = self._credentials()
        User = get_user_model()
        for username, role in (("admin", "admin"), ("reviewer", "reviewer"), ("annotator", "annotator"), ("annotator2", "annotator")):
            services.add_member(project=project, username=username, role=role, password=credentials[username])
        User.objects.filter(username="admin").update(is_superuser=True, is_staff=True)

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
        names = ["admin", "reviewer", "annotator", "annotator2"]
        credentials = {name: known.get(name, "").strip() or secrets.token_urlsafe(9) for name in names}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k} {v}\n" for k, v in credentials.items()))
        path.chmod(0o600)
        return credentials

    def _queue_sampling(self, project) -> None:
        try:
            from training import services as training_services
        except ImportError:
            return
        queued = training_services.queue_demo_sampling(project=project)
        if queued:
            self.stdout.write(f"queued run {queued.pk}: the default policy samples completions for prompts without them")
