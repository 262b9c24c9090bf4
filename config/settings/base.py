"""Settings shared by every environment; every knob comes from the environment (django-environ).

`test.py` and `production.py` override what differs. The embedded default is SQLite in WAL mode;
`DATABASE_URL=postgres://…` switches to PostgreSQL.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

DEBUG = env.bool("DEBUG", default=False)
# Development default only: production.py reads SECRET_KEY with no default and fails loudly.
DEVELOPMENT_SECRET_KEY = "dev-only-insecure-key-change-me-0123456789abcdefghijklmnop"
SECRET_KEY = env("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "core.admin_site.SuperuserAdminConfig",  # django.contrib.admin, superusers only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tasks",
    "django_tasks_db",
    "axes",
    "core",
    "feedback",
    "training",
    "ops",
]

MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: django-axes locks out brute-force login attempts (per username + IP).
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

(BASE_DIR / "var").mkdir(exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite under several gunicorn workers and a job worker: take the write lock when a
    # transaction starts (IMMEDIATE) so it never has to upgrade late ("database is locked"),
    # wait up to 20 s for it, and keep readers off writers' backs with WAL.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # The same SQLite, with writers queued on our locks (per process, then a flock across processes) before
    # SQLite's busy handler, which sleeps up to 100 ms between tries (core/backends/sqlite3/base.py).
    DATABASES["default"]["ENGINE"] = "core.backends.sqlite3"
    DATABASES["default"].setdefault("TEST", {})
# One connection per worker thread, kept between requests: opening one costs about as much CPU as a whole
# next-task on SQLite (its PRAGMAs and Django's SQL functions are set up on every connect).
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "feedback:project-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Request bodies are limited on purpose: a judgement is a few hundred bytes; imports go through
# file uploads (streamed to disk), whose size has its own limit below.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
IMPORT_MAX_UPLOAD_BYTES = env.int("IMPORT_MAX_UPLOAD_BYTES", default=200 * 1024 * 1024)
# What an import may hold (feedback/importing/limits.py), checked before each part is decoded further;
# Parquet is refused from its footer (rows, row groups, uncompressed bytes) before any page is decompressed.
IMPORT_MAX_ROWS = env.int("IMPORT_MAX_ROWS", default=1_000_000)
IMPORT_MAX_ROWS_PER_REQUEST = env.int("IMPORT_MAX_ROWS_PER_REQUEST", default=10_000)  # JSON `rows` in an API body
IMPORT_MAX_LINE_BYTES = env.int("IMPORT_MAX_LINE_BYTES", default=4 * 1024 * 1024)
IMPORT_MAX_CSV_FIELD_CHARS = env.int("IMPORT_MAX_CSV_FIELD_CHARS", default=1_000_000)
IMPORT_MAX_PARQUET_UNCOMPRESSED_BYTES = env.int("IMPORT_MAX_PARQUET_UNCOMPRESSED_BYTES", default=200 * 1024 * 1024)
IMPORT_MAX_PARQUET_ROW_GROUPS = env.int("IMPORT_MAX_PARQUET_ROW_GROUPS", default=10_000)
IMPORT_MAX_PARQUET_COLUMNS = env.int("IMPORT_MAX_PARQUET_COLUMNS", default=64)

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the annotation page's script reads it to submit with fetch
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.SqlTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PARSER_CLASSES": [
        "core.parsing.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.exceptions.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("THROTTLE_ANON", default="60/min"),
        "user": env("THROTTLE_USER", default="6000/min"),
        "login": env("THROTTLE_LOGIN", default="10/min"),
        "submit": env("THROTTLE_SUBMIT", default="600/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "RLHF feedback platform API",
    "DESCRIPTION": "Ranking tasks, judgements, preference exports and training runs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a field named "kind" or "status"/"state": give each choice set its own name.
    "ENUM_NAME_OVERRIDES": {
        "TrainingRunKindEnum": "training.models.TrainingRun.Kind",
        "TrainingRunStateEnum": "training.models.TrainingRun.State",
        "ModelVersionKindEnum": "training.models.ModelVersion.Kind",
        "ModelVersionStatusEnum": "training.models.ModelVersion.Status",
    },
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Jobs: Django's tasks API (django-tasks backport) with the database backend; `manage.py db_worker`
# runs them. The same code runs with one embedded worker or many workers on PostgreSQL.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

MODEL_DIR = Path(env("MODEL_DIR", default=str(BASE_DIR / "models")))
EXPORT_DIR = Path(env("EXPORT_DIR", default=str(BASE_DIR / "var" / "exports")))

LOG_FORMAT = env("LOG_FORMAT", default="plain")  # "json": one JSON object per line
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.middleware.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "config.middleware.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}

# Training runs: the worker beats every RUN_HEARTBEAT_SECONDS; a run silent for longer than
# RUN_STALE_AFTER_SECONDS is marked failed (its worker was killed).
RUN_HEARTBEAT_SECONDS = env.int("RUN_HEARTBEAT_SECONDS", default=5)
RUN_STALE_AFTER_SECONDS = env.int("RUN_STALE_AFTER_SECONDS", default=120)
# A running run reads its cancel flag itself (not only through the heartbeat) at most this often, from inside
# its sampling and training loops: a cancel lands within one decode step after that (docs/worker.md).
RUN_CANCEL_POLL_SECONDS = env.float("RUN_CANCEL_POLL_SECONDS", default=0.2)
# Budgets of one run (a retrain chain shares its parent's): past either it stops, ends failed, registers nothing.
TRAINING_RUN_MAX_SECONDS = env.int("TRAINING_RUN_MAX_SECONDS", default=24 * 3600)
TRAINING_RUN_MAX_GENERATED_TOKENS = env.int("TRAINING_RUN_MAX_GENERATED_TOKENS", default=20_000_000)
# One worker serves every project: a project may hold at most this many queued runs (more are refused, 409).
TRAINING_MAX_QUEUED_PER_PROJECT = env.int("TRAINING_MAX_QUEUED_PER_PROJECT", default=10)
# /readyz: the worker counts as alive when a job started or finished within this window (the
# maintenance task runs every minute).
READY_WORKER_SECONDS = env.int("READY_WORKER_SECONDS", default=180)

# Webhooks: refuse URLs that resolve to loopback/private/link-local addresses unless allowed here.
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)
WEBHOOK_BACKOFF_SECONDS = env.float("WEBHOOK_BACKOFF_SECONDS", default=2.0)
