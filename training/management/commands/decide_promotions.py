from django.core.management.base import BaseCommand, CommandError

from training.promotion import decide_all_promotions, decide_promotions


class Command(BaseCommand):
    help = ("Promote or reject candidate policies by the annotators' head-to-head judgements against the active "
            "policy (idempotent: only candidates are decided, each once).")

    def add_arguments(self, parser):
        parser.add_argument("--project", help="slug of one project (default: every project with a candidate)")
        parser.add_argument("--min-judgements", type=int, default=None,
                            help="judgements needed before deciding (default: settings.PROMOTION_MIN_JUDGEMENTS, 30)")

    def handle(self, *args, **opts):
        from feedback.models import Project

        if opts["project"]:
            project = Project.objects.filter(slug=opts["project"]).first()
            if project is None:
                raise CommandError(f"no project {opts['project']!r}")
            decided = decide_promotions(project=project, min_judgements=opts["min_judgements"])
        else:
            decided = decide_all_promotions(min_judgements=opts["min_judgements"])
        for version, verdict in decided:
            m = version.metrics
            self.stdout.write(f"{version.name}: {verdict} (win rate {m.get('human/win_rate')}, 95% interval "
                              f"{m['human/win_low']:.2f}–{m['human/win_high']:.2f}, {m['human/judgements']} judgements)")
        if not decided:
            self.stdout.write("no candidate policies to decide")
