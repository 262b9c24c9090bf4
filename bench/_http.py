"""A keep-alive HTTP client for the load generators: the few calls of `requests.Session` the annotate workloads
make, on the standard library's `http.client`.

The load generator runs on the same 2 cores as the server it measures. `requests` spent about 2 ms of CPU per
call (its adapters, cookie jar, hooks and URL parsing), almost half of what our server spends on the request
itself, so the client took CPU the server could have used. This client keeps one connection per session and does
little else, so more of the machine goes to the server under test, whichever it is.
"""

from __future__ import annotations

import http.client
import json as jsonlib
from urllib.parse import urlsplit

_DROPPED = (http.client.RemoteDisconnected, http.client.CannotSendRequest, ConnectionResetError, BrokenPipeError)


class Response:
    def __init__(self, status: int, content: bytes):
        self.status_code, self.content = status, content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return jsonlib.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.text[:200]}")


class KeepAliveSession:
    """`get` / `post` (json=, headers=, timeout=) on one kept HTTP/1.1 connection to `base_url`'s host."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None):
        parts = urlsplit(base_url)
        self.host, self.port, self.headers = parts.hostname, parts.port, dict(headers or {})
        self._connection: http.client.HTTPConnection | None = None

    def request(self, method: str, url: str, *, json=None, headers: dict | None = None, timeout: float = 60) -> Response:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {**self.headers, **(headers or {})}
        body = None
        if json is not None:
            body, sent["Content-Type"] = jsonlib.dumps(json).encode(), "application/json"
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                self._connection.request(method, target, body=body, headers=sent)
                response = self._connection.getresponse()
                content = response.read()
            except _DROPPED:
                # The server closed the kept connection (a worker restarting after max_requests): once more on a
                # new one. Our submits carry an Idempotency-Key, so a repeated POST cannot store a judgement twice.
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.will_close:
                self.close()
            return Response(response.status, content)
        raise AssertionError("unreachable")

    def get(self, url: str, **kwargs) -> Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
