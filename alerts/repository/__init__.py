"""Alert persistence and patient look-ups on the clinic database (storage.clinic.models).

The queries alerts needs live here; the models are the clinic-database engineer's. Columns the
lifecycle needs but the models lack are kept inside `Alert.trigger_values` (JSON, numbers and ids
only): `episode_key`, `latched` (manual resolve until the condition clears), `clear_streak`,
`notified_at` (for escalation timing), `citation`, `reading_ids`, `values`.

The parts: `alert_store` (alerts, events, digests, the inbox), `patients` (profile, targets and
care team), `reports` (patient reports) and `deliveries` (the e-mail outbox, webhook dead letters).
"""

from alerts.repository.alert_store import (
    RECENT_RESOLVED,
    InboxEntry,
    InboxView,
    LoggedEvent,
    SqlAlertRepository,
)
from alerts.repository.deliveries import KeptWebhook, SqlEmailOutbox, SqlWebhookDeadLetters
from alerts.repository.patients import RULES_CHUNK, SqlPatientDirectory, chosen_profile, patient_targets
from alerts.repository.reports import SqlReportStore

__all__ = [
    "RECENT_RESOLVED",
    "RULES_CHUNK",
    "InboxEntry",
    "InboxView",
    "KeptWebhook",
    "LoggedEvent",
    "SqlAlertRepository",
    "SqlEmailOutbox",
    "SqlPatientDirectory",
    "SqlReportStore",
    "SqlWebhookDeadLetters",
    "chosen_profile",
    "patient_targets",
]
