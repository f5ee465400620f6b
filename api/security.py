"""Security headers on every response, and the request body limit.

- `BodySizeLimit`: a request whose Content-Length is above `ApiServices.max_request_body_bytes` is
  answered 413 (`request.too_large`, api/errors.py) before any of its body is read; a body sent
  without a length (chunked) is counted as it streams and refused at the first byte past the limit.
  Nothing of a refused body reaches a parser, a route or a store (OWASP API4 2023, unrestricted
  resource consumption). FastAPI's own `max_body_size` is not used: for a declared length above
  the limit it replaces whatever the app answers with a plain-text 413, which carries no code.
- `SecurityHeaders`: on every response, a Content-Security-Policy (nothing from elsewhere: the web
  app, Swagger UI and ReDoc are all served from here), `X-Content-Type-Options: nosniff`,
  `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` with `frame-ancestors 'none'` (no page of the
  clinic can be framed), `Cross-Origin-Opener-Policy: same-origin`; `Strict-Transport-Security` when
  the request came over TLS (directly, or through a trusted proxy's X-Forwarded-Proto) or the
  operator says the site is only ever reached over HTTPS (`api.hsts`); and `Cache-Control: no-store`
  on everything under /api/ and /fhir/, which is where personal data is answered (JSON, reports,
  exports, errors), so no browser or proxy cache keeps a copy.

A page that needs more than the default policy (Swagger UI's inline start-up script, ReDoc's
injected styles) sets its own header, built by `page_policy`, which the middleware keeps.
Sources: OWASP Secure Headers Project and HTTP Headers Cheat Sheet; CSP Level 3 (W3C); RFC 6797
(HSTS); RFC 9111 §5.2.2.5 (no-store).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, ErrorCode, error_response

# The web app (Vite build: script and style files, no inline code) and the JSON API. `data:` images:
# icons that CSS carries inline. `connect-src 'self'`: the API and its live-event stream.
DEFAULT_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HSTS: Final = "max-age=63072000"  # two years (OWASP HTTP Headers Cheat Sheet); no includeSubDomains
PERSONAL_DATA_PREFIXES: Final = ("/api/", "/fhir/")
NO_STORE: Final = "no-store"

_INLINE_SCRIPT: Final = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def page_policy(html: str, *, inline_styles: bool = False, blob_workers: bool = False) -> str:
    """The default policy, allowing `html`'s own inline scripts by their SHA-256 (CSP Level 3 hash
    sources) and, where a page's library injects them, inline styles and workers started from blobs."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii") + "'"
        for body in _INLINE_SCRIPT.findall(html)
    ]
    policy = DEFAULT_POLICY.replace("script-src 'self'", " ".join(["script-src 'self'", *hashes]))
    if inline_styles:
        policy = policy.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
    if blob_workers:
        policy = policy.replace("worker-src 'self'", "worker-src 'self' blob:")
    return policy


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        personal = path.startswith(PERSONAL_DATA_PREFIXES)
        tls = self.hsts or scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", DEFAULT_POLICY)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Frame-Options"] = "DENY"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                if tls:
                    headers["Strict-Transport-Security"] = HSTS
                if personal:
                    headers["Cache-Control"] = NO_STORE
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestTooLarge(ApiError):
    """The body went past the limit while it streamed in: raised from `receive`, so that FastAPI
    passes it on as the HTTP error it is (not as a body it could not parse) and the app's handler
    answers it with its code."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(ErrorCode.REQUEST_TOO_LARGE, f"the request body is larger than {max_bytes} bytes")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodySizeLimit:
    """Refuse request bodies above `max_bytes` with 413 before they are read (see the module doc)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except RequestTooLarge:
            if not started:  # read outside a route (FastAPI's handlers answer those inside one)
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            ErrorCode.REQUEST_TOO_LARGE,
            f"the request body is larger than {self.max_bytes} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
