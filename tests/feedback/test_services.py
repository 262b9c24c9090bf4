from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.exceptions import ApplicationError, Conflict
from feedback import services
from feedback.models import Assignment, ComparisonTask, Judgement
from tests.feedback.factories import make_member, make_tasks


@pytest.fixture
def tasks(project):
    return make_tasks(project, 3, k=3)


def rank_all(assignment):
    labels = "abcd"[: len(assignment.label_order)]
    return [[label] for label in labels]


class TestNextTask:
    def test_leases_the_first_open_task_with_random_labels(self, project, annotator, tasks):
        assignment = services.next_task(project=project, annotator=annotator)
        assert assignment.task == tasks[0]
        assert sorted(assignment.label_order) == sorted(tasks[0].completions.values_list("id", flat=True))
        assert assignment.leased_until - assignment.leased_at == timedelta(seconds=project.lease_seconds)

    def test_asking_again_while_holding_a_lease_returns_the_same_task(self, project, annotator, tasks):
        first = services.next_task(project=project, annotator=annotator)
        again = services.next_task(project=project, annotator=annotator)
        assert again.pk == first.pk

    def test_never_serves_a_task_twice_to_one_annotator(self, project, annotator, tasks):
        seen = []
        while (assignment := services.next_task(project=project, annotator=annotator)) is not None:
            seen.append(assignment.task_id)
            services.submit_judgement(task=assignment.task, annotator=annotator, ranking=rank_all(assignment))
        assert sorted(seen) == [t.pk for t in tasks]

    def test_a_task_is_not_offered_beyond_its_overlap(self, project, tasks):
        people = [make_member(project) for _ in range(3)]
        got = [services.next_task(project=project, annotator=p).task_id for p in people]
        # overlap 2: the first two share task 1, the third gets task 2
        assert got == [tasks[0].pk, tasks[0].pk, tasks[1].pk]

    def test_expired_lease_returns_the_task_to_the_pool(self, project, tasks):
        project.overlap = 1
        project.save()
        ComparisonTask.objects.update(judgements_needed=1)
        alice, bob = make_member(project), make_member(project)
        now = timezone.now()
        held = services.next_task(project=project, annotator=alice, now=now)
        assert services.next_task(project=project, annotator=bob, now=now).task_id != held.task_id
        later = now + timedelta(seconds=project.lease_seconds + 1)
        carol = make_member(project)
        assert services.next_task(project=project, annotator=carol, now=later).task_id == held.task_id
        with pytest.raises(ApplicationError):
            services.submit_judgement(task=held.task, annotator=alice, ranking=rank_all(held), now=later)

    def test_skip_returns_the_task_to_others_but_not_to_me(self, project, annotator, tasks):
        held = services.next_task(project=project, annotator=annotator)
        services.skip_task(task=held.task, annotator=annotator)
        assert ComparisonTask.objects.get(pk=held.task_id).slots_taken == 0
        assert services.next_task(project=project, annotator=annotator).task_id != held.task_id
        other = make_member(project)
        assert services.next_task(project=project, annotator=other).task_id == held.task_id

    def test_nothing_left_returns_none(self, project, annotator):
        assert services.next_task(project=project, annotator=annotator) is None


class TestSubmitJudgement:
    def test_stores_ranking_as_completion_ids_with_ties(self, project, annotator, tasks):
        held = services.next_task(project=project, annotator=annotator)
        judgement, created = services.submit_judgement(
            task=held.task, annotator=annotator, ranking=[["b"], ["a", "c"]], flags=["unsafe"], confidence=4,
            comment="fine",
        )
        label_map = held.label_map()
        assert created
        assert judgement.ranking == [[label_map["b"]], [label_map["a"], label_map["c"]]]
        assert judgement.flags == ["unsafe"] and judgement.confidence == 4
        assert judgement.seconds_spent >= 0
        held.refresh_from_db()
        assert held.state == Assignment.State.SUBMITTED
        assert ComparisonTask.objects.get(pk=held.task_id).judgements_done == 1

    @pytest.mark.parametrize(
        ("ranking", "message"),
        [
            ([["a"], ["b"]], services.RANKING_MISSING_LABEL.format(labels="c")),
            ([["a"], ["b"], ["c"], ["a"]], services.RANKING_DUPLICATE_LABEL.format(label="a")),
            ([["a"], ["z"], ["b", "c"]], services.RANKING_UNKNOWN_LABEL.format(label="z", labels="a, b, c")),
            ([], services.RANKING_NOT_A_LIST),
            ("abc", services.RANKING_NOT_A_LIST),
            ([["a"], [], ["b", "c"]], services.RANKING_BAD_GROUP.format(group=[])),
        ],
    )
    def test_bad_rankings_are_refused_and_store_nothing(self, project, annotator, tasks, ranking, message):
        held = services.next_task(project=project, annotator=annotator)
        with pytest.raises(ValidationError) as excinfo:
            services.submit_judgement(task=held.task, annotator=annotator, ranking=ranking)
        assert excinfo.value.message_dict == {"ranking": [message]}
        assert not Judgement.objects.exists()

    def test_only_the_leaseholder_may_submit(self, project, annotator, tasks):
        services.next_task(project=project, annotator=annotator)
        stranger = make_member(project)
        with pytest.raises(ApplicationError) as excinfo:
            services.submit_judgement(task=tasks[0], annotator=stranger, ranking=[["a"], ["b"], ["c"]])
        assert excinfo.value.message == services.NOT_LEASEHOLDER

    def test_same_idempotency_key_returns_the_first_judgement(self, project, annotator, tasks):
        held = services.next_task(project=project, annotator=annotator)
        first, created = services.submit_judgement(
            task=held.task, annotator=annotator, ranking=rank_all(held), idempotency_key="k1")
        again, created_again = services.submit_judgement(
            task=held.task, annotator=annotator, ranking=rank_all(held), idempotency_key="k1")
        assert created and not created_again and again.pk == first.pk
        assert Judgement.objects.count() == 1
        assert ComparisonTask.objects.get(pk=held.task_id).judgements_done == 1

    def test_second_submission_without_key_conflicts(self, project, annotator, tasks):
        held = services.next_task(project=project, annotator=annotator)
        services.submit_judgement(task=held.task, annotator=annotator, ranking=rank_all(held))
        with pytest.raises(Conflict):
            services.submit_judgement(task=held.task, annotator=annotator, ranking=rank_all(held))

    def test_task_completes_at_its_overlap(self, project, tasks):
        for _ in range(project.overlap):
            person = make_member(project)
            held = services.next_task(project=project, annotator=person)
            assert held.task_id == tasks[0].pk
            services.submit_judgement(task=held.task, annotator=person, ranking=rank_all(held))
        assert ComparisonTask.objects.get(pk=tasks[0].pk).status == ComparisonTask.Status.COMPLETE

    @pytest.mark.parametrize("field,kwargs", [
        ("confidence", {"confidence": 9}), ("flags", {"flags": ["nope"]}), ("comment", {"comment": "x\x00y"}),
    ])
    def test_bad_extras_name_their_field(self, project, annotator, tasks, field, kwargs):
        held = services.next_task(project=project, annotator=annotator)
        with pytest.raises(ValidationError) as excinfo:
            services.submit_judgement(task=held.task, annotator=annotator, ranking=rank_all(held), **kwargs)
        assert field in excinfo.value.message_dict


class TestAddMember:
    def test_creates_user_role_and_token(self, project):
        membership, token = services.add_member(project=project, username="zoe", role="reviewer", password="s3cret-pass!")
        assert membership.user.check_password("s3cret-pass!")
        assert membership.user.groups.filter(name="Reviewers").exists()
        assert token.user == membership.user
        again, token_again = services.add_member(project=project, username="zoe", role="admin")
        assert again.pk == membership.pk and again.role == "admin" and token_again.key == token.key
        assert not again.user.is_staff  # project admins are not Django staff: the admin is for superusers
        assert list(again.user.groups.values_list("name", flat=True)) == ["Project admins"]  # old role's group gone


class TestGoldTasks:
    def test_gold_is_mixed_in_for_everyone_and_never_completes(self, project, tasks):
        project.gold_rate = 1.0
        project.save()
        gold = tasks[2]
        ids = list(gold.completions.order_by("id").values_list("id", flat=True))
        services.mark_gold(task=gold, ranking=[[ids[0]], ids[1:]])
        people = [make_member(project) for _ in range(project.overlap + 2)]
        for person in people:
            held = services.next_task(project=project, annotator=person)
            assert held.task_id == gold.pk  # served to every annotator, beyond the overlap
            services.submit_judgement(task=held.task, annotator=person, ranking=rank_all(held))
            # then the normal queue, never the gold task again
            assert services.next_task(project=project, annotator=person).task_id != gold.pk
        gold.refresh_from_db()
        assert gold.status == ComparisonTask.Status.OPEN and gold.judgements_done == 0

    def test_gold_ranking_must_cover_the_task(self, project, tasks):
        ids = list(tasks[0].completions.values_list("id", flat=True))
        with pytest.raises(ValidationError) as excinfo:
            services.mark_gold(task=tasks[0], ranking=[[ids[0]]])
        assert excinfo.value.message_dict == {"gold_ranking": [services.GOLD_RANKING_INVALID]}

    def test_gold_tasks_stay_out_of_the_normal_queue(self, project, annotator, tasks):
        ids = list(tasks[0].completions.values_list("id", flat=True))
        services.mark_gold(task=tasks[0], ranking=[ids])
        served = []
        while (held := services.next_task(project=project, annotator=annotator)) is not None:
            served.append(held.task_id)
            services.submit_judgement(task=held.task, annotator=annotator, ranking=rank_all(held))
        assert served == [tasks[1].pk, tasks[2].pk]


class TestAdaptiveOverlapAndTrust:
    def test_disagreement_asks_for_more_up_to_the_maximum(self, project):
        project.overlap, project.max_overlap = 2, 4
        project.save()
        task = make_tasks(project, 1, k=2)[0]
        ids = sorted(task.completions.values_list("id", flat=True))

        def judge(prefer_first):
            person = make_member(project)
            held = services.next_task(project=project, annotator=person)
            if held is None:
                return False
            labels = {cid: label for label, cid in held.label_map().items()}
            best, worst = (ids[0], ids[1]) if prefer_first else (ids[1], ids[0])
            services.submit_judgement(task=held.task, annotator=person, ranking=[[labels[best]], [labels[worst]]])
            return True

        assert judge(True) and judge(False)  # split 1:1 → one more wanted
        task.refresh_from_db()
        assert task.status == ComparisonTask.Status.OPEN and task.judgements_needed == 3
        assert judge(True) and judge(False)  # still split at 2:2 → up to the maximum of 4, then complete
        task.refresh_from_db()
        assert task.judgements_done == 4 and task.status == ComparisonTask.Status.COMPLETE
        assert not judge(True)

    def test_agreeing_judges_stop_at_the_minimum(self, project):
        project.overlap, project.max_overlap = 2, 5
        project.save()
        task = make_tasks(project, 1, k=2)[0]
        for _ in range(2):
            person = make_member(project)
            held = services.next_task(project=project, annotator=person)
            services.submit_judgement(task=held.task, annotator=person, ranking=[[held.labels_sorted_by_completion_id()[0]], [held.labels_sorted_by_completion_id()[1]]])
        task.refresh_from_db()
        assert task.status == ComparisonTask.Status.COMPLETE and task.judgements_done == 2

    def test_wrong_gold_answers_lower_trust(self, project, tasks):
        from feedback.models import Membership

        project.gold_rate = 1.0
        project.save()
        ids = sorted(tasks[0].completions.values_list("id", flat=True))
        services.mark_gold(task=tasks[0], ranking=[[ids[0]], [ids[1]], [ids[2]]])
        person = make_member(project)
        held = services.next_task(project=project, annotator=person)
        labels = {cid: label for label, cid in held.label_map().items()}
        services.submit_judgement(task=held.task, annotator=person, ranking=[[labels[ids[2]]], [labels[ids[1]]], [labels[ids[0]]]])
        assert Membership.objects.get(user=person).trust < 0.5
