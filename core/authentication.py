"""Token authentication for the API: DRF's TokenAuthentication with its lookup written as one SQL statement.

The token row and its user are read on every request, as DRF does, so a revoked token, a deactivated user or
a changed superuser flag counts at once in every process; only the ORM's query building is gone (on the
annotate path it cost as much CPU as a pick's statements). Answers and errors are DRF's own.
"""

from __future__ import annotations

import functools

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from core.rawsql import RowReader, fetch_one


@functools.cache
def _readers() -> tuple[RowReader, RowReader, str]:
    user_model = get_user_model()
    token, user = RowReader(Token), RowReader(user_model)
    sql = (f'SELECT {token.select_list("t")}, {user.select_list("u")} FROM "{Token._meta.db_table}" t '
           f'INNER JOIN "{user_model._meta.db_table}" u ON u."{user_model._meta.pk.column}" = t."user_id" '
           f'WHERE t."key" = %s')
    return token, user, sql


class SqlTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, exactly as rest_framework.authentication.TokenAuthentication."""

    def authenticate_credentials(self, key):
        token_reader, user_reader, sql = _readers()
        row = fetch_one(sql, [key])
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = token_reader.build(row[:len(token_reader)])
        token.user = user = user_reader.build(row[len(token_reader):])
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, token
