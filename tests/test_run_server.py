"""`bin/run-server` (what `make run` and `make serve` end in): a busy port stops it before any process
starts, Ctrl-C stops the web server and the worker without a traceback, and gunicorn opens no control socket
in the user's home (one path per user: a second server, a test or a benchmark would take it over)."""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_busy_port_stops_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(["bin/run-server", "127.0.0.1", str(port)], cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
    assert result.returncode != 0
    assert "busy" in result.stderr and "db_worker" not in result.stdout + result.stderr


@pytest.mark.timeout(180)
def test_ctrl_c_stops_the_worker_and_the_server_quietly(tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "PATH": "/usr/bin:/bin",
           "DJANGO_SETTINGS_MODULE": "config.settings.base", "STATIC_ROOT": str(tmp_path / "static"),
           "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    # As from a terminal: SIGINT at its default. A shell started with SIGINT ignored (any job launched with `&`
    # by a non-interactive shell, as CI runners may) inherits that, and bash cannot trap an ignored signal.
    server = subprocess.Popen(["bin/run-server", "127.0.0.1", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(_children_of(server.pid)) < 2:
        time.sleep(0.5)
    children = _children_of(server.pid)
    assert len(children) >= 2, "the worker and gunicorn did not both start"
    time.sleep(3)
    assert not (tmp_path / ".gunicorn").exists(), "gunicorn opened its control socket in $HOME"
    server.send_signal(signal.SIGINT)
    out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err[-2000:]
    assert "Traceback" not in out + err
    time.sleep(1)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "a child outlived Ctrl-C"
