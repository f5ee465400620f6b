"""Record Access Control Point 0x2A52: requests a collector writes, responses a meter indicates.

Layout (reference/ble-health-profiles.md §2.3; Nordic RecordAccessControlPointData; Mindtree
appl_gls.c constants):

    request   op code(1) | operator(1) | [filter type(1) | operand...]
    response  0x05 0x00 | number of records (uint16 in GLS/BLS; 1 or 4 bytes in other services)
              0x06 0x00 | request op code(1) | response code(1)

Examples: all records ``01 01``; >= sequence 0x0123 ``01 03 01 23 01``; range
``01 04 01 lo lo hi hi``; count all ``04 01``; abort ``03 00``; success ``06 00 01 01``;
no records found ``06 00 01 06``.

GLS filter types: 0x01 sequence number (uint16), 0x02 user facing time (Date Time, 7 bytes).

A request that decodes badly raises :class:`RacpRequestError`, a DecodeError that also carries the
response code a meter should indicate back (op code not supported, invalid operator, ...), so
virtual meters answer exactly as the specification asks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._enums import WireCode
from ._wire import ByteReader, uint_le
from .errors import DecodeError, EncodeError
from .time import DateTime, encode_date_time, read_date_time

RACP_OPCODE_OFFSET = 0
RACP_OPERATOR_OFFSET = 1
RACP_FILTER_TYPE_OFFSET = 2
RACP_OPERAND_OFFSET = 3
RACP_RESPONSE_REQUEST_OPCODE_OFFSET = 2
RACP_RESPONSE_CODE_OFFSET = 3
RACP_NUMBER_OF_RECORDS_OFFSET = 2
RACP_NUMBER_OF_RECORDS_SIZES = (1, 2, 4)
SEQUENCE_NUMBER_OPERAND_SIZE = 2
RACP_NAME = "Record Access Control Point"
USER_FACING_TIME_OPERAND_SIZE = 7


class RacpOpcode(WireCode):
    REPORT_STORED_RECORDS = 0x01
    DELETE_STORED_RECORDS = 0x02
    ABORT_OPERATION = 0x03
    REPORT_NUMBER_OF_STORED_RECORDS = 0x04
    NUMBER_OF_STORED_RECORDS_RESPONSE = 0x05
    RESPONSE_CODE = 0x06


class RacpOperator(WireCode):
    NULL = 0x00
    ALL_RECORDS = 0x01
    LESS_THAN_OR_EQUAL_TO = 0x02
    GREATER_THAN_OR_EQUAL_TO = 0x03
    WITHIN_RANGE_OF = 0x04
    FIRST_RECORD = 0x05
    LAST_RECORD = 0x06


class RacpFilterType(WireCode):
    SEQUENCE_NUMBER = 0x01
    USER_FACING_TIME = 0x02


class RacpResponseCode(WireCode):
    SUCCESS = 0x01
    OP_CODE_NOT_SUPPORTED = 0x02
    INVALID_OPERATOR = 0x03
    OPERATOR_NOT_SUPPORTED = 0x04
    INVALID_OPERAND = 0x05
    NO_RECORDS_FOUND = 0x06
    ABORT_UNSUCCESSFUL = 0x07
    PROCEDURE_NOT_COMPLETED = 0x08
    OPERAND_NOT_SUPPORTED = 0x09


_RECORD_OPCODES = (
    RacpOpcode.REPORT_STORED_RECORDS,
    RacpOpcode.DELETE_STORED_RECORDS,
    RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
)
_NO_OPERAND_OPERATORS = (RacpOperator.ALL_RECORDS, RacpOperator.FIRST_RECORD, RacpOperator.LAST_RECORD)
_OPERAND_SIZES = {
    RacpFilterType.SEQUENCE_NUMBER: SEQUENCE_NUMBER_OPERAND_SIZE,
    RacpFilterType.USER_FACING_TIME: USER_FACING_TIME_OPERAND_SIZE,
}


class RacpRequestError(DecodeError):
    """A request the meter must refuse; ``response_code`` is what it indicates back."""

    def __init__(
        self,
        offset: int,
        reason: str,
        *,
        response_code: RacpResponseCode,
        request_opcode: int,
        characteristic: str | None = RACP_NAME,
    ) -> None:
        super().__init__(offset, reason, characteristic=characteristic)
        self.response_code = response_code
        self.request_opcode = request_opcode

    def with_characteristic(self, characteristic: str) -> RacpRequestError:
        return RacpRequestError(
            self.offset,
            self.reason,
            response_code=self.response_code,
            request_opcode=self.request_opcode,
            characteristic=characteristic,
        )


@dataclass(frozen=True, slots=True)
class RacpRequest:
    """A RACP request. ``minimum``/``maximum`` are the filter operands (sequence numbers or times).

    ``<=`` uses ``maximum`` only, ``>=`` ``minimum`` only, ``within range`` both; the other operators
    take neither and no filter type.
    """

    opcode: RacpOpcode
    operator: RacpOperator
    filter_type: RacpFilterType | None = None
    minimum: int | DateTime | None = None
    maximum: int | DateTime | None = None

    @classmethod
    def report_all_records(cls) -> RacpRequest:
        """``01 01``: report every stored record (first sync)."""
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.ALL_RECORDS)

    @classmethod
    def report_records_from(cls, sequence_number: int) -> RacpRequest:
        """``01 03 01 <uint16>``: records with sequence number >= ``sequence_number``."""
        return cls(
            RacpOpcode.REPORT_STORED_RECORDS,
            RacpOperator.GREATER_THAN_OR_EQUAL_TO,
            RacpFilterType.SEQUENCE_NUMBER,
            minimum=sequence_number,
        )

    @classmethod
    def report_records_in_range(cls, first: int, last: int) -> RacpRequest:
        """``01 04 01 <first> <last>``: records with first <= sequence number <= last."""
        return cls(
            RacpOpcode.REPORT_STORED_RECORDS,
            RacpOperator.WITHIN_RANGE_OF,
            RacpFilterType.SEQUENCE_NUMBER,
            minimum=first,
            maximum=last,
        )

    @classmethod
    def report_first_record(cls) -> RacpRequest:
        """``01 05``: the oldest record (lowest sequence number)."""
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.FIRST_RECORD)

    @classmethod
    def report_last_record(cls) -> RacpRequest:
        """``01 06``: the newest record (highest sequence number)."""
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.LAST_RECORD)

    @classmethod
    def report_number_of_records(cls, from_sequence_number: int | None = None) -> RacpRequest:
        """``04 01`` (all) or ``04 03 01 <uint16>`` (>= sequence number)."""
        if from_sequence_number is None:
            return cls(RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS, RacpOperator.ALL_RECORDS)
        return cls(
            RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
            RacpOperator.GREATER_THAN_OR_EQUAL_TO,
            RacpFilterType.SEQUENCE_NUMBER,
            minimum=from_sequence_number,
        )

    @classmethod
    def delete_all_records(cls) -> RacpRequest:
        """``02 01``: delete every stored record."""
        return cls(RacpOpcode.DELETE_STORED_RECORDS, RacpOperator.ALL_RECORDS)

    @classmethod
    def abort_operation(cls) -> RacpRequest:
        """``03 00``: abort the procedure in progress."""
        return cls(RacpOpcode.ABORT_OPERATION, RacpOperator.NULL)

    def matches(self, sequence_number: int, user_facing_time: DateTime | None = None) -> bool:
        """True when a record with these keys is selected by this request's filter.

        FIRST/LAST_RECORD depend on the whole store, so they are not decided here (returns True).
        """
        if self.operator in (RacpOperator.ALL_RECORDS, RacpOperator.FIRST_RECORD, RacpOperator.LAST_RECORD):
            return True
        record_key: int | DateTime | None = (
            sequence_number if self.filter_type is RacpFilterType.SEQUENCE_NUMBER else user_facing_time
        )
        if record_key is None:
            return False
        key = _order_key(record_key)
        if self.minimum is not None and key < _order_key(self.minimum):
            return False
        return not (self.maximum is not None and key > _order_key(self.maximum))


def _order_key(value: int | DateTime) -> tuple[int, ...]:
    """Comparable key: a sequence number, or a Date Time's fields in significance order."""
    if isinstance(value, int):
        return (value,)
    return (value.year, value.month, value.day, value.hours, value.minutes, value.seconds)


@dataclass(frozen=True, slots=True)
class RacpResponse:
    """``06 00 <request op code> <response code>``: the end of a RACP procedure."""

    request_opcode: RacpOpcode
    response_code: RacpResponseCode


@dataclass(frozen=True, slots=True)
class RacpNumberOfRecords:
    """``05 00 <count>``: the answer to Report Number of Stored Records."""

    number_of_records: int
    size: int = 2


def _encode_operand(filter_type: RacpFilterType, value: int | DateTime | None, what: str) -> bytes:
    if filter_type is RacpFilterType.SEQUENCE_NUMBER and isinstance(value, int):
        return uint_le(value, SEQUENCE_NUMBER_OPERAND_SIZE, what)
    if filter_type is RacpFilterType.USER_FACING_TIME and isinstance(value, DateTime):
        return encode_date_time(value)
    raise EncodeError(f"{what} {value!r} does not match filter type {filter_type.name}")


def encode_racp_request(request: RacpRequest) -> bytes:
    """Encode a RACP request as written by a collector. Raises EncodeError for inconsistent fields."""
    head = bytes((int(request.opcode), int(request.operator)))
    if request.operator in (RacpOperator.NULL, *_NO_OPERAND_OPERATORS) or request.operator.is_reserved:
        if request.filter_type is not None or request.minimum is not None or request.maximum is not None:
            raise EncodeError(f"operator {request.operator.name} takes no filter or operand")
        return head
    if request.filter_type is None:
        raise EncodeError(f"operator {request.operator.name} needs a filter type")
    out = head + bytes((int(request.filter_type),))
    if request.operator is RacpOperator.LESS_THAN_OR_EQUAL_TO:
        return out + _encode_operand(request.filter_type, request.maximum, "maximum")
    if request.operator is RacpOperator.GREATER_THAN_OR_EQUAL_TO:
        return out + _encode_operand(request.filter_type, request.minimum, "minimum")
    return (
        out
        + _encode_operand(request.filter_type, request.minimum, "minimum")
        + _encode_operand(request.filter_type, request.maximum, "maximum")
    )


def _read_operand(reader: ByteReader, filter_type: RacpFilterType, opcode: int, what: str) -> int | DateTime:
    size = _OPERAND_SIZES[filter_type]
    if reader.remaining < size:
        raise RacpRequestError(
            reader.offset,
            f"{what} needs {size} byte(s), {reader.remaining} left",
            response_code=RacpResponseCode.INVALID_OPERAND,
            request_opcode=opcode,
        )
    if filter_type is RacpFilterType.SEQUENCE_NUMBER:
        return reader.uint16(what)
    try:
        return read_date_time(reader)
    except DecodeError as error:
        raise RacpRequestError(
            error.offset,
            error.reason,
            response_code=RacpResponseCode.INVALID_OPERAND,
            request_opcode=opcode,
        ) from None


def decode_racp_request(data: bytes) -> RacpRequest:
    """Decode a RACP request (what a meter receives).

    Raises:
        RacpRequestError: the request is malformed; ``response_code`` is the code the meter indicates.
        DecodeError: the value is empty (there is no op code to answer).
    """
    reader = ByteReader(data)
    if not data:
        raise DecodeError(RACP_OPCODE_OFFSET, "empty RACP value", characteristic=RACP_NAME)
    opcode_code = reader.uint8("op code")
    opcode = RacpOpcode(opcode_code)
    if opcode not in (*_RECORD_OPCODES, RacpOpcode.ABORT_OPERATION):
        raise RacpRequestError(
            RACP_OPCODE_OFFSET,
            f"op code 0x{opcode_code:02X} is not a supported request (0x01..0x04)",
            response_code=RacpResponseCode.OP_CODE_NOT_SUPPORTED,
            request_opcode=opcode_code,
        )
    if reader.remaining < 1:
        raise RacpRequestError(
            RACP_OPERATOR_OFFSET,
            "operator missing",
            response_code=RacpResponseCode.INVALID_OPERATOR,
            request_opcode=opcode_code,
        )
    operator = RacpOperator(reader.uint8("operator"))
    if opcode is RacpOpcode.ABORT_OPERATION:
        if operator is not RacpOperator.NULL:
            raise RacpRequestError(
                RACP_OPERATOR_OFFSET,
                f"abort takes the null operator, not {operator.name}",
                response_code=RacpResponseCode.INVALID_OPERATOR,
                request_opcode=opcode_code,
            )
        _expect_no_operand(reader, opcode_code)
        return RacpRequest(opcode, operator)
    if operator is RacpOperator.NULL:
        raise RacpRequestError(
            RACP_OPERATOR_OFFSET,
            f"{opcode.name} needs an operator, got NULL",
            response_code=RacpResponseCode.INVALID_OPERATOR,
            request_opcode=opcode_code,
        )
    if operator.is_reserved:
        raise RacpRequestError(
            RACP_OPERATOR_OFFSET,
            f"operator 0x{int(operator):02X} is reserved",
            response_code=RacpResponseCode.OPERATOR_NOT_SUPPORTED,
            request_opcode=opcode_code,
        )
    if operator in _NO_OPERAND_OPERATORS:
        _expect_no_operand(reader, opcode_code)
        return RacpRequest(opcode, operator)
    if reader.remaining < 1:
        raise RacpRequestError(
            RACP_FILTER_TYPE_OFFSET,
            "filter type missing",
            response_code=RacpResponseCode.INVALID_OPERAND,
            request_opcode=opcode_code,
        )
    filter_type = RacpFilterType(reader.uint8("filter type"))
    if filter_type.is_reserved:
        raise RacpRequestError(
            RACP_FILTER_TYPE_OFFSET,
            f"filter type 0x{int(filter_type):02X} is not supported",
            response_code=RacpResponseCode.OPERAND_NOT_SUPPORTED,
            request_opcode=opcode_code,
        )
    minimum: int | DateTime | None = None
    maximum: int | DateTime | None = None
    if operator is RacpOperator.LESS_THAN_OR_EQUAL_TO:
        maximum = _read_operand(reader, filter_type, opcode_code, "maximum")
    elif operator is RacpOperator.GREATER_THAN_OR_EQUAL_TO:
        minimum = _read_operand(reader, filter_type, opcode_code, "minimum")
    else:
        minimum = _read_operand(reader, filter_type, opcode_code, "minimum")
        maximum = _read_operand(reader, filter_type, opcode_code, "maximum")
        if _order_key(minimum) > _order_key(maximum):
            raise RacpRequestError(
                RACP_OPERAND_OFFSET,
                "range minimum is greater than its maximum",
                response_code=RacpResponseCode.INVALID_OPERAND,
                request_opcode=opcode_code,
            )
    _expect_no_operand(reader, opcode_code)
    return RacpRequest(opcode, operator, filter_type, minimum, maximum)


def _expect_no_operand(reader: ByteReader, opcode: int) -> None:
    if reader.remaining:
        raise RacpRequestError(
            reader.offset,
            f"{reader.remaining} unexpected operand byte(s)",
            response_code=RacpResponseCode.INVALID_OPERAND,
            request_opcode=opcode,
        )


def encode_racp_response(response: RacpResponse | RacpNumberOfRecords) -> bytes:
    """Encode a RACP indication as a meter sends it."""
    if isinstance(response, RacpNumberOfRecords):
        if response.size not in RACP_NUMBER_OF_RECORDS_SIZES:
            raise EncodeError(f"number-of-records size {response.size} is not 1, 2 or 4")
        return bytes((int(RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE), int(RacpOperator.NULL))) + uint_le(
            response.number_of_records, response.size, "number of records"
        )
    return bytes(
        (
            int(RacpOpcode.RESPONSE_CODE),
            int(RacpOperator.NULL),
            int(response.request_opcode),
            int(response.response_code),
        )
    )


def decode_racp_response(data: bytes) -> RacpResponse | RacpNumberOfRecords:
    """Decode a RACP indication (what a collector receives). Raises DecodeError for anything else."""
    try:
        reader = ByteReader(data)
        opcode = reader.uint8("op code")
        operator = reader.uint8("operator")
        if operator != RacpOperator.NULL:
            raise DecodeError(RACP_OPERATOR_OFFSET, f"response operator 0x{operator:02X} is not NULL (0x00)")
        if opcode == RacpOpcode.RESPONSE_CODE:
            request_opcode = RacpOpcode(reader.uint8("request op code"))
            response_code = RacpResponseCode(reader.uint8("response code"))
            reader.expect_end()
            return RacpResponse(request_opcode, response_code)
        if opcode == RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE:
            size = reader.remaining
            if size not in RACP_NUMBER_OF_RECORDS_SIZES:
                raise DecodeError(
                    RACP_NUMBER_OF_RECORDS_OFFSET, f"number of records is {size} byte(s), expected 1, 2 or 4"
                )
            return RacpNumberOfRecords(int.from_bytes(reader.rest(), "little"), size)
        raise DecodeError(RACP_OPCODE_OFFSET, f"op code 0x{opcode:02X} is not a response (0x05 or 0x06)")
    except DecodeError as error:
        raise error.with_characteristic(RACP_NAME) from None


RESPONSE_OPCODES = frozenset(
    {int(RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE), int(RacpOpcode.RESPONSE_CODE)}
)


def decode_racp(data: bytes) -> RacpRequest | RacpResponse | RacpNumberOfRecords:
    """Decode any RACP value: a response when the op code is 0x05/0x06, else a request."""
    if data and data[0] in RESPONSE_OPCODES:
        return decode_racp_response(data)
    return decode_racp_request(data)
