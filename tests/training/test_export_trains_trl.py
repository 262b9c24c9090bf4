"""The export contract: rows written by export_preferences train TRL's trainers as they are.

`datasets.load_dataset("json", …)` on the exported files, no column mapping, one optimiser step of
`trl.RewardTrainer` (tiny BERT over MiniLM's tokenizer) and of `trl.DPOTrainer` (tiny Llama over
SmolLM2's tokenizer, chat prompts), fp32 on the CPU.
"""

import datasets
import pytest
import trl
from django.core.management import call_command

from feedback import importing
from feedback import services as feedback_services
from tests.feedback.factories import make_member
from training.pipeline.models import load_reward_model, load_tokenizer


def export(project, rows, out):
    feedback_services.import_prompts(project=project, rows=[importing.clean_row(r, i + 1) for i, r in enumerate(rows)])
    person = make_member(project)
    while (held := feedback_services.next_task(project=project, annotator=person)) is not None:
        models = dict(held.task.completions.values_list("id", "model_name"))
        order = sorted(held.label_map().items(), key=lambda item: models[item[1]] != "answers")
        feedback_services.submit_judgement(task=held.task, annotator=person, ranking=[[label] for label, _ in order])
    call_command("export_preferences", "--project", project.slug, "--out", str(out), "--test-fraction", "0", verbosity=0)
    return datasets.load_dataset("json", data_files={"train": str(out / "train.jsonl")})["train"]


def common_args(tmp_path):
    return dict(output_dir=str(tmp_path / "trainer"), max_steps=1, per_device_train_batch_size=2, bf16=False,
                gradient_checkpointing=False, report_to=[], logging_steps=1, save_strategy="no", use_cpu=True)


@pytest.mark.django_db
def test_reward_trainer_takes_the_export(project, capital_rows, tiny_bert_dir, tmp_path):
    dataset = export(project, [{**r, "prompt": r["prompt"] if isinstance(r["prompt"], str) else r["prompt"][0]["content"]}
                               for r in capital_rows[:6]], tmp_path / "export")
    assert {"prompt", "chosen", "rejected", "margin"} <= set(dataset.column_names)
    tokenizer = load_tokenizer(tiny_bert_dir)
    tokenizer.eos_token = tokenizer.sep_token  # MiniLM has no eos; [SEP] closes a sequence
    model = load_reward_model(tiny_bert_dir, tokenizer=tokenizer)
    trainer = trl.RewardTrainer(model=model, args=trl.RewardConfig(**common_args(tmp_path), max_length=128),
                                train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train()
    assert trainer.state.global_step == 1 and result.training_loss > 0


@pytest.mark.django_db
def test_dpo_trainer_takes_the_export(project, capital_rows, tiny_llama_dir, tmp_path):
    chat_rows = [{**r, "prompt": [{"role": "user", "content": r["prompt"]}] if isinstance(r["prompt"], str) else r["prompt"]}
                 for r in capital_rows[:6]]
    dataset = export(project, chat_rows, tmp_path / "export")
    assert isinstance(dataset[0]["prompt"], list) and dataset[0]["chosen"][0]["role"] == "assistant"
    from training.pipeline.models import load_causal_lm

    tokenizer = load_tokenizer(tiny_llama_dir)
    model = load_causal_lm(tiny_llama_dir)
    trainer = trl.DPOTrainer(model=model, args=trl.DPOConfig(**common_args(tmp_path), max_length=128),
                             train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train()
    assert trainer.state.global_step == 1 and result.training_loss > 0
