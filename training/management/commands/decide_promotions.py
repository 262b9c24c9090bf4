from django.core.management.base import BaseCommand, CommandError

from training.promotion import decide_all_promotions, decide_promotions


class Command(BaseCommand):
    help = ("Promote or reject candidate policies by the annotators' head-to-head tasks against the active policy: an "
            "always-valid sequential test on task scores, so running it after every task is safe (idempotent: only "
            "candidates are decided, each once).")

    def add_arguments(self, parser):
        parser.add_argument("--project", help="slug of one project (default: every project with a candidate)")
        parser.add_argument("--max-tasks", type=int, default=None,
                            help="the horizon: reject as 'not shown better' after this many closed tasks "
                                 "(default: settings.PROMOTION_MAX_TASKS, 1000)")

    def handle(self, *args, **opts):
        from feedback.models import Project

        if opts["max_tasks"] is not None and opts["max_tasks"] < 1:
            raise CommandError("--max-tasks must be at least 1")
        if opts["project"]:
            project = Project.objects.filter(slug=opts["project"]).first()
            if project is None:
                raise CommandError(f"no project {opts['project']!r}")
            decided = decide_promotions(project=project, max_tasks=opts["max_tasks"])
        else:
            decided = decide_all_promotions(max_tasks=opts["max_tasks"])
        for version, verdict in decided:
            m = version.metrics
            self.stdout.write(f"{version.name}: {verdict} — {m.get('human/verdict_words')} "
                              f"({m.get('human/judgements')} judgements)")
        if not decided:
            self.stdout.write("no candidate policies to decide")
