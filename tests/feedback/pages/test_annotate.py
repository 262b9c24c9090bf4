"""The annotator pages through Django's test client: access, anonymity, the ranking form, CSRF, Markdown."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from feedback import services
from feedback.models import LABELS, Assignment, ComparisonTask, Completion, Judgement
from tests.feedback.factories import ProjectFactory, make_member, make_tasks

MODEL_NAMES = ["secret-model-alpha", "secret-model-beta", "secret-model-gamma"]


def make_ranked_tasks(project, n=3):
    """n tasks of 3 completions, each completion from a distinctively named model."""
    from feedback import importing

    rows = [
        importing.clean_row({
            "id": f"w{i}", "prompt": f"Web question {i}?",
            "completions": [{"text": f"web answer {i}.{j}", "model": MODEL_NAMES[j]} for j in range(3)],
        }, i + 1)
        for i in range(n)
    ]
    services.import_prompts(project=project, rows=rows)
    return list(ComparisonTask.objects.filter(project=project).order_by("id"))


def annotate_url(project):
    return reverse("feedback:annotate", args=[project.slug])


def submit_url(project, task_id):
    return reverse("feedback:submit", args=[project.slug, task_id])


def skip_url(project, task_id):
    return reverse("feedback:skip", args=[project.slug, task_id])


def shown_task(response) -> int:
    match = re.search(r'class="annotate" data-task="(\d+)"', response.content.decode())
    assert match, "not an annotate page"
    return int(match.group(1))


@pytest.fixture
def tasks(project):
    return make_ranked_tasks(project)


@pytest.fixture
def web(annotator):
    client = Client()
    client.force_login(annotator)
    return client


class TestAccess:
    @pytest.mark.parametrize("name", ["project-list", "project-detail", "annotate"])
    def test_login_required_redirects(self, client, project, name):
        url = reverse(f"feedback:{name}", args=[] if name == "project-list" else [project.slug])
        response = client.get(url)
        assert response.status_code == 302
        assert response.url == f"{reverse('login')}?next={url}"

    def test_submit_and_skip_require_login(self, client, project, tasks):
        for url in (submit_url(project, tasks[0].pk), skip_url(project, tasks[0].pk)):
            response = client.post(url, {"rank_a": "1", "rank_b": "2", "rank_c": "3"})
            assert response.status_code == 302 and response.url.startswith(reverse("login"))
        assert not Judgement.objects.exists() and not Assignment.objects.exists()

    def test_login_page_logs_in_with_a_password(self, client, project):
        services.add_member(project=project, username="pw-user", role="annotator", password="long-pass-phrase-9")
        response = client.post(reverse("login"), {"username": "pw-user", "password": "long-pass-phrase-9"})
        assert response.status_code == 302 and response.url == reverse("feedback:project-list")
        assert project.name in client.get(reverse("feedback:project-list")).content.decode()

    def test_annotator_sees_only_their_projects(self, web, project, tasks):
        other = ProjectFactory(name="Somebody Elses Project")
        other_tasks = make_tasks(other, 1)
        listing = web.get(reverse("feedback:project-list")).content.decode()
        assert project.name in listing and other.name not in listing
        assert web.get(reverse("feedback:project-detail", args=[other.slug])).status_code == 404
        assert web.get(reverse("feedback:project-detail", args=[str(other.pk)])).status_code == 404
        assert web.get(annotate_url(other)).status_code == 404
        assert web.post(submit_url(other, other_tasks[0].pk), {"rank_a": "1", "rank_b": "2"}).status_code == 404
        assert web.post(skip_url(other, other_tasks[0].pk)).status_code == 404
        # A task of another project through one's own project's URL is not found either.
        assert web.post(submit_url(project, other_tasks[0].pk), {"rank_a": "1", "rank_b": "2"}).status_code == 404
        assert not Assignment.objects.filter(project=other).exists()

    def test_unknown_project_is_404(self, web):
        assert web.get(reverse("feedback:project-detail", args=["no-such-project"])).status_code == 404


class TestAnnotatePage:
    def test_shows_labels_and_never_model_names(self, web, project, tasks):
        response = web.get(annotate_url(project))
        assert response.status_code == 200
        html = response.content.decode()
        assert re.findall(r'<span class="label">(\w)</span>', html) == ["A", "B", "C"]
        for label in "abc":
            assert f'name="rank_{label}"' in html
        assert 'name="rank_d"' not in html
        for name in MODEL_NAMES:
            assert name not in html
        assert "secret-model" not in html
        # The texts shown are the task's completions in this annotator's label order.
        assignment = Assignment.objects.get(annotator=response.wsgi_request.user, task_id=shown_task(response))
        texts = re.findall(r"web answer \d\.\d", html)
        by_id = dict(Completion.objects.filter(pk__in=assignment.label_order).values_list("id", "text"))
        assert texts == [by_id[cid] for cid in assignment.label_order]

    def test_same_task_again_on_reload(self, web, project, tasks):
        first = shown_task(web.get(annotate_url(project)))
        assert shown_task(web.get(annotate_url(project))) == first
        assert Assignment.objects.filter(state=Assignment.State.LEASED).count() == 1

    def test_never_shows_other_annotators_data(self, web, project, tasks, annotator):
        other = make_member(project, "annotator", username="other-annotator-zed")
        held = services.next_task(project=project, annotator=other)
        services.submit_judgement(
            task=held.task, annotator=other, ranking=[["a"], ["b"], ["c"]], flags=["unsafe"], confidence=1,
            comment="other-annotators-private-comment",
        )
        # The same task, now judged once of the two wanted, is served to our annotator too.
        response = web.get(annotate_url(project))
        html = response.content.decode()
        assert shown_task(response) == held.task_id
        assert "other-annotators-private-comment" not in html
        assert "other-annotator-zed" not in html
        assert 'id="done-today">0<' in html  # their judgement is not counted as ours
        assert not re.search(r'<input type="checkbox"[^>]*checked', html)  # their flags are not pre-ticked
        mine = Assignment.objects.get(task=held.task, annotator=annotator)
        assert mine.pk != held.pk

    def test_nothing_left_page(self, web, project):
        response = web.get(annotate_url(project))
        assert response.status_code == 200
        assert 'id="nothing-left"' in response.content.decode()

    def test_instructions_are_safe_markdown(self, web, project, tasks):
        project.instructions = "Rank **carefully**.\n\n<script>alert('pwned')</script>\n\n[x](javascript:alert(1))"
        project.save()
        for url in (reverse("feedback:project-detail", args=[project.slug]), annotate_url(project)):
            html = web.get(url).content.decode()
            assert "<strong>carefully</strong>" in html
            assert "<script>alert" not in html
            assert "&lt;script&gt;alert('pwned')&lt;/script&gt;" in html
            assert "href=\"javascript:" not in html  # markdown-it refuses the link; it stays text

    def test_completion_text_is_escaped(self, web, project):
        from feedback import importing

        services.import_prompts(project=project, rows=[importing.clean_row({
            "id": "evil", "prompt": "<b onmouseover=alert(1)>hi</b>",
            "completions": [{"text": "<script>alert(1)</script>"}, {"text": "<img src=x onerror=alert(2)>"}],
        }, 1)])
        html = web.get(annotate_url(project)).content.decode()
        body = html.split("<main>")[1]
        assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
        assert "<img" not in body and "&lt;img src=x onerror=alert(2)&gt;" in body
        assert "<b onmouseover" not in body


class TestSubmitForm:
    def start(self, web, project):
        response = web.get(annotate_url(project))
        task_id = shown_task(response)
        assignment = Assignment.objects.get(task_id=task_id, annotator=response.wsgi_request.user)
        return task_id, assignment

    def test_ties_via_equal_ranks_store_a_judgement_and_move_on(self, web, project, tasks):
        task_id, assignment = self.start(web, project)
        response = web.post(submit_url(project, task_id), {
            "rank_a": "2", "rank_b": "1", "rank_c": "1", "flags": ["all_bad"], "confidence": "4",
            "comment": "close call", "idempotency_key": "form-key-1",
        })
        assert response.status_code == 302 and response.url == annotate_url(project)
        judgement = Judgement.objects.get()
        order = assignment.label_order
        assert judgement.task_id == task_id
        assert judgement.ranking_labels == [["b", "c"], ["a"]]
        assert judgement.ranking == [[order[LABELS.index("b")], order[LABELS.index("c")]], [order[0]]]
        assert judgement.flags == ["all_bad"] and judgement.confidence == 4 and judgement.comment == "close call"
        assert judgement.idempotency_key == "form-key-1"
        assignment.refresh_from_db()
        assert assignment.state == Assignment.State.SUBMITTED

        following = web.get(response.url)
        assert shown_task(following) != task_id
        assert 'id="done-today">1<' in following.content.decode()

    def test_resubmitting_the_same_form_stores_nothing_twice(self, web, project, tasks):
        task_id, _ = self.start(web, project)
        form = {"rank_a": "1", "rank_b": "2", "rank_c": "3", "confidence": "3", "idempotency_key": "double-click"}
        web.post(submit_url(project, task_id), form)
        response = web.post(submit_url(project, task_id), form, follow=True)
        assert Judgement.objects.count() == 1
        assert "error" not in "".join(m.level_tag for m in response.context["messages"])

    def test_missing_rank_shows_an_error_and_stores_nothing(self, web, project, tasks):
        task_id, assignment = self.start(web, project)
        response = web.post(submit_url(project, task_id), {"rank_a": "1", "rank_b": "2", "rank_c": ""}, follow=True)
        assert response.status_code == 200
        html = response.content.decode()
        assert 'role="alert"' in html and "Give completion C a rank." in html
        assert not Judgement.objects.exists()
        assert shown_task(response) == task_id  # the same task is shown again
        assignment.refresh_from_db()
        assert assignment.state == Assignment.State.LEASED

    @pytest.mark.parametrize("bad", ["abc", "-1", "1.5"])
    def test_non_numeric_rank_is_an_error(self, web, project, tasks, bad):
        task_id, _ = self.start(web, project)
        response = web.post(submit_url(project, task_id), {"rank_a": bad, "rank_b": "1", "rank_c": "2"}, follow=True)
        assert "Give completion A a rank." in response.content.decode()
        assert not Judgement.objects.exists()

    @pytest.mark.parametrize("bad", ["²", "١", "𝟙"])  # str.isdigit() is True for these; int() fails or surprises
    def test_unicode_digit_rank_is_an_error_not_a_crash(self, web, project, tasks, bad):
        task_id, _ = self.start(web, project)
        response = web.post(submit_url(project, task_id), {"rank_a": bad, "rank_b": "1", "rank_c": "2"}, follow=True)
        assert response.status_code == 200 and "Give completion A a rank." in response.content.decode()
        assert not Judgement.objects.exists()

    def test_unicode_digit_confidence_is_not_a_crash(self, web, project, tasks):
        task_id, _ = self.start(web, project)
        response = web.post(submit_url(project, task_id), {"rank_a": "1", "rank_b": "2", "rank_c": "3", "confidence": "²"})
        assert response.status_code == 302
        assert Judgement.objects.get().confidence is None

    def test_submit_without_a_lease_is_refused(self, web, project, tasks):
        response = web.post(submit_url(project, tasks[2].pk), {"rank_a": "1", "rank_b": "2", "rank_c": "3"},
                            follow=True)
        assert "You do not hold a lease on this task" in response.content.decode()
        assert not Judgement.objects.exists()

    def test_skip(self, web, project, tasks):
        task_id, assignment = self.start(web, project)
        response = web.post(skip_url(project, task_id))
        assert response.status_code == 302 and response.url == annotate_url(project)
        assignment.refresh_from_db()
        assert assignment.state == Assignment.State.SKIPPED
        assert ComparisonTask.objects.get(pk=task_id).slots_taken == 0  # back in the pool for others
        served = {shown_task(web.get(annotate_url(project)))}
        # Skip the rest too: the skipped task never comes back to this annotator.
        for _ in range(len(tasks)):
            response = web.get(annotate_url(project))
            if 'id="nothing-left"' in response.content.decode():
                break
            served.add(shown_task(response))
            web.post(skip_url(project, shown_task(response)))
        assert task_id not in served and len(served) == len(tasks) - 1
        assert not Judgement.objects.exists()

    def test_get_on_submit_is_not_allowed(self, web, project, tasks):
        task_id, _ = self.start(web, project)
        assert web.get(submit_url(project, task_id)).status_code == 405


class TestCsrf:
    def test_submit_and_skip_need_the_csrf_token(self, project, tasks, annotator):
        client = Client(enforce_csrf_checks=True)
        client.force_login(annotator)
        response = client.get(annotate_url(project))
        task_id = shown_task(response)
        form = {"rank_a": "1", "rank_b": "2", "rank_c": "3", "confidence": "3"}
        assert client.post(submit_url(project, task_id), form).status_code == 403
        assert client.post(skip_url(project, task_id)).status_code == 403
        assert not Judgement.objects.exists()

        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode()).group(1)
        assert client.post(submit_url(project, task_id), {**form, "csrfmiddlewaretoken": token}).status_code == 302
        assert Judgement.objects.get().task_id == task_id
