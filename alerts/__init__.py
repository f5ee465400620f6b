"""vitalgate: alerts."""
