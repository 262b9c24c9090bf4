"""The annotate page's polish: long answers folded, highlighted and sanitised code, Markdown tables, the lease
countdown and renewal, late submits (accepted when the task still has a place, refused with the ranking kept
otherwise), fresh counts and an empty page that says why."""

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from feedback import services
from feedback.models import Assignment, ComparisonTask, Judgement
from feedback.rendering import render_markdown
from feedback.services.leases import LEASE_TAKEN
from tests.feedback.factories import ProjectFactory, make_member, make_tasks

LONG_ANSWER = "\n\n".join(f"Paragraph {i} of a long answer." for i in range(40))
CODE_ANSWER = "Here:\n\n```python\ndef f(x):\n    return '<script>alert(1)</script>'\n```\n"


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict]]:
    """(tag, attributes) of every element a browser would build from `html`."""
    parser = _Elements()
    parser.feed(html)
    return parser.found


def assert_inert(html: str) -> None:
    for tag, attrs in elements(html):
        assert tag not in {"script", "img", "iframe", "style"}, tag
        assert not any(name.startswith("on") or name == "style" for name in attrs), (tag, attrs)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def annotate(client, project):
    return client.get(reverse("feedback:annotate", args=[project.slug]))


def form_of(response, labels=("a", "b"), ranks=(1, 2)) -> dict:
    html = response.content.decode()
    token = re.search(r'name="lease_token" value="([^"]+)"', html).group(1)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)
    return {"lease_token": token, "idempotency_key": key, "confidence": "4", "comment": "kept comment",
            "flags": ["unsafe"], **{f"rank_{label}": str(rank) for label, rank in zip(labels, ranks)}}


def shown_task(response) -> ComparisonTask:
    return ComparisonTask.objects.get(pk=int(re.search(r'data-task="(\d+)"', response.content.decode()).group(1)))


def submit(client, project, task, data):
    return client.post(reverse("feedback:submit", args=[project.slug, task.pk]), data)


# --- rendering -------------------------------------------------------------------------------------------------


def test_fenced_code_with_a_language_is_highlighted_and_stays_inert():
    html = render_markdown(CODE_ANSWER + '\n<img src=x onerror="alert(1)"> <script>alert(2)</script>\n')
    assert '<span class="k">def</span>' in html  # Pygments' keyword class
    assert_inert(html)
    assert "&lt;script&gt;" in html  # shown as text, inside the code and outside


def test_only_pygments_classes_survive_on_spans():
    html = render_markdown('```python\nx = 1\n```\n\n`<span class="evil" onclick="x()">hi</span>`')
    assert_inert(html)
    classes = [attrs.get("class") for tag, attrs in elements(html) if tag == "span"]
    assert classes and set(classes) <= {"n", "o", "w", "mi"}  # "evil" was text in inline code, never a class


def test_unknown_language_is_plain_escaped_code():
    html = render_markdown("```nosuchlang\n<b onmouseover=1>x</b>\n```")
    assert_inert(html)
    assert [tag for tag, _ in elements(html)] == ["pre", "code"] and "&lt;b onmouseover=1&gt;" in html


def test_markdown_tables_render_as_tables():
    html = render_markdown("| model | score |\n|---|---|\n| a | 1 |\n")
    assert "<table>" in html and "<th>model</th>" in html and "<td>1</td>" in html


@pytest.mark.django_db
def test_long_answer_gets_the_fold_markup_and_a_short_one_does_not():
    project = ProjectFactory(overlap=1)
    annotator = make_member(project)
    make_tasks(project, 1, texts={0: LONG_ANSWER, 1: "Short."})
    html = annotate(client_for(annotator), project).content.decode()
    assert html.count("data-long") == 1  # only the long answer is foldable
    assert re.search(r'<button type="button" class="show-all" aria-controls="body-[ab]" aria-expanded="true" hidden>', html)
    assert "Paragraph 39 of a long answer." in html  # the whole text is on the page (shown without JavaScript)


# --- the lease: countdown data, renewal ------------------------------------------------------------------------


@pytest.fixture
def one_task(db):
    project = ProjectFactory(overlap=1)
    make_tasks(project, 1)
    return project


def test_page_carries_the_lease_end_with_its_time_zone(one_task):
    annotator = make_member(one_task)
    response = annotate(client_for(annotator), one_task)
    assignment = Assignment.objects.get(annotator=annotator)
    assert f'data-until="{assignment.leased_until.isoformat(timespec="microseconds")}"' in response.content.decode() \
        or f'data-until="{assignment.leased_until.isoformat()}"' in response.content.decode()
    assert re.search(r'data-until="[^"]+\+00:00"', response.content.decode())


def test_renew_extends_the_lease(one_task):
    annotator = make_member(one_task)
    client = client_for(annotator)
    task = shown_task(annotate(client, one_task))
    Assignment.objects.filter(annotator=annotator).update(leased_until=timezone.now() + timedelta(seconds=30))
    response = client.post(reverse("feedback:lease-renew", args=[one_task.slug, task.pk]))
    assert response.status_code == 200
    until = Assignment.objects.get(annotator=annotator).leased_until
    assert until > timezone.now() + timedelta(seconds=one_task.lease_seconds - 30)
    assert response.json()["leased_until"] == until.isoformat()


def test_renew_refuses_another_annotators_lease(one_task):
    holder, other = make_member(one_task), make_member(one_task)
    task = shown_task(annotate(client_for(holder), one_task))
    before = Assignment.objects.get(annotator=holder).leased_until
    response = client_for(other).post(reverse("feedback:lease-renew", args=[one_task.slug, task.pk]))
    assert response.status_code == 403 and response.json()["detail"] == services.NOT_LEASEHOLDER
    assert Assignment.objects.get(annotator=holder).leased_until == before
    assert not Assignment.objects.filter(annotator=other).exists()


def test_renew_refuses_a_forged_or_foreign_token(one_task):
    holder, other = make_member(one_task), make_member(one_task)
    page = annotate(client_for(holder), one_task)
    task = shown_task(page)
    services.release_expired_leases(project=one_task, now=timezone.now() + timedelta(days=1))
    # The holder's token does not work for someone else.
    response = client_for(other).post(reverse("feedback:lease-renew", args=[one_task.slug, task.pk]),
                                      {"lease_token": form_of(page)["lease_token"]})
    assert response.status_code == 403 and not Assignment.objects.filter(task=task).exists()


def test_renew_is_404_for_non_members(one_task):
    holder = make_member(one_task)
    task = shown_task(annotate(client_for(holder), one_task))
    stranger = make_member(ProjectFactory())
    response = client_for(stranger).post(reverse("feedback:lease-renew", args=[one_task.slug, task.pk]))
    assert response.status_code == 404


# --- late submits ----------------------------------------------------------------------------------------------


def test_late_submit_with_the_lease_still_on_record_is_stored(one_task):
    annotator = make_member(one_task)
    client = client_for(annotator)
    page = annotate(client, one_task)
    task = shown_task(page)
    Assignment.objects.filter(annotator=annotator).update(leased_until=timezone.now() - timedelta(minutes=5))
    response = submit(client, one_task, task, form_of(page))
    assert response.status_code == 302
    assert Judgement.objects.filter(task=task, annotator=annotator).count() == 1


def test_late_submit_after_release_takes_the_task_back_with_the_same_labels(one_task):
    annotator = make_member(one_task)
    client = client_for(annotator)
    page = annotate(client, one_task)
    task = shown_task(page)
    order = Assignment.objects.get(annotator=annotator).label_order
    services.release_expired_leases(project=one_task, now=timezone.now() + timedelta(days=1))
    assert not Assignment.objects.filter(annotator=annotator).exists()
    response = submit(client, one_task, task, form_of(page, ranks=(2, 1)))  # b first
    assert response.status_code == 302
    judgement = Judgement.objects.get(task=task, annotator=annotator)
    assert judgement.ranking == [[order[1]], [order[0]]]  # the labels the annotator saw, not a new shuffle
    task.refresh_from_db()
    assert task.status == ComparisonTask.Status.COMPLETE and task.slots_taken == 1


def test_late_submit_refused_when_others_took_the_place_keeps_the_ranking(one_task):
    annotator, rival = make_member(one_task), make_member(one_task)
    client = client_for(annotator)
    page = annotate(client, one_task)
    task = shown_task(page)
    services.release_expired_leases(project=one_task, now=timezone.now() + timedelta(days=1))
    assert shown_task(annotate(client_for(rival), one_task)) == task  # the only place goes to someone else
    response = submit(client, one_task, task, form_of(page, ranks=(2, 1)))
    assert response.status_code == 409
    html = response.content.decode()
    assert LEASE_TAKEN.split(",")[0] in html.replace("&#x27;", "'")
    assert re.search(r'name="rank_a"[^>]*>.*?<option value="2" selected>', html, re.S)
    assert re.search(r'name="rank_b"[^>]*>.*?<option value="1" selected>', html, re.S)
    assert "kept comment</textarea>" in html and 'value="unsafe" id="flag-unsafe" checked' in html
    assert not Judgement.objects.filter(annotator=annotator).exists()
    assert Assignment.objects.filter(task=task).count() == 1  # the rival's lease is untouched


# --- counts and the empty page ---------------------------------------------------------------------------------


def test_left_in_project_drops_right_after_a_submit(db):
    project = ProjectFactory(overlap=1)
    make_tasks(project, 3)
    annotator = make_member(project)
    client = client_for(annotator)
    page = annotate(client, project)
    assert re.search(r'id="left-in-project">3<', page.content.decode())
    submit(client, project, shown_task(page), form_of(page))
    assert re.search(r'id="left-in-project">2<', annotate(client, project).content.decode())


def test_empty_project_says_there_are_no_prompts(one_task):
    project = ProjectFactory()
    annotator = make_member(project)
    html = annotate(client_for(annotator), project).content.decode()
    assert "No task is waiting for you" in html and "No prompts have been uploaded" in html
    assert "You have judged every task" not in html


def test_tasks_held_by_others_are_explained(one_task):
    holder, waiting = make_member(one_task), make_member(one_task)
    annotate(client_for(holder), one_task)
    html = annotate(client_for(waiting), one_task).content.decode()
    assert 'data-reason="held"' in html and "being judged by other annotators" in html
    assert "You have judged every task" not in html


def test_judged_everything_thanks_only_someone_who_judged(one_task):
    annotator = make_member(one_task)
    client = client_for(annotator)
    page = annotate(client, one_task)
    submit(client, one_task, shown_task(page), form_of(page))
    html = annotate(client, one_task).content.decode()
    assert "You have judged every task you can take" in html


def test_only_skipped_tasks_is_not_called_judged_everything(db):
    project = ProjectFactory(overlap=2)
    make_tasks(project, 1)
    annotator = make_member(project)
    client = client_for(annotator)
    task = shown_task(annotate(client, project))
    client.post(reverse("feedback:skip", args=[project.slug, task.pk]))
    html = annotate(client, project).content.decode()
    assert "No task is waiting for you" in html and "You skipped the tasks" in html
    assert "You have judged every task" not in html


def test_a_long_prompt_folds_too(db):
    from feedback import importing

    project = ProjectFactory(overlap=1)
    row = importing.clean_row({"id": "long", "prompt": LONG_ANSWER, "completions": [
        {"text": "one", "model": "m0"}, {"text": "two", "model": "m1"}]}, 1)
    services.import_prompts(project=project, rows=[row])
    html = annotate(client_for(make_member(project)), project).content.decode()
    assert 'id="body-prompt" data-long' in html and 'aria-controls="body-prompt"' in html
