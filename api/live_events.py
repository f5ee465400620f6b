"""The alert live-event stream (server-sent events) of one signed-in user.

The stream outlives the request that opened it, so the user's session is checked again before every
event and at least every SESSION_RECHECK_S: once it is signed out, or the account deactivated or its
roles changed, no further event is sent and the stream ends (api/sessions.py). Each event goes to a
user who may see its patient (on the patient's care team; the clinic for an administrator).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from api.auth import Principal
from api.deps import ApiServices, session_is_current, session_stands
from api.services import AlertApi

KEEPALIVE_S = 15.0
SESSION_RECHECK_S = 5.0  # an open stream's session is checked at least this often


def _may_see(
    services: ApiServices, api: AlertApi, user: Principal, admin: bool, patient_id: str
) -> bool | None:
    """Whether `user` may see an event of `patient_id` now; None once the session no longer stands."""
    if not session_stands(services, user):
        return None
    return admin or api.repository.on_care_team(user.user_id, patient_id)


async def alert_event_stream(
    services: ApiServices, api: AlertApi, user: Principal, admin: bool, limit: int | None
) -> AsyncIterator[bytes]:
    """`event: alert`, `id: <event id>`, `data: <JSON>` for each event `user` may see, with a comment
    line when the stream opens and keep-alives while it is idle; `limit` events at most."""
    sent = 0
    idle_s = 0.0
    async with api.hub.subscribe(user.clinic_id) as sub:
        yield b": connected\n\n"
        while limit is None or sent < limit:
            note = await sub.next(SESSION_RECHECK_S)
            if note is None:
                if not await session_is_current(services, user) or sub.dropped:
                    return
                idle_s += SESSION_RECHECK_S
                if idle_s >= KEEPALIVE_S:
                    idle_s = 0.0
                    yield b": keep-alive\n\n"
                continue
            # One trip to a worker thread for both checks: an urgent alert's event is not kept
            # waiting for two turns among the alert engine's evaluations.
            may_see = await asyncio.to_thread(_may_see, services, api, user, admin, note.event.patient_id)
            if may_see is None:
                return
            if not may_see:
                continue
            data = json.dumps(note.body(), sort_keys=True)
            yield f"id: {note.event_id}\nevent: alert\ndata: {data}\n\n".encode()
            sent += 1
