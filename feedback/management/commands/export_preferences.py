from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from feedback import exports, services
from feedback.models import Project


class Command(BaseCommand):
    help = "Export preference pairs in TRL's format (train/test split by prompt) with a dataset card; records a snapshot."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--out", required=True, help="output directory (created if missing)")
        parser.add_argument("--format", choices=exports.FORMATS, default="jsonl")
        parser.add_argument("--min-agreement", type=float, default=0.0)
        parser.add_argument("--drop-flagged", action="store_true", help="leave out tasks flagged unsafe or all bad")
        parser.add_argument("--only-trusted", action="store_true", help="only annotators with trust >= --trust-threshold")
        parser.add_argument("--trust-threshold", type=float, default=exports.DEFAULT_TRUST_THRESHOLD)
        parser.add_argument("--since-snapshot", type=int, default=None, help="only judgements newer than this snapshot")
        parser.add_argument("--model", action="append", default=[], help="only pairs between these models (repeatable)")
        parser.add_argument("--test-fraction", type=float, default=0.1)

    def handle(self, *args, **opts):
        try:
            project = Project.objects.get(slug=opts["project"])
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {opts['project']!r}.") from None
        out = Path(opts["out"]).expanduser().resolve()
        if out.exists() and not out.is_dir():
            raise CommandError(f"--out must be a directory; {out} is a file.")
        try:
            filters = exports.ExportFilters(
                min_agreement=opts["min_agreement"], drop_flagged=opts["drop_flagged"], only_trusted=opts["only_trusted"],
                trust_threshold=opts["trust_threshold"], since_snapshot=opts["since_snapshot"],
                models=tuple(opts["model"]), test_fraction=opts["test_fraction"],
            )
            bar = lambda rows: tqdm(rows, unit="pair", desc="export", disable=opts["verbosity"] == 0)  # noqa: E731
            snapshot, stats = services.export_preferences(project=project, out_dir=out, fmt=opts["format"],
                                                          filters=filters, progress=bar)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        c = stats.counts()
        self.stdout.write(f"snapshot {snapshot.pk} ({snapshot.sha256[:12]}): {c['pairs']} pairs "
                          f"({c['train_pairs']} train / {c['test_pairs']} test) written to {out}")
