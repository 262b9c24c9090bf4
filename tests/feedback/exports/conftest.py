import pytest

from tests.feedback.factories import judge, make_member, make_tasks


@pytest.fixture
def judged(project):
    """Two tasks of 3 completions (m0, m1, m2), each judged by two annotators."""
    make_tasks(project, 2, k=3)
    alice, bob = make_member(project), make_member(project)
    for person in (alice, bob):
        judge(project, person, [["m0"], ["m1"], ["m2"]])
    # Second task: alice prefers m1 over m0, bob the reverse; both put m2 last, tied by bob with m1.
    judge(project, alice, [["m1"], ["m0"], ["m2"]])
    judge(project, bob, [["m0"], ["m1", "m2"]])
    return project
