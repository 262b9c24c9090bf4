from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from feedback import services
from feedback.models import Membership, Project


class Command(BaseCommand):
    help = "Create the user if needed, add it to a project with a role, and print its API token last."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--role", required=True, choices=Membership.Role.values)
        parser.add_argument("--password", default=None)

    def handle(self, *args, **opts):
        try:
            project = Project.objects.get(slug=opts["project"])
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {opts['project']!r}.") from None
        try:
            membership, token = services.add_member(
                project=project, username=opts["username"], role=opts["role"], password=opts["password"]
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"{membership.user.username} is {membership.role} in {project.slug}")
        self.stdout.write(token.key)
