"""vitalgate: api."""
