"""Real components started for tests and benchmarks: a private influxd behind the /api/v2/write shim,
an acker standing in for ingest, the gateway in its own process beside virtual meters, and readings
built directly from the vitals models.

Both tests/ and bench/ use these; nothing in the product packages may import them.
"""
