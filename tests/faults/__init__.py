"""reliability.md §(a): the fault and abuse scenarios, each ending with a ledger (tests/faults/ledger.py).

Run the tier alone with `pytest -m faults`. Where each scenario is:

 1 ingest kill -9 mid-flight .......... test_ingest_crash.py (`vitalgate ingest` and its pipeline
                                         process); the clinic server's kill -9: test_soak.py
 2 gateway kill -9 during a burst ..... test_crashes.py; with virtual meters over BLE:
                                         tests/gateway/test_process.py
 3 broker kill -9, persistence on ..... test_crashes.py
 4 broker restart, ingest away ........ test_crashes.py
 5 queue overflow at the broker ....... test_outages.py
 6 store down under load .............. test_outages.py
 7 poison reading ..................... test_messages.py
 8 partition through a black hole ..... test_outages.py (test_proxy.py: the proxy itself)
 9 duplicate injection ................ test_messages.py
10 session-flag regression ............ test_messages.py
11 gateway disk full (tmpfs) .......... test_outages.py
12 MQTT abuse ......................... tests/vitalgate/test_broker_security.py,
                                         test_mosquitto_acl.py (deploy/mosquitto as shipped)
13 API authorisation abuse ............ tests/api (test_refused_tokens.py, test_login_throttle.py,
                                         test_audit.py, test_error_codes.py), and
                                         tests/api/test_schemathesis.py for server errors
14 BLE spoofing ....................... tests/gateway/test_meters_virtual.py
15 soak with restart churn ............ test_soak.py (3 minutes in CI; the hour: its docstring)
"""
