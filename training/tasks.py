"""Jobs for the worker (Django's tasks API via the django-tasks backport; `manage.py db_worker` runs them)."""

from django_tasks import task

from training import runners


@task()
def run_training_job(run_id: int) -> str:
    # Importing the runner modules registers every kind of run.
    import training.jobs  # noqa: F401

    return runners.execute(run_id)
