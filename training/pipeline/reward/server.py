"""A reward model served over HTTP in OpenRLHF's remote-reward protocol (`--remote_rm_url`).

    POST /get_reward  {"query": [prompt+response, …], "prompts": [prompt, …], "labels": […]}
                   →  {"rewards": [float, …], "scores": [float, …], "extra_logs": {}}
    GET  /health      {"status": "ok", "model": …, "sha256": …}

OpenRLHF sends `query` as the full text (its prompt followed by the sampled response) and, since 0.5, the
prompts alongside; `labels` are read by rule-based rewards and ignored here. `rewards` is what OpenRLHF's
client reads; `scores` repeats it as OpenRLHF's own `serve_rm` does (its dynamic filtering reads `scores`).

The reward model scores (prompt, response) pairs as `trl.RewardTrainer` showed them in training
(`scoring.RewardScorer`), so each query is split at its prompt: the response is what follows the prompt
in the query. Without `prompts`, the whole query is scored as a response to an empty prompt.

`make_app` is a plain WSGI application (any WSGI server can run it); `make_server` runs it on the standard
library's threaded WSGI server, the one Django's runserver uses — enough for a service whose work is one model
call per request, serialised by a lock. Requests are bounded before anything is scored: body bytes (checked
against Content-Length before reading), items per request and characters per text. Bad input is a 400 whose
JSON names the field; a wrong method 405, an unknown path 404, a missing or wrong bearer token 401.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as _wsgiref_make_server

logger = logging.getLogger(__name__)

REWARD_PATH = "/get_reward"
HEALTH_PATH = "/health"
DEFAULT_TOKEN_ENV = "REWARD_SERVER_TOKEN"
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class RequestLimits:
    """What one request may hold. The body bound is checked first (from Content-Length, before reading), so a
    request over it costs the server nothing; the item and character bounds then cap the model's work."""

    max_items: int = 256
    max_text_chars: int = 32_000
    max_body_bytes: int = 16 << 20  # 256 items x (query + prompt) x 32k chars, with room for JSON escapes


# --- errors: classes with codes, each naming the field at fault ------------------------------------------------


class RewardRequestError(Exception):
    """A request refused before scoring; `status` is its HTTP status, `code` tells kinds apart."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def as_json(self) -> dict:
        body = {"error": self.message, "code": self.code}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidField(RewardRequestError):
    code = "invalid_field"


class NotJSON(RewardRequestError):
    code = "not_json"


class TooManyItems(RewardRequestError):
    code = "too_many_items"


class TextTooLong(RewardRequestError):
    code = "text_too_long"


class PromptNotInQuery(RewardRequestError):
    code = "prompt_not_in_query"


class BodyTooLarge(RewardRequestError):
    status = 413
    code = "body_too_large"


class LengthRequired(RewardRequestError):
    status = 411
    code = "length_required"


class Unauthorized(RewardRequestError):
    status = 401
    code = "unauthorized"


class NotFound(RewardRequestError):
    status = 404
    code = "not_found"


class MethodNotAllowed(RewardRequestError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: str):
        super().__init__(message)
        self.allowed = allowed


# --- parsing ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardRequest:
    prompts: list[str]  # what each response answers ("" when the request sent no prompts)
    responses: list[str]


def _text_list(data: dict, name: str, limits: RequestLimits, *, length: int | None = None) -> list[str]:
    values = data[name]
    if not isinstance(values, list):
        raise InvalidField(f"{name} must be a list of strings", field=name)
    if length is None and len(values) > limits.max_items:
        raise TooManyItems(f"{name} has {len(values)} items; at most {limits.max_items} per request", field=name)
    if length is not None and len(values) != length:
        raise InvalidField(f"{name} has {len(values)} items but query has {length}", field=name)
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise InvalidField(f"{name}[{index}] must be a string, got {type(value).__name__}",
                               field=f"{name}[{index}]")
        if len(value) > limits.max_text_chars:
            raise TextTooLong(f"{name}[{index}] has {len(value)} characters; at most {limits.max_text_chars}",
                              field=f"{name}[{index}]")
    return values


def split_query(query: str, prompt: str) -> str | None:
    """The response in `query` (prompt + response): the text after the prompt's first occurrence, which allows a
    decoded BOS or other leading markup before it. None when the prompt is not in the query."""
    at = query.find(prompt)
    return None if at < 0 else query[at + len(prompt):]


def parse_reward_request(body: bytes, limits: RequestLimits = RequestLimits()) -> RewardRequest:
    """Check an OpenRLHF reward request and split each query into (prompt, response). Raises a RewardRequestError
    naming the field; unknown fields are ignored, as OpenRLHF adds fields between versions."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NotJSON("the body must be a JSON object (UTF-8)", field="body") from None
    if not isinstance(data, dict):
        raise NotJSON("the body must be a JSON object", field="body")
    if "query" not in data:
        raise InvalidField("query is required: a list of full texts (prompt followed by response)", field="query")
    queries = _text_list(data, "query", limits)
    prompts = None
    if data.get("prompts") is not None:
        prompts = _text_list(data, "prompts", limits, length=len(queries))
    labels = data.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(queries)):
        raise InvalidField(f"labels must be null or a list with one item per query ({len(queries)})", field="labels")
    if prompts is None:
        return RewardRequest(prompts=[""] * len(queries), responses=list(queries))
    responses = []
    for index, (query, prompt) in enumerate(zip(queries, prompts)):
        response = split_query(query, prompt)
        if response is None:
            raise PromptNotInQuery(f"prompts[{index}] does not occur in query[{index}]", field=f"prompts[{index}]")
        responses.append(response)
    return RewardRequest(prompts=list(prompts), responses=responses)


# --- authentication --------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for loopback addresses and "localhost"; a name that must be resolved counts as exposed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TokenRequired(ValueError):
    """The server would be reachable beyond this machine without a bearer token (or with a guessable one)."""


def check_token_policy(host: str, token: str | None) -> None:
    """Refuse to expose a reward model without a token: beyond loopback, anyone who can reach the port could
    otherwise spend the machine's accelerator and read the model's judgements."""
    if token is None or token == "":
        if not is_loopback(host):
            raise TokenRequired(f"{host} is not a loopback address: a bearer token is required to serve on it")
        return
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenRequired(f"the bearer token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")


def _authorised(environ: dict, token: str | None) -> bool:
    if not token:
        return True
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, presented = header.partition(" ")
    # compare_digest on bytes: constant time whatever the characters (it refuses non-ASCII str).
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


# --- the WSGI application --------------------------------------------------------------------------------------

ScoreFn = Callable[[Sequence[str], Sequence[str]], list[float]]


class RewardApp:
    """WSGI app: one scorer (loaded once, by the caller), scoring serialised by a lock (one model, many threads)."""

    def __init__(self, score: ScoreFn, *, token: str | None = None, limits: RequestLimits = RequestLimits(),
                 info: dict | None = None):
        self.score = score
        self.token = token or None
        self.limits = limits
        self.info = dict(info or {})
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        try:
            status, body, headers = self._handle(environ)
        except RewardRequestError as error:
            status, body, headers = error.status, error.as_json(), []
            if isinstance(error, MethodNotAllowed):
                headers = [("Allow", error.allowed)]
            if isinstance(error, Unauthorized):
                headers = [("WWW-Authenticate", 'Bearer realm="reward"')]
        except Exception:  # a fault of the server, not of the request: logged here, never shown to the client
            logger.exception("reward request failed")
            status, body, headers = 500, {"error": "the reward model failed on this request", "code": "internal"}, []
        payload = json.dumps(body, allow_nan=False).encode()
        start_response(f"{status} {_REASONS.get(status, '')}".strip(), [
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *headers])
        return [payload]

    def _handle(self, environ: dict) -> tuple[int, dict, list]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == REWARD_PATH:
            allowed = "POST"
        elif path == HEALTH_PATH:
            allowed = "GET"
        else:
            raise NotFound(f"no such path; POST {REWARD_PATH}", field="path")
        if method != allowed:
            raise MethodNotAllowed(f"{path} accepts {allowed} only", allowed=allowed)
        if not _authorised(environ, self.token):
            raise Unauthorized("a valid bearer token is required (Authorization: Bearer …)", field="Authorization")
        if path == HEALTH_PATH:
            return 200, {"status": "ok", **self.info}, []
        request = parse_reward_request(self._read_body(environ), self.limits)
        with self._lock:
            rewards = [float(r) for r in self.score(request.prompts, request.responses)] if request.prompts else []
        if len(rewards) != len(request.prompts) or not all(math.isfinite(r) for r in rewards):
            raise RuntimeError(f"the scorer returned {len(rewards)} rewards for {len(request.prompts)} items, "
                               "or a non-finite one")
        return 200, {"rewards": rewards, "scores": rewards, "extra_logs": {}}, []

    def _read_body(self, environ: dict) -> bytes:
        raw_length = environ.get("CONTENT_LENGTH") or ""
        if not raw_length.strip():
            raise LengthRequired("send a Content-Length header", field="Content-Length")
        try:
            length = int(raw_length)
        except ValueError:
            raise InvalidField("Content-Length must be a whole number", field="Content-Length") from None
        if length < 0:
            raise InvalidField("Content-Length must be a whole number", field="Content-Length")
        if length > self.limits.max_body_bytes:
            raise BodyTooLarge(f"the body has {length} bytes; at most {self.limits.max_body_bytes}", field="body")
        body = environ["wsgi.input"].read(length)
        if len(body) != length:
            raise InvalidField(f"the body ended after {len(body)} of {length} bytes", field="body")
        return body


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 413: "Content Too Large", 500: "Internal Server Error"}


# --- the server ------------------------------------------------------------------------------------------------


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per connection, as Django's runserver; threads die with the process."""

    daemon_threads = True
    allow_reuse_address = True


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Access lines go to `logging` (not stderr); a silent client is dropped after `timeout` seconds."""

    timeout = 120

    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        logger.info("%s %s", self.address_string(), format % args)


def make_server(app: RewardApp, host: str = "127.0.0.1", port: int = 0) -> WSGIServer:
    """A threaded WSGI server bound to (host, port) serving `app`; port 0 picks a free one (`server.server_port`).
    The caller runs `serve_forever()` and, to stop, `shutdown()` then `server_close()`."""
    server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer  # ":": an IPv6 literal
    return _wsgiref_make_server(host.strip("[]"), port, app, server_class=server_class, handler_class=_QuietHandler)


def scorer_app(scorer, *, token: str | None = None, limits: RequestLimits = RequestLimits(),
               info: dict | None = None) -> RewardApp:
    """The app over a loaded `scoring.RewardScorer` (its `score(prompts, completions)` batches by length)."""
    return RewardApp(scorer.score, token=token, limits=limits, info=info)
