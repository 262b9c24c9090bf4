"""The Django admin is for superusers only (project admins work in the product's pages).

Two locks, so one mistake does not open it: the site itself (core/admin_site.py) refuses every non-superuser (every admin
view, including each ModelAdmin's URLs and autocomplete, goes through `AdminSite.has_permission`), and
every ModelAdmin of the project inherits `SuperuserOnlyAdmin`, whose permissions all require a superuser.
Being `is_staff`, or holding Django model permissions through a group, grants nothing here.
"""

from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User

from core.admin_site import is_active_superuser
from core.models import AuditEvent


class _SuperuserOnlyPermissions:
    """has_*_permission of ModelAdmins and inlines: a superuser AND whatever the admin class itself allows."""

    def has_module_permission(self, request):
        return is_active_superuser(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return is_active_superuser(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        return is_active_superuser(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return is_active_superuser(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return is_active_superuser(request) and super().has_delete_permission(request, obj)


class SuperuserOnlyAdmin(_SuperuserOnlyPermissions, admin.ModelAdmin):
    """Base class of every ModelAdmin in the project."""


class SuperuserOnlyTabularInline(_SuperuserOnlyPermissions, admin.TabularInline):
    """Base class of every tabular inline in the project."""


class ReadOnlyAdmin(SuperuserOnlyAdmin):
    """A record the platform writes and nobody edits by hand (the audit trail, DPO rounds): view only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False




@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Append-only: visible to superusers, never changed or deleted here."""

    list_display = ["created_at", "actor", "event_type", "project", "target"]
    list_filter = ["event_type", "project"]
    search_fields = ["actor__username", "target"]
    readonly_fields = ["created_at", "actor", "event_type", "project", "target", "extra"]


# Django's own User and Group admins get the same lock (the site's check already covers them).
for _model, _base in ((User, auth_admin.UserAdmin), (Group, auth_admin.GroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, type(_base.__name__, (_SuperuserOnlyPermissions, _base), {"__module__": __name__}))
