"""vitalgate: vitals."""
