"""Reward-model training (trl.RewardTrainer), evaluation metrics, cancellation and scoring, on real models."""

import hashlib
import json
import math
import random

import pytest
from safetensors import safe_open

from training.pipeline.callbacks import TrainedModel, TrainingCancelled
from training.pipeline.reward.config import RewardConfig
from training.pipeline.fields import config_from_dict
from training.pipeline.data import input_format_for, preference_dataset, write_preference_jsonl
from training.pipeline.models import load_tokenizer, tiny_reward_model
from training.pipeline.registry_files import save_pretrained_atomic, verify_manifest
from training.pipeline.reward.trainer import train_reward_model, trl_reward_args
from training.pipeline.reward.eval import expected_calibration_error, pearson, preference_metrics, wilson_interval
from training.pipeline.reward.scoring import RewardScorer, tokenize_pair

pytestmark = pytest.mark.ml

EVAL_KEYS = {
    "eval/accuracy",
    "eval/agreement_ceiling",
    "eval/accuracy_vs_ceiling",
    "eval/ece",
    "eval/reward_length_corr",
    "eval/margin",
    "eval/accuracy_low",
    "eval/accuracy_high",
    "eval/n_pairs",
    "eval/dropped_pairs",
}


def held_out_by_prompt(rows, every: int = 3):
    """(train, test): every `every`-th prompt held out, all its pairs on the test side (as the export splits)."""
    is_test = [int(row["prompt_id"].split("-")[1]) % every == 0 for row in rows]
    return [r for r, t in zip(rows, is_test) if not t], [r for r, t in zip(rows, is_test) if t]


@pytest.fixture(scope="module")
def split_rows(preference_rows):
    return held_out_by_prompt(preference_rows)


def tiny_config(backbone, **overrides) -> RewardConfig:
    settings = {"backbone": str(backbone), "max_steps": 4, "batch_size": 4, "logging_steps": 1, "learning_rate": 1e-3}
    return RewardConfig(**{**settings, **overrides})


# --- learning a preference, full fine-tuning and LoRA -------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"learning_rate": 1e-4}, id="full"),
        pytest.param({"use_lora": True, "lora_r": 8, "lora_alpha": 16, "learning_rate": 1e-3}, id="lora"),
    ],
)
def test_minilm_learns_that_answers_beat_evasions(overrides, minilm_dir, split_rows, tmp_path):
    train_rows, eval_rows = split_rows
    steps = []
    cfg = RewardConfig(backbone=str(minilm_dir), num_train_epochs=1, batch_size=8, logging_steps=2, **overrides)
    result = train_reward_model(
        cfg, train_rows, eval_rows, tmp_path / "rm", on_step=lambda step, metrics: steps.append((step, metrics))
    )

    metrics = result.metrics
    assert metrics["eval/accuracy"] >= 0.75, metrics  # held-out prompts: clearly better than chance (0.5)
    assert EVAL_KEYS <= set(metrics)
    assert metrics["eval/n_pairs"] == len(eval_rows) and metrics["train/pairs"] == len(train_rows)
    assert 0.5 < metrics["eval/accuracy_low"] <= metrics["eval/accuracy"] <= metrics["eval/accuracy_high"] <= 1
    assert metrics["train/dropped_pairs"] == 0 and metrics["train/pairs_per_s"] > 0
    ceiling = sum(row["agreement"] for row in eval_rows) / len(eval_rows)
    assert metrics["eval/agreement_ceiling"] == pytest.approx(ceiling)
    assert metrics["eval/accuracy_vs_ceiling"] == pytest.approx(metrics["eval/accuracy"] / ceiling)
    assert 0 <= metrics["eval/ece"] <= 0.5
    json.dumps(metrics)  # storable as is

    # on_step got TRL's logs every logging step
    assert [step for step, _ in steps if "loss" in _][:2] == [2, 4]
    assert {"loss", "accuracy", "margin", "learning_rate"} <= set(steps[0][1])

    # A plain, verified safetensors sequence-classification model: no LoRA leftovers, no pickle
    manifest = verify_manifest(result.path)
    assert manifest["kind"] == "reward"
    assert manifest["input_format"] == {"conversational": False, "separator": " [SEP] "}
    assert manifest["config"]["use_lora"] == cfg.use_lora
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in manifest["files"])
    with safe_open(result.path / "model.safetensors", "pt") as weights:
        assert not [key for key in weights.keys() if "lora" in key or "base_layer" in key or "modules_to_save" in key]
    assert json.loads((result.path / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]

    # The registered model scores new pairs, text or chat, the same way
    scorer = RewardScorer(result.path)
    prompt = "What is the capital of Atlantis?"
    answer, evasion = "The capital of Atlantis is Poseidonia.", "Sorry. You could look it up yourself."
    rewards = scorer.score([prompt, [{"role": "user", "content": prompt}]], [answer, evasion])
    assert rewards[0] > rewards[1]
    assert result.manifest_sha256 == hashlib.sha256((result.path / "manifest.json").read_bytes()).hexdigest()


# --- the knobs, on a tiny BERT (fast) -------------------------------------------------------------------------------


WORDS = ("apple river stone cloud green window music paper light table garden yellow winter train silver forest "
         "ocean pencil bridge candle").split()


def marker_rows(n: int, seed: int, marker: str = "please") -> list[dict]:
    """Pairs of random word strings where the chosen one contains `marker` and the rejected one does not."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        chosen, rejected = rng.sample(WORDS, 4), rng.sample(WORDS, 4)
        chosen.insert(rng.randrange(5), marker)
        rows.append({"prompt": " ".join(rng.sample(WORDS, 3)) + "?", "chosen": " ".join(chosen),
                     "rejected": " ".join(rejected), "prompt_id": f"m{seed}-{i}"})
    return rows


def test_reward_model_learns_a_rule_it_did_not_start_with(tiny_bert_dir, tmp_path):
    """Learning, not luck: the rule is oriented so the untrained model gets it wrong on the held-out pairs,
    so only training can lift the lower end of the accuracy interval above chance."""
    train_rows, test_rows = marker_rows(64, seed=0), marker_rows(40, seed=1)
    scorer = RewardScorer(tiny_bert_dir)

    def untrained_accuracy(rows) -> float:
        chosen = scorer.score([r["prompt"] for r in rows], [r["chosen"] for r in rows])
        rejected = scorer.score([r["prompt"] for r in rows], [r["rejected"] for r in rows])
        return sum(c > r for c, r in zip(chosen, rejected)) / len(rows)

    if untrained_accuracy(test_rows) > 0.5:  # then "no marker" is the rule to learn
        train_rows, test_rows = ([dict(r, chosen=r["rejected"], rejected=r["chosen"]) for r in rows]
                                 for rows in (train_rows, test_rows))
    assert untrained_accuracy(test_rows) < 0.5
    cfg = tiny_config(tiny_bert_dir, max_steps=30, batch_size=8, learning_rate=1e-3, logging_steps=10)
    metrics = train_reward_model(cfg, train_rows, test_rows, tmp_path / "rm").metrics
    assert metrics["eval/n_pairs"] == 40
    assert metrics["eval/accuracy"] >= 0.85 and metrics["eval/accuracy_low"] > 0.5, metrics


def first_step_loss(backbone, rows, tmp_path, **overrides) -> float:
    losses = []
    cfg = tiny_config(backbone, max_steps=1, center_rewards_coefficient=None, **overrides)
    train_reward_model(cfg, rows, [], tmp_path, on_step=lambda step, metrics: losses.append(metrics.get("loss")))
    return next(loss for loss in losses if loss is not None)


def test_margins_enter_the_loss_as_trl_defines_it(tiny_bert_dir, preference_rows, tmp_path):
    """On by default: the first step's loss is TRL's mean −logsigmoid(r_chosen − r_rejected − margin) with
    margin = consensus strength × the judges' confidence weight (data.pair_margin), at the starting weights."""
    import torch

    from training.pipeline.data import pair_margin

    rows = [dict(r, confidence=c) for r, c in zip(preference_rows[:8], [5, 3, 1, None, 5, 2, 4.5, 5])]
    plain = first_step_loss(tiny_bert_dir, rows, tmp_path / "plain", use_margin=False, batch_size=8)
    with_margin = first_step_loss(tiny_bert_dir, rows, tmp_path / "margin", batch_size=8)
    scorer = RewardScorer(tiny_bert_dir, verify=False)
    gaps = (torch.tensor(scorer.score([r["prompt"] for r in rows], [r["chosen"] for r in rows]))
            - torch.tensor(scorer.score([r["prompt"] for r in rows], [r["rejected"] for r in rows])))
    margins = torch.tensor([pair_margin(r) for r in rows])
    assert margins[2] == 0.0 and margins[3] == pytest.approx(rows[3]["margin"])  # unsure: no gap; unknown: consensus
    assert plain == pytest.approx(float(-torch.nn.functional.logsigmoid(gaps).mean()), abs=2e-3)
    assert with_margin == pytest.approx(float(-torch.nn.functional.logsigmoid(gaps - margins).mean()), abs=2e-3)
    assert with_margin > plain + 0.05
    assert RewardConfig().use_margin  # on by default


def test_on_step_every_logging_step_and_history(tiny_bert_dir, split_rows, tmp_path):
    seen = []
    result = train_reward_model(
        tiny_config(tiny_bert_dir, logging_steps=2), *split_rows, tmp_path / "rm",
        on_step=lambda step, metrics: seen.append(step),
    )
    assert seen[:2] == [2, 4]
    assert [h["step"] for h in result.history][:2] == [2.0, 4.0]
    assert result.metrics["train/steps"] == 4


def test_should_stop_cancels_and_saves_nothing(tiny_bert_dir, split_rows, tmp_path):
    polls = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) >= 3  # the first poll is before training; then after steps 1, 2

    with pytest.raises(TrainingCancelled) as cancelled:
        cfg = tiny_config(tiny_bert_dir, max_steps=50)
        train_reward_model(cfg, *split_rows, tmp_path / "rm", should_stop=should_stop)
    assert cancelled.value.step == 2
    assert not (tmp_path / "rm").exists()
    assert list(tmp_path.iterdir()) == []


def test_pairs_past_max_length_are_dropped_and_counted(tiny_bert_dir, preference_rows, tmp_path):
    long_rows = [dict(row, chosen=row["chosen"] + " and so on" * 40) for row in preference_rows[:6]]
    train_rows, eval_rows = preference_rows[:20] + long_rows[:3], preference_rows[20:30] + long_rows[3:]
    result = train_reward_model(tiny_config(tiny_bert_dir, max_length=64), train_rows, eval_rows, tmp_path / "rm")
    assert result.metrics["train/dropped_pairs"] == 3 and result.metrics["train/pairs"] == 20
    assert result.metrics["eval/dropped_pairs"] == 3 and result.metrics["eval/n_pairs"] == 10


@pytest.mark.parametrize("eval_rows", [None, []])
def test_without_eval_rows_there_is_no_evaluation(eval_rows, tiny_bert_dir, preference_rows, tmp_path):
    result = train_reward_model(tiny_config(tiny_bert_dir, max_steps=1), preference_rows, eval_rows, tmp_path / "rm")
    assert isinstance(result, TrainedModel) and result.model is not None
    assert result.metrics["train/pairs"] == len(preference_rows)
    assert not [key for key in result.metrics if key.startswith("eval/")]


def test_refuses_an_existing_output_dir(tiny_bert_dir, preference_rows, tmp_path):
    with pytest.raises(FileExistsError):
        train_reward_model(tiny_config(tiny_bert_dir), preference_rows, [], tmp_path)


def test_a_chat_backbone_trains_on_conversational_rows(tiny_llama_dir, split_rows, tmp_path):
    result = train_reward_model(tiny_config(tiny_llama_dir, max_steps=2), *split_rows, tmp_path / "rm")
    manifest = verify_manifest(result.path)
    assert manifest["input_format"]["conversational"] is True
    assert json.loads((result.path / "config.json").read_text())["architectures"] == ["LlamaForSequenceClassification"]
    assert RewardScorer(result.path).tokenizer.pad_token == "<|endoftext|>"


# --- scoring ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama_reward_dir(tmp_path_factory, smollm2_tokenizer):
    dest = tmp_path_factory.mktemp("rm") / "tiny-llama-reward"
    save_pretrained_atomic(tiny_reward_model(smollm2_tokenizer, architecture="llama"), smollm2_tokenizer, dest, {})
    return dest


@pytest.mark.parametrize("which", ["tiny_bert_dir", "tiny_llama_reward_dir"])
def test_batched_scores_equal_one_by_one_scores(which, request, preference_rows):
    scorer = RewardScorer(request.getfixturevalue(which), batch_size=4)
    prompts = [row["prompt"] for row in preference_rows[:6]]
    completions = [row["chosen"] for row in preference_rows[:3]] + ["Short.", "A much longer reply " * 5, "Mid."]
    batched = scorer.score(prompts, completions)
    single = [scorer.score([p], [c])[0] for p, c in zip(prompts, completions)]
    assert batched == pytest.approx(single, abs=1e-5)  # padding never leaks into a score
    assert all(isinstance(x, float) for x in batched)


def test_scorer_takes_text_decoded_from_another_tokenizer(tiny_bert_dir, smollm2_tokenizer):
    policy_ids = smollm2_tokenizer("The capital of Peru is Lima.")["input_ids"]  # a policy's completion tokens
    completion = smollm2_tokenizer.decode(policy_ids, skip_special_tokens=True)
    scorer = RewardScorer(tiny_bert_dir)
    assert len(scorer.score(["Capital of Peru?"], [completion])) == 1


def test_scorer_truncates_long_pairs_keeping_the_first_token(tiny_bert_dir):
    scorer = RewardScorer(tiny_bert_dir, max_length=16)
    rewards = scorer.score(["q " * 100, "short"], ["a " * 100, "answer"])
    assert scorer.truncated == 1 and all(math.isfinite(r) for r in rewards)


@pytest.mark.parametrize("backbone", ["tiny_bert_dir", "tiny_llama_dir"])
def test_tokenize_pair_matches_trl_preprocessing(backbone, request, preference_rows, tmp_path):
    """The scorer must present pairs exactly as RewardTrainer did in training."""
    import trl

    path = request.getfixturevalue(backbone)
    tokenizer = load_tokenizer(path)
    if tokenizer.eos_token is None:
        tokenizer.eos_token = tokenizer.sep_token  # as prepare_reward_backbone does for MiniLM
    fmt = input_format_for(tokenizer)
    rows = preference_rows[:4]
    model = tiny_reward_model(tokenizer, architecture="llama" if fmt.conversational else "bert")
    trainer = trl.RewardTrainer(
        model=model,
        args=trl_reward_args(tiny_config(path), str(tmp_path), 512),
        train_dataset=preference_dataset(rows, fmt),
        processing_class=tokenizer,
    )
    for row, prepared in zip(rows, trainer.train_dataset):
        assert prepared["chosen_ids"] == tokenize_pair(tokenizer, row["prompt"], row["chosen"], fmt)
        assert prepared["rejected_ids"] == tokenize_pair(tokenizer, row["prompt"], row["rejected"], fmt)


# --- the export format feeds TRL as it is ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["text", "chat"])
def test_exported_jsonl_trains_trl_reward_trainer_without_column_mapping(
    shape, preference_rows, smollm2_tokenizer, tmp_path
):
    import datasets
    import trl

    # One shape per file, as the export writes it: TRL looks at the first row to pick text or chat.
    def as_text(value):
        return value if isinstance(value, str) else value[0]["content"]

    def as_chat(value, role):
        return [{"role": role, "content": value}] if isinstance(value, str) else value

    rows = preference_rows[:8]
    if shape == "text":
        rows = [dict(row, prompt=as_text(row["prompt"])) for row in rows]
    else:
        rows = [
            dict(
                row,
                prompt=as_chat(row["prompt"], "user"),
                chosen=as_chat(row["chosen"], "assistant"),
                rejected=as_chat(row["rejected"], "assistant"),
            )
            for row in rows
        ]
    path = tmp_path / "export.jsonl"
    write_preference_jsonl(rows, path)
    dataset = datasets.load_dataset("json", data_files=str(path), split="train")
    assert {"prompt", "chosen", "rejected", "margin", "agreement", "snapshot"} <= set(dataset.column_names)

    trainer = trl.RewardTrainer(
        model=tiny_reward_model(smollm2_tokenizer, architecture="llama"),
        args=trl.RewardConfig(
            output_dir=str(tmp_path / "out"),
            max_steps=1,
            per_device_train_batch_size=4,
            bf16=False,
            activation_checkpointing=False,
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            dataloader_pin_memory=False,
        ),
        train_dataset=dataset,
        processing_class=smollm2_tokenizer,
    )
    output = trainer.train()
    assert trainer.state.global_step == 1 and math.isfinite(output.training_loss)


# --- metrics and config, by hand ------------------------------------------------------------------------------------


def test_preference_metrics_by_hand():
    metrics = preference_metrics(
        [2.0, 1.0, 0.0, 3.0],
        [0.0, 2.0, -1.0, 3.0],  # margins 2, -1, 1, 0 → 2 of 4 correct (a tie is not a win)
        agreement=[1.0, 0.5, None, 0.75],
        chosen_lengths=[10, 20, 30, 40],
        rejected_lengths=[10, 20, 30, 40],
    )
    assert metrics["eval/accuracy"] == 0.5
    assert metrics["eval/agreement_ceiling"] == pytest.approx(0.75)
    assert metrics["eval/accuracy_vs_ceiling"] == pytest.approx(0.5 / 0.75)
    assert metrics["eval/margin"] == pytest.approx(0.5)
    assert metrics["eval/reward_length_corr"] == pytest.approx(pearson([2, 1, 0, 3, 0, 2, -1, 3], [10, 20, 30, 40] * 2))


def test_expected_calibration_error_by_hand():
    assert expected_calibration_error([0.5 + 1e-9] * 4) == pytest.approx(0.5)  # right, at 50% confidence
    assert expected_calibration_error([0.99, 0.99]) == pytest.approx(0.01)  # right, 99% sure
    # one right at 0.9 and one wrong at 0.9 in the same bin: accuracy 0.5 vs confidence 0.9
    assert expected_calibration_error([0.9, 0.1]) == pytest.approx(0.4)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0) and pearson([1, 1], [1, 2]) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("learning_rate", 0), ("batch_size", 0), ("max_length", 4), ("eval_batch_size", 0), ("lora_dropout", 1.0),
     ("center_rewards_coefficient", -1.0), ("backbone", " "), ("max_steps", 0)],
)
def test_reward_config_checks_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"RewardConfig.{field}"):
        RewardConfig(**{field: value})


def test_reward_config_from_dict_and_every_field_has_help():
    import dataclasses

    cfg = config_from_dict(RewardConfig, {"use_lora": True, "learning_rate": 1e-3})
    assert cfg.use_lora and dataclasses.asdict(cfg)["learning_rate"] == 1e-3
    with pytest.raises(ValueError, match="unknown RewardConfig setting"):
        config_from_dict(RewardConfig, {"lr": 1})
    assert all(f.metadata.get("help") for f in dataclasses.fields(RewardConfig))
    args = trl_reward_args(cfg, "unused-output-dir", 128)
    assert args.bf16 is False and args.gradient_checkpointing is False and args.report_to == []


def test_config_from_dict_parses_strings_to_the_declared_types():
    cfg = config_from_dict(RewardConfig, {"learning_rate": "3e-4", "max_steps": "10", "use_lora": "true",
                                          "center_rewards_coefficient": "null", "num_train_epochs": 2})
    assert cfg.learning_rate == 3e-4 and isinstance(cfg.learning_rate, float)
    assert cfg.max_steps == 10 and cfg.use_lora is True and cfg.center_rewards_coefficient is None
    assert isinstance(cfg.num_train_epochs, float)


@pytest.mark.parametrize(
    ("field", "value"),
    [("learning_rate", "fast"), ("max_steps", 2.5), ("use_lora", "maybe"), ("backbone", 3), ("batch_size", True),
     ("center_rewards_coefficient", "lots")],
)
def test_config_from_dict_names_the_field_of_a_bad_value(field, value):
    with pytest.raises(ValueError, match=f"RewardConfig.{field}"):
        config_from_dict(RewardConfig, {field: value})


def test_wilson_interval_by_hand():
    low, high = wilson_interval(8, 10)  # p = 0.8, n = 10: the textbook 0.490 .. 0.943
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 10)[0] == pytest.approx(0.0)
    assert wilson_interval(0, 0) == (None, None)
    metrics = preference_metrics([1.0] * 8 + [0.0] * 2, [0.0] * 8 + [1.0] * 2)
    assert metrics["eval/n_pairs"] == 10 and metrics["eval/accuracy"] == 0.8
    assert (metrics["eval/accuracy_low"], metrics["eval/accuracy_high"]) == pytest.approx((low, high))
