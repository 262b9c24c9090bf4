"""Invariants under races (issue 30 item 4): two admins demoting (or removing) each other at the same moment
never leave a project without an admin, and two activations at once never leave two active policies.

Real threads, each with its own database connection, released together by a barrier, many rounds; on SQLite
(IMMEDIATE transactions) and, under `make test`, on PostgreSQL (the project row locked FOR UPDATE).
"""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from feedback import services
from feedback.models import Membership
from tests.feedback.factories import ProjectFactory, make_member

ROUNDS = 25


def _race(*actions):
    """Run the callables at once, each in its own thread (and connection); their outcomes, in order."""
    start = threading.Barrier(len(actions))
    outcomes = [None] * len(actions)

    def run(i, action):
        try:
            start.wait()
            action()
            outcomes[i] = "done"
        except services.LastAdmin:
            outcomes[i] = "last_admin"
        except BaseException as exc:  # reported by the caller; a thread must not die silently
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_or_removing_each_other_at_once_always_leave_one_admin():
    project = ProjectFactory(slug="race")
    first, second = make_member(project, "admin"), make_member(project, "admin")
    seen = []
    for round_ in range(ROUNDS):
        for user in (first, second):  # both admins again (a removed one comes back)
            services.add_member(project=project, username=user.username, role="admin", issue_token=False)
        a, b = (Membership.objects.get(project=project, user=u) for u in (first, second))
        if round_ % 2 == 0:
            actions = (lambda: services.change_role(membership=a, role="annotator", actor=second),
                       lambda: services.change_role(membership=b, role="reviewer", actor=first))
        else:
            actions = (lambda: services.remove_member(membership=a, actor=second),
                       lambda: services.change_role(membership=b, role="annotator", actor=first))
        outcomes = _race(*actions)
        assert all(o in ("done", "last_admin") for o in outcomes), outcomes
        admins = Membership.objects.filter(project=project, role=Membership.Role.ADMIN).count()
        assert admins == 1, (round_, outcomes)
        assert sorted(outcomes) == ["done", "last_admin"], outcomes
        seen.append(tuple(outcomes))
    assert len(seen) == ROUNDS


@pytest.mark.django_db(transaction=True)
def test_two_activations_at_once_leave_one_active_policy(tmp_path):
    from training.models import ModelVersion
    from training.services.registry import activate_policy

    project = ProjectFactory(slug="race-policy")
    versions = [ModelVersion.objects.create(project=project, name=f"policy-race-{i}", kind=ModelVersion.Kind.POLICY,
                                            path=str(tmp_path / f"p{i}"), sha256=f"{i}" * 64, metrics={"eval_reward": 0.1})
                for i in range(2)]
    for round_ in range(ROUNDS):
        ModelVersion.objects.filter(pk__in=[v.pk for v in versions]).update(status=ModelVersion.Status.CANDIDATE)
        outcomes = _race(*(lambda v=v: activate_policy(version=v, project=project) for v in versions))
        # the second waits for the first (the project's row lock) and retires it: neither fails
        assert outcomes == ["done", "done"], outcomes
        active = ModelVersion.objects.filter(project=project, kind=ModelVersion.Kind.POLICY,
                                             status=ModelVersion.Status.ACTIVE).count()
        assert active == 1, (round_, outcomes)


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_a_second_active_policy_in_a_project(tmp_path):
    """The constraint behind the lock: whatever path writes statuses, one active policy per project."""
    from training.models import ModelVersion

    project = ProjectFactory(slug="two-active")
    ModelVersion.objects.create(project=project, name="a", kind=ModelVersion.Kind.POLICY, path="p",
                                sha256="a" * 64, status=ModelVersion.Status.ACTIVE)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(project=project, name="b", kind=ModelVersion.Kind.POLICY, path="p",
                                    sha256="b" * 64, status=ModelVersion.Status.ACTIVE)
    for name in ("reward-1", "reward-2"):  # reward models stay active side by side
        ModelVersion.objects.create(project=project, name=name, kind=ModelVersion.Kind.REWARD, path="p",
                                    sha256="c" * 64, status=ModelVersion.Status.ACTIVE)
