"""vitalgate: device_drivers."""
