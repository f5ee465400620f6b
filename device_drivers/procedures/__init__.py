"""Async collector procedures over bleak's ``BleakClient`` API.

Every procedure takes a :class:`~device_drivers.procedures.client.GattClient` (any object with
BleakClient's ``read_gatt_char``/``write_gatt_char``/``start_notify``/``stop_notify`` and
``is_connected``), so the same code runs on a real ``BleakClient``, on a ``BleakClient`` with the
virtual-meter backend, and on the replay stand-in used in tests. Every GATT call has a timeout
(:class:`~device_drivers.procedures.client.ProcedureTimeouts`). Results are plain frozen
dataclasses; failures are typed (:mod:`.errors`) and carry what was received before them.

Entry points (stable names)::

    session.run_glucose_session(client, last_sequence_number=..., gateway_timezone=..., disconnected=...)
    session.run_blood_pressure_session(client, gateway_timezone=..., on_cuff_pressure=..., disconnected=...)
    glucose.sync_glucose_records(...)          blood_pressure.collect_blood_pressure(...)
    clock.read_device_clock / set_device_clock device_info.read_meter_identity / read_*_feature

Typical gateway use::

    lost = asyncio.Event()
    async with BleakClient(device, lambda _c: lost.set(), pair=True, timeout=20) as client:
        session = await run_glucose_session(
            client, last_sequence_number=cursor, gateway_timezone=home_zone, disconnected=lost
        )
    # store device_drivers.readings.glucose_reading(...) for each session.sync.records, THEN persist
    # session.sync.highest_sequence_number as the new cursor (reference §2.3 step 8).

A&D cuffs want 2 s between the link coming up and the first GATT operation, which is known only
from the advertisement: connect with :func:`device_drivers.procedures.connect.connect_meter` (or
pass ``settle_delay_s`` from :func:`device_drivers.quirks.connection_quirks_for` to ``connect``).
"""
