"""Clinic administration: the clinic's settings, accounts, patients, gateways and meter bindings, as
a clinic administrator changes them (through the API, the web app or `vitalgate admin`).

One module per thing administered: `clinic` (the clinic's settings), `accounts` (users, roles,
password reset codes), `patients` (enrolment, care teams, discharge), `gateways`, and `meters` (meters
and their bindings to patients). `common` holds what they share: the `Actor`, `AdministrationError`
and the field checks.

Every change is made on behalf of an `Actor` and only inside the actor's clinic: an object of
another clinic is reported as absent (`admin.not_found`), as if it did not exist (OWASP API1). Every
change adds its audit entry to the caller's session, so the change and its entry commit together
(no trail, no change). A refused change raises `AdministrationError` before anything is written;
its `code` ("admin.meter_already_bound", ...) is what the API and the CLI report, and the caller
records the refusal as a denied audit entry.

Audit entries name people and records by opaque id only. A patient's or user's name, birth date,
phone or e-mail address never goes into an entry, an error message or a log: where such a field
changes, the entry lists which fields changed, not their values.

The caller owns the transaction and commits; functions flush so that database constraints are met
before the caller's commit.
"""
