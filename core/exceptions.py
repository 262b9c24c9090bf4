"""One place that turns errors into JSON responses naming the field.

Services raise Django's `ValidationError` (messages are module constants, optionally keyed by
field) or `ApplicationError`; DRF's own errors keep their shape. Nothing reaches the client as a 500
because a rule was broken.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler


class ApplicationError(Exception):
    """A rule of the application was broken; `status_code` says how (400 unless set), `code` says which rule.

    Subclasses name one refusal each (a `code` and a `default_message`), so callers tell them apart by class and
    clients by `code`, never by the sentence."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"
    default_message = "The request breaks a rule of the application."

    def __init__(self, message: str | None = None, *, extra: dict | None = None, status_code: int | None = None):
        message = message if message is not None else self.default_message
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        if status_code is not None:
            self.status_code = status_code


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response({"detail": "Request body too large."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, ApplicationError):
        return Response({"detail": exc.message, "code": exc.code, **exc.extra}, status=exc.status_code)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError) and isinstance(response.data, list):
        response.data = {"non_field_errors": response.data}
    return response


# --- OpenAPI: the error responses every endpoint may give, for drf-spectacular -------------------------------

class ApiErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in words.")
    code = serializers.CharField(required=False, help_text="Which rule refused it (e.g. lease_expired), for scripts.")


def error_responses(*codes: int) -> dict:
    """Schema entries for error status codes: 400 names fields, the others carry a `detail` message."""
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import OpenApiResponse

    detail = ApiErrorSerializer
    descriptions = {
        400: "Invalid input: an object whose keys name the bad fields (or non_field_errors), each with messages.",
        401: "Not authenticated.", 403: "Not allowed (role, CSRF, or not the leaseholder).",
        404: "Not found, or not visible to you.", 409: "Conflicts with the current state (already judged, lease expired, …).",
        413: "Request body too large.", 429: "Throttled: retry later.",
    }
    return {code: OpenApiResponse(response=OpenApiTypes.OBJECT if code == 400 else detail, description=descriptions[code])
            for code in codes}
