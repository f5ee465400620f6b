"""The clinic database: clinics, users, patients, care teams, devices, targets, alerts, audit log.

Models live in `storage.clinic.models`; engines, sessions and migrations in `storage.clinic.database`;
the queries ingest needs in `storage.clinic.repository`.
"""
