import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DJANGO_SETTINGS_MODULE", "DATABASE_URL"}}
    full_env.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True)


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_SETTINGS_MODULE="config.settings.production",
                    SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="labels.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", DJANGO_SETTINGS_MODULE="config.settings.production", ALLOWED_HOSTS="labels.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.parametrize("key, reason", [
    ("dev-only-insecure-key-change-me-0123456789abcdefghijklmnop", "development key"),
    ("test-only-secret-key-not-for-production-0123456789abcdef", "development key"),
    ("short-but-random-Xq9", "too short"),
    ("a" * 64, "too short or too simple"),
])
def test_production_refuses_known_or_weak_secret_keys(key, reason):
    result = manage("check", DJANGO_SETTINGS_MODULE="config.settings.production", ALLOWED_HOSTS="labels.example.com",
                    SECRET_KEY=key)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and reason in result.stderr


def test_openapi_schema_is_valid_without_warnings(tmp_path):
    result = manage("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"),
                    DJANGO_SETTINGS_MODULE="config.settings.test")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "/api/v1/tasks/{task_id}/judgements/" in (tmp_path / "schema.yaml").read_text()
