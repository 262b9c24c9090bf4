import factory
from django.contrib.auth import get_user_model

from feedback import services
from feedback.models import Completion, ComparisonTask, Membership, Project, Prompt


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pass-word-123")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    instructions = "Rank the answers from best to worst."
    completions_per_task = 2
    overlap = 2


def make_member(project, role="annotator", **user_fields):
    user = UserFactory(**user_fields)
    Membership.objects.create(project=project, user=user, role=role)
    user.groups.add(services.ensure_role_groups()[role])
    if role == Membership.Role.ADMIN:
        user.is_staff = True
        user.save()
    return user


def make_tasks(project, n, k=2, texts=None):
    """n prompts, each with k completions and a task, the way import_prompts makes them."""
    from feedback import importing

    rows = [
        importing.clean_row(
            {"id": f"p{i}", "prompt": f"Question {i}?",
             "completions": [{"text": (texts or {}).get(j, f"answer {i}.{j}"), "model": f"m{j}"} for j in range(k)]},
            i + 1,
        )
        for i in range(n)
    ]
    services.import_prompts(project=project, rows=rows)
    return list(ComparisonTask.objects.filter(project=project).order_by("id"))


__all__ = ["UserFactory", "ProjectFactory", "make_member", "make_tasks", "Completion", "Prompt"]
