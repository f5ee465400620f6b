"""vitalgate: vitalgate."""
