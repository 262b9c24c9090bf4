from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from feedback import importing, services
from feedback.models import Project


class Command(BaseCommand):
    help = "Import prompts (and optional completions) from JSONL, CSV or Parquet. All or nothing."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--format", choices=importing.FORMATS, default=None, help="default: from the file name")

    def handle(self, *args, **opts):
        path = Path(opts["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        try:
            project = Project.objects.get(slug=opts["project"])
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {opts['project']!r}.") from None
        fmt = opts["format"] or importing.detect_format(path.name)
        if not fmt:
            raise CommandError("Cannot tell the format from the file name; pass --format jsonl|csv|parquet.")
        try:
            # Rows stream from the file into one transaction (memory stays flat); a bad row rolls it all back.
            with path.open("rb") as stream, tqdm(unit="row", desc="import", disable=opts["verbosity"] == 0) as bar:
                result = services.import_prompts(project=project, rows=importing.iter_rows(stream, fmt, remember_ids=False),
                                                 progress=bar.update, source=f"command {path.name}")
        except ValidationError as exc:
            lines = [f"{field}: {msg}" for field, msgs in exc.message_dict.items() for msg in msgs]
            raise CommandError("import failed, nothing was imported:\n" + "\n".join(lines)) from None
        self.stdout.write(
            f"imported {result.prompts_created} prompts, {result.completions_created} completions, "
            f"{result.tasks_created} tasks; skipped {result.rows_skipped} rows already present"
        )
