import factory
from django.contrib.auth import get_user_model

from feedback import services
from feedback.models import Completion, ComparisonTask, Project, Prompt


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pass-word-123")


class ProjectFactory(factory.django.DjangoModelFactory):
    """Projects are made by `services.create_project` (validation and the audit row included)."""

    class Meta:
        model = Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    instructions = "Rank the answers from best to worst."
    completions_per_task = 2
    overlap = 2

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return services.create_project(**kwargs)


def make_member(project, role="annotator", **user_fields):
    """A new user (password "pass-word-123") made a member by `services.add_member`, as the command does."""
    user = UserFactory(**user_fields)
    # tests that call the API with a token create their own, as a client would log in
    services.add_member(project=project, username=user.username, role=role, issue_token=False)
    user.refresh_from_db()
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


def judge(project, person, ranking_by_model, flags=()):
    """Lease the next task for `person` and rank its completions by model name (e.g. [["m0"], ["m1", "m2"]])."""
    held = services.next_task(project=project, annotator=person)
    by_id = dict(held.task.completions.values_list("id", "model_name"))
    label_of = {by_id[cid]: label for label, cid in held.label_map().items()}
    ranking = [[label_of[m] for m in group] for group in ranking_by_model]
    services.submit_judgement(task=held.task, annotator=person, ranking=ranking, flags=flags)
    return held.task


__all__ = ["UserFactory", "ProjectFactory", "judge", "make_member", "make_tasks", "Completion", "Prompt"]
