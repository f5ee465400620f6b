"""Story files shipped with vitalgate (JSON, see device_drivers.virtual.stories)."""
