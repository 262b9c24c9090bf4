"""The default models, the registry's directory format (manifest, atomic save), loading, LoRA, tiny models."""

import json
import time
from pathlib import Path

import pytest
import torch

from training.pipeline.bootstrap import DEFAULT_POLICY, DEFAULT_REWARD_BACKBONE, bootstrap_default_models
from training.pipeline.models import (
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
    lora_config,
    merge_lora,
    tiny_causal_lm,
    tiny_reward_model,
)
from training.pipeline.registry_files import (
    MANIFEST_NAME,
    TamperedModelError,
    manifest_sha256,
    save_model_atomic,
    save_pretrained_atomic,
    sha256_file,
    verify_manifest,
)

pytestmark = pytest.mark.ml


class TestBootstrap:
    def test_creates_both_directories_with_manifests(self, default_models):
        assert set(default_models) == {DEFAULT_POLICY, DEFAULT_REWARD_BACKBONE}
        for name, path in default_models.items():
            manifest = verify_manifest(path)  # full sha256 check of every file
            assert manifest["name"] == name
            assert manifest["kind"] in {"policy", "reward_backbone"}
            assert manifest["source"] and manifest["created_at"]
            assert "model.safetensors" in manifest["files"]
            entry = manifest["files"]["config.json"]
            assert entry["size"] == (path / "config.json").stat().st_size
            assert entry["sha256"] == sha256_file(path / "config.json")
            assert not any(p.suffix in {".bin", ".pt", ".gguf"} for p in path.rglob("*"))
        # Nothing half-written is left beside them.
        assert not [p for p in default_models[DEFAULT_POLICY].parent.iterdir() if ".tmp-" in p.name]

    def test_second_call_is_idempotent_and_quick(self, model_dir, default_models):
        shas = {name: manifest_sha256(path) for name, path in default_models.items()}
        started = time.perf_counter()
        again = bootstrap_default_models(model_dir)
        assert time.perf_counter() - started < 3.0  # sizes only: no conversion, no re-hashing of 600 MB
        assert again == default_models
        assert {name: manifest_sha256(path) for name, path in again.items()} == shas

    def test_a_directory_without_manifest_is_not_silently_replaced(self, tmp_path):
        (tmp_path / DEFAULT_POLICY).mkdir()
        (tmp_path / DEFAULT_POLICY / "model.safetensors").write_bytes(b"half")
        with pytest.raises(TamperedModelError, match="remove it"):
            bootstrap_default_models(tmp_path)


class TestDefaultModels:
    def test_smollm2_generates_text_with_its_chat_template(self, smollm2_dir):
        tokenizer = load_tokenizer(smollm2_dir)
        model = load_causal_lm(smollm2_dir)
        assert model.dtype == torch.float32
        assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
        # <|im_end|> closes every chat turn, so it must not be the pad token.
        assert tokenizer.eos_token == "<|im_end|>"
        assert tokenizer.pad_token == "<|endoftext|>"
        assert model.config.pad_token_id == tokenizer.pad_token_id != tokenizer.eos_token_id
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": "What is the capital of France?"}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        output = model.generate(**inputs, max_new_tokens=10, do_sample=False)
        answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        assert "Paris" in answer  # the dequantised weights are the real model's

    def test_minilm_loads_as_reward_backbone_and_embeds_sensibly(self, minilm_dir):
        from transformers import AutoModel

        tokenizer = load_tokenizer(minilm_dir)
        assert not tokenizer.chat_template and tokenizer.sep_token == "[SEP]"
        reward_model = load_reward_model(minilm_dir)
        assert reward_model.config.num_labels == 1
        batch = tokenizer(["a question", "an answer"], return_tensors="pt", padding=True)
        with torch.no_grad():
            assert reward_model(**batch).logits.shape == (2, 1)
        # The encoder weights are MiniLM's: mean-pooled embeddings rank a paraphrase above an unrelated sentence.
        encoder = AutoModel.from_pretrained(str(minilm_dir), use_safetensors=True, local_files_only=True)
        sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
        batch = tokenizer(sentences, return_tensors="pt", padding=True)
        with torch.no_grad():
            hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1)
        embeddings = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        assert embeddings[0] @ embeddings[1] > embeddings[0] @ embeddings[2] + 0.2


@pytest.fixture
def registered_tiny_model(tmp_path, minilm_tokenizer) -> Path:
    dest = tmp_path / "tiny"
    save_pretrained_atomic(tiny_reward_model(minilm_tokenizer), minilm_tokenizer, dest, {"kind": "reward"})
    return dest


class TestManifest:
    def test_a_changed_byte_in_the_weights_is_refused(self, registered_tiny_model):
        weights = registered_tiny_model / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0x01
        weights.write_bytes(bytes(data))
        with pytest.raises(TamperedModelError, match="sha256"):
            verify_manifest(registered_tiny_model)
        with pytest.raises(TamperedModelError):
            load_reward_model(registered_tiny_model)

    def test_a_missing_file_is_refused(self, registered_tiny_model):
        (registered_tiny_model / "config.json").unlink()
        with pytest.raises(TamperedModelError, match="missing: config.json"):
            verify_manifest(registered_tiny_model)

    def test_an_extra_weight_file_is_refused(self, registered_tiny_model):
        (registered_tiny_model / "pytorch_model.bin").write_bytes(b"pickle")
        with pytest.raises(TamperedModelError, match="not in the manifest: pytorch_model.bin"):
            verify_manifest(registered_tiny_model)

    def test_no_manifest_is_refused_unless_verify_is_off(self, registered_tiny_model):
        (registered_tiny_model / MANIFEST_NAME).unlink()
        with pytest.raises(TamperedModelError, match="verify=False"):
            load_reward_model(registered_tiny_model)
        assert load_reward_model(registered_tiny_model, verify=False).config.num_labels == 1

    def test_tampered_error_is_a_value_error(self):
        assert issubclass(TamperedModelError, ValueError)


def write_weights(directory: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(directory / "model.safetensors"))


class TestSaveModelAtomic:
    def test_returns_the_manifest_sha_and_writes_metadata(self, registered_tiny_model, tmp_path):
        manifest = json.loads((registered_tiny_model / MANIFEST_NAME).read_text())
        assert manifest["kind"] == "reward"
        assert (registered_tiny_model / "model.safetensors").stat().st_mode & 0o777 == 0o644
        dest = tmp_path / "again"
        sha = save_model_atomic(write_weights, dest, {"kind": "reward", "run": 7})
        assert sha == manifest_sha256(dest)

    def test_a_failing_save_fn_leaves_no_destination_and_no_temporary(self, tmp_path):
        def save_half_then_fail(tmp_dir: Path) -> None:
            (tmp_dir / "model.safetensors").write_bytes(b"half a model")
            raise RuntimeError("disk full")

        with pytest.raises(RuntimeError, match="disk full"):
            save_model_atomic(save_half_then_fail, tmp_path / "model", {"kind": "reward"})
        assert list(tmp_path.iterdir()) == []

    def test_never_overwrites(self, registered_tiny_model):
        before = manifest_sha256(registered_tiny_model)
        with pytest.raises(FileExistsError):
            save_model_atomic(write_weights, registered_tiny_model, {})
        assert manifest_sha256(registered_tiny_model) == before

    def test_refuses_pickle_files(self, tmp_path):
        def save_pickle(tmp_dir: Path) -> None:
            (tmp_dir / "model.safetensors").write_bytes(b"x")
            (tmp_dir / "training_args.bin").write_bytes(b"pickle")

        with pytest.raises(ValueError, match="pickle"):
            save_model_atomic(save_pickle, tmp_path / "model", {})
        assert list(tmp_path.iterdir()) == []


    @pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
    def test_refuses_non_finite_weights_before_writing_anything(self, bad_value, tmp_path, minilm_tokenizer):
        model = tiny_reward_model(minilm_tokenizer)
        with torch.no_grad():
            model.classifier.weight[0, 0] = bad_value
        with pytest.raises(ValueError, match="non-finite.*classifier.weight"):
            save_pretrained_atomic(model, minilm_tokenizer, tmp_path / "model", {"kind": "reward"})
        assert not (tmp_path / "model").exists()
        assert list(tmp_path.iterdir()) == []  # no temporary directory either

    def test_refuses_non_finite_tensors_written_by_any_save_fn(self, tmp_path):
        from safetensors.torch import save_file

        def save_nan(tmp_dir: Path) -> None:
            save_file({"w": torch.tensor([1.0, float("nan")]), "steps": torch.tensor([3])},
                      str(tmp_dir / "model.safetensors"))

        with pytest.raises(ValueError, match="non-finite.*model.safetensors:w"):
            save_model_atomic(save_nan, tmp_path / "model", {})
        assert list(tmp_path.iterdir()) == []


class TestLoraAndTinyModels:
    @pytest.mark.parametrize("architecture", ["llama", "bert"])
    def test_reward_lora_targets_projections_and_merges_to_a_plain_model(
        self, architecture, smollm2_tokenizer, minilm_tokenizer
    ):
        from peft import get_peft_model

        tokenizer = smollm2_tokenizer if architecture == "llama" else minilm_tokenizer
        base = tiny_reward_model(tokenizer, architecture=architecture)
        base_class = type(base)
        peft_model = get_peft_model(base, lora_config(base, r=4, alpha=8, reward=True))
        trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
        assert any("lora_A" in name for name in trainable)
        head = "score" if architecture == "llama" else "classifier"
        assert any(head in name for name in trainable)  # the new head is trained in full
        merged = merge_lora(peft_model)
        assert type(merged) is base_class
        assert not any("lora" in key or "base_layer" in key for key in merged.state_dict())

    def test_causal_lora_and_tiny_llama_generate(self, smollm2_tokenizer):
        from peft import get_peft_model

        model = tiny_causal_lm(smollm2_tokenizer)
        config = lora_config(model, r=4, alpha=8)
        assert set(config.target_modules) >= {"q_proj", "v_proj", "down_proj"}
        peft_model = get_peft_model(model, config)
        inputs = smollm2_tokenizer("Hello", return_tensors="pt")
        output = peft_model.generate(**inputs, max_new_tokens=3, do_sample=False)
        assert output.shape[1] == inputs["input_ids"].shape[1] + 3

    def test_tiny_llama_dir_is_registered_and_loads(self, tiny_llama_dir):
        assert verify_manifest(tiny_llama_dir)["kind"] == "policy"
        model = load_causal_lm(tiny_llama_dir)
        assert model.config.num_hidden_layers == 2
        assert load_tokenizer(tiny_llama_dir).chat_template
