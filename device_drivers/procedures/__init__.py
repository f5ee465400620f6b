"""Async collector procedures over bleak's ``BleakClient`` API.

Every procedure takes a :class:`~device_drivers.procedures.client.GattClient` (any object with
BleakClient's ``read_gatt_char``/``write_gatt_char``/``start_notify``/``stop_notify`` and
``is_connected``), so the same code runs on a real ``BleakClient``, on a ``BleakClient`` with the
virtual-meter backend, and on the replay stand-in used in tests. Every GATT call has a timeout.
Results are plain frozen dataclasses; failures are typed (:mod:`.errors`).
"""
