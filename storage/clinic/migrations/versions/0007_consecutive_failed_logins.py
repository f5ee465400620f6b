"""Accounts count their consecutive failed logins, so an account locks after 100 of them whatever
the API process or restart (NIST SP 800-63B §5.2.2); the in-memory login throttle cannot.

A plain ADD COLUMN / DROP COLUMN, never Alembic's batch mode: on SQLite that rebuilds `users` by
dropping it, and with foreign keys on, dropping `users` first runs every ON DELETE rule that points at
it (user roles and care-team memberships deleted, alert acknowledgers set to NULL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A literal default: SQLite adds the column in place (a NOT NULL column needs one).
    op.add_column("users", sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (Debian 12: 3.40); PostgreSQL always has.
    op.execute("ALTER TABLE users DROP COLUMN failed_logins")
