"""Production: secrets and hosts from the environment, HTTPS everywhere, no defaults for secrets."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import DEVELOPMENT_SECRET_KEY, env

DEBUG = False
SECRET_KEY = env("SECRET_KEY")  # no default: a missing key fails at start-up


def check_secret_key(key: str) -> None:
    """Refuse keys that are known (written in this repository) or too weak to sign sessions and tokens:
    Django's own deploy check asks for at least 50 characters and 5 distinct ones."""
    known = {DEVELOPMENT_SECRET_KEY, "test-only-secret-key-not-for-production-0123456789abcdef"}
    if key in known or key.startswith(("django-insecure-", "dev-only-", "test-only-", "change-me")):
        raise ImproperlyConfigured("SECRET_KEY is a development key written in the repository: set a secret one "
                                   "(python -c 'import secrets; print(secrets.token_urlsafe(64))').")
    if len(key) < 50 or len(set(key)) < 5:
        raise ImproperlyConfigured("SECRET_KEY is too short or too simple: use at least 50 random characters.")


check_secret_key(SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)

CACHES = {
    "default": env.cache("CACHE_URL", default="locmemcache://")
}
