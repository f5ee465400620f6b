"""Bluetooth SIG 16-bit UUIDs used by vitalgate, as the full 128-bit strings bleak accepts.

Source: reference/ble-health-profiles.md §2.1 (bluetooth-sig-python characteristic docstrings, Nordic
callbacks, SIG assigned numbers). Full form: 0000xxxx-0000-1000-8000-00805f9b34fb.
"""

from __future__ import annotations

BLUETOOTH_BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """The full lower-case UUID string of a 16-bit SIG UUID (``uuid16(0x2A35)``)."""
    return f"0000{short:04x}{BLUETOOTH_BASE_UUID_SUFFIX}"


def short_uuid(full: str) -> int | None:
    """The 16-bit value of a SIG-base UUID string, or None if it is not on the SIG base."""
    text = full.lower()
    if len(text) == 36 and text.startswith("0000") and text.endswith(BLUETOOTH_BASE_UUID_SUFFIX):
        try:
            return int(text[4:8], 16)
        except ValueError:
            return None
    return None


# Services
BLOOD_PRESSURE_SERVICE = uuid16(0x1810)
GLUCOSE_SERVICE = uuid16(0x1808)
CURRENT_TIME_SERVICE = uuid16(0x1805)
DEVICE_INFORMATION_SERVICE = uuid16(0x180A)
BATTERY_SERVICE = uuid16(0x180F)

# Blood Pressure service characteristics (BLS 1.0 / 1.1)
BLOOD_PRESSURE_MEASUREMENT = uuid16(0x2A35)  # Indicate
INTERMEDIATE_CUFF_PRESSURE = uuid16(0x2A36)  # Notify
BLOOD_PRESSURE_FEATURE = uuid16(0x2A49)  # Read
ENHANCED_BLOOD_PRESSURE_MEASUREMENT = uuid16(0x2B34)
ENHANCED_INTERMEDIATE_CUFF_PRESSURE = uuid16(0x2B35)
BLOOD_PRESSURE_RECORD = uuid16(0x2B36)

# Glucose service characteristics (GLS 1.0)
GLUCOSE_MEASUREMENT = uuid16(0x2A18)  # Notify
GLUCOSE_MEASUREMENT_CONTEXT = uuid16(0x2A34)  # Notify
GLUCOSE_FEATURE = uuid16(0x2A51)  # Read
RECORD_ACCESS_CONTROL_POINT = uuid16(0x2A52)  # Write + Indicate

# Time
DATE_TIME = uuid16(0x2A08)
CURRENT_TIME = uuid16(0x2A2B)
LOCAL_TIME_INFORMATION = uuid16(0x2A0F)

# Device Information service characteristics
MANUFACTURER_NAME_STRING = uuid16(0x2A29)
MODEL_NUMBER_STRING = uuid16(0x2A24)
SERIAL_NUMBER_STRING = uuid16(0x2A25)
HARDWARE_REVISION_STRING = uuid16(0x2A27)
FIRMWARE_REVISION_STRING = uuid16(0x2A26)
SOFTWARE_REVISION_STRING = uuid16(0x2A28)
SYSTEM_ID = uuid16(0x2A23)
PNP_ID = uuid16(0x2A50)

# Battery service
BATTERY_LEVEL = uuid16(0x2A19)
