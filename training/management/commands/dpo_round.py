"""One round of iterative DPO with people in the loop: starts a round, or finishes the waiting one; --abandon ends
the waiting one without training."""

from __future__ import annotations

import time

import yaml
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from core.exceptions import ApplicationError
from feedback.models import Project
from training import selectors, services
from training.management.run_command import RunCommand, parse_overrides
from training.models import DPORound, TrainingRun


class Command(RunCommand):
    help = ("Iterative DPO with people in the loop. Without an open round: the active policy samples K answers per "
            "prompt, the reward model scores every pair, the most uncertain `budget` pairs become comparison tasks "
            "and the reward model labels the rest. With a round whose human share is judged: DPO trains on both "
            "and its candidate goes through the DPO gate. --wait waits for the judgements and then finishes. --abandon "
            "ends the waiting round without training (its open tasks are cancelled) so a new round can start.")
    kind = TrainingRun.Kind.DPO_ROUND

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--wait", action="store_true",
                            help="after starting (or with a waiting round), wait until people have judged the human "
                                 "share, then finish the round")
        parser.add_argument("--poll-seconds", type=float, default=10.0, help="how often --wait looks (seconds)")
        parser.add_argument("--abandon", action="store_true",
                            help="abandon the project's round that waits for judgements: it fails, its open tasks "
                                 "are cancelled (judgements given are kept) and the project can start a new round")
        parser.add_argument("--reason", default="", help="with --abandon: why (kept in the round's error and audit row)")

    def handle(self, *args, **opts):
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug {opts['project']!r}.")
        if opts["abandon"]:
            return self._abandon(project, opts["reason"])
        config = {}
        if opts["config"]:
            with open(opts["config"], encoding="utf-8") as fh:
                config = yaml.safe_load(fh) or {}
        config.update(parse_overrides(opts["set"]))
        current = selectors.open_round(project=project)
        if current is not None and current.state == DPORound.State.WAITING and opts["wait"]:
            self._wait_for_people(current, opts["poll_seconds"])
        dpo_round = self._advance(project, config, opts)
        if dpo_round.state == DPORound.State.WAITING and opts["wait"]:
            self._wait_for_people(dpo_round, opts["poll_seconds"])
            dpo_round = self._advance(project, config, opts)
        self._report(dpo_round)

    def _advance(self, project, config, opts) -> DPORound:
        try:
            dpo_round, run = services.advance_dpo_round(project=project, config=config, enqueue=opts["queue"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        except ValidationError as exc:
            raise CommandError(f"bad settings: {' '.join(exc.messages)}") from None
        if opts["queue"]:
            self.stdout.write(f"DPO round {dpo_round.pk}: queued {run.kind} run {run.pk}; the worker runs it")
            return dpo_round
        state = self.run_here(run, quiet=opts["verbosity"] == 0)
        run.refresh_from_db()
        dpo_round.refresh_from_db()
        self.stdout.write(f"DPO round {dpo_round.pk}: run {run.pk} {state}; the round is {dpo_round.get_state_display().lower()}")
        if state != TrainingRun.State.SUCCEEDED and dpo_round.state == DPORound.State.FAILED:
            raise CommandError((run.error or state).strip().splitlines()[-1])
        return dpo_round

    def _abandon(self, project, reason: str) -> None:
        """An operator's command (shell access to the server), like the rest of this command: no member is acting,
        so the audit row has no actor and the round's error says an operator abandoned it."""
        current = selectors.open_round(project=project)
        if current is None:
            raise CommandError(f"Project {project.slug!r} has no open DPO round: there is nothing to abandon.")
        try:
            dpo_round = services.abandon_dpo_round(dpo_round=current, reason=reason)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"DPO round {dpo_round.pk} {dpo_round.error}; {dpo_round.counts['tasks_cancelled']} open "
                          f"tasks cancelled, {dpo_round.counts['tasks_complete']} judged kept")

    def _wait_for_people(self, dpo_round: DPORound, poll_seconds: float) -> None:
        last = None
        while True:
            done, total = selectors.round_judged(dpo_round=dpo_round)
            needed = services.human_share_needed(dpo_round, total)
            if done >= needed:
                return
            if done != last:
                self.stdout.write(f"waiting for judgements: {done} of {total} tasks complete, {needed} needed")
                last = done
            time.sleep(poll_seconds)

    def _report(self, dpo_round: DPORound) -> None:
        counts = dpo_round.counts
        self.stdout.write(f"pairs from people: {counts.get('human_pairs', 0)} published, "
                          f"{counts.get('human_pairs_trained', '–')} trained; pairs from the reward model: "
                          f"{counts.get('model_pairs', 0)} labelled, {counts.get('model_pairs_trained', '–')} trained")
        version = dpo_round.train_run.produced_version if dpo_round.train_run_id else None
        if version is not None:
            self.stdout.write(f"registered model version {version.pk} ({version.name}, {version.status})")
        if dpo_round.state == DPORound.State.WAITING:
            done, total = selectors.round_judged(dpo_round=dpo_round)
            self.stdout.write(f"waiting for judgements: {done} of {total} tasks complete; run "
                              f"`manage.py dpo_round --project {dpo_round.project.slug}` again once they are judged")
