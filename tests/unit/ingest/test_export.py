"""The export core without a network: target settings, STOW-RS answers, C-STORE statuses."""

from __future__ import annotations

import pytest

from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.export import ExportItem, ExportTarget, open_transport
from radstream.ingest.export_cstore import _outcome_of
from radstream.ingest.export_stow import _per_instance, multipart_related


def item(uid: str) -> ExportItem:
    return ExportItem(
        sop_instance_uid=uid, sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sha256="0" * 64, data=b""
    )


def sop(uid: str, reason: int | None = None) -> dict[str, object]:
    entry: dict[str, object] = {"00081155": {"vr": "UI", "Value": [uid]}}
    if reason is not None:
        entry["00081197"] = {"vr": "US", "Value": [reason]}
    return entry


class TestExportTarget:
    def test_a_c_store_target_needs_host_port_and_ae_title(self) -> None:
        with pytest.raises(IngestConfigurationError, match="needs host, port and ae_title"):
            ExportTarget(name="research", transport="c-store", host="pacs.example")

    def test_a_stow_rs_target_needs_an_http_url(self) -> None:
        with pytest.raises(IngestConfigurationError, match="http"):
            ExportTarget(name="research", transport="stow-rs", stow_url="ftp://pacs.example")

    def test_a_token_comes_from_one_place_only(self, tmp_path) -> None:
        token_file = tmp_path / "token"
        token_file.write_text("synthetic-token\n")
        with pytest.raises(IngestConfigurationError, match="bearer_token or bearer_token_file"):
            ExportTarget(
                name="research",
                transport="stow-rs",
                stow_url="https://pacs.example/dicom-web",
                bearer_token="x",
                bearer_token_file=token_file,
            )
        target = ExportTarget(
            name="research",
            transport="stow-rs",
            stow_url="https://pacs.example/dicom-web",
            bearer_token_file=token_file,
        )
        assert target.token() == "synthetic-token"

    @pytest.mark.parametrize("transport", ["c-store", "stow-rs"])
    def test_an_unreadable_ca_file_stops_the_transport_being_built(
        self, transport: str, tmp_path
    ) -> None:
        target = ExportTarget(
            name="research",
            transport=transport,
            host="pacs.example",
            port=11112,
            ae_title="RESEARCH",
            stow_url="https://pacs.example/dicom-web",
            tls_ca_file=tmp_path / "missing-ca.crt",
        )
        with pytest.raises(IngestConfigurationError, match="'research' are unusable"):
            open_transport(target)

    def test_target_names_are_label_safe(self) -> None:
        with pytest.raises(IngestConfigurationError, match="lowercase"):
            ExportTarget(name="Research PACS", transport="stow-rs", stow_url="https://x.example")


class TestStowRsAnswer:
    def test_referenced_instances_are_sent_and_failed_ones_say_why(self) -> None:
        answer = {
            "00081199": {"vr": "SQ", "Value": [sop("1.1")]},
            "00081198": {"vr": "SQ", "Value": [sop("1.2", 0xA700), sop("1.3", 0xC000)]},
        }
        results = _per_instance([item("1.1"), item("1.2"), item("1.3")], answer, 202)
        assert [(r.outcome, r.status) for r in results] == [
            ("sent", "HTTP 202"),
            ("retry", "0xA700"),
            ("failed", "0xC000"),
        ]

    def test_a_full_success_without_a_list_counts_every_instance_as_sent(self) -> None:
        results = _per_instance([item("1.1"), item("1.2")], {}, 200)
        assert {r.outcome for r in results} == {"sent"}

    def test_an_instance_not_listed_in_a_partial_answer_is_not_counted_as_sent(self) -> None:
        [result] = _per_instance([item("1.9")], {"00081199": {"vr": "SQ"}}, 409)
        assert result.outcome == "failed"

    def test_the_multipart_body_frames_each_instance(self) -> None:
        body, content_type = multipart_related([b"DICM-one", b"DICM-two"])
        boundary = content_type.rsplit("boundary=", 1)[1]
        assert content_type.startswith('multipart/related; type="application/dicom"')
        assert body.count(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()) == 2
        assert body.endswith(f"--{boundary}--\r\n".encode())


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (0x0000, "sent"),
        (0xB000, "sent"),  # coercion warning: stored
        (0xA700, "retry"),  # out of resources
        (0xA900, "failed"),  # data set does not match SOP class
        (0xC000, "failed"),
        (0x0122, "failed"),  # SOP class not supported
    ],
)
def test_c_store_statuses_map_to_export_outcomes(status: int, outcome: str) -> None:
    assert _outcome_of(status) == outcome
