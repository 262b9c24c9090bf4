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
# Bodies are also limited by Django (DATA_UPLOAD_MAX_MEMORY_SIZE); this caps headers.
limit_request_field_size = 8190
