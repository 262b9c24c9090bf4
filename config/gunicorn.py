"""gunicorn settings; each can be overridden with GUNICORN_* environment variables."""

import multiprocessing
import os

workers = int(os.environ.get("GUNICORN_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
threads = int(os.environ.get("GUNICORN_THREADS", 2))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 60))
graceful_timeout = 30
max_requests = 2000
max_requests_jitter = 200
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None  # empty: no access log
# gunicorn 25+ opens a control socket for `gunicornc` at one path per user ($XDG_RUNTIME_DIR or ~/.gunicorn):
# every instance on the machine (tests, benchmarks, a second server) would take it over from the last, and
# nothing here uses it. GUNICORN_CONTROL_SOCKET=1 turns it back on.
control_socket_disable = os.environ.get("GUNICORN_CONTROL_SOCKET", "") != "1"
# Bodies are also limited by Django (DATA_UPLOAD_MAX_MEMORY_SIZE); this caps headers.
limit_request_field_size = 8190
