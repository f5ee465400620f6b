"""How the API serves the web app's build (api/web_assets.py) and the API docs, without a browser."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.web_assets import IMMUTABLE, WebAppFiles

from .conftest import ClinicApi

INDEX = "<!doctype html><title>vitalgate</title><div id=app></div>"


def app_serving(directory: Path) -> TestClient:
    app = FastAPI()
    app.mount("/app", WebAppFiles(directory), name="web")
    return TestClient(app)


def test_a_deep_link_or_reload_opens_the_web_app(tmp_path: Path) -> None:
    """A bookmarked or reloaded address inside the app (/app/patients/p-1) opens the app, which then
    shows that page; a missing file is still a 404."""
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    client = app_serving(tmp_path)
    for path in ("/app/", "/app/patients/p-1", "/app/alerts/a-1", "/app/alerts?view=recent"):
        response = client.get(path)
        assert (response.status_code, response.text) == (200, INDEX), path
        assert response.headers["cache-control"] == "no-cache"
    asset = client.get("/app/assets/index-abc123.js")
    assert asset.status_code == 200 and asset.headers["cache-control"] == IMMUTABLE
    assert client.get("/app/assets/missing-123.js").status_code == 404
    assert client.get("/app/favicon.svg").status_code == 404


def test_an_unbuilt_web_app_says_how_to_build_it(tmp_path: Path) -> None:
    """Before the web app is built, /app/ answers 503 with how to build it, not a server error."""
    response = app_serving(tmp_path / "dist").get("/app/patients/p-1")
    assert response.status_code == 503
    assert "./dev" in response.text and "npm run build" in response.text


def test_the_api_docs_pages_name_only_the_servers_own_files(clinic_api: ClinicApi) -> None:
    """/docs and /redoc load their scripts and styles from the server itself, never from a CDN."""
    for page in ("/docs", "/redoc"):
        response = clinic_api.client.get(page)
        assert response.status_code == 200, page
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", response.text)
        assert urls, page
        assert [u for u in urls if not u.startswith("/")] == [], page
    root = clinic_api.client.get("/", follow_redirects=False)
    assert (root.status_code, root.headers["location"]) == (307, "/app/")
