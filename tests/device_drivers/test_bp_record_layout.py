"""Blood Pressure Record 0x2B36 segments laid out as the GATT Specification Supplement's field table
says (org.bluetooth.characteristic.blood_pressure_record: Segmentation Header boolean8, Sequence
Number uint16, UUID uint16, Recorded Characteristic "a part of or a complete characteristic value",
E2E-CRC 0 or 2 bytes, "the CRC over all the data of a complete single or multi-message record")."""

from __future__ import annotations

import pytest

from device_drivers.procedures.blood_pressure_records import RecordAssembler, decode_recorded_measurement
from device_drivers.profiles.blood_pressure import (
    EnhancedBloodPressureMeasurement,
    decode_blood_pressure_record,
)

# Enhanced Blood Pressure Measurement 0x2B34 (reference/ble-health-profiles.md §2.2): flags 0x4E
# (time stamp, pulse, user ID, epoch 2000), 120/80 mmHg MAP 93, time stamp 2024-03-01 08:30:00
# (0x2D744E88 s since 2000), pulse 72, user 2.
MEASUREMENT = bytes.fromhex("4e 7800 5000 5d00 884e742d 4800 02")

# Record 7 in two segments: header 0x01 (first, counter 0), then 0x06 (last, counter 1); each
# segment repeats the sequence number 07 00 and the UUID 34 2B. The E2E-CRC (value not checked
# here) follows the record's last byte, in the last segment.
FIRST = bytes.fromhex("01 0700 342b") + MEASUREMENT[:8]
LAST_WITH_CRC = bytes.fromhex("06 0700 342b") + MEASUREMENT[8:] + bytes.fromhex("3412")


def test_a_record_in_two_segments_with_an_e2e_crc_is_read_whole_and_its_crc_apart() -> None:
    """A cuff with the E2E-CRC feature that splits a record in two segments has its reading read with
    every byte of the measurement: the CRC is taken from the end of the last segment only."""
    first = decode_blood_pressure_record(FIRST, e2e_crc_present=True)
    last = decode_blood_pressure_record(LAST_WITH_CRC, e2e_crc_present=True)
    assert (first.first_segment, first.last_segment, first.segment_counter, first.e2e_crc) == (
        True,
        False,
        0,
        None,
    )
    assert (last.first_segment, last.last_segment, last.segment_counter, last.e2e_crc) == (
        False,
        True,
        1,
        0x1234,
    )
    assert (first.sequence_number, last.sequence_number) == (7, 7)
    assert (first.recorded_uuid, last.recorded_uuid) == (0x2B34, 0x2B34)
    assembler = RecordAssembler()
    assert assembler.add(first) is None
    complete = assembler.add(last)
    assert complete is not None
    head, value = complete
    assert value == MEASUREMENT
    measurement = decode_recorded_measurement(head.recorded_uuid, value)
    assert isinstance(measurement, EnhancedBloodPressureMeasurement)
    assert (float(measurement.systolic), float(measurement.diastolic), measurement.user_id) == (120, 80, 2)
    assert measurement.time_stamp is not None and measurement.time_stamp.isoformat() == "2024-03-01T08:30:00"


@pytest.mark.parametrize("counter", [0, 63])
def test_a_record_in_one_segment_carries_its_crc_at_its_end(counter: int) -> None:
    """A record that fits one segment (first and last bits both set) ends with its CRC, whatever the
    rolling counter shows."""
    header = bytes((0x03 | counter << 2,))
    segment = decode_blood_pressure_record(
        header + bytes.fromhex("0700 342b") + MEASUREMENT + bytes.fromhex("3412"), e2e_crc_present=True
    )
    assert (segment.recorded_value, segment.e2e_crc, segment.segment_counter) == (
        MEASUREMENT,
        0x1234,
        counter,
    )
