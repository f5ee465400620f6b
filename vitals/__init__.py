"""The shared vocabulary of vitalgate: readings, units, plausibility, identity, topics, payloads.

No I/O lives here; every other package imports from this one and nothing here imports from them
(DESIGN.md, Layout).
"""
