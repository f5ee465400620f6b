"""Bluetooth SIG health-profile codecs: pure functions, bytes in, frozen dataclasses out.

One module per profile. Decoders are named ``decode_<characteristic>`` and encoders
``encode_<characteristic>``; both are stable public names used by the virtual meters
(``device_drivers/virtual``) and the collector procedures (``device_drivers/procedures``).
No I/O, no bleak, no asyncio here. Every decoder returns a value or raises
``errors.DecodeError(offset, reason)``; encoders raise ``errors.EncodeError``.

Stable encoder names (for virtual meters; keep them):

- ``ieee11073``: ``MderFloat`` (``MderFloat.from_decimal("5.8")``, ``MderFloat.of(SpecialValue.NAN)``),
  ``encode_sfloat``, ``encode_float``
- ``blood_pressure``: ``encode_blood_pressure_measurement``, ``encode_intermediate_cuff_pressure``,
  ``encode_blood_pressure_feature``, ``encode_enhanced_blood_pressure_measurement``,
  ``encode_blood_pressure_record``, ``crc16_mcrf4xx``
- ``glucose``: ``encode_glucose_measurement``, ``encode_glucose_measurement_context``,
  ``encode_glucose_feature``, ``sequence_number_after``
- ``racp``: ``encode_racp_request``, ``decode_racp_request`` (raises ``RacpRequestError`` carrying the
  response code to indicate), ``encode_racp_response``, ``RacpRequest`` (constructors
  ``report_all_records``, ``report_records_from``, ...; ``matches(sequence_number)``)
- ``time``: ``encode_date_time``, ``encode_current_time``, ``encode_local_time_information``,
  ``CurrentTime.from_datetime``, ``DateTime.from_datetime``
- ``device_information``: ``encode_utf8_string``, ``encode_pnp_id``
- ``battery``: ``encode_battery_level``
- ``uuids``: full-form UUID strings (``BLOOD_PRESSURE_MEASUREMENT``, ``RECORD_ACCESS_CONTROL_POINT``...)
"""
