"""Sessions (api/sessions.py): short-lived access tokens, rotating refresh tokens, sign-out and
revocation that take effect at once, on requests and on open live-event streams."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import func, select

from api.sessions import ACCESS_TOKEN_TTL_S, SESSION_MAX_S
from storage.clinic.models import AuditLogEntry, RefreshToken, UserRole, UserSession
from vitalgate.administration import add_user

from .conftest import PASSWORD, ClinicApi
from .web_fixtures import (  # noqa: F401
    ADMIN,
    DOCTOR,
    WebClinic,
    bp_reading,
    browser_fixture,
    browser_required,
    page_fixture,
    sign_in,
    web_app_required,
    web_clinic_fixture,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

ME = "/api/v1/me"


def _sign_in(api: ClinicApi, email: str = DOCTOR) -> dict[str, Any]:
    response = api.client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _refresh(api: ClinicApi, refresh_token: str) -> httpx.Response:
    response: httpx.Response = api.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    return response


def test_sign_in_gives_a_short_lived_access_token_and_a_refresh_token_kept_only_as_a_hash(
    clinic_api: ClinicApi,
) -> None:
    """A stolen access token is good for minutes, and the database cannot give a refresh token away."""
    tokens = _sign_in(clinic_api)
    assert tokens["expires_in"] == ACCESS_TOKEN_TTL_S <= 15 * 60
    assert 0 < tokens["refresh_expires_in"] <= SESSION_MAX_S
    with clinic_api.services.clinic_sessions() as db:
        stored = [row.token_hash for row in db.scalars(select(RefreshToken))]
    assert len(stored) == 1 and tokens["refresh_token"] not in stored


def test_a_signed_out_token_is_refused_and_its_refresh_token_is_dead(clinic_api: ClinicApi) -> None:
    """Sign-out ends the session on the server: the token that was used is refused at once."""
    tokens = _sign_in(clinic_api)
    assert clinic_api.client.get(ME, headers=_bearer(tokens)).status_code == 200
    assert clinic_api.client.post("/api/v1/auth/logout", headers=_bearer(tokens)).status_code == 204
    refused = clinic_api.client.get(ME, headers=_bearer(tokens))
    assert refused.status_code == 401 and refused.json()["code"] == "auth.required"
    assert _refresh(clinic_api, tokens["refresh_token"]).status_code == 401
    with clinic_api.services.clinic_sessions() as db:
        logouts = db.scalar(select(func.count()).where(AuditLogEntry.action == "logout"))
        denied = db.scalars(
            select(AuditLogEntry).where(
                AuditLogEntry.action == "use_token", AuditLogEntry.outcome == "denied"
            )
        ).all()
    assert logouts == 1 and [d.details["reason"] for d in denied] == ["session_revoked"]


def test_sign_out_with_only_the_refresh_token_ends_the_session(clinic_api: ClinicApi) -> None:
    """An idle tab whose access token ran out can still end its session with the refresh token."""
    tokens = _sign_in(clinic_api)
    response = clinic_api.client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 204
    assert clinic_api.client.get(ME, headers=_bearer(tokens)).status_code == 401


def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_whole_session(clinic_api: ClinicApi) -> None:
    """RFC 9700 §4.14.2: a refresh token works once; presented again, every token of its sign-in dies."""
    first = _sign_in(clinic_api)
    second_response = _refresh(clinic_api, first["refresh_token"])
    assert second_response.status_code == 200, second_response.text
    second = second_response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert clinic_api.client.get(ME, headers=_bearer(second)).status_code == 200

    reused = _refresh(clinic_api, first["refresh_token"])  # an attacker's copy of the old one
    assert reused.status_code == 401 and reused.json()["code"] == "auth.required"
    # The whole family is gone: the legitimate holder's newer tokens too.
    assert clinic_api.client.get(ME, headers=_bearer(second)).status_code == 401
    assert clinic_api.client.get(ME, headers=_bearer(first)).status_code == 401
    assert _refresh(clinic_api, second["refresh_token"]).status_code == 401
    with clinic_api.services.clinic_sessions() as db:
        session = db.scalars(select(UserSession)).one()
        refusals = db.scalars(
            select(AuditLogEntry).where(
                AuditLogEntry.action == "refresh_session", AuditLogEntry.outcome == "denied"
            )
        ).all()
    assert session.revoked_reason == "refresh_reused"
    assert [r.details["reason"] for r in refusals] == ["refresh_reused", "session_revoked"]


def test_a_role_change_revokes_the_accounts_sessions(clinic_api: ClinicApi) -> None:
    """An administrator takes a role away: the account's open sessions end at their next request."""
    doctor = _sign_in(clinic_api, "b@c1.example")
    admin = _bearer(_sign_in(clinic_api, "admin@c1.example"))
    changed = clinic_api.client.put(
        "/api/v1/admin/accounts/dr-b/roles", json={"roles": ["clinic_staff"]}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert clinic_api.client.get(ME, headers=_bearer(doctor)).status_code == 401
    assert _refresh(clinic_api, doctor["refresh_token"]).status_code == 401
    assert clinic_api.client.get(ME, headers=admin).status_code == 200  # the administrator's own stays
    again = _sign_in(clinic_api, "b@c1.example")  # a new sign-in carries the new role
    assert clinic_api.client.get(ME, headers=_bearer(again)).json()["roles"] == ["clinic_staff"]


def test_a_deactivated_accounts_refresh_token_buys_nothing_even_after_reactivation(
    clinic_api: ClinicApi,
) -> None:
    """Deactivation ends every session for good; reactivation does not bring old tokens back."""
    doctor = _sign_in(clinic_api, "b@c1.example")
    admin = _bearer(_sign_in(clinic_api, "admin@c1.example"))
    for action in ("deactivate", "reactivate"):
        response = clinic_api.client.post(f"/api/v1/admin/accounts/dr-b/{action}", headers=admin)
        assert response.status_code == 200, response.text
    assert clinic_api.client.get(ME, headers=_bearer(doctor)).status_code == 401
    assert _refresh(clinic_api, doctor["refresh_token"]).status_code == 401


# -- an open live-event stream --------------------------------------------------------------------

OTHER_ADMIN = "admin2@c1.example"


@pytest.fixture
def two_admins(web_clinic: WebClinic) -> WebClinic:
    with web_clinic.services.clinic_sessions() as session:
        add_user(
            session,
            clinic_id="c1",
            user_id="admin-3",
            email=OTHER_ADMIN,
            display_name="admin-3",
            roles=[UserRole.CLINIC_ADMIN],
            password=PASSWORD,
        )
        session.commit()
    return web_clinic


def _listen(url: str, token: str, events: queue.Queue[tuple[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{url}/api/v1/alerts/events", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        events.put(("open", response.status))
        for raw in response:
            line = raw.decode().strip()
            if line.startswith("data: "):
                events.put(("alert", json.loads(line[6:])))
    events.put(("closed", None))


def test_a_deactivated_administrators_open_stream_stops_receiving_events(two_admins: WebClinic) -> None:
    """The stream outlives the request that opened it: a deactivated account's stream carries no
    further event and ends within the recheck interval."""
    clinic = two_admins
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    listener = threading.Thread(target=_listen, args=(clinic.url, clinic.token(ADMIN), events), daemon=True)
    listener.start()
    assert events.get(timeout=10) == ("open", 200)

    clinic.add_readings([bp_reading("p-1", 5, 185, 95), bp_reading("p-1", 3, 186, 96)])
    kind, first = events.get(timeout=10)
    assert kind == "alert" and first["patient_id"] == "p-1"  # the stream works while signed in

    status, _ = clinic.api("POST", "/api/v1/admin/accounts/admin-1/deactivate", OTHER_ADMIN)
    assert status == 200
    deactivated_at = time.monotonic()
    clinic.add_readings([bp_reading("p-2", 4, 187, 97), bp_reading("p-2", 2, 188, 98)])
    after = []
    while True:
        kind, body = events.get(timeout=15)
        if kind == "closed":
            break
        after.append(body)
    assert after == []  # not one event after the deactivation
    assert time.monotonic() - deactivated_at < 10  # ends within SESSION_RECHECK_S (5 s), with room
    listener.join(5)
    # The other administrator, signed in, still gets the p-2 alert over a fresh stream.
    assert any(a["patient_id"] == "p-2" for a in clinic.alerts(email=OTHER_ADMIN))
    with clinic.services.clinic_sessions() as db:
        refused = db.scalars(
            select(AuditLogEntry).where(AuditLogEntry.action == "use_token", AuditLogEntry.actor == "admin-1")
        ).all()
    assert [r.details["reason"] for r in refused] == ["account_inactive"]


# -- the web app ------------------------------------------------------------------------------------


@browser_required
@web_app_required
def test_the_web_app_renews_its_session_silently_before_the_token_runs_out(
    web_clinic: WebClinic, page: Page
) -> None:
    """A doctor working past the access token's life is never sent back to sign in."""
    from playwright.sync_api import expect

    web_clinic.services.access_token_ttl_s = 70  # renewal is due a minute before: after 10 s
    first = sign_in(page, web_clinic)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/refresh"), timeout=30_000) as renewal:
        pass
    assert renewal.value.status == 200
    assert page.evaluate("sessionStorage.getItem('vitalgate.token')") != first
    expect(page.get_by_test_id("sign-out")).to_be_visible()
    renewed = page.evaluate("sessionStorage.getItem('vitalgate.token')")
    assert web_clinic.api("GET", "/api/v1/me", DOCTOR)[0] == 200
    status = page.evaluate(
        "async t => (await fetch('/api/v1/me', {headers: {Authorization: 'Bearer ' + t}})).status", renewed
    )
    assert status == 200


@browser_required
@web_app_required
def test_a_401_renews_the_session_once_and_repeats_the_request(web_clinic: WebClinic, page: Page) -> None:
    """An access token refused mid-session (expired while the laptop slept) costs the user nothing."""
    from playwright.sync_api import expect

    sign_in(page, web_clinic)
    page.evaluate("sessionStorage.setItem('vitalgate.token', 'not-a-token-any-more')")
    page.reload()
    expect(page.get_by_text("Wang")).to_be_visible()  # the panel loaded after the renewal
    assert page.evaluate("sessionStorage.getItem('vitalgate.token')") != "not-a-token-any-more"
    expect(page.get_by_test_id("sign-out")).to_be_visible()


@browser_required
@web_app_required
def test_signing_out_in_the_web_app_ends_the_session_on_the_server(web_clinic: WebClinic, page: Page) -> None:
    """After "Sign out" the token the page held is refused, whoever kept a copy of it."""
    token = sign_in(page, web_clinic)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/logout")) as signed_out:
        page.get_by_test_id("sign-out").click()
    assert signed_out.value.status == 204
    request = urllib.request.Request(f"{web_clinic.url}{ME}", headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
