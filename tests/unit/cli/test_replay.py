"""Reading a dead letter and choosing which to replay (pure: no broker)."""

from __future__ import annotations

from radstream.cli.replay import Selection, read_letter, refusal
from radstream.common.delivery import DeadLetter, RawRecord
from radstream.common.envelope import MissingHeaderError

TOPIC = "radstream.study.received.v1"
DLQ = TOPIC + ".dlq"


def dead_letter(error: BaseException, *, group: str = "deid") -> list[tuple[str, bytes]]:
    """The headers the bus writes to the DLQ for a record with two headers of its own."""
    record = RawRecord(
        topic=TOPIC,
        partition=2,
        offset=41,
        key=b"k",
        value=b"v",
        headers=(("ce_id", b"ev-1"), ("traceparent", b"00-abc")),
    )
    return DeadLetter(record=record, group=group, error=error, attempts=3).headers()


def test_a_letter_reads_back_what_the_bus_wrote_and_keeps_the_original_headers_apart() -> None:
    letter = read_letter(0, 7, dead_letter(ValueError("boom")))

    assert (letter.partition, letter.offset, letter.event_id) == (0, 7, "ev-1")
    assert letter.original_topic == TOPIC
    assert (letter.kind, letter.error_type) == ("handler-failed", "builtins.ValueError")
    assert (letter.attempts, letter.group) == ("3", "deid")
    assert letter.failed_at is not None
    assert letter.original_headers == (("ce_id", b"ev-1"), ("traceparent", b"00-abc"))
    assert refusal(letter, DLQ) is None


def test_the_default_selection_replays_handler_failures_only() -> None:
    failed = read_letter(0, 0, dead_letter(ValueError("boom")))
    poison = read_letter(0, 1, dead_letter(MissingHeaderError("no ce_id")))

    assert Selection().reason_to_skip(failed) is None
    assert "kind poison" in (Selection().reason_to_skip(poison) or "")
    assert Selection(kinds=frozenset({"poison"})).reason_to_skip(poison) is None


def test_an_error_type_matches_by_qualified_or_bare_class_name_and_a_group_exactly() -> None:
    letter = read_letter(0, 0, dead_letter(KeyError("x"), group="deid"))

    assert Selection(error_type="KeyError").reason_to_skip(letter) is None
    assert Selection(error_type="builtins.KeyError").reason_to_skip(letter) is None
    assert Selection(error_type="Error").reason_to_skip(letter) is not None, "no partial names"
    assert Selection(group="deid").reason_to_skip(letter) is None
    assert Selection(group="ocr").reason_to_skip(letter) is not None


def test_only_a_dead_letter_of_this_very_topic_may_be_published() -> None:
    stranger = read_letter(0, 0, [("ce_id", b"ev")])
    letter = read_letter(0, 1, dead_letter(ValueError("boom")))

    assert "not a radstream dead letter" in (refusal(stranger, DLQ) or "")
    assert "is not the one" in (refusal(letter, "radstream.deid.completed.v1.dlq") or "")
