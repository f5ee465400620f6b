"""Serving the built web app (api/webapp, built into api/webapp/dist by `./dev`).

The web app routes in the browser (/app/patients/p-1, /app/alerts/a-1): any path under /app/ that
names no file gets index.html, so a deep link or a reload opens the same view. A path that looks
like a file (a dot in its last segment) and is missing stays a 404. Hashed build assets are cached
for a year; index.html is revalidated on every load, so a new build is picked up at once.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_APP_DIR: Final = Path(__file__).with_name("webapp") / "dist"
NOT_BUILT: Final = (
    "The web app is not built. `./dev demo` and `./dev test` build it; or run `npm ci && npm run build` "
    "in api/webapp.\n"
)
IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"


class WebAppFiles(StaticFiles):
    """StaticFiles with an index.html fallback for the web app's own routes."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)
        self._index = directory / "index.html"

    async def check_config(self) -> None:
        """A missing build answers 503 with how to build it (get_response), not a server error."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not self._index.is_file():
            return PlainTextResponse(NOT_BUILT, status_code=503)
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or "." in os.path.basename(path):
                raise
            return self._index_response()
        if path.startswith("assets" + os.sep) and response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
        else:
            response.headers.setdefault("Cache-Control", REVALIDATE)
        return response

    def _index_response(self) -> Response:
        stat_result = os.stat(self._index)
        if not stat.S_ISREG(stat_result.st_mode):
            return PlainTextResponse(NOT_BUILT, status_code=503)
        return FileResponse(self._index, stat_result=stat_result, headers={"Cache-Control": REVALIDATE})
