"""Error bodies of the API: every 4xx/5xx answer says what went wrong as a code the web app words in
the user's language (it never shows `detail`, which is English for scripts and logs).

- Every error: `{"detail": str, "code": ErrorCode, "field": str | null}` (`ErrorBody`).
- 422 (request validation): FastAPI's `detail` list is kept for scripts, with `code: "validation"`,
  `field` (the first field at fault) and `errors: [{field, code, limit}]`, where `code` is pydantic's
  error type (`greater_than_equal`, `less_than_equal`, `string_too_long`, `missing`, `literal_error`,
  ...) or one of `VALIDATION_CODES`, and `limit` the bound it broke, if any (`ValidationErrorBody`).

Routes raise `ApiError(ErrorCode.X)`, or `validation_error(...)` for a check pydantic cannot make. A
plain `HTTPException` (FastAPI's own 401 for a missing token, a 405, or a route not converted yet) is
answered with a code chosen by its status (`STATUS_FALLBACK`). No answer carries personal data or an
exception's own text: the store-unavailable and internal-error handlers say only what happened.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Final, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from storage.clinic.database import ClinicDatabaseUnavailableError
from storage.readings.protocol import ReadingStoreUnavailable

logger = logging.getLogger(__name__)

# Seconds a client should wait before asking again while a store is down (RFC 9110 §10.2.3).
RETRY_AFTER_S: Final = 5


class ErrorCode(StrEnum):
    """Every error code the API answers with. The web app has a message for each, in each language."""

    AUTH_INVALID_CREDENTIALS = "auth.invalid_credentials"
    AUTH_LOCKED = "auth.locked"
    AUTH_THROTTLED = "auth.throttled"
    AUTH_EXPIRED = "auth.expired"
    AUTH_REQUIRED = "auth.required"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    PATIENT_NOT_FOUND = "patient.not_found"
    ALERT_NOT_FOUND = "alert.not_found"
    ALERT_INVALID_TRANSITION = "alert.invalid_transition"
    TARGETS_NOT_FAMILY_DOCTOR = "targets.not_family_doctor"
    TARGETS_CHANGED_MEANWHILE = "targets.changed_meanwhile"
    VALIDATION = "validation"
    BAD_REQUEST = "bad_request"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    REQUEST_TOO_LARGE = "request.too_large"
    STORE_UNAVAILABLE = "store.unavailable"
    SERVICE_UNAVAILABLE = "service.unavailable"
    INTERNAL = "internal"
    # Clinic administration (storage.clinic.administration: the codes of AdministrationError).
    ADMIN_ACCOUNT_ACTIVE = "admin.account_active"
    ADMIN_ACCOUNT_INACTIVE = "admin.account_inactive"
    ADMIN_ALREADY_ON_CARE_TEAM = "admin.already_on_care_team"
    ADMIN_BINDING_ENDED = "admin.binding_ended"
    ADMIN_CARE_TEAM_NEEDS_DOCTOR = "admin.care_team_needs_doctor"
    ADMIN_CLINIC_EXISTS = "admin.clinic_exists"
    ADMIN_EMAIL_TAKEN = "admin.email_taken"
    ADMIN_GATEWAY_ACTIVE = "admin.gateway_active"
    ADMIN_GATEWAY_EXISTS = "admin.gateway_exists"
    ADMIN_GATEWAY_INACTIVE = "admin.gateway_inactive"
    ADMIN_INVALID_FIELD = "admin.invalid_field"
    ADMIN_INVALID_ID = "admin.invalid_id"
    ADMIN_INVALID_METER = "admin.invalid_meter"
    ADMIN_INVALID_SLOT = "admin.invalid_slot"
    ADMIN_LAST_ADMIN = "admin.last_admin"
    ADMIN_METER_ALREADY_BOUND = "admin.meter_already_bound"
    ADMIN_METER_EXISTS = "admin.meter_exists"
    ADMIN_NOT_CLINICIAN = "admin.not_clinician"
    ADMIN_NOT_FOUND = "admin.not_found"
    ADMIN_OWN_ACCOUNT = "admin.own_account"
    ADMIN_PASSWORD_LENGTH = "admin.password_length"  # noqa: S105 (an error code)
    ADMIN_PATIENT_ACTIVE = "admin.patient_active"
    ADMIN_PATIENT_DISCHARGED = "admin.patient_discharged"
    ADMIN_PATIENT_EXISTS = "admin.patient_exists"
    ADMIN_RESET_CODE_INVALID = "admin.reset_code_invalid"
    ADMIN_ROLES_REQUIRED = "admin.roles_required"
    ADMIN_SLOT_NOT_SUPPORTED = "admin.slot_not_supported"
    ADMIN_TIME_IN_FUTURE = "admin.time_in_future"
    ADMIN_UNBIND_BEFORE_BIND = "admin.unbind_before_bind"
    ADMIN_UNKNOWN_TIMEZONE = "admin.unknown_timezone"
    ADMIN_USER_EXISTS = "admin.user_exists"


# Status and English detail of each code (the detail a route may refine for scripts).
_DEFAULTS: Final[Mapping[ErrorCode, tuple[int, str]]] = {
    ErrorCode.AUTH_INVALID_CREDENTIALS: (401, "wrong e-mail or password"),
    ErrorCode.AUTH_LOCKED: (
        403,
        "account locked after repeated failed logins; a clinic administrator can unlock it",
    ),
    ErrorCode.AUTH_THROTTLED: (429, "too many failed logins; try again later"),
    ErrorCode.AUTH_EXPIRED: (401, "invalid or expired token"),
    ErrorCode.AUTH_REQUIRED: (401, "not signed in"),
    ErrorCode.FORBIDDEN: (403, "not allowed"),
    ErrorCode.NOT_FOUND: (404, "not found"),
    ErrorCode.PATIENT_NOT_FOUND: (404, "patient not found"),
    ErrorCode.ALERT_NOT_FOUND: (404, "alert not found"),
    ErrorCode.ALERT_INVALID_TRANSITION: (409, "the alert cannot make this change in its current state"),
    ErrorCode.TARGETS_NOT_FAMILY_DOCTOR: (
        403,
        "only the patient's family doctor or a clinic administrator may change targets",
    ),
    ErrorCode.TARGETS_CHANGED_MEANWHILE: (409, "the targets were changed meanwhile; reload them"),
    ErrorCode.VALIDATION: (422, "the request is not valid"),
    ErrorCode.BAD_REQUEST: (400, "bad request"),
    ErrorCode.METHOD_NOT_ALLOWED: (405, "method not allowed"),
    ErrorCode.CONFLICT: (409, "conflict"),
    ErrorCode.REQUEST_TOO_LARGE: (413, "the request body is too large"),
    ErrorCode.STORE_UNAVAILABLE: (
        503,
        "the reading store or clinic database is unavailable; try again shortly",
    ),
    ErrorCode.SERVICE_UNAVAILABLE: (503, "service unavailable"),
    ErrorCode.INTERNAL: (500, "internal error"),
    # Clinic administration: 404 absent (or another clinic's), 409 a conflict with the present
    # state, 422 input that can never be accepted; the detail a route gives says which object.
    ErrorCode.ADMIN_ACCOUNT_ACTIVE: (409, "account active"),
    ErrorCode.ADMIN_ACCOUNT_INACTIVE: (409, "account inactive"),
    ErrorCode.ADMIN_ALREADY_ON_CARE_TEAM: (409, "already on care team"),
    ErrorCode.ADMIN_BINDING_ENDED: (409, "binding ended"),
    ErrorCode.ADMIN_CARE_TEAM_NEEDS_DOCTOR: (409, "care team needs doctor"),
    ErrorCode.ADMIN_CLINIC_EXISTS: (409, "clinic exists"),
    ErrorCode.ADMIN_EMAIL_TAKEN: (409, "email taken"),
    ErrorCode.ADMIN_GATEWAY_ACTIVE: (409, "gateway active"),
    ErrorCode.ADMIN_GATEWAY_EXISTS: (409, "gateway exists"),
    ErrorCode.ADMIN_GATEWAY_INACTIVE: (409, "gateway inactive"),
    ErrorCode.ADMIN_INVALID_FIELD: (422, "invalid field"),
    ErrorCode.ADMIN_INVALID_ID: (422, "invalid id"),
    ErrorCode.ADMIN_INVALID_METER: (422, "invalid meter"),
    ErrorCode.ADMIN_INVALID_SLOT: (422, "invalid slot"),
    ErrorCode.ADMIN_LAST_ADMIN: (409, "last admin"),
    ErrorCode.ADMIN_METER_ALREADY_BOUND: (409, "meter already bound"),
    ErrorCode.ADMIN_METER_EXISTS: (409, "meter exists"),
    ErrorCode.ADMIN_NOT_CLINICIAN: (422, "not clinician"),
    ErrorCode.ADMIN_NOT_FOUND: (404, "not found"),
    ErrorCode.ADMIN_OWN_ACCOUNT: (409, "own account"),
    ErrorCode.ADMIN_PASSWORD_LENGTH: (422, "password length"),
    ErrorCode.ADMIN_PATIENT_ACTIVE: (409, "patient active"),
    ErrorCode.ADMIN_PATIENT_DISCHARGED: (409, "patient discharged"),
    ErrorCode.ADMIN_PATIENT_EXISTS: (409, "patient exists"),
    ErrorCode.ADMIN_RESET_CODE_INVALID: (422, "reset code invalid"),
    ErrorCode.ADMIN_ROLES_REQUIRED: (422, "roles required"),
    ErrorCode.ADMIN_SLOT_NOT_SUPPORTED: (422, "slot not supported"),
    ErrorCode.ADMIN_TIME_IN_FUTURE: (422, "time in future"),
    ErrorCode.ADMIN_UNBIND_BEFORE_BIND: (422, "unbind before bind"),
    ErrorCode.ADMIN_UNKNOWN_TIMEZONE: (422, "unknown timezone"),
    ErrorCode.ADMIN_USER_EXISTS: (409, "user exists"),
}

# The code of a plain HTTPException, by its status.
STATUS_FALLBACK: Final[Mapping[int, ErrorCode]] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.AUTH_REQUIRED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.REQUEST_TOO_LARGE,
    422: ErrorCode.VALIDATION,
    429: ErrorCode.AUTH_THROTTLED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}

# Validation codes of our own, beside pydantic's error types, for checks across fields or the clock.
VALIDATION_CODES: Final = {
    "range_reversed": "a range whose start is not before its end",
    "conflicting_filters": "two filters that name the same thing",
    "value_error": "a value refused by a check without a code of its own",
}

# pydantic context keys that carry the bound a value broke.
_LIMIT_KEYS: Final = ("ge", "gt", "le", "lt", "max_length", "min_length", "multiple_of")
_LOCATIONS: Final = frozenset({"body", "query", "path", "header", "cookie"})


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer but 422."""

    detail: str = Field(description="English, for scripts and logs; the web app words `code` instead")
    code: ErrorCode
    field: str | None = Field(description="the request field at fault, if one is")


class ValidationDetail(BaseModel):
    """One entry of FastAPI's validation `detail` list (kept as FastAPI sends it)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class FieldError(BaseModel):
    field: str | None = Field(description="dotted path of the field, without body/query/path")
    code: str = Field(description="pydantic's error type, or one of api.errors.VALIDATION_CODES")
    limit: float | None = Field(default=None, description="the bound broken (ge, le, max_length, ...)")


class ValidationErrorBody(BaseModel):
    """A 422 answer: FastAPI's detail list, plus a code per field."""

    detail: list[ValidationDetail]
    code: Literal[ErrorCode.VALIDATION]
    field: str | None
    errors: list[FieldError]


# The `responses` every route documents, so the web app's generated types know both bodies.
ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    422: {"model": ValidationErrorBody, "description": "Validation error"},
    "4XX": {"model": ErrorBody, "description": "Client error"},
    "5XX": {"model": ErrorBody, "description": "Server error or a store unavailable"},
}


class ApiError(HTTPException):
    """An error answer with its code (status and detail default to the code's)."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str | None = None,
        *,
        field: str | None = None,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        default_status, default_detail = _DEFAULTS[code]
        super().__init__(status_code or default_status, detail or default_detail, dict(headers or {}))
        self.code = code
        self.field = field


def validation_error(
    field: str, code: str, message: str, *, location: str = "body"
) -> RequestValidationError:
    """A 422 for a check the request model cannot make (across fields, against the clock), in the
    same shape as pydantic's: raise the result."""
    return RequestValidationError([{"type": code, "loc": (location, *field.split(".")), "msg": message}])


def _field_of(loc: Sequence[Any], error_type: str) -> str | None:
    parts = list(loc)
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    if not parts or error_type == "json_invalid":  # the whole body, or a position in its text
        return None
    return ".".join(str(p) for p in parts)


def _limit_of(ctx: Mapping[str, Any] | None) -> float | None:
    for key in _LIMIT_KEYS:
        value = (ctx or {}).get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def field_errors(errors: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    return [
        FieldError(
            field=_field_of(e.get("loc", ()), str(e.get("type", ""))),
            code=str(e.get("type", "value_error")),
            limit=_limit_of(e.get("ctx")),
        )
        for e in errors
    ]


def _validation_body(errors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    fields = field_errors(errors)
    return {
        "detail": jsonable_encoder(errors),
        "code": ErrorCode.VALIDATION.value,
        "field": fields[0].field if fields else None,
        "errors": [f.model_dump() for f in fields],
    }


def error_response(
    code: ErrorCode,
    detail: str | None = None,
    *,
    field: str | None = None,
    status_code: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    default_status, default_detail = _DEFAULTS[code]
    body = ErrorBody(detail=detail or default_detail, code=code, field=field)
    return JSONResponse(
        body.model_dump(mode="json"), status_code=status_code or default_status, headers=headers
    )


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    if isinstance(exc, ApiError):
        return error_response(
            exc.code, str(exc.detail), field=exc.field, status_code=exc.status_code, headers=headers
        )
    if exc.status_code == 422:  # a plain 422 with a sentence: shaped like a validation error
        message = exc.detail if isinstance(exc.detail, str) else "the request is not valid"
        body = _validation_body([{"type": "value_error", "loc": [], "msg": message}])
        return JSONResponse(body, status_code=422, headers=headers)
    code = STATUS_FALLBACK.get(exc.status_code)
    if code is None:
        code = ErrorCode.INTERNAL if exc.status_code >= 500 else ErrorCode.BAD_REQUEST
    detail = exc.detail if isinstance(exc.detail, str) else None
    return error_response(code, detail, status_code=exc.status_code, headers=headers)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(_validation_body(exc.errors()), status_code=422)


async def _on_store_unavailable(_request: Request, _exc: Exception) -> JSONResponse:
    # An outage, not a bug: 503 with Retry-After, so the web app and scripts try again. The
    # exception's text (hosts, ports) stays in the log.
    return error_response(ErrorCode.STORE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)})


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the exception itself after this answer; the body says nothing of it.
    return error_response(ErrorCode.INTERNAL)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` with an `ErrorBody` (a `ValidationErrorBody` for 422)."""
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ReadingStoreUnavailable, _on_store_unavailable)
    app.add_exception_handler(ClinicDatabaseUnavailableError, _on_store_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)
