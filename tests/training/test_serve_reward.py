"""`serve_reward`: a registered reward model over HTTP in OpenRLHF's remote-reward protocol, called the way
OpenRLHF's client (requests/aiohttp POST of {"query", "prompts", "labels"}), TRL's `reward_funcs` and verl's
custom reward function call it. The expected rewards come from a second RewardScorer loaded from the same files,
never from the server."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command
from django.db import connection

from training import services
from training.models import ModelVersion
from training.pipeline.reward import client as reward_client, server as reward_server
from training.pipeline.registry_files import manifest_sha256
from training.pipeline.reward.scoring import RewardScorer

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "a-long-enough-test-token-0123456789"

QUESTIONS = ["What is the capital of France?", "Which city is the capital of Japan?", "Name the capital of Peru.",
             "What is 2+2?", "Say hello.", "Which river flows through Cairo?"]
ANSWERS = ["The capital of France is Paris.", "Sorry, I cannot help with that.", "Lima is the capital of Peru.",
           "4", "Hello!", "Why do you want to know? Geography is boring."]


def pairs(n: int) -> tuple[list[str], list[str]]:
    prompts = [f"{QUESTIONS[i % len(QUESTIONS)]} (#{i})\n" for i in range(n)]
    responses = [ANSWERS[(i * 5) % len(ANSWERS)] + " " * (i % 3) for i in range(n)]
    return prompts, responses


@pytest.fixture(scope="module")
def oracle(tiny_reward_dir) -> RewardScorer:
    """The scorer the server should agree with, loaded separately from the server's own."""
    return RewardScorer(tiny_reward_dir)


def start(app) -> tuple[str, object]:
    server = reward_server.make_server(app, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_port}", server


def stop(server) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def served(tiny_reward_dir):
    url, server = start(reward_server.scorer_app(RewardScorer(tiny_reward_dir), info={"model": "tiny-reward"}))
    yield url
    stop(server)


@pytest.fixture(scope="module")
def served_with_token(tiny_reward_dir):
    url, server = start(reward_server.scorer_app(RewardScorer(tiny_reward_dir), token=TOKEN))
    yield url
    stop(server)


def openrlhf_post(url: str, data, headers: dict | None = None) -> requests.Response:
    """What OpenRLHF's remote-reward client sends (request_api_wrapper: requests.post with json= and this header)."""
    return requests.post(url=f"{url}/get_reward", json=data,
                         headers={"Content-Type": "application/json", **(headers or {})}, timeout=300)


# --- OpenRLHF's client ----------------------------------------------------------------------------------------


@pytest.mark.ml
def test_openrlhf_request_gets_the_scorers_rewards_in_order(served, oracle):
    prompts, responses = pairs(40)  # more than one forward batch (16)
    expected = oracle.score(prompts, responses)
    assert len(set(round(r, 4) for r in expected)) > 5  # distinct enough for order to show

    reply = openrlhf_post(served, {"query": [p + r for p, r in zip(prompts, responses)], "prompts": prompts,
                                   "labels": [None] * 40})
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "application/json"
    body = reply.json()
    assert body["rewards"] == pytest.approx(expected, abs=1e-4)
    assert body["scores"] == body["rewards"] and body["extra_logs"] == {}  # as OpenRLHF's own serve_rm answers

    # Order follows the request, and each reward is the pair's own, whatever else is in the batch.
    queries = [p + r for p, r in zip(prompts, responses)]
    reply = openrlhf_post(served, {"query": queries[::-1], "prompts": prompts[::-1]})
    assert reply.json()["rewards"] == pytest.approx(expected[::-1], abs=1e-4)
    single = openrlhf_post(served, {"query": [prompts[7] + responses[7]], "prompts": [prompts[7]], "labels": ["x"]})
    assert single.json()["rewards"] == pytest.approx([expected[7]], abs=1e-4)


@pytest.mark.ml
def test_query_is_split_at_its_prompt(served, oracle):
    prompts, responses = pairs(3)
    expected = oracle.score(prompts, responses)
    # A decoded BOS before the prompt (OpenRLHF decodes with skip_special_tokens=False) does not change the split.
    reply = openrlhf_post(served, {"query": ["<s>" + p + r for p, r in zip(prompts, responses)], "prompts": prompts})
    assert reply.json()["rewards"] == pytest.approx(expected, abs=1e-4)
    # Without prompts, the whole query is the response to an empty prompt.
    queries = [p + r for p, r in zip(prompts, responses)]
    reply = openrlhf_post(served, {"query": queries})
    assert reply.json()["rewards"] == pytest.approx(oracle.score([""] * 3, queries), abs=1e-4)
    assert openrlhf_post(served, {"query": []}).json()["rewards"] == []


# --- TRL's reward_funcs ---------------------------------------------------------------------------------------


@pytest.mark.ml
def test_remote_reward_is_a_trl_reward_function(served, oracle):
    from trl.trainer.utils import get_callable_name, is_async_callable

    reward = reward_client.RemoteReward(served, batch_size=5)  # 12 pairs go as three requests
    assert get_callable_name(reward) == "remote_reward" and reward.__qualname__ == "remote_reward"
    assert not is_async_callable(reward)  # TRL calls it synchronously
    prompts, responses = pairs(12)
    # GRPOTrainer._calculate_rewards calls reward_func(prompts=, completions=, completion_ids=, **dataset columns).
    rewards = reward(prompts=prompts, completions=responses, completion_ids=[[1, 2]] * 12,
                     ground_truth=["-"] * 12, trainer_state=None, log_extra=lambda *a, **k: None,
                     log_metric=lambda *a, **k: None)
    assert rewards == pytest.approx(oracle.score(prompts, responses), abs=1e-4)

    # Conversational datasets: prompt and completion are message lists; single-turn ones score as their text.
    chat_prompts = [[{"role": "user", "content": q}] for q in QUESTIONS]
    chat_completions = [[{"role": "assistant", "content": a}] for a in ANSWERS]
    rewards = reward(prompts=chat_prompts, completions=chat_completions)
    assert rewards == pytest.approx(oracle.score(QUESTIONS, ANSWERS), abs=1e-4)


def test_client_flattens_messages_as_the_pipeline_does():
    from training.pipeline.data import messages_to_text

    for value in ("plain", [{"role": "user", "content": "Hi"}],
                  [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]):
        assert reward_client.as_text(value) == messages_to_text(value)


# --- verl's custom reward function ----------------------------------------------------------------------------


def load_like_verl(path: Path, name: str):
    """verl's load_extern_object: import the file by path (no package), then getattr the function."""
    spec = importlib.util.spec_from_file_location("custom_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


@pytest.mark.ml
def test_verl_compute_score(served, oracle, monkeypatch):
    client_file = REPO_ROOT / "training" / "pipeline" / "reward" / "client.py"

    compute_score = load_like_verl(client_file, "compute_score")
    prompts, responses = pairs(4)
    expected = oracle.score(prompts, responses)
    # NaiveRewardManager: keyword arguments, plus custom_reward_function.reward_kwargs (here url=).
    got = [compute_score(data_source="rlhf", solution_str=r, ground_truth=None,
                         extra_info={"prompt": p, "index": i}, url=served)
           for i, (p, r) in enumerate(zip(prompts, responses))]
    assert got == pytest.approx(expected, abs=1e-4)
    # The address from the environment, a chat prompt, and the batch manager's plural signature.
    monkeypatch.setenv("REWARD_SERVER_URL", served)
    assert compute_score("rlhf", responses[0], None, {"prompt": [{"role": "user", "content": prompts[0]}]}) \
        == pytest.approx(expected[0], abs=1e-4)
    batch = load_like_verl(client_file, "compute_score_batch")
    got = batch(data_sources=["rlhf"] * 4, solution_strs=responses, ground_truths=[None] * 4,
                extra_infos=[{"prompt": p} for p in prompts])
    assert got == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ValueError, match="extra_info"):
        compute_score("rlhf", "an answer", None, {"index": 3})


# --- bounds and bad input -------------------------------------------------------------------------------------


@pytest.mark.ml
@pytest.mark.parametrize(("body", "field", "code"), [
    ({"prompts": ["p"]}, "query", "invalid_field"),
    ({"query": "p r"}, "query", "invalid_field"),
    ({"query": ["ok", 3]}, "query[1]", "invalid_field"),
    ({"query": ["ok", None]}, "query[1]", "invalid_field"),
    ({"query": ["p r"], "prompts": [["p"]]}, "prompts[0]", "invalid_field"),
    ({"query": ["p r", "q s"], "prompts": ["p"]}, "prompts", "invalid_field"),
    ({"query": ["p r"], "prompts": ["x"]}, "prompts[0]", "prompt_not_in_query"),
    ({"query": ["p r"], "labels": [1, 2]}, "labels", "invalid_field"),
    ({"query": ["x"] * 257}, "query", "too_many_items"),
    ({"query": ["ok", "x" * 32_001]}, "query[1]", "text_too_long"),
    ({"query": ["p" * 32_001 + " r"], "prompts": ["p" * 32_001]}, "query[0]", "text_too_long"),
    (["p r"], "body", "not_json"),
])
def test_bad_bodies_are_400s_naming_the_field(served, body, field, code):
    reply = openrlhf_post(served, body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"] == field and reply.json()["code"] == code


@pytest.mark.ml
def test_non_json_wrong_method_unknown_path_and_oversized_body(served, tiny_reward_dir):
    for data in (b"{not json", b"\xff\xfe", b""):
        reply = requests.post(f"{served}/get_reward", data=data, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400 and reply.json()["field"] == "body", data
    reply = requests.get(f"{served}/get_reward")
    assert reply.status_code == 405 and reply.headers["Allow"] == "POST"
    assert requests.post(f"{served}/rewards", json={"query": ["x"]}).status_code == 404
    assert requests.get(f"{served}/health").json() == {"status": "ok", "model": "tiny-reward"}
    # The server still answers after every refusal.
    assert openrlhf_post(served, {"query": ["p r"], "prompts": ["p"]}).status_code == 200

    small = reward_server.RequestLimits(max_items=4, max_text_chars=100, max_body_bytes=200)
    url, server = start(reward_server.RewardApp(lambda p, c: [0.0] * len(p), limits=small))
    try:
        reply = openrlhf_post(url, {"query": ["x" * 90, "y" * 90, "z" * 90]})
        assert reply.status_code == 413 and reply.json()["field"] == "body"
        reply = openrlhf_post(url, {"query": ["x"] * 5})
        assert reply.status_code == 400 and reply.json()["field"] == "query"
    finally:
        stop(server)


# --- the token ------------------------------------------------------------------------------------------------


@pytest.mark.ml
def test_token_is_required_when_set(served_with_token, oracle):
    prompts, responses = pairs(3)
    body = {"query": [p + r for p, r in zip(prompts, responses)], "prompts": prompts}
    for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN[:-1]}"}):
        reply = openrlhf_post(served_with_token, body, headers)
        assert reply.status_code == 401, headers
        assert reply.headers["WWW-Authenticate"].startswith("Bearer") and "rewards" not in reply.json()
    assert requests.get(f"{served_with_token}/health").status_code == 401
    reply = requests.post(f"{served_with_token}/get_reward", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 200
    assert reply.json()["rewards"] == pytest.approx(oracle.score(prompts, responses), abs=1e-4)

    with pytest.raises(reward_client.RemoteRewardError) as refused:
        reward_client.RemoteReward(served_with_token)(prompts, responses)
    assert refused.value.status == 401
    assert reward_client.RemoteReward(served_with_token, token=TOKEN)(prompts, responses) \
        == pytest.approx(oracle.score(prompts, responses), abs=1e-4)


def test_exposed_hosts_need_a_long_token():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        reward_server.check_token_policy(host, None)
    for host in ("0.0.0.0", "::", "10.1.2.3", "reward.example.org"):
        with pytest.raises(reward_server.TokenRequired):
            reward_server.check_token_policy(host, None)
        reward_server.check_token_policy(host, TOKEN)
    with pytest.raises(reward_server.TokenRequired):
        reward_server.check_token_policy("0.0.0.0", "short")


# --- the command ----------------------------------------------------------------------------------------------


def register(project, *, name: str, kind: str, path: Path, rejected: bool = False, activate_reward: bool = False):
    version = services.register_version(project=project, name=name, kind=kind, path=str(path),
                                        sha256=manifest_sha256(path), config={}, metrics={"eval/accuracy": 0.9},
                                        rejected=rejected)
    if activate_reward:
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.ACTIVE)
        version.refresh_from_db()
    return version


@pytest.fixture
def reward_copy(tmp_path, tiny_reward_dir) -> Path:
    dest = tmp_path / "reward-v1"
    shutil.copytree(tiny_reward_dir, dest)
    return dest


@pytest.fixture
def busy_port():
    """A port already listened on (all addresses): a command that wrongly went on to serve fails to bind and
    stops with another message, instead of serving for ever."""
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        yield str(held.getsockname()[1])


@pytest.mark.django_db
def test_command_refuses_what_it_must_not_serve(project, reward_copy, busy_port, monkeypatch):
    monkeypatch.delenv("REWARD_SERVER_TOKEN", raising=False)

    def serve(*args):
        call_command("serve_reward", "--project", project.slug, "--port", busy_port, *args)

    with pytest.raises(CommandError, match="no active reward model"):
        serve()
    with pytest.raises(CommandError, match="No project"):
        call_command("serve_reward", "--project", "no-such-project", "--port", busy_port)
    policy = register(project, name="policy-v1", kind=ModelVersion.Kind.POLICY, path=reward_copy)  # files unread
    with pytest.raises(CommandError, match="not a reward model"):
        serve("--version", str(policy.pk))
    rejected = register(project, name="reward-v0", kind=ModelVersion.Kind.REWARD, path=reward_copy, rejected=True)
    for ref in (str(rejected.pk), "reward-v0"):
        with pytest.raises(CommandError, match="rejected"):
            serve("--version", ref)
    with pytest.raises(CommandError, match="no model version"):
        serve("--version", "reward-v9")

    active = register(project, name="reward-v1", kind=ModelVersion.Kind.REWARD, path=reward_copy, activate_reward=True)
    with pytest.raises(CommandError, match="token is required"):
        serve("--host", "0.0.0.0")
    monkeypatch.setenv("RM_TOKEN", "short")
    with pytest.raises(CommandError, match="at least 16"):
        serve("--host", "0.0.0.0", "--token-env", "RM_TOKEN")
    with pytest.raises(CommandError, match="cannot listen"):  # the checks above refused, not the busy port
        serve("--version", active.name)

    # Files changed after registration are never loaded.
    (reward_copy / "manifest.json").write_text((reward_copy / "manifest.json").read_text().replace("{", "{ ", 1))
    with pytest.raises(CommandError, match="integrity"):
        serve("--version", active.name)


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_command_serves_the_active_reward_model(project, reward_copy, oracle):
    """The command itself, in its own process, as an operator runs it: it finds the active reward model, binds
    loopback on a free port, and answers OpenRLHF's request with the registered model's rewards."""
    version = register(project, name="reward-v1", kind=ModelVersion.Kind.REWARD, path=reward_copy, activate_reward=True)
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("REWARD_SERVER_TOKEN", None)
    process = subprocess.Popen([sys.executable, "manage.py", "serve_reward", "--project", project.slug, "--port", "0"],
                               cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert f"Serving reward model {version.name}" in line, (line, process.stderr.read() if not line else "")
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/get_reward")
        prompts, responses = pairs(5)
        reply = requests.post(url, json={"query": [p + r for p, r in zip(prompts, responses)], "prompts": prompts,
                                         "labels": [None] * 5}, headers={"Content-Type": "application/json"})
        assert reply.status_code == 200
        assert reply.json()["rewards"] == pytest.approx(oracle.score(prompts, responses), abs=1e-4)
        assert requests.get(url.replace("/get_reward", "/health")).json()["model_version"] == version.pk
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=120)
    assert process.returncode == 0
