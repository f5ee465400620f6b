"""The shared vocabulary of vitalgate: readings, units, plausibility, identity, topics, payloads.

No I/O lives here, apart from `vitals.mqtt_link`, the one module that builds MQTT clients (paho
only, so the gateway and the clinic both use it); every other package imports from this one and
nothing here imports from them (DESIGN.md, Layout).
"""
