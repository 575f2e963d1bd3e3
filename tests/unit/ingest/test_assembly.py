"""Study assembly: quiet period, explicit trigger, duplicates, late arrivals, durability.

Time is injected: instances carry their received time and ``due(now)`` is asked about a given
moment, so no test sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from radstream.contracts.v1 import common_pb2
from radstream.ingest.assembly import (
    StudyAssembler,
    StudyAssembly,
    StudyMeta,
    StudyReady,
    complete_study,
    study_event_id,
)

QUIET_S = 30.0
T0 = datetime(2024, 1, 5, 10, 15, tzinfo=UTC)
STUDY = "2.25.1001"
OTHER_STUDY = "2.25.2002"
ACCESSION = "SYNTH-ACC-1"
PATIENT = "SYNTH-MRN-1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ref(number: int, *, study: str = STUDY, series: str = "2.25.1001.1") -> common_pb2.InstanceRef:
    sha = f"{number:064x}"
    return common_pb2.InstanceRef(
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=f"{series}.{number}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        modality="CT",
        blob=common_pb2.BlobRef(
            uri=f"file:///phi/{sha[:2]}/{sha}",
            sha256=sha,
            size=100 + number,
            media_type="application/dicom",
        ),
    )


def meta(seconds: float, *, accession: str = ACCESSION, patient: str = PATIENT) -> StudyMeta:
    return StudyMeta(accession_number=accession, patient_id=patient, received_at=at(seconds))


@pytest.fixture
def assembly_dsn(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'assembly.sqlite3'}"


@pytest.fixture
async def assembly(assembly_dsn: str) -> AsyncIterator[StudyAssembly]:
    opened = StudyAssembly.open_dsn(assembly_dsn, quiet_period_s=QUIET_S)
    await opened.open()
    yield opened
    await opened.close()


async def publish(assembly: StudyAssembly, now: datetime) -> list[StudyReady]:
    """Publish (as the assembler does) every revision due at ``now``."""
    due = await assembly.due(now)
    for ready in due:
        await assembly.mark_published(ready.study_instance_uid, ready.revision)
    return due


class TestQuietPeriod:
    async def test_a_study_is_not_due_before_its_quiet_period_ends(self, assembly) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        assert await assembly.due(at(QUIET_S - 1)) == []

    async def test_a_study_is_due_once_no_instance_arrived_for_the_quiet_period(
        self, assembly
    ) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        due = await assembly.due(at(QUIET_S))
        assert [ready.study_instance_uid for ready in due] == [STUDY]
        assert due[0].revision == 0
        assert not due[0].amended

    async def test_each_new_instance_restarts_the_quiet_period(self, assembly) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        await assembly.add(ref(2), study_meta=meta(20))
        assert await assembly.due(at(QUIET_S + 5)) == []
        assert len(await assembly.due(at(20 + QUIET_S))) == 1

    async def test_studies_are_assembled_apart(self, assembly) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        await assembly.add(ref(1, study=OTHER_STUDY, series="2.25.2002.1"), study_meta=meta(10))
        due = await assembly.due(at(QUIET_S))
        assert [ready.study_instance_uid for ready in due] == [STUDY]
        assert [len(ready.instances) for ready in due] == [1]

    async def test_study_received_carries_every_instance_ordered_by_series_then_uid(
        self, assembly
    ) -> None:
        await assembly.add(ref(3, series="2.25.1001.2"), study_meta=meta(0))
        await assembly.add(ref(2), study_meta=meta(1))
        await assembly.add(ref(1), study_meta=meta(2))
        [ready] = await assembly.due(at(2 + QUIET_S))
        event = ready.to_proto()
        assert [i.sop_instance_uid for i in event.instances] == [
            "2.25.1001.1.1",
            "2.25.1001.1.2",
            "2.25.1001.2.3",
        ]
        assert event.instances[0] == ref(1)
        assert event.accession_number == ACCESSION
        assert event.patient_id == PATIENT
        assert event.first_received_at.ToDatetime(UTC) == at(0)
        assert event.last_received_at.ToDatetime(UTC) == at(2)

    async def test_identifiers_missing_from_the_first_instance_are_taken_from_a_later_one(
        self, assembly
    ) -> None:
        await assembly.add(ref(1), study_meta=meta(0, accession="", patient=""))
        await assembly.add(ref(2), study_meta=meta(1))
        [ready] = await assembly.due(at(1 + QUIET_S))
        assert (ready.accession_number, ready.patient_id) == (ACCESSION, PATIENT)


class TestExplicitTrigger:
    async def test_complete_makes_a_study_due_at_once(self, assembly) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        assert await assembly.complete(STUDY)
        assert len(await assembly.due(at(1))) == 1

    async def test_complete_of_an_unknown_study_does_nothing(self, assembly) -> None:
        assert not await assembly.complete("2.25.404")

    async def test_complete_of_a_published_study_does_nothing(self, assembly) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        await publish(assembly, at(QUIET_S))
        assert not await assembly.complete(STUDY)
        assert await assembly.due(at(1000)) == []

    async def test_the_cli_hook_flags_the_study_in_the_shared_database(
        self, assembly, assembly_dsn
    ) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        assert await complete_study(assembly_dsn, STUDY)
        assert len(await assembly.due(at(1))) == 1


class TestDuplicates:
    async def test_a_repeated_sop_instance_uid_is_ignored(self, assembly) -> None:
        assert await assembly.add(ref(1), study_meta=meta(0))
        assert not await assembly.add(ref(1), study_meta=meta(5))
        assert await assembly.has_instance(ref(1).sop_instance_uid)
        [ready] = await assembly.due(at(QUIET_S))  # the duplicate did not restart the wait
        assert len(ready.instances) == 1

    async def test_a_duplicate_after_publication_does_not_amend_the_study(self, assembly) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        await publish(assembly, at(QUIET_S))
        assert not await assembly.add(ref(1), study_meta=meta(100))
        assert await assembly.due(at(1000)) == []


def corrected(number: int, *, study: str = STUDY) -> common_pb2.InstanceRef:
    """``ref(number)`` with other bytes: the same SOP Instance UID, another blob."""
    changed = ref(number, study=study)
    sha = f"{number + 10_000:064x}"
    changed.blob.sha256, changed.blob.uri = sha, f"file:///phi/{sha[:2]}/{sha}"
    return changed


class TestCorrections:
    async def test_a_correction_of_a_published_study_makes_a_revision_with_it(
        self, assembly
    ) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        await assembly.add(ref(2), study_meta=meta(1))
        [first] = await publish(assembly, at(QUIET_S + 1))

        assert await assembly.replace(corrected(2), study_meta=meta(100))

        [amended] = await assembly.due(at(100 + QUIET_S))
        assert (amended.revision, amended.amended) == (1, True)
        assert [i.blob.sha256 for i in amended.instances] == [
            ref(1).blob.sha256,
            corrected(2).blob.sha256,
        ]
        assert amended.event_id != first.event_id
        status = await assembly.status(STUDY)
        assert status is not None and status.instance_count == 2

    async def test_the_same_bytes_replace_nothing(self, assembly) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        await publish(assembly, at(QUIET_S))
        assert not await assembly.replace(ref(1), study_meta=meta(100))
        assert await assembly.due(at(1000)) == []

    async def test_a_correction_into_another_study_moves_the_instance(self, assembly) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        await assembly.add(ref(2), study_meta=meta(0))
        await publish(assembly, at(QUIET_S))

        assert await assembly.replace(corrected(2, study=OTHER_STUDY), study_meta=meta(100))

        due = {r.study_instance_uid: r for r in await assembly.due(at(100 + QUIET_S))}
        assert [i.sop_instance_uid for i in due[STUDY].instances] == [ref(1).sop_instance_uid]
        assert due[STUDY].revision == 1
        assert [i.blob.sha256 for i in due[OTHER_STUDY].instances] == [corrected(2).blob.sha256]

    async def test_the_recorded_blob_is_what_a_receipt_compares_with(self, assembly) -> None:
        assert await assembly.recorded_blob(ref(1).sop_instance_uid) is None
        await assembly.add(ref(1), study_meta=meta(0))
        assert await assembly.recorded_blob(ref(1).sop_instance_uid) == ref(1).blob


class TestLateArrivals:
    async def test_an_instance_after_publication_makes_an_amended_revision(self, assembly) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        await publish(assembly, at(QUIET_S))
        await assembly.add(ref(2), study_meta=meta(100))
        assert await assembly.due(at(100 + QUIET_S - 1)) == []  # its own quiet period
        [ready] = await assembly.due(at(100 + QUIET_S))
        event = ready.to_proto()
        assert (event.revision, event.amended) == (1, True)
        assert [i.sop_instance_uid for i in event.instances] == [
            ref(1).sop_instance_uid,
            ref(2).sop_instance_uid,
        ]
        assert event.first_received_at.ToDatetime(UTC) == at(0)
        assert event.last_received_at.ToDatetime(UTC) == at(100)

    async def test_an_instance_arriving_while_a_revision_is_published_makes_the_next_one(
        self, assembly
    ) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        [in_flight] = await assembly.due(at(QUIET_S))
        await assembly.add(ref(2), study_meta=meta(QUIET_S))  # between due and mark
        await assembly.mark_published(STUDY, in_flight.revision)
        assert len(in_flight.instances) == 1
        [amended] = await assembly.due(at(2 * QUIET_S))
        assert amended.revision == 1
        assert len(amended.instances) == 2

    async def test_status_tells_what_was_received_and_published(self, assembly) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        before = await assembly.status(STUDY)
        assert before is not None
        assert (before.instance_count, before.pending, before.published_revision) == (
            1,
            True,
            None,
        )
        await publish(assembly, at(QUIET_S))
        after = await assembly.status(STUDY)
        assert after is not None
        assert (after.pending, after.published_revision) == (False, 0)
        assert [s.study_instance_uid for s in await assembly.find_studies(patient_id=PATIENT)] == [
            STUDY
        ]
        assert await assembly.find_studies(accession_number="nope") == []
        assert len(await assembly.instances(STUDY)) == 1


class TestExactlyOnce:
    async def test_a_revision_not_marked_published_comes_again_with_the_same_content(
        self, assembly
    ) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        [first] = await assembly.due(at(QUIET_S))  # published, then the process died
        await assembly.add(ref(2), study_meta=meta(QUIET_S + 1))
        [again] = await assembly.due(at(QUIET_S + 2))  # due at once: it is pinned
        assert again == first
        assert again.event_id == study_event_id(STUDY, 0, [ref(1)])

    async def test_marking_a_revision_twice_is_harmless(self, assembly) -> None:
        await assembly.add(ref(1), study_meta=meta(0))
        [ready] = await assembly.due(at(QUIET_S))
        await assembly.mark_published(STUDY, ready.revision)
        await assembly.mark_published(STUDY, ready.revision)
        assert await assembly.due(at(1000)) == []

    def test_event_ids_differ_per_revision_and_study(self) -> None:
        ids = {
            study_event_id(STUDY, 0, [ref(1)]),
            study_event_id(STUDY, 1, [ref(1)]),
            study_event_id(OTHER_STUDY, 0, [ref(1, study=OTHER_STUDY)]),
        }
        assert len(ids) == 3

    def test_a_redelivery_of_the_same_instances_keeps_its_event_id(self) -> None:
        assert study_event_id(STUDY, 0, [ref(1), ref(2)]) == study_event_id(
            STUDY, 0, [ref(2), ref(1)]
        )

    def test_other_instances_or_other_bytes_under_one_revision_get_another_event_id(
        self,
    ) -> None:
        corrected = ref(2)
        corrected.blob.sha256 = "f" * 64
        ids = {
            study_event_id(STUDY, 0, [ref(1)]),
            study_event_id(STUDY, 0, [ref(2)]),
            study_event_id(STUDY, 0, [ref(1), ref(2)]),
            study_event_id(STUDY, 0, [ref(1), corrected]),
        }
        assert len(ids) == 4

    async def test_a_lost_assembly_never_reuses_an_event_id_for_a_late_instance(
        self, tmp_path: Path
    ) -> None:
        published: list[StudyReady] = []
        for name, late in (("before.sqlite3", ref(1)), ("replaced-pod.sqlite3", ref(2))):
            fresh = StudyAssembly.open_dsn(f"sqlite:///{tmp_path / name}", quiet_period_s=QUIET_S)
            await fresh.open()
            try:
                await fresh.add(late, study_meta=meta(0))
                published.extend(await publish(fresh, at(QUIET_S)))
            finally:
                await fresh.close()
        first, after_loss = published
        assert (first.revision, after_loss.revision) == (0, 0)
        assert first.event_id != after_loss.event_id


class TestDurability:
    async def test_state_survives_reopening_the_store(self, assembly_dsn) -> None:
        first = StudyAssembly.open_dsn(assembly_dsn, quiet_period_s=QUIET_S)
        await first.open()
        await first.add(ref(1), study_meta=meta(0))
        await first.close()

        reopened = StudyAssembly.open_dsn(assembly_dsn, quiet_period_s=QUIET_S)
        await reopened.open()
        try:
            assert not await reopened.add(ref(1), study_meta=meta(1))
            [ready] = await reopened.due(at(QUIET_S))
            assert [i.sop_instance_uid for i in ready.instances] == [ref(1).sop_instance_uid]
        finally:
            await reopened.close()

    async def test_a_pinned_revision_survives_reopening(self, assembly_dsn) -> None:
        first = StudyAssembly.open_dsn(assembly_dsn, quiet_period_s=QUIET_S)
        await first.open()
        await first.add(ref(1), study_meta=meta(0))
        [in_flight] = await first.due(at(QUIET_S))
        await first.close()  # "crash" before mark_published

        reopened = StudyAssembly.open_dsn(assembly_dsn, quiet_period_s=QUIET_S)
        await reopened.open()
        try:
            assert await reopened.due(at(QUIET_S)) == [in_flight]
        finally:
            await reopened.close()


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class TestAssembler:
    async def test_it_publishes_due_studies_once(self, assembly) -> None:
        published: list[StudyReady] = []

        async def record(ready: StudyReady) -> None:
            published.append(ready)

        clock = FakeClock(at(0))
        assembler = StudyAssembler(assembly, record, clock=clock)
        await assembly.add(ref(1), study_meta=meta(0))
        assert await assembler.publish_due() == 0
        clock.now = at(QUIET_S)
        assert await assembler.publish_due() == 1
        assert await assembler.publish_due() == 0
        assert [ready.revision for ready in published] == [0]

    async def test_a_failed_publish_is_retried_with_the_same_event_id(self, assembly) -> None:
        attempts: list[str] = []

        async def flaky(ready: StudyReady) -> None:
            attempts.append(ready.event_id)
            if len(attempts) == 1:
                raise ConnectionError("broker away")

        assembler = StudyAssembler(assembly, flaky, clock=FakeClock(at(QUIET_S)))
        await assembly.add(ref(1), study_meta=meta(0))
        with pytest.raises(ConnectionError):
            await assembler.publish_due()
        assert await assembler.publish_due() == 1
        assert attempts == [study_event_id(STUDY, 0, [ref(1)])] * 2

    async def test_an_explicit_trigger_wakes_the_running_loop(self, assembly) -> None:
        published = asyncio.Event()

        async def record(ready: StudyReady) -> None:
            published.set()

        assembler = StudyAssembler(assembly, record, poll_interval_s=60, clock=FakeClock(at(1)))
        await assembly.add(ref(1), study_meta=meta(0))
        await assembler.start()
        try:
            await asyncio.sleep(0.05)  # the first poll found nothing due
            assert not published.is_set()
            assert await assembler.complete(STUDY)
            await asyncio.wait_for(published.wait(), timeout=5)
        finally:
            await assembler.stop()
