"""HL7 v2 acknowledgments: which ACKs a message asks for (MSH-15/16) and how they read.

Original mode (MSH-15 and MSH-16 empty, HL7 v2 section 2.9.2): one application ACK, MSA-1
``AA`` (accepted), ``AE`` (error in the content: the sender should fix it) or ``AR`` (rejected:
unsupported type, version or processing id, or the receiver could not take it now).

Enhanced mode (either set, section 2.9.3): an accept (commit) ACK ``CA`` / ``CE`` / ``CR`` when
MSH-15 asks for it, then an application ACK when MSH-16 asks for it, both on the same
connection. ``AL`` always, ``NE`` never, ``ER`` only on error, ``SU`` only on success; an empty
field in enhanced mode means never. ``CA`` means the message is committed (its events are on
the bus and its receipt audited).

Every refusal carries an ERR segment with the HL7 error code (table 0357), the location
(segment, sequence, field) and the code's standard text. ERR-1 is filled too, for senders on
v2.3/v2.4. Nothing in an ACK is copied from the message except the control id, the sender's
application/facility ids, the trigger event, processing id and version.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from radstream.ingest.oru import APPLICATION_INTERNAL_ERROR, Hl7Message, Hl7Problem

__all__ = ["AckOutcome", "acknowledgments", "build_ack", "internal_error"]

AckOutcome = Literal["accepted", "error", "rejected"]
"""accepted: published; error: the content is at fault (AE/CE); rejected: AR/CR."""

_FIELD, _COMPONENT, _REPETITION, _ESCAPE, _SUBCOMPONENT = "|", "^", "~", "\\", "&"
_ENCODING_CHARACTERS: Final = "^~\\&"
_DEFAULT_VERSION: Final = "2.5.1"
# HL7 table 0357 texts, so ERR never needs words of our own.
_ERROR_TEXT: Final = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    207: "Application internal error",
}


@dataclass(frozen=True, kw_only=True)
class _Identity:
    application: str
    facility: str


def internal_error() -> Hl7Problem:
    """The problem reported when the receiver itself failed (bus, store, audit away)."""
    return Hl7Problem(APPLICATION_INTERNAL_ERROR, "receiver unavailable, send again", reject=True)


def acknowledgments(
    message: Hl7Message | None,
    problem: Hl7Problem | None,
    *,
    application: str,
    facility: str,
) -> list[bytes]:
    """The ACK messages to send back for ``message`` (None when it could not be parsed).

    ``problem`` is None when the message was accepted.
    """
    identity = _Identity(application=application, facility=facility)
    outcome: AckOutcome = (
        "accepted" if problem is None else ("rejected" if problem.reject else "error")
    )
    if message is None or not message.enhanced_mode:
        code = {"accepted": "AA", "error": "AE", "rejected": "AR"}[outcome]
        return [build_ack(message, code, problem, identity=identity)]
    acks: list[bytes] = []
    if _asked(message.accept_ack_type, outcome):
        code = {"accepted": "CA", "error": "CE", "rejected": "CR"}[outcome]
        acks.append(build_ack(message, code, problem, identity=identity))
    if _asked(message.application_ack_type, outcome):
        code = {"accepted": "AA", "error": "AE", "rejected": "AR"}[outcome]
        acks.append(build_ack(message, code, problem, identity=identity))
    return acks


def _asked(condition: str, outcome: AckOutcome) -> bool:
    """Whether an ACK type (table 0155) asks for an acknowledgment of this outcome."""
    if condition == "AL":
        return True
    if condition == "ER":
        return outcome != "accepted"
    if condition == "SU":
        return outcome == "accepted"
    return False  # NE, empty, or a value outside table 0155


def build_ack(
    message: Hl7Message | None, code: str, problem: Hl7Problem | None, *, identity: _Identity
) -> bytes:
    """One ACK message (MSH, MSA, ERR when there is a problem), each segment ended by CR."""
    version = message.version if message is not None and message.version.startswith("2.") else ""
    trigger = message.trigger_event if message is not None else ""
    msh = [
        "MSH",
        _ENCODING_CHARACTERS,
        _escape(_first(message.receiving_application) if message else "") or identity.application,
        _escape(_first(message.receiving_facility) if message else "") or identity.facility,
        _escape(_first(message.sending_application) if message else ""),
        _escape(_first(message.sending_facility) if message else ""),
        datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000"),
        "",
        f"ACK{_COMPONENT}{_escape(trigger)}{_COMPONENT}ACK" if trigger else "ACK",
        uuid.uuid4().hex[:20],
        _escape(message.processing_id) if message is not None and message.processing_id else "P",
        _escape(version) or _DEFAULT_VERSION,
    ]
    control_id = _escape(message.control_id) if message is not None else ""
    msa = ["MSA", code, control_id]
    segments = [_FIELD.join(msh), _FIELD.join(msa)]
    if problem is not None:
        msa.append(_ERROR_TEXT.get(problem.code, problem.text))
        segments[1] = _FIELD.join(msa)
        segments.append(_err_segment(problem))
    encoding = message.encoding if message is not None else "ascii"
    return ("\r".join(segments) + "\r").encode(encoding, errors="replace")


def _err_segment(problem: Hl7Problem) -> str:
    text = _ERROR_TEXT.get(problem.code, "Application error")
    location = [problem.segment, str(problem.sequence) if problem.segment else ""]
    if problem.field:
        location.append(str(problem.field))
    erl = _COMPONENT.join(location) if problem.segment else ""
    eld = _COMPONENT.join(
        [*location, *([""] * (3 - len(location))), f"{problem.code}&{text}&HL70357"]
    )
    cwe = f"{problem.code}{_COMPONENT}{text}{_COMPONENT}HL70357"
    severity = "E"
    # ERR-8 (user message) carries our fixed explanation, never message content.
    return _FIELD.join(["ERR", eld, erl, cwe, severity, "", "", "", _escape(problem.text)])


def _first(raw_field: str) -> str:
    """The first component of a raw HD field (namespace id), for copying into the ACK."""
    return raw_field.split(_REPETITION, maxsplit=1)[0].split(_COMPONENT, maxsplit=1)[0]


def _escape(text: str) -> str:
    """Escape the standard delimiters (HL7 v2 section 2.7)."""
    return (
        text.replace(_ESCAPE, "\\E\\")
        .replace(_FIELD, "\\F\\")
        .replace(_COMPONENT, "\\S\\")
        .replace(_REPETITION, "\\R\\")
        .replace(_SUBCOMPONENT, "\\T\\")
    )
