"""vitalgate: ingest."""
