"""vitalgate: storage."""
