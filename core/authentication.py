"""Token authentication for the API: DRF's TokenAuthentication with its lookup written as one SQL statement.

The token row and its user are read on every request, as DRF does, so a revoked token, a deactivated user or
a changed superuser flag counts at once in every process; only the ORM's query building is gone (on the
annotate path it cost as much CPU as a pick's statements). Answers and errors are DRF's own.

A token someone other than its owner minted has a scope (core.models.TokenScope): the same statement reads it
(one row per project of the scope) and its projects go on the request's user (`token_scope`); every project
lookup and role check then treats the projects outside it as ones the user is not a member of.
"""

from __future__ import annotations

import functools

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from core.models import TokenScope
from core.permissions import TOKEN_SCOPE
from core.rawsql import RowReader, fetch_all


@functools.cache
def _readers() -> tuple[RowReader, RowReader, str]:
    user_model = get_user_model()
    token, user = RowReader(Token), RowReader(user_model)
    scope_projects = TokenScope.projects.through._meta.db_table
    sql = (f'SELECT {token.select_list("t")}, {user.select_list("u")}, s."token_id", sp."project_id" '
           f'FROM "{Token._meta.db_table}" t '
           f'INNER JOIN "{user_model._meta.db_table}" u ON u."{user_model._meta.pk.column}" = t."user_id" '
           f'LEFT OUTER JOIN "{TokenScope._meta.db_table}" s ON s."token_id" = t."key" '
           f'LEFT OUTER JOIN "{scope_projects}" sp ON sp."tokenscope_id" = s."token_id" '
           f'WHERE t."key" = %s')
    return token, user, sql


class SqlTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, exactly as rest_framework.authentication.TokenAuthentication."""

    def authenticate_credentials(self, key):
        token_reader, user_reader, sql = _readers()
        rows = fetch_all(sql, [key])  # one row per project of a scope; one row for an unscoped token
        if not rows:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        row = rows[0]
        token = token_reader.build(row[:len(token_reader)])
        token.user = user = user_reader.build(row[len(token_reader):-2])
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if row[-2] is not None:  # minted by someone else: it opens only the projects of its scope
            setattr(user, TOKEN_SCOPE, frozenset(r[-1] for r in rows if r[-1] is not None))
        return user, token
