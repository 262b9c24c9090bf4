"""One held-out split everywhere: the export's test prompts, PPO's held-out prompts, a DPO round's held-out pairs
and publishing's duel prompts are the same prompts, because each splits by `Prompt.split_key` (the external id,
else `prompt-<pk>`). PPO's guarantee that its held-out prompts never trained the reward model rests on this."""

from feedback import importing, services
from feedback.exports import ExportFilters
from feedback.models import Prompt, split_key_of
from feedback.services import snapshots
from tests.feedback.factories import judge, make_member
from training.models import ModelVersion
from training.pipeline.rounds.config import DPORoundConfig
from training.runners.rounds.train import _split as round_split
from training.runners.policy import _prompt_split
from training.runners.publish import held_out_test

FRACTION, SEED = 0.3, 7  # not the defaults (0.1, 0), so a split that ignored the snapshot's settings would differ
PROMPTS = 40


def import_prompts(project):
    """Half the prompts carry an external id, half do not (they are keyed `prompt-<pk>`); each has one task."""
    rows = []
    for i in range(PROMPTS):
        completions = [{"text": f"answer {i}.{j}", "model": f"m{j}"} for j in (0, 1)]
        raw = {"prompt": f"Question {i}?", "completions": completions}
        if i % 2:
            raw["id"] = f"q{i}"
        rows.append(importing.clean_row(raw, i + 1))
    services.import_prompts(project=project, rows=rows)


def held_out_keys(rows) -> set[str]:
    return {str(row["prompt_id"]) for row in rows}


def test_the_export_ppo_dpo_rounds_and_publishing_hold_out_the_same_prompts(project):
    import_prompts(project)
    person = make_member(project)
    for _ in range(PROMPTS):
        judge(project, person, [["m0"], ["m1"]])  # one decided pair per prompt: every prompt has a row
    prompts = list(Prompt.objects.filter(project=project))
    key_of_text = {p.text: p.split_key for p in prompts}
    without_id = [p for p in prompts if not p.external_id]
    assert {p.split_key for p in without_id} == {f"prompt-{p.pk}" for p in without_id}

    snapshot = services.create_snapshot(project=project, filters=ExportFilters(test_fraction=FRACTION, split_seed=SEED))
    rows = list(snapshots.stored_rows(snapshot))
    assert held_out_keys(rows) == {p.split_key for p in prompts}
    export = held_out_keys(r for r in rows if r["split"] == "test")
    assert 0 < len(export) < PROMPTS
    assert any(key.startswith("prompt-") for key in export) and any(key.startswith("q") for key in export)

    ppo_train, ppo_held_out = _prompt_split(project, snapshot)
    assert {key_of_text[text] for text in ppo_held_out} == export
    assert not {key_of_text[text] for text in ppo_train} & export

    # A round's pairs: people's from a snapshot of its tasks, the reward model's keyed as `rounds.sample` keys them.
    people = [{**row, "source": "people"} for row in snapshots.stored_rows(services.create_snapshot(
        project=project, only_tasks=frozenset(project.tasks.values_list("pk", flat=True))))]
    machine = [{"prompt_id": p.split_key, "source": "reward_model"} for p in prompts]
    _, round_held_out = round_split(people + machine, DPORoundConfig(test_fraction=FRACTION, split_seed=SEED))
    assert held_out_keys(r for r in round_held_out if r["source"] == "people") == export
    assert held_out_keys(r for r in round_held_out if r["source"] == "reward_model") == export

    reward = ModelVersion.objects.create(project=project, name="rm", kind=ModelVersion.Kind.REWARD, path="unused",
                                         sha256="0" * 64, snapshot=snapshot)
    is_held_out = held_out_test(project, reward)
    assert {p.split_key for p in prompts if is_held_out(p)} == export


def test_the_key_of_a_values_row_is_the_key_of_its_prompt(project):
    import_prompts(project)
    for pk, external_id in Prompt.objects.filter(project=project).values_list("pk", "external_id"):
        assert split_key_of(external_id, pk) == Prompt.objects.get(pk=pk).split_key
        assert split_key_of(external_id, pk) == (external_id if external_id else f"prompt-{pk}")
