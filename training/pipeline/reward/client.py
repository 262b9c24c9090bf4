"""Client of `manage.py serve_reward` for TRL's and verl's reward hooks (standard library only).

This file imports nothing from the project, so a training job on another machine can copy it alone or point
verl's `custom_reward_function.path` at it.

TRL (GRPOTrainer / RLOOTrainer `reward_funcs`):

    reward = RemoteReward("http://127.0.0.1:8008", token=os.environ.get("REWARD_SERVER_TOKEN"))
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], ...)

verl (`custom_reward_function.path=training/pipeline/reward/client.py`, name `compute_score`, or
`compute_score_batch` with `reward_model.reward_manager=batch`): the server's address comes from
`custom_reward_function.reward_kwargs.url` or $REWARD_SERVER_URL, the token from $REWARD_SERVER_TOKEN
(`reward_kwargs.token_env` names another variable); the prompt from the row's `extra_info["prompt"]`
(or `extra_info["question"]`), since verl passes the response alone.

Chat messages are sent as text by the rule `training.pipeline.data.messages_to_text` uses (a lone message is
its content), which is what the reward model sees for a single-turn conversation.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

DEFAULT_URL_ENV = "REWARD_SERVER_URL"
DEFAULT_TOKEN_ENV = "REWARD_SERVER_TOKEN"
MAX_ITEMS_PER_REQUEST = 256  # the server's default bound; larger batches go as several requests


class RemoteRewardError(RuntimeError):
    """The reward server refused the request (`status` 4xx: fix the request) or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.field = field


def as_text(value: Any) -> str:
    """A prompt or completion as text: strings as they are, chat messages flattened (same rule as
    `training.pipeline.data.messages_to_text`; kept here so this file runs alone)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        if len(value) == 1:
            return str(value[0]["content"])
        return "\n".join(f"{m.get('role', 'user')}: {m['content']}" for m in value)
    raise TypeError(f"expected a string or a list of chat messages, got {type(value).__name__}")


def _endpoint(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/get_reward") else url + "/get_reward"


class RemoteReward:
    """A reward function backed by the reward server: `reward(prompts, completions, **kwargs) -> list[float]`.

    Sends the request OpenRLHF's client sends (`query` = prompt + completion, `prompts`), so the server splits
    each query exactly at its prompt. TRL names a reward function by `__name__` in its logs (`rewards/<name>`).
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 300.0, retries: int = 2,
                 batch_size: int = MAX_ITEMS_PER_REQUEST, name: str = "remote_reward"):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.url = _endpoint(url)
        self.token = token or None
        self.timeout = timeout
        self.retries = retries
        self.batch_size = batch_size
        self.__name__ = self.__qualname__ = name

    def __repr__(self) -> str:
        return f"RemoteReward({self.url!r})"

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        return self.score([as_text(p) for p in prompts], [as_text(c) for c in completions])

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        rewards: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk_prompts = list(prompts[start:start + self.batch_size])
            chunk_completions = completions[start:start + self.batch_size]
            body = {"query": [p + c for p, c in zip(chunk_prompts, chunk_completions)], "prompts": chunk_prompts}
            got = self._post(body)["rewards"]
            if len(got) != len(chunk_prompts):
                raise RemoteRewardError(f"the server returned {len(got)} rewards for {len(chunk_prompts)} items")
            rewards.extend(float(r) for r in got)
        return rewards

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                detail = _error_json(error)
                if error.code < 500 or attempt == self.retries:  # a refused request does not improve by retrying
                    raise RemoteRewardError(f"reward server: {error.code} {detail.get('error', error.reason)}",
                                            status=error.code, field=detail.get("field")) from None
            except (urllib.error.URLError, OSError) as error:
                if attempt == self.retries:
                    raise RemoteRewardError(f"reward server at {self.url} unreachable: {error}") from None
            time.sleep(2 ** attempt)
        raise AssertionError("unreachable")


def _error_json(error: urllib.error.HTTPError) -> dict:
    try:
        body = json.loads(error.read())
        return body if isinstance(body, dict) else {}
    except (ValueError, OSError):
        return {}


# --- verl's custom reward function -------------------------------------------------------------------------------

_CLIENTS: dict[tuple, RemoteReward] = {}


def _client(url: str | None, token_env: str, timeout: float) -> RemoteReward:
    url = url or os.environ.get(DEFAULT_URL_ENV)
    if not url:
        raise ValueError(f"no reward server: set custom_reward_function.reward_kwargs.url or ${DEFAULT_URL_ENV}")
    key = (url, token_env, timeout)
    if key not in _CLIENTS:
        _CLIENTS[key] = RemoteReward(url, os.environ.get(token_env), timeout=timeout)
    return _CLIENTS[key]


def _prompt_of(extra_info: dict | None) -> str:
    info = extra_info or {}
    prompt = info.get("prompt", info.get("question"))
    if prompt is None:
        raise ValueError("verl passes the response alone: put the prompt in the row's extra_info['prompt'] "
                         "(export_preferences --kind verl does) so the reward model sees what it answers")
    return as_text(prompt)


def compute_score(data_source: Any, solution_str: str, ground_truth: Any = None, extra_info: dict | None = None,
                  *, url: str | None = None, token_env: str = DEFAULT_TOKEN_ENV, timeout: float = 300.0,
                  **kwargs: Any) -> float:
    """verl's custom reward function (one response): the served reward model's score of (prompt, response).
    `data_source` and `ground_truth` are not used: the reward model judges the response itself."""
    return _client(url, token_env, timeout).score([_prompt_of(extra_info)], [solution_str])[0]


def compute_score_batch(data_sources: Sequence[Any], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                        extra_infos: Sequence[dict | None], *, url: str | None = None,
                        token_env: str = DEFAULT_TOKEN_ENV, timeout: float = 300.0, **kwargs: Any) -> list[float]:
    """verl's batch reward function (`reward_model.reward_manager=batch`): one request per 256 responses."""
    prompts = [_prompt_of(info) for info in extra_infos]
    return _client(url, token_env, timeout).score(prompts, list(solution_strs))
