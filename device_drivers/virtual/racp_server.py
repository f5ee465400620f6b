"""The meter side of the Record Access Control Point 0x2A52: requests in, decisions out. No I/O.

Layout and codes (reference/ble-health-profiles.md §2.3, "Record Access Control Point"; Nordic
RecordAccessControlPointData, Mindtree appl_gls.c constants):

    request   opcode(1) operator(1) [filter type(1) operand...]
              report all = 01 01; report >= seq 0x0123 = 01 03 01 23 01;
              range = 01 04 01 lo(2) hi(2); count all = 04 01; abort = 03 00
    responses number of stored records = 05 00 count(uint16, GLS)
              response code = 06 00 <request opcode> <response code>

The glucose meter feeds a request and its records' on-air sequence numbers to :func:`plan` and
gets back what to do: send these records, answer with this count, delete these, or answer with a
response code.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

# Request field offsets.
RACP_OPCODE_OFFSET = 0
RACP_OPERATOR_OFFSET = 1
RACP_FILTER_TYPE_OFFSET = 2
RACP_OPERAND_OFFSET = 3
RACP_MIN_REQUEST_SIZE = 2
SEQUENCE_OPERAND_SIZE = 2
#: Response operator field is always Null (0x00).
RACP_RESPONSE_OPERATOR_NULL = 0x00
RACP_COUNT_SIZE = 2


class RacpOpcode(enum.IntEnum):
    REPORT_STORED_RECORDS = 0x01
    DELETE_STORED_RECORDS = 0x02
    ABORT_OPERATION = 0x03
    REPORT_NUMBER_OF_STORED_RECORDS = 0x04
    NUMBER_OF_STORED_RECORDS_RESPONSE = 0x05
    RESPONSE_CODE = 0x06


class RacpOperator(enum.IntEnum):
    NULL = 0x00
    ALL_RECORDS = 0x01
    LESS_THAN_OR_EQUAL = 0x02
    GREATER_THAN_OR_EQUAL = 0x03
    WITHIN_RANGE = 0x04
    FIRST_RECORD = 0x05
    LAST_RECORD = 0x06


class RacpFilterType(enum.IntEnum):
    SEQUENCE_NUMBER = 0x01
    USER_FACING_TIME = 0x02


class RacpResponseCode(enum.IntEnum):
    SUCCESS = 0x01
    OP_CODE_NOT_SUPPORTED = 0x02
    INVALID_OPERATOR = 0x03
    OPERATOR_NOT_SUPPORTED = 0x04
    INVALID_OPERAND = 0x05
    NO_RECORDS_FOUND = 0x06
    ABORT_UNSUCCESSFUL = 0x07
    PROCEDURE_NOT_COMPLETED = 0x08
    OPERAND_NOT_SUPPORTED = 0x09


@dataclass(frozen=True)
class RacpPlan:
    """What the meter must do for one request.

    Exactly one of: ``send`` (indices of records to send, oldest first, then a SUCCESS response),
    ``count`` (answer with a count), ``delete`` (indices to remove, then SUCCESS), ``abort``, or
    ``response_code`` alone (an error or "no records found").
    """

    opcode: int
    send: tuple[int, ...] = ()
    count: int | None = None
    delete: tuple[int, ...] = ()
    abort: bool = False
    response_code: RacpResponseCode | None = None


def encode_response_code(request_opcode: int, code: RacpResponseCode) -> bytes:
    return bytes([RacpOpcode.RESPONSE_CODE, RACP_RESPONSE_OPERATOR_NULL, request_opcode & 0xFF, code])


def encode_count_response(count: int) -> bytes:
    return bytes([RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE, RACP_RESPONSE_OPERATOR_NULL]) + min(
        count, 0xFFFF
    ).to_bytes(RACP_COUNT_SIZE, "little")


def _select(
    operator: int, request: bytes, sequence_numbers: Sequence[int]
) -> tuple[int, ...] | RacpResponseCode:
    """Indices (into ``sequence_numbers``, stored order) chosen by operator + operand."""
    indices = range(len(sequence_numbers))
    if operator == RacpOperator.ALL_RECORDS:
        if len(request) != RACP_MIN_REQUEST_SIZE:
            return RacpResponseCode.INVALID_OPERAND
        return tuple(indices)
    if operator in (RacpOperator.FIRST_RECORD, RacpOperator.LAST_RECORD):
        if len(request) != RACP_MIN_REQUEST_SIZE:
            return RacpResponseCode.INVALID_OPERAND
        if not sequence_numbers:
            return ()
        # "First" and "last" are by sequence number order, not storage order (matters for TaiDoc).
        pick = min if operator == RacpOperator.FIRST_RECORD else max
        chosen = pick(indices, key=lambda index: sequence_numbers[index])
        return (chosen,)
    if operator not in (
        RacpOperator.LESS_THAN_OR_EQUAL,
        RacpOperator.GREATER_THAN_OR_EQUAL,
        RacpOperator.WITHIN_RANGE,
    ):
        return (
            RacpResponseCode.INVALID_OPERATOR
            if operator == RacpOperator.NULL
            else RacpResponseCode.OPERATOR_NOT_SUPPORTED
        )
    if len(request) <= RACP_FILTER_TYPE_OFFSET:
        return RacpResponseCode.INVALID_OPERAND
    filter_type = request[RACP_FILTER_TYPE_OFFSET]
    if filter_type == RacpFilterType.USER_FACING_TIME:
        return RacpResponseCode.OPERAND_NOT_SUPPORTED
    if filter_type != RacpFilterType.SEQUENCE_NUMBER:
        return RacpResponseCode.INVALID_OPERAND
    operand = request[RACP_OPERAND_OFFSET:]
    operand_count = 2 if operator == RacpOperator.WITHIN_RANGE else 1
    if len(operand) != operand_count * SEQUENCE_OPERAND_SIZE:
        return RacpResponseCode.INVALID_OPERAND
    first = int.from_bytes(operand[:SEQUENCE_OPERAND_SIZE], "little")
    if operator == RacpOperator.LESS_THAN_OR_EQUAL:
        return tuple(index for index in indices if sequence_numbers[index] <= first)
    if operator == RacpOperator.GREATER_THAN_OR_EQUAL:
        return tuple(index for index in indices if sequence_numbers[index] >= first)
    second = int.from_bytes(operand[SEQUENCE_OPERAND_SIZE:], "little")
    if first > second:
        return RacpResponseCode.INVALID_OPERAND
    return tuple(index for index in indices if first <= sequence_numbers[index] <= second)


def plan(request: bytes, sequence_numbers: Sequence[int]) -> RacpPlan:
    """Decide what a request asks, given the on-air sequence numbers of the stored records."""
    if len(request) < RACP_MIN_REQUEST_SIZE:
        opcode = request[RACP_OPCODE_OFFSET] if request else 0
        return RacpPlan(opcode, response_code=RacpResponseCode.INVALID_OPERAND)
    opcode = request[RACP_OPCODE_OFFSET]
    operator = request[RACP_OPERATOR_OFFSET]
    if opcode == RacpOpcode.ABORT_OPERATION:
        if operator != RacpOperator.NULL or len(request) != RACP_MIN_REQUEST_SIZE:
            return RacpPlan(opcode, response_code=RacpResponseCode.INVALID_OPERATOR)
        return RacpPlan(opcode, abort=True)
    if opcode not in (
        RacpOpcode.REPORT_STORED_RECORDS,
        RacpOpcode.DELETE_STORED_RECORDS,
        RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
    ):
        return RacpPlan(opcode, response_code=RacpResponseCode.OP_CODE_NOT_SUPPORTED)
    selected = _select(operator, request, sequence_numbers)
    if isinstance(selected, RacpResponseCode):
        return RacpPlan(opcode, response_code=selected)
    if opcode == RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS:
        return RacpPlan(opcode, count=len(selected))
    if not selected:
        return RacpPlan(opcode, response_code=RacpResponseCode.NO_RECORDS_FOUND)
    if opcode == RacpOpcode.DELETE_STORED_RECORDS:
        return RacpPlan(opcode, delete=selected)
    # Send in sequence-number order (oldest first for ascending meters).
    ordered = tuple(sorted(selected, key=lambda index: sequence_numbers[index]))
    return RacpPlan(opcode, send=ordered)
