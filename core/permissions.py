"""Who may do what in a project: one ladder of roles, one helper for services and pages, and the DRF
permission classes the API uses. Every check in the product goes through here.

Projects answer `role_of(user)` (a method on feedback.Project), so core needs no import of the app that
defines memberships. Non-members never reach these checks: project lookups answer 404 for them, so a
foreign project and a missing one look the same.
"""

from __future__ import annotations

import itertools
import re

from django.core.exceptions import PermissionDenied
from django.db.models.signals import post_delete, post_save
from django_filters.constants import EMPTY_VALUES
from django_filters.rest_framework import CharFilter, FilterSet
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission

ANNOTATOR, REVIEWER, ADMIN = "annotator", "reviewer", "admin"
ROLE_LADDER = (ANNOTATOR, REVIEWER, ADMIN)

NEEDS_ROLE = "This needs the {role} role in the project."


ROLE_MEMO = "_role_of_user"  # (user pk, role, generation) on a project instance read for this request
ROLE_HOLDER_MODEL = "feedback.Membership"  # its saves and deletes make every remembered role stale
_role_generation = itertools.count()
_generation_now = [next(_role_generation)]


def forget_roles(**_signal_kwargs) -> None:
    """Every remembered role of this process is stale from now on (a membership was saved or deleted)."""
    _generation_now[0] = next(_role_generation)


post_save.connect(forget_roles, sender=ROLE_HOLDER_MODEL, weak=False, dispatch_uid="core.permissions.forget_roles")
post_delete.connect(forget_roles, sender=ROLE_HOLDER_MODEL, weak=False, dispatch_uid="core.permissions.forget_roles-d")


def remember_role(*, project, user, role: str | None) -> None:
    """Note the role a lookup of `project` for `user` already read (same query), so this request's permission
    checks need no second query. Only that project instance carries it (the next request reads the role afresh),
    and any membership save or delete in between makes it stale (a page that demotes its own user re-reads)."""
    setattr(project, ROLE_MEMO, (user.pk, role, _generation_now[0]))


# --- where the request's credentials reach (API tokens minted by someone else: core.models.TokenScope) ----------

TOKEN_SCOPE = "token_scope"  # frozenset of project ids on the request's user, set by core.authentication


def token_scope(user) -> frozenset[int] | None:
    """The projects the request's token is limited to, or None when its credentials reach every membership
    (a session, the owner's own token, a superuser-made or operator-made token)."""
    return getattr(user, TOKEN_SCOPE, None)


def within_token_scope(*, user, project_id) -> bool:
    scope = token_scope(user)
    return scope is None or project_id in scope


def limit_to_token_scope(queryset, *, user, field: str = "pk"):
    """`queryset` less the rows outside the token's projects (`field` names the project id)."""
    scope = token_scope(user)
    return queryset if scope is None else queryset.filter(**{f"{field}__in": scope})


def role_in(*, project, user) -> str | None:
    """The user's role in `project` as these credentials see it: outside a scoped token's projects, none."""
    if not within_token_scope(user=user, project_id=project.pk):
        return None
    memo = getattr(project, ROLE_MEMO, None)
    if memo is not None and memo[0] == user.pk and memo[2] == _generation_now[0]:
        return memo[1]
    return project.role_of(user)


def has_project_role(*, user, project, role: str) -> bool:
    """True when `user` holds `role` or a higher one in `project` (superusers hold every role)."""
    held = role_in(project=project, user=user) if getattr(user, "is_authenticated", False) else None
    return held is not None and ROLE_LADDER.index(held) >= ROLE_LADDER.index(role)


def require_project_role(*, user, project, role: str) -> None:
    """Raise PermissionDenied (a 403 in the API and in pages) unless `user` holds `role` in `project`."""
    if not has_project_role(user=user, project=project, role=role):
        raise PermissionDenied(NEEDS_ROLE.format(role=role))


class ProjectRolePermission(BasePermission):
    """Object permission: the object is a project or has a `.project`; the user must hold `role` there."""

    role = ANNOTATOR
    message = NEEDS_ROLE

    def has_object_permission(self, request, view, obj) -> bool:
        project = getattr(obj, "project", obj)
        if has_project_role(user=request.user, project=project, role=self.role):
            return True
        self.message = NEEDS_ROLE.format(role=self.role)
        return False


class IsProjectAnnotator(ProjectRolePermission):
    role = ANNOTATOR


class IsProjectReviewer(ProjectRolePermission):
    role = REVIEWER


class IsProjectAdmin(ProjectRolePermission):
    role = ADMIN


# --- list filters without an existence oracle ------------------------------------------------------------------

MAX_ID_DIGITS = 18  # beyond this an id cannot exist (and SQLite would overflow)
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")
BAD_REFERENCE = "Give an id (ASCII digits) or a slug."


class ReferenceFilter(CharFilter):
    """`?project=<id or slug>` (or any foreign key): compares the raw value, never validates it against the whole
    table. django-filter's default ModelChoiceFilter answers 400 for a missing id and 200 for a foreign one,
    which tells a caller what exists in other projects; here both simply filter the (already scoped) rows to nothing."""

    def __init__(self, *args, slug_field: str | None = None, **kwargs):
        self.slug_field = slug_field
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        if value in EMPTY_VALUES:
            return qs
        value = str(value).strip()
        if value.isascii() and value.isdigit():
            if len(value) > MAX_ID_DIGITS:
                raise ValidationError({self.field_name: [BAD_REFERENCE]})
            return qs.filter(**{self.field_name: int(value)})
        if self.slug_field and SLUG.fullmatch(value):
            return qs.filter(**{f"{self.field_name}__{self.slug_field}": value})
        # Malformed (not an id or a slug at all): a 400 naming the parameter. It says nothing about what exists.
        raise ValidationError({self.field_name: [BAD_REFERENCE]})


class ScopedFilterSet(FilterSet):
    """FilterSet whose relation filters are ReferenceFilters (the generated ones would be oracles)."""

    @classmethod
    def filter_for_field(cls, field, field_name, lookup_expr=None):
        if field.is_relation:
            has_slug = any(f.name == "slug" for f in field.related_model._meta.get_fields())
            return ReferenceFilter(field_name=field_name, slug_field="slug" if has_slug else None)
        return super().filter_for_field(field, field_name, lookup_expr)


def scoped_filterset(model, fields: list[str]) -> type[FilterSet]:
    """A view's `filterset_class` for `fields` of `model` (use instead of `filterset_fields`)."""
    meta = type("Meta", (), {"model": model, "fields": fields})
    return type(f"{model.__name__}ScopedFilterSet", (ScopedFilterSet,), {"Meta": meta, "__module__": __name__})
