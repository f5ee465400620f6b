"""The services the composition root (vitalgate.wiring) hands the API: ``ApiServices.alerts`` and ``.fleet``.

They live apart from the routes that use them (api/routes/alerts.py, api/routes/admin_fleet.py) so
that ``api.deps`` names their types without importing a route module that imports it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.repository import SqlAlertRepository


@dataclass(frozen=True, slots=True)
class AlertApi:
    """The alert inbox, actions and live events: the engine, its repository and the event hub."""

    engine: AlertEngine
    repository: SqlAlertRepository
    hub: EventHub


class FleetCommands(Protocol):
    """What the composition root's fleet service (vitalgate.fleet.FleetService) offers the API."""

    @property
    def stale_after(self) -> timedelta: ...

    async def publish_commands(self, gateway_id: str) -> int: ...
