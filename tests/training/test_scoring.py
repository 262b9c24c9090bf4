import pytest
from rest_framework.test import APIClient

from tests.feedback.factories import make_member
from training import scoring, services
from training.models import ModelVersion
from training.pipeline.models import manifest_sha256, save_pretrained_atomic, load_reward_model, load_tokenizer

pytestmark = pytest.mark.django_db


@pytest.fixture
def reward_version(project, tiny_bert_dir, tmp_path):
    dest = tmp_path / "reward"
    tokenizer = load_tokenizer(tiny_bert_dir)
    save_pretrained_atomic(load_reward_model(tiny_bert_dir, tokenizer=tokenizer), tokenizer, dest, {"kind": "reward"})
    return services.register_version(project=project, name="tiny-reward", kind=ModelVersion.Kind.REWARD,
                                           path=str(dest), sha256=manifest_sha256(dest), config={}, metrics={})


def test_score_api(project, reward_version):
    client = APIClient()
    client.force_authenticate(make_member(project, "reviewer"))
    items = [{"prompt": "What is 2+2?", "completion": "4"}, {"prompt": [{"role": "user", "content": "Hi"}], "completion": "Hello!"}]
    response = client.post(f"/api/v1/model-versions/{reward_version.pk}/score/", {"items": items}, format="json")
    assert response.status_code == 200, response.content
    assert len(response.json()["scores"]) == 2
    assert client.post(f"/api/v1/model-versions/{reward_version.pk}/score/", {"items": []}, format="json").status_code == 400


def test_tampered_model_is_refused_with_409(project, reward_version):
    scoring._SCORERS.clear()
    weights = next(p for p in __import__("pathlib").Path(reward_version.path).glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    client = APIClient()
    client.force_authenticate(make_member(project, "reviewer"))
    response = client.post(f"/api/v1/model-versions/{reward_version.pk}/score/",
                           {"items": [{"prompt": "p", "completion": "c"}]}, format="json")
    assert response.status_code == 409 and "integrity" in response.json()["detail"]
