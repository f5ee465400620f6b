"""Shared fixtures. Service fixtures live in tests/fixtures/ and are registered here as plugins."""

from __future__ import annotations

pytest_plugins = ["tests.fixtures.mosquitto"]
