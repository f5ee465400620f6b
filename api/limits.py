"""Bounds on what the API accepts (OWASP API4 2023, unrestricted resource consumption), in one place.

- Request bodies: at most `MAX_REQUEST_BODY_BYTES` unless the composition root sets another limit
  (api.security.BodySizeLimit answers 413 before the body is read).
- Text: every string of a request body has a `max_length` (tests/api/test_size_caps.py walks the
  OpenAPI schema for one without). The lengths below are the ones shared by several routes.
- Times and dates: within [EARLIEST, LATEST). Python's datetime reaches from year 1 to 9999, but a
  range's default start (end - 30 days) or a patient's local calendar day falls off either end, so
  an instant near them is refused as a validation error with pydantic's own codes
  (`greater_than_equal`, `less_than`) instead of failing deep in a route.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Final

from pydantic import AwareDatetime, Field

# A clinic's largest legitimate body is an administrator's form or a batch of targets: a few kB. A
# megabyte leaves room for any of them and still bounds what one request can make the server hold.
MAX_REQUEST_BODY_BYTES: Final = 1024 * 1024

EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)

BoundedDatetime = Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)]
BoundedDate = Annotated[date, Field(ge=EARLIEST.date(), lt=LATEST.date())]

# Lengths shared by several request models.
OPAQUE_ID_MAX: Final = 64  # vitals.payload _ID, storage.clinic.models.OPAQUE_ID_LENGTH
EMAIL_MAX: Final = 254  # RFC 5321 §4.5.3.1.3 path limit; storage.clinic.models.User.email
PASSWORD_MAX: Final = 1024  # far past any passphrase; bounds the argon2 input
SECRET_TOKEN_MAX: Final = 128  # refresh tokens and one-time codes (a few dozen characters)
SYMPTOM_MAX: Final = 64  # one symptom word (alerts.model CRISIS_SYMPTOMS, ...)
