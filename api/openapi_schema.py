"""Write the API's OpenAPI schema to a file: `python -m api.openapi_schema OUT.json`.

The web app's build generates its TypeScript types from this file (api/webapp/scripts/gen-schema.mjs),
so a changed route or model breaks the front end's type check. The schema comes from the same
`create_app` the server runs; no server, broker or alert engine is started: the services it is handed
are an unbound clinic session factory and a reading store in a temporary directory, neither of which
is touched while the schema is built.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.orm import sessionmaker

from api.app import create_app
from api.deps import ApiServices
from storage.readings.sqlite import SqliteReadingStore


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI document of the application as `create_app` builds it."""
    with tempfile.TemporaryDirectory(prefix="vitalgate-openapi-") as tmp:
        store = SqliteReadingStore(Path(tmp) / "readings.sqlite3")
        try:
            services = ApiServices(reading_store=store, clinic_sessions=sessionmaker(), jwt_secret="x" * 32)
            return create_app(services).openapi()
        finally:
            store.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m api.openapi_schema OUT.json", file=sys.stderr)
        return 2
    out = Path(args[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(openapi_schema(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
