"""HL7 v2 ORU^R01 messages with fake PHI, and mutations of them, for the MLLP fuzz targets.

Seeds are messages as RIS and reporting systems send them: original and enhanced
acknowledgment modes, FT text with escapes, several OBR groups, several patient identifiers,
character sets named in MSH-18. PHI is planted where it lives in real messages (PID-3, PID-5,
PID-11, PID-13, OBX-5, NTE-3, OBR-18) and never in the fields an ACK echoes by design (MSH-3
to MSH-6, MSH-10).

A case is a seed, then segment- and field-level mutations (drop, repeat, swap, replace a field
with hostile text or timestamps, change separators, charset, line endings), then byte
mutations aimed at separators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hypothesis import strategies as st

from tests.fuzz import phi
from tests.fuzz.mutations import mutated_bytes, sometimes

_MSH: Final = (
    "MSH|^~\\&|SYNTH_RIS|SYNTH_HOSP|RADSTREAM|SYNTH_HOSP|20240105113500||ORU^R01|{control}|P|2.5.1"
    "|||{accept}|{application}||{charset}"
)
_PID: Final = (
    f"PID|1||{phi.PATIENT_ID}^^^HOSP^MR~{phi.OTHER_PATIENT_ID}^^^NAT^NI||{phi.PATIENT_NAME}||"
    f"{phi.BIRTH_DATE}|F|||{phi.ADDRESS.replace(',', '^')}||{phi.PHONE}^PRN^PH^{phi.EMAIL}"
)
_OBR: Final = (
    "OBR|{n}|PL{n}^RIS|FIL{n}-7731^RIS|CTABD^CT Abdomen|||20240105101500|||||||||"
    f"{phi.PHYSICIAN}||{phi.ACCESSION}||||{{status_time}}|||{{section}}|F"
)
_OBX_TX: Final = "OBX|{n}|TX|IMP^Impression||{text}||||||F"
_OBX_FT: Final = "OBX|{n}|FT|REP^Report||{text}||||||{status}"
_NTE: Final = f"NTE|1||Contact {phi.PATIENT_NAME_PLAIN} at {phi.PHONE}"


def _message(
    *,
    control: str = "MSG0001",
    acks: tuple[str, str] = ("", ""),
    charset: str = "",
    groups: int = 1,
    ft: bool = False,
    section: str = "CT",
    status_time: str = "20240105113000",
    nte: bool = False,
) -> str:
    segments = [
        _MSH.format(control=control, accept=acks[0], application=acks[1], charset=charset),
        _PID,
    ]
    for n in range(1, groups + 1):
        segments.append(_OBR.format(n=n, status_time=status_time, section=section))
        if ft:
            text = f"Findings:\\.br\\{phi.FREE_TEXT}\\.br\\\\H\\Impression\\N\\ no acute \\X41\\"
            segments.append(_OBX_FT.format(n=n, text=text, status="F"))
        else:
            segments.append(_OBX_TX.format(n=n, text=phi.FREE_TEXT))
        if nte:
            segments.append(_NTE)
    return "\r".join(segments) + "\r"


SEEDS: Final[tuple[str, ...]] = (
    _message(),
    _message(acks=("AL", "AL")),
    _message(acks=("AL", "ER"), ft=True),
    _message(acks=("NE", "SU"), groups=2),
    _message(acks=("ER", "NE"), nte=True),
    _message(charset="UNICODE UTF-8", ft=True, section="NMR"),
    _message(charset="8859/1", status_time="202401051130+0100"),
    _message(groups=3, nte=True, status_time="2024"),
    _message(status_time="20240105113000.1234-0500"),
)

_HOSTILE_FIELDS: Final = st.one_of(
    st.sampled_from(
        [
            "",
            phi.PATIENT_NAME,
            phi.FREE_TEXT,
            "^^^^^^^^^^",
            "~~~~~~",
            "\\X\\",
            "\\XZZ\\",
            "\\.br",
            "\\E\\\\F\\\\S\\\\R\\\\T\\",
            "\\X00FF\\" + phi.PATIENT_NAME_PLAIN,
            "ORU^R01^ORU_R01",
            "ADT^A01",
            "2.3",
            "3.0",
            "T",
            "AL",
            "ER",
            "NE",
            "SU",
            "X" * 5000,
            "\u00e9\u4e2d\U0001f600" + phi.PATIENT_NAME_PLAIN,
        ]
    ),
    st.text(max_size=40),
)
_TIMESTAMPS: Final = st.one_of(
    st.sampled_from(
        [
            "20240105113000+2500",
            "20240105113000-2400",
            "20240105113000+9999",
            "20240105113000+0060",
            "20241305",
            "20240230",
            "99991231235959.9999+1400",
            "00000101",
            "2024010511300",
            "20240105113000.12345",
            "2024-01-05T11:30:00Z",
        ]
    ),
    st.from_regex(r"\A\d{4,14}(\.\d{1,4})?([+-]\d{4})?\Z"),
)
_CHARSETS: Final = (
    "ASCII",
    "8859/1",
    "8859/15",
    "UNICODE UTF-8",
    "UNICODE",
    "UTF-16",
    "ISO IR87",
    "",
)


@dataclass(frozen=True)
class Hl7Case:
    """A mutated message: its seed index, what was done, and its bytes."""

    seed: int
    operations: tuple[str, ...]
    data: bytes

    def __repr__(self) -> str:
        return f"Hl7Case(seed={self.seed}, operations={self.operations}, data={self.data[:200]!r})"


# Where times live: (segment id, field index in the "|"-split segment; MSH's is one less).
_TIME_FIELDS: Final = (("MSH", 6), ("PID", 7), ("OBR", 7), ("OBR", 22), ("OBX", 14))


def _field_mutation(draw: st.DrawFn, segments: list[list[str]]) -> str:
    kind = draw(st.sampled_from(["hostile", "timestamp", "empty"]))
    targets = [
        (index, number)
        for index, fields in enumerate(segments)
        for name, number in _TIME_FIELDS
        if fields[0] == name
    ]
    if kind == "timestamp" and targets:
        segment, number = draw(st.sampled_from(targets))
    else:
        segment = draw(st.integers(0, len(segments) - 1))
        number = draw(st.integers(1, max(1, len(segments[segment]) + 3)))
    fields = segments[segment]
    while len(fields) <= number:
        fields.append("")
    if kind == "timestamp":
        fields[number] = draw(_TIMESTAMPS)
    elif kind == "empty":
        fields[number] = ""
    else:
        fields[number] = draw(_HOSTILE_FIELDS)
    return f"{kind} {fields[0][:3]}-{number}"


def _charset_mutation(draw: st.DrawFn, segments: list[list[str]]) -> str:
    msh = segments[0]
    while len(msh) <= 17:
        msh.append("")
    msh[17] = draw(st.sampled_from(_CHARSETS) | _HOSTILE_FIELDS)  # MSH-18 (MSH-1 is the "|")
    return "charset"


def _segment_mutation(draw: st.DrawFn, segments: list[list[str]]) -> str:
    kind = draw(st.sampled_from(["drop", "repeat", "swap", "insert"]))
    index = draw(st.integers(0, len(segments) - 1))
    if kind == "drop" and len(segments) > 1:
        del segments[index]
    elif kind == "repeat":
        segments.insert(index, list(segments[index]))
    elif kind == "swap":
        other = draw(st.integers(0, len(segments) - 1))
        segments[index], segments[other] = segments[other], segments[index]
    else:
        name = draw(st.sampled_from(["OBX", "OBR", "PID", "MSH", "ZZZ", "NTE", "", "ERR"]))
        segments.insert(index, [name, *draw(st.lists(_HOSTILE_FIELDS, max_size=6))])
    return f"segment {kind}"


@st.composite
def hl7_cases(draw: st.DrawFn) -> Hl7Case:
    """A mutated ORU^R01 (see the module doc)."""
    index = draw(st.integers(0, len(SEEDS) - 1))
    text = SEEDS[index]
    operations: list[str] = []
    if sometimes(draw, 0.75):
        segments = [segment.split("|") for segment in text.rstrip("\r").split("\r")]
        for _ in range(draw(st.integers(1, 4))):
            mutate = draw(st.sampled_from([_field_mutation, _segment_mutation, _charset_mutation]))
            operations.append(mutate(draw, segments))
        separator = draw(st.sampled_from(["\r", "\r", "\n", "\r\n"]))
        text = separator.join("|".join(fields) for fields in segments) + separator
    if draw(st.integers(0, 5)) == 0:
        # A different MSH-2: the parser must use the message's own encoding characters.
        text = text.replace(
            "|^~\\&|", "|" + draw(st.sampled_from(["^~\\&#", "!~\\&", "^~\\", "^^^^", ""])) + "|", 1
        )
        operations.append("encoding characters")
    charset = (
        "utf-8"
        if sometimes(draw, 0.75)
        else draw(st.sampled_from(["latin-1", "utf-16-le", "cp1252"]))
    )
    data = text.encode(charset, "replace")
    if charset != "utf-8":
        operations.append(f"bytes in {charset}")
    if not operations or sometimes(draw, 0.25):
        anchors = [i for i, byte in enumerate(data) if byte in b"|^~\\&\r"][:512]
        data = draw(mutated_bytes(data, anchors=anchors, donors=[s.encode() for s in SEEDS[:3]]))
        operations.append("bytes")
    return Hl7Case(index, tuple(operations), data)
