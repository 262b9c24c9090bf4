from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from feedback import services
from feedback.models import Membership, Project

TOKEN_WAS_REVOKED = ("{username}'s API token was revoked; nothing changed. Pass --new-token to issue a new one, "
                     "or --no-token to change the membership only.")


class Command(BaseCommand):
    help = ("Create the user if needed, add it to a project with a role (or change its role), and print its API "
            "token last. A revoked token is never brought back: after a revocation pass --new-token or --no-token.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--role", required=True, choices=Membership.Role.values)
        parser.add_argument("--password", default=None)
        tokens = parser.add_mutually_exclusive_group()
        tokens.add_argument("--new-token", action="store_true",
                            help="issue a fresh token (the old one stops working), also after a revocation")
        tokens.add_argument("--no-token", action="store_true", help="leave tokens alone and print none")

    def handle(self, *args, **opts):
        try:
            project = Project.objects.get(slug=opts["project"])
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {opts['project']!r}.") from None
        user = get_user_model().objects.filter(username=opts["username"]).first()
        if (user is not None and not (opts["new_token"] or opts["no_token"]) and not hasattr(user, "auth_token")
                and services.was_revoked(user=user)):
            # Refused before any write: the contract's last line is the token, and a revoked one stays revoked.
            raise CommandError(TOKEN_WAS_REVOKED.format(username=user.username))
        try:
            with transaction.atomic():
                membership, token = services.add_member(
                    project=project, username=opts["username"], role=opts["role"], password=opts["password"],
                    issue_token=not (opts["no_token"] or opts["new_token"]),
                )
                if opts["new_token"]:
                    token = services.issue_operator_token(user=membership.user, project=project)
        except services.LastAdmin as refusal:
            raise CommandError(refusal.message) from None
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"{membership.user.username} is {membership.role} in {project.slug}")
        if opts["no_token"]:
            return
        if token is None:  # revoked by someone else while this ran
            raise CommandError(TOKEN_WAS_REVOKED.format(username=membership.user.username))
        if hasattr(token, "scope") and project.pk not in set(
                token.scope.projects.values_list("pk", flat=True)):
            self.stderr.write(f"This token was made by a project admin and does not open {project.slug}; "
                              f"pass --new-token for one that does.")
        self.stdout.write(token.key)
