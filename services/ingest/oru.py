r"""HL7 v2 ORU^R01 result messages: the header, and the radiology reports they carry.

The core of the MLLP channel, free of sockets: :func:`parse_message` turns the bytes of one
message into a :class:`Hl7Message` (python-hl7 does the segment splitting; the fields this
module reads are split and unescaped here, so no library logs a field value), and
:func:`oru_reports` reads one :class:`OruReport` per OBR group:

* text: OBX-5 of every OBX of value type TX, FT or ST in the group, in order, repetitions and
  FT line breaks (``\.br\``) as newlines; OBX with result status W, D or X (wrong, deleted,
  no result) are left out;
* identifiers: PID-3 (the ``MR`` repetition, else the first) as patient id; OBR-3 (filler
  order number), else OBR-2 (placer order number) as the report's own id; OBR-18 (IHE's
  accession number), else the filler or placer number, as accession number;
* modality: OBR-24 (diagnostic service section) when it is a DICOM modality or maps to one;
* observed_at: OBR-22 (result status change: the signing time), else OBR-7.

Every problem is a :class:`Hl7Problem` with an HL7 error code (table 0357) and a location
(segment, sequence, field), and a fixed text: never a value from the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Final

import hl7  # type: ignore[import-untyped]  # python-hl7 ships no type information

__all__ = [
    "APPLICATION_INTERNAL_ERROR",
    "DATA_TYPE_ERROR",
    "REQUIRED_FIELD_MISSING",
    "SEGMENT_SEQUENCE_ERROR",
    "UNSUPPORTED_EVENT_CODE",
    "UNSUPPORTED_MESSAGE_TYPE",
    "UNSUPPORTED_PROCESSING_ID",
    "UNSUPPORTED_VERSION_ID",
    "Hl7Message",
    "Hl7Problem",
    "OruReport",
    "modality_of_section",
    "oru_reports",
    "parse_message",
]

# HL7 table 0357, message error condition codes.
SEGMENT_SEQUENCE_ERROR: Final = 100
REQUIRED_FIELD_MISSING: Final = 101
DATA_TYPE_ERROR: Final = 102
UNSUPPORTED_MESSAGE_TYPE: Final = 200
UNSUPPORTED_EVENT_CODE: Final = 201
UNSUPPORTED_PROCESSING_ID: Final = 202
UNSUPPORTED_VERSION_ID: Final = 203
APPLICATION_INTERNAL_ERROR: Final = 207

_TEXT_TYPES: Final = frozenset({"TX", "FT", "ST"})
_EXCLUDED_RESULT_STATUS: Final = frozenset({"W", "D", "X"})
# MSH-18 values (HL7 table 0211) to Python codecs; others fall back to the configured default.
_CHARSETS: Final = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
}
_DICOM_MODALITIES: Final = frozenset(
    {"CR", "CT", "DX", "ES", "IO", "MG", "MR", "NM", "OT", "PT", "PX", "RF", "RG", "US", "XA"}
)
# Table 0074 diagnostic service sections that name an imaging modality.
_SECTION_MODALITY: Final = {"NMR": "MR", "NMS": "NM", "CUS": "US", "OUS": "US", "VUS": "US"}
_TS: Final = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$"
)


class Hl7Problem(Exception):  # noqa: N818 -- a problem found in a message, answered with a NAK
    """Why a message is refused: an HL7 error code, where, and whether it is a reject.

    ``reject`` is True for problems with the message header (type, version, processing id) or
    with the receiver itself, answered AR (CR); otherwise the content is at fault: AE (CE).
    ``text`` is fixed by the code and never quotes the message.
    """

    def __init__(
        self,
        code: int,
        text: str,
        *,
        segment: str = "",
        sequence: int = 1,
        field: int = 0,
        reject: bool = False,
        reason: str = "",
    ) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.segment = segment
        self.sequence = sequence
        self.field = field
        self.reject = reject
        self._reason = reason

    @property
    def reason(self) -> str:
        """A short word for metrics and audit, e.g. ``hl7_101_OBR`` (or the one given)."""
        return self._reason or f"hl7_{self.code}" + (f"_{self.segment}" if self.segment else "")


@dataclass(frozen=True, kw_only=True)
class Hl7Message:
    """A parsed message: its header fields, and the python-hl7 message for the segments."""

    message_type: str  # MSH-9.1, e.g. "ORU"
    trigger_event: str  # MSH-9.2, e.g. "R01"
    control_id: str  # MSH-10
    processing_id: str  # MSH-11.1
    version: str  # MSH-12.1
    accept_ack_type: str  # MSH-15: AL, NE, ER, SU or empty
    application_ack_type: str  # MSH-16
    sending_application: str  # MSH-3, raw (components kept)
    sending_facility: str  # MSH-4
    receiving_application: str  # MSH-5
    receiving_facility: str  # MSH-6
    encoding: str  # the codec the bytes were decoded with
    body: Any  # the python-hl7 Message

    @property
    def enhanced_mode(self) -> bool:
        """Enhanced acknowledgment mode: MSH-15 or MSH-16 is set (HL7 v2 section 2.9.3)."""
        return bool(self.accept_ack_type or self.application_ack_type)

    def segments(self, segment_id: str) -> list[Any]:
        """The segments with that id, in order."""
        return [segment for segment in self.body if _raw(segment, 0) == segment_id]

    def field(self, segment: Any, number: int) -> _Field:
        """Field ``number`` of ``segment``, split with this message's separators."""
        return _field_of(self.body, segment, number)


@dataclass(frozen=True, kw_only=True)
class OruReport:
    """One report read from an ORU^R01 OBR group (identifiers are PHI; never log them)."""

    report_number: str  # OBR-3.1, else OBR-2.1
    number_namespace: str  # the assigning authority of that number, else MSH-4/MSH-3
    accession_number: str
    patient_id: str
    modality: str
    text: str
    observed_at: datetime | None


class _Field:
    """One field's raw text and how to split and unescape it."""

    def __init__(self, raw: str, separators: str, escape: str) -> None:
        self.raw = raw
        # python-hl7 order: segment, field, repetition, component, subcomponent.
        self._field_sep, self._rep = separators[1], separators[2]
        self._comp, self._sub = separators[3], separators[4]
        self._esc = escape

    def repetitions(self) -> list[str]:
        return self.raw.split(self._rep) if self.raw else []

    def component(self, number: int, repetition: str | None = None) -> str:
        """Component ``number`` (1-based) of a repetition (the first by default), unescaped."""
        text = self.raw.split(self._rep)[0] if repetition is None else repetition
        parts = text.split(self._comp)
        value = parts[number - 1] if number <= len(parts) else ""
        return self.unescape(value.split(self._sub)[0])

    def unescape(self, text: str, *, line_break: str = "\n") -> str:
        """Resolve HL7 escape sequences (section 2.7); unknown ones are dropped."""
        if self._esc not in text:
            return text
        out: list[str] = []
        pieces = text.split(self._esc)
        # Odd pieces are escape sequences; an unterminated one is kept as text.
        for index, piece in enumerate(pieces):
            if index % 2 == 0 or index == len(pieces) - 1:
                out.append(piece if index % 2 == 0 else self._esc + piece)
            else:
                out.append(self._escape_value(piece, line_break))
        return "".join(out)

    def _escape_value(self, sequence: str, line_break: str) -> str:
        fixed = {
            "F": self._field_sep,
            "S": self._comp,
            "R": self._rep,
            "T": self._sub,
            "E": self._esc,
            ".br": line_break,
            ".sp": line_break,
            ".in": "    ",
            ".ti": "    ",
        }
        if sequence in fixed:
            return fixed[sequence]
        if sequence.startswith("X") and re.fullmatch(r"X(?:[0-9A-Fa-f]{2})+", sequence):
            return bytes.fromhex(sequence[1:]).decode("latin-1")
        return ""  # highlighting (H/N), charset switches, .fi/.nf: no text of their own


def parse_message(data: bytes, *, default_encoding: str = "utf-8") -> Hl7Message:
    """Parse one HL7 v2 message (the MLLP block's content) and read its header.

    A message this cannot read is rejected (AR): there is no content to be in error.

    Raises
    ------
    Hl7Problem
        When the bytes are not an HL7 v2 message with a readable MSH segment.
    """
    if not data.startswith(b"MSH") or len(data) < 8:
        raise Hl7Problem(
            SEGMENT_SEQUENCE_ERROR, "message does not start with MSH", segment="MSH", reject=True
        )
    encoding = _charset(data, default_encoding)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise Hl7Problem(
            DATA_TYPE_ERROR,
            "message is not valid in its character set",
            segment="MSH",
            field=18,
            reject=True,
        ) from None
    # Senders use \r (the standard), \n or \r\n between segments.
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    try:
        body = hl7.parse(text)
    except Exception:  # python-hl7 raises ParseException, IndexError, ValueError ...
        raise Hl7Problem(
            SEGMENT_SEQUENCE_ERROR, "message cannot be parsed", segment="MSH", reject=True
        ) from None
    msh = body[0]
    if _raw(msh, 0) != "MSH" or len(msh) < 13:
        raise Hl7Problem(
            REQUIRED_FIELD_MISSING, "MSH segment is incomplete", segment="MSH", reject=True
        )
    kind = _field_of(body, msh, 9)
    return Hl7Message(
        message_type=kind.component(1),
        trigger_event=kind.component(2),
        control_id=_field_of(body, msh, 10).component(1),
        processing_id=_field_of(body, msh, 11).component(1),
        version=_field_of(body, msh, 12).component(1),
        accept_ack_type=_field_of(body, msh, 15).component(1).upper(),
        application_ack_type=_field_of(body, msh, 16).component(1).upper(),
        sending_application=_raw(msh, 3),
        sending_facility=_raw(msh, 4),
        receiving_application=_raw(msh, 5),
        receiving_facility=_raw(msh, 6),
        encoding=encoding,
        body=body,
    )


def oru_reports(message: Hl7Message, *, local_timezone: tzinfo = UTC) -> list[OruReport]:
    """Read the reports of an ORU^R01 message, one per OBR group.

    Raises
    ------
    Hl7Problem
        When a required segment or field is missing or malformed, or a group has no text.
    """
    if not message.control_id:
        raise Hl7Problem(REQUIRED_FIELD_MISSING, "MSH-10 is empty", segment="MSH", field=10)
    pids = message.segments("PID")
    if not pids:
        raise Hl7Problem(REQUIRED_FIELD_MISSING, "PID segment missing", segment="PID")
    patient_id = _patient_id(message, pids[0])
    groups = _obr_groups(message)
    if not groups:
        raise Hl7Problem(REQUIRED_FIELD_MISSING, "OBR segment missing", segment="OBR")
    namespace = message.field(message.body[0], 4).component(1) or message.field(
        message.body[0], 3
    ).component(1)
    return [
        _report(
            message,
            sequence=sequence,
            obr=obr,
            obxs=obxs,
            patient_id=patient_id,
            namespace=namespace,
            local_timezone=local_timezone,
        )
        for sequence, (obr, obxs) in enumerate(groups, start=1)
    ]


def _report(
    message: Hl7Message,
    *,
    sequence: int,
    obr: Any,
    obxs: list[Any],
    patient_id: str,
    namespace: str,
    local_timezone: tzinfo,
) -> OruReport:
    filler, placer = message.field(obr, 3), message.field(obr, 2)
    number_field = filler if filler.component(1) else placer
    number = number_field.component(1)
    if not number:
        raise Hl7Problem(
            REQUIRED_FIELD_MISSING,
            "OBR-3 and OBR-2 (order numbers) are both empty",
            segment="OBR",
            sequence=sequence,
            field=3,
        )
    text = _report_text(message, obxs)
    if not text.strip():
        raise Hl7Problem(
            REQUIRED_FIELD_MISSING,
            "no report text (OBX-5 of value type TX, FT or ST)",
            segment="OBX",
            sequence=sequence,
            field=5,
        )
    observed_at = None
    for field_number in (22, 7):
        raw = message.field(obr, field_number).component(1)
        if raw:
            observed_at = _timestamp(raw, local_timezone, sequence=sequence, field=field_number)
            break
    return OruReport(
        report_number=number,
        number_namespace=number_field.component(2) or namespace,
        accession_number=message.field(obr, 18).component(1) or number,
        patient_id=patient_id,
        modality=modality_of_section(message.field(obr, 24).component(1)),
        text=text,
        observed_at=observed_at,
    )


def _patient_id(message: Hl7Message, pid: Any) -> str:
    identifiers = message.field(pid, 3)
    repetitions = identifiers.repetitions()
    chosen = next(
        (rep for rep in repetitions if identifiers.component(5, rep) == "MR"),
        repetitions[0] if repetitions else "",
    )
    patient_id = identifiers.component(1, chosen) if chosen else ""
    if not patient_id:
        raise Hl7Problem(
            REQUIRED_FIELD_MISSING, "PID-3 (patient identifier) is empty", segment="PID", field=3
        )
    return patient_id


def _obr_groups(message: Hl7Message) -> list[tuple[Any, list[Any]]]:
    """OBR segments, each with the OBX segments that follow it (before the next OBR)."""
    groups: list[tuple[Any, list[Any]]] = []
    for segment in message.body:
        kind = _raw(segment, 0)
        if kind == "OBR":
            groups.append((segment, []))
        elif kind == "OBX":
            if not groups:
                raise Hl7Problem(
                    SEGMENT_SEQUENCE_ERROR, "OBX segment before any OBR", segment="OBX"
                )
            groups[-1][1].append(segment)
    return groups


def _report_text(message: Hl7Message, obxs: list[Any]) -> str:
    lines: list[str] = []
    for obx in obxs:
        value_type = message.field(obx, 2).component(1).upper()
        status = message.field(obx, 11).component(1).upper()
        if value_type not in _TEXT_TYPES or status in _EXCLUDED_RESULT_STATUS:
            continue
        value = message.field(obx, 5)
        # Text types have no components: a literal component separator is text (\S\ escaped
        # or not), so each repetition is unescaped whole.
        lines.extend(value.unescape(repetition) for repetition in value.repetitions())
    return "\n".join(lines)


def modality_of_section(section: str) -> str:
    """The DICOM modality a diagnostic service section (HL7 table 0074) or code names, or ''."""
    code = section.strip().upper()
    if code in _DICOM_MODALITIES:
        return code
    return _SECTION_MODALITY.get(code, "")


def _timestamp(raw: str, local_timezone: tzinfo, *, sequence: int, field: int) -> datetime:
    """An HL7 TS/DTM value as a UTC datetime; local time when it has no offset."""
    match = _TS.match(raw.strip())
    problem = Hl7Problem(
        DATA_TYPE_ERROR, "malformed date/time", segment="OBR", sequence=sequence, field=field
    )
    if match is None:
        raise problem
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    zone: tzinfo = local_timezone
    try:
        if offset:
            # timezone() refuses offsets of a day or more (+2500); so does this message.
            sign = -1 if offset[0] == "-" else 1
            zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
        when = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=zone,
        )
        # Year 1 with an eastern offset (or 9999 with a western one) falls outside datetime.
        return when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise problem from None


def _charset(data: bytes, default: str) -> str:
    """The codec named by MSH-18, read from the raw bytes before decoding."""
    header = data.split(b"\r", 1)[0].split(b"\n", 1)[0]
    separator = header[3:4]
    fields = header.split(separator) if separator else []
    # MSH-1 is the separator itself, so MSH-n sits at index n - 1.
    if len(fields) >= 18:
        name = fields[17].split(b"~")[0].decode("ascii", errors="replace").strip().upper()
        if name in _CHARSETS:
            return _CHARSETS[name]
    return default


def _raw(segment: Any, number: int) -> str:
    """The raw text of field ``number`` of a python-hl7 segment ('' when absent)."""
    try:
        return str(segment[number])
    except IndexError:
        return ""


def _field_of(body: Any, segment: Any, number: int) -> _Field:
    return _Field(_raw(segment, number), str(body.separators), str(body.esc))
