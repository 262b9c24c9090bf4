from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.parsing import ascii_float, ascii_int
from feedback import services


class Command(BaseCommand):
    help = "Create an annotation project."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--instructions", default="")
        parser.add_argument("--completions-per-task", type=ascii_int, default=2)
        parser.add_argument("--overlap", type=ascii_int, default=3)
        parser.add_argument("--lease-seconds", type=ascii_int, default=600)
        parser.add_argument("--gold-rate", type=ascii_float, default=0.0)
        parser.add_argument("--max-overlap", type=ascii_int, default=None, help="adaptive overlap: up to this many judgements")
        parser.add_argument("--agreement-threshold", type=ascii_float, default=0.75)

    def handle(self, *args, **opts):
        try:
            project = services.create_project(
                slug=opts["slug"], name=opts["name"], instructions=opts["instructions"],
                completions_per_task=opts["completions_per_task"], overlap=opts["overlap"],
                lease_seconds=opts["lease_seconds"], gold_rate=opts["gold_rate"], max_overlap=opts["max_overlap"],
                agreement_threshold=opts["agreement_threshold"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stdout.write(f"created project {project.slug} (id {project.pk})")
