"""vitalgate: gateway."""
