"""How the CLI shows events: one line per event, or JSON, with PHI fields masked by default."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiokafka.structs import ConsumerRecord
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from radstream.common.envelope import (
    EnvelopeError,
    EventMeta,
    decode,
    decode_meta,
)
from radstream.common.topics import DLQ_SUFFIX, topic_named
from radstream.contracts import message_type

# Fields that hold direct identifiers or free text; `--show-phi` reveals them.
PHI_FIELDS = frozenset(
    {
        "patient_id",
        "patient_name",
        "study_instance_uid",
        "series_instance_uid",
        "sop_instance_uid",
        "accession_number",
        "text",
        "impression",
        "calling_ae_title",
        "sender_id",
        "subject_ids",
        "report_id",
        "observation_id",
    }
)
MASK = "***"
# Headers that may carry identifiers: the CloudEvents subject, and a dead letter's error text
# (scrubbed, but scrubbing is a backstop).
_PHI_HEADERS = frozenset({"ce_subject", "x-radstream-error-message"})
_SUMMARY_FIELDS = 5
# deid's pixel decisions for instances with text: each such instance gets a few words of its own
# (up to _PIXEL_DETAILS of them per event); the others (no_pixels, no_text) are only counted.
_TEXT_DECISIONS = frozenset({"text_kept", "redacted", "held"})
_PIXEL_DETAILS = 3


@dataclass(frozen=True, kw_only=True)
class RenderedEvent:
    """An event as the CLI shows it."""

    topic: str
    partition: int
    offset: int
    key: str
    meta: EventMeta | None
    body: dict[str, Any] | None
    error: str | None
    headers: dict[str, str]

    def line(self) -> str:
        """One line: topic, key, event type, and a summary of the body (or the error)."""
        event_type = self.meta.type if self.meta else "?"
        if self.error is not None:
            return f"{self.topic}  key={self.key}  {event_type}  ERROR: {self.error}"
        return f"{self.topic}  key={self.key}  {event_type}  {summarize(self.body or {})}"

    def as_json(self) -> str:
        """The event as one JSON object (CloudEvents attributes, Kafka coordinates, body)."""
        document: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "headers": self.headers,
        }
        if self.meta is not None:
            document["ce"] = {
                "id": self.meta.id,
                "type": self.meta.type,
                "source": self.meta.source,
                "time": self.meta.time.isoformat(),
                "subject": self.meta.subject,
                "causationid": self.meta.causation_id,
                "traceparent": self.meta.traceparent,
            }
        document["data"] = self.body
        if self.error is not None:
            document["error"] = self.error
        return json.dumps(document, sort_keys=True)


def render_record(record: ConsumerRecord[bytes, bytes], *, show_phi: bool) -> RenderedEvent:
    """Decode a record with the contract its ``ce_type`` names; never raise on bad input."""
    headers = tuple(record.headers or ())
    shown_headers = {
        name: (MASK if name in _PHI_HEADERS and not show_phi else value.decode("utf-8", "replace"))
        for name, value in headers
    }
    key = record.key.decode("utf-8", "replace") if record.key else ""
    if key and not show_phi and not _in_release_zone(record.topic):
        key = MASK  # PHI-zone keys are study UIDs and patient ids
    meta: EventMeta | None = None
    try:
        meta = decode_meta(headers)
        event = decode(record.value, headers, message_type(meta.type))
        body: dict[str, Any] | None = mask(event.message, show_phi=show_phi)
        error = None
    except (EnvelopeError, KeyError) as exc:
        body, error = None, f"{type(exc).__name__}: {exc}"
    return RenderedEvent(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        meta=meta,
        body=body,
        error=error,
        headers=shown_headers,
    )


def _in_release_zone(topic: str) -> bool:
    try:
        return topic_named(topic.removesuffix(DLQ_SUFFIX)).zone == "release"
    except KeyError:
        return False  # unknown topics are treated as PHI


def mask(message: Message, *, show_phi: bool) -> dict[str, Any]:
    """The message as a dict (proto JSON names), with PHI fields replaced unless ``show_phi``."""
    document = MessageToDict(message, preserving_proto_field_name=True)
    return document if show_phi else _masked(document)


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            name: (MASK if name in PHI_FIELDS else _masked(item)) for name, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def summarize(body: dict[str, Any]) -> str:
    """A short ``name=value`` summary of the first scalar fields.

    Lists show their length, or for items with an ``outcome`` (deid's per-instance results) the
    count of each outcome, which is what an operator watching the stream wants to see, and the
    pixel stage's decisions: counted, and for an instance with text what was filled and kept, what
    the check cost, the risk and why it was held (numbers and enum names, never text read).
    """
    parts: list[str] = []
    for name, value in _flattened(body):
        if isinstance(value, list):
            parts.append(f"{name}=[{_list_summary(value)}]")
        else:
            text = str(value)
            parts.append(f"{name}={text if len(text) <= 40 else text[:37] + '...'}")
        if len(parts) == _SUMMARY_FIELDS:
            break
    return " ".join(parts) or "(empty)"


def _list_summary(items: list[Any]) -> str:
    outcomes = Counter(
        str(item["outcome"]).rsplit("_", 1)[-1]
        for item in items
        if isinstance(item, dict) and "outcome" in item
    )
    if len(outcomes) and sum(outcomes.values()) == len(items):
        counted = " ".join(f"{outcome}:{count}" for outcome, count in sorted(outcomes.items()))
        pixels = _pixel_summary(items)
        return f"{counted}; {pixels}" if pixels else counted
    return str(len(items))


def _pixel_summary(items: list[dict[str, Any]]) -> str:
    """``pixels no_text:2 redacted:1; #3 US redacted: 4 PHI boxes filled, 3 kept, 812 ms, ...``.

    Empty when no result carries a pixel decision (deid ran without a pixel stage).
    """
    decisions = Counter(str(item["pixel_decision"]) for item in items if "pixel_decision" in item)
    if not decisions:
        return ""
    parts = ["pixels " + " ".join(f"{name}:{count}" for name, count in sorted(decisions.items()))]
    with_text = [
        (number, item)
        for number, item in enumerate(items, start=1)
        if item.get("pixel_decision") in _TEXT_DECISIONS
    ]
    parts += [_pixel_detail(number, item) for number, item in with_text[:_PIXEL_DETAILS]]
    if len(with_text) > _PIXEL_DETAILS:
        parts.append(f"+{len(with_text) - _PIXEL_DETAILS} more with text")
    return "; ".join(parts)


def _pixel_detail(number: int, item: dict[str, Any]) -> str:
    """One instance with text: its decision, boxes, cost and risk, and why it was held."""
    decision = str(item["pixel_decision"])
    original = item.get("original")
    modality = original.get("modality", "") if isinstance(original, dict) else ""
    phi_boxes = int(item.get("phi_boxes_filled", 0))
    done = "proposed for review" if decision == "held" else "filled"
    detail = (
        f"#{number} {modality or '?'} {decision}: {phi_boxes} PHI box(es) {done}, "
        f"{int(item.get('text_boxes_kept', 0))} kept, "
        f"{float(item.get('pixel_check_ms', 0.0)):.0f} ms, "
        f"risk {float(item.get('pixel_risk', 0.0)):.3f}"
    )
    if str(item.get("outcome", "")).endswith("HELD"):
        detail += f", held: {', '.join(str(reason) for reason in item.get('reasons', []))}"
    return detail


def _flattened(body: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Scalar and list fields first, then one level of sub-message fields as ``a.b``."""
    flat = [(prefix + name, value) for name, value in body.items() if not isinstance(value, dict)]
    if not prefix:
        for name, value in body.items():
            if isinstance(value, dict):
                flat.extend(_flattened(value, prefix=f"{name}."))
    return flat
