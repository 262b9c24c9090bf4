"""The project's admin site: every view needs an active superuser (Django's default asks only for is_staff).

Installed as the default site by `SuperuserAdminConfig` below (Django's documented way to replace
`admin.site`), so every app's registrations land on it. Kept apart from core/admin.py so that importing
the site class at start-up imports no model.
"""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


def is_active_superuser(request) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_superuser)


class SuperuserAdminSite(admin.AdminSite):
    def has_permission(self, request):
        return is_active_superuser(request)


class SuperuserAdminConfig(AdminConfig):
    """django.contrib.admin with the superuser-only site as `admin.site` (listed in INSTALLED_APPS in place of
    "django.contrib.admin")."""

    default_site = "core.admin_site.SuperuserAdminSite"
