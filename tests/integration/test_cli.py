"""The `radstream` command against the real embedded broker, as an operator runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from pydicom import dcmread

from radstream.cli.samples import US_BANNER_KEPT, US_BANNER_PHI
from radstream.cli.stack import STOP_TIMEOUT_S
from radstream.common import topics
from radstream.common.embedded_broker import metadata_broker_count
from radstream.common.service import SERVICES
from radstream.contracts.v1.imaging_pb2 import StudyReceived
from radstream.ocr.engines import shared_engine
from tests.integration.buses import publish_all
from tests.integration.operator import RADSTREAM, cli
from tests.integration.topic_reader import write_raw_record

pytestmark = pytest.mark.integration


async def publish_studies(kafka_settings, topic, uids, tmp_path: Path) -> list[str]:
    dsn = f"sqlite:///{tmp_path / 'pub.sqlite3'}"
    studies = (
        StudyReceived(study_instance_uid=uid, patient_id="SYNTH-77", revision=1) for uid in uids
    )
    return await publish_all(kafka_settings, dsn, topic, studies)


async def test_tail_json_shows_cloudevents_headers_and_masks_identifiers(
    kafka_settings, new_topic, operator_env, tmp_path
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1)
    ids = await publish_studies(kafka_settings, topic, ["2.25.1", "2.25.2"], tmp_path)

    result = cli("tail", topic.name, "--from-beginning", "--max", "2", "--json", env=operator_env)

    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(event["ce"]["id"] for event in events) == sorted(ids)
    for event in events:
        assert event["ce"]["type"] == "radstream.v1.StudyReceived"
        assert event["ce"]["source"] == "/radstream/ingest"
        assert event["headers"]["content-type"] == "application/protobuf"
        assert event["data"]["patient_id"] == "***"
        assert event["data"]["revision"] == 1
        assert event["key"] == "***"
    assert "SYNTH-77" not in result.stdout


async def test_tail_show_phi_reveals_identifiers_on_request(
    kafka_settings, new_topic, operator_env, tmp_path
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1)
    await publish_studies(kafka_settings, topic, ["2.25.9"], tmp_path)

    result = cli(
        "tail", topic.name, "--from-beginning", "--max", "1", "--show-phi", env=operator_env
    )

    assert result.returncode == 0, result.stderr
    assert "key=2.25.9" in result.stdout
    assert "patient_id=SYNTH-77" in result.stdout


async def test_tail_reports_a_malformed_record_and_goes_on(
    kafka_settings, new_topic, operator_env, tmp_path
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    await write_raw_record(
        kafka_settings, topic.name, b"not protobuf", headers={"content-type": b"text/plain"}
    )
    await publish_studies(kafka_settings, topic, ["2.25.3"], tmp_path)

    result = cli("tail", topic.name, "--from-beginning", "--max", "2", env=operator_env)

    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert "ERROR: MissingHeaderError" in first
    assert "radstream.v1.StudyReceived" in second


def test_topics_create_makes_every_registry_topic_and_its_dlq(operator_env) -> None:
    result = cli("topics", "--create", env=operator_env)

    assert result.returncode == 0, result.stderr
    for topic in topics.ALL_TOPICS:
        assert topic.name in result.stdout
        assert topic.dlq in result.stdout


def test_doctor_passes_when_everything_is_reachable(operator_env) -> None:
    cli("topics", "--create", env=operator_env)
    result = cli("doctor", env=operator_env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout


def test_doctor_names_an_unreachable_broker(operator_env) -> None:
    env = {**operator_env, "RADSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    result = cli("doctor", env=env, timeout=120)

    assert result.returncode == 1
    kafka_line = next(line for line in result.stdout.splitlines() if "kafka" in line)
    assert "FAIL" in kafka_line


def test_doctor_names_a_misconfigured_blob_store(operator_env) -> None:
    env = {**operator_env, "RADSTREAM_BLOB_RELEASE_URI": operator_env["RADSTREAM_BLOB_PHI_URI"]}
    result = cli("doctor", env=env)

    assert result.returncode == 1
    blob_line = next(line for line in result.stdout.splitlines() if "blob" in line)
    assert "FAIL" in blob_line


def _ignoring_ctrl_c() -> None:
    """As a shell starts a background job: SIGINT ignored, which exec keeps."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_up_prints_connection_settings_and_stops_its_broker_on_ctrl_c(tmp_path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "RADSTREAM_KAFKA_BOOTSTRAP"}
    # Started ignoring SIGINT, as from a script's background job or a runner that ignores it:
    # Python keeps an inherited SIG_IGN, so up must take Ctrl-C back itself or never stop.
    process = subprocess.Popen(
        [*RADSTREAM, "up"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_ignoring_ctrl_c,  # noqa: PLW1509 -- one signal call
    )
    try:
        bootstrap = None
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while bootstrap is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if "RADSTREAM_KAFKA_BOOTSTRAP=" in line:
                bootstrap = line.strip().split("=", 1)[1]
        assert bootstrap, "up never printed RADSTREAM_KAFKA_BOOTSTRAP"
        described = []
        while not described or not described[-1].startswith("Logs in"):
            described.append(process.stdout.readline().strip())
        assert "DICOM called AE title (storescu -aec): RADSTREAM" in described
        assert any(line.startswith("DICOM: 127.0.0.1:") for line in described)
        host, port = bootstrap.split(":")
        assert metadata_broker_count(host, int(port)) == 1
        process.send_signal(signal.SIGINT)
        # The stack gives each service STOP_TIMEOUT_S to stop before it kills it; services still
        # loading their models (spaCy, OCR) when Ctrl-C comes may take that long on a busy host.
        assert process.wait(timeout=STOP_TIMEOUT_S * (len(SERVICES) + 1)) == 0
        with pytest.raises(ConnectionRefusedError):
            metadata_broker_count(host, int(port))
    finally:
        if process.poll() is None:
            process.kill()


def _children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_killed_up_takes_its_services_with_it(tmp_path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "RADSTREAM_KAFKA_BOOTSTRAP"}
    process = subprocess.Popen(
        [*RADSTREAM, "up"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while "Ctrl-C stops everything" not in process.stdout.readline():
            assert time.monotonic() < deadline, "up never said it was up"
        services = _children(process.pid)
        assert len(services) >= len(SERVICES)  # the services (and the broker)
        process.kill()  # no chance to stop anything itself
        process.wait(timeout=10)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(_alive(pid) for pid in services) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in services if _alive(pid)], "services outlived their stack"
    finally:
        if process.poll() is None:
            process.kill()


def test_demo_pushes_sample_data_through_and_prints_each_event(tmp_path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "RADSTREAM_KAFKA_BOOTSTRAP"}
    result = subprocess.run(
        [*RADSTREAM, "demo", "--quiet-s", "1.5", "--timeout-s", "90"],
        env={**env, "COLUMNS": "250"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "C-STORE x3: statuses 0x0000, 0x0000, 0x0000" in result.stdout
    assert "ACK AA" in result.stdout
    assert "FHIR Observation x2: HTTP [201, 201]" in result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith("radstream.")]
    assert Counter(line.split()[0] for line in lines) == {
        "radstream.instance.stored.v1": 3,
        "radstream.study.received.v1": 1,
        "radstream.report.received.v1": 1,
        "radstream.clinical.observation.v1": 2,
        # deid released the CT instances, and the ultrasound with its banner's PHI filled
        "radstream.deid.completed.v1": 1,
    }
    [completed] = [line for line in lines if line.startswith("radstream.deid.completed.v1")]
    assert "results=[RELEASED:3; pixels no_text:2 redacted:1;" in completed
    # The ultrasound's name, ID, birth date and date are filled; its settings are kept.
    assert re.search(r"#3 US redacted: [1-9]\d* PHI box\(es\) filled, [1-9]\d* kept, ", completed)
    assert "SYNTH-0001" not in result.stdout
    assert (tmp_path / ".radstream" / "demo" / "blobs" / "phi").is_dir()
    # The released ultrasound reads its settings and nothing of the banner's PHI.
    released = [
        dcmread(path)
        for path in (tmp_path / ".radstream" / "demo" / "blobs" / "release").rglob("*")
        if path.is_file()
    ]
    [ultrasound] = [ds for ds in released if ds.Modality == "US"]
    read = " ".join(
        region.text for region in shared_engine("rapidocr").recognize(ultrasound.pixel_array)
    )
    assert all(kept in read for kept in US_BANNER_KEPT), read
    assert not [phi for phi in (*US_BANNER_PHI, "SYNTHETIC", "1958") if phi in read], read
    assert ultrasound.BurnedInAnnotation == "NO"
