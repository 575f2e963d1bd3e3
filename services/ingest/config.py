"""Settings of the ingest service (``RADSTREAM_INGEST_*``), validated at startup.

Each receiving part has its own class and prefix, so an operator can read the variable names
straight off the class: ``DicomSettings.ae_title`` is ``RADSTREAM_INGEST_DICOM_AE_TITLE``.
:class:`IngestSettings` composes them with the shared Kafka, delivery, blob and observability
settings, as every service's settings class does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from radstream.common.memory_budget import MemoryPlan, MemorySettings, plan_memory
from radstream.common.settings import (
    BlobSettings,
    DeliverySettings,
    KafkaSettings,
    ObservabilitySettings,
    RadstreamSettings,
    dsn_has_password,
)
from radstream.dicom import ReaderLimits
from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.http_auth import HttpSettings
from radstream.ingest.mllp import MllpSettings
from radstream.ingest.name_lists import parse_names
from radstream.ingest.pacs import PacsSettings

__all__ = ["AssemblySettings", "DicomSettings", "IngestSettings", "parse_names"]

# PS3.5 6.2: an AE title is 1-16 characters of the default repertoire, no backslash or controls.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DEFAULT_LIMITS = ReaderLimits()


def _check_ae_title(title: str, setting: str) -> str:
    if not _AE_TITLE.match(title) or not title.strip():
        raise IngestConfigurationError(
            f"{setting} must be 1-16 printable ASCII characters without a backslash"
        )
    return title.strip()


class DicomSettings(RadstreamSettings):
    """The DICOM C-STORE SCP (``RADSTREAM_INGEST_DICOM_*``).

    Associations are accepted only from the calling AE titles in ``allowed_calling_aes``; an
    empty list refuses every association (fail closed) unless ``allow_any_calling_ae`` is set
    for a local demo. With ``tls_certfile`` and ``tls_keyfile`` the SCP speaks DICOM TLS;
    adding ``tls_ca_file`` requires every sender to present a certificate that CA signed.
    """

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_INGEST_DICOM_", extra="ignore")

    enabled: bool = True
    ae_title: str = "RADSTREAM"
    host: str = "127.0.0.1"
    port: int = Field(default=11112, ge=0, le=65535)
    allowed_calling_aes: Annotated[frozenset[str], NoDecode] = frozenset()
    allow_any_calling_ae: bool = False
    # Refuse associations addressed to another AE title: a sender configured for a different
    # node is misrouted, and its studies belong elsewhere.
    require_called_ae_title: bool = True
    # Empty: every storage SOP class pynetdicom knows. Others are refused per instance (0x0122).
    accepted_sop_classes: Annotated[frozenset[str], NoDecode] = frozenset()
    max_associations: int = Field(default=10, ge=1)
    acse_timeout_s: float = Field(default=30.0, gt=0)
    dimse_timeout_s: float = Field(default=30.0, gt=0)
    network_timeout_s: float = Field(default=60.0, gt=0)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_ca_file: Path | None = None

    @field_validator("allowed_calling_aes", "accepted_sop_classes", mode="before")
    @classmethod
    def _names(cls, value: object) -> frozenset[str]:
        return parse_names(value)

    @field_validator("ae_title")
    @classmethod
    def _title(cls, value: str) -> str:
        return _check_ae_title(value, "RADSTREAM_INGEST_DICOM_AE_TITLE")

    @model_validator(mode="after")
    def _consistent(self) -> DicomSettings:
        for title in self.allowed_calling_aes:
            _check_ae_title(title, "each of RADSTREAM_INGEST_DICOM_ALLOWED_CALLING_AES")
        for uid in self.accepted_sop_classes:
            if not _UID.match(uid):
                raise IngestConfigurationError(
                    "RADSTREAM_INGEST_DICOM_ACCEPTED_SOP_CLASSES must list dotted numeric UIDs"
                )
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise IngestConfigurationError(
                "DICOM TLS needs both RADSTREAM_INGEST_DICOM_TLS_CERTFILE and "
                "RADSTREAM_INGEST_DICOM_TLS_KEYFILE"
            )
        if self.tls_ca_file is not None and self.tls_certfile is None:
            raise IngestConfigurationError(
                "RADSTREAM_INGEST_DICOM_TLS_CA_FILE (client certificates) needs the SCP's own "
                "certificate: set RADSTREAM_INGEST_DICOM_TLS_CERTFILE and _KEYFILE too"
            )
        return self

    @property
    def tls(self) -> bool:
        """Whether the SCP speaks TLS."""
        return self.tls_certfile is not None


class AssemblySettings(RadstreamSettings):
    """Study assembly (``RADSTREAM_INGEST_ASSEMBLY_*``).

    A study is complete once no instance of it arrived for ``quiet_period_s``; its state lives
    in ``dsn`` (``sqlite:///path`` embedded, ``postgresql://...`` for several replicas).
    """

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_INGEST_ASSEMBLY_", extra="ignore")
    secret_file_only: ClassVar[Mapping[str, Callable[[object], bool]]] = {"dsn": dsn_has_password}

    quiet_period_s: float = Field(default=30.0, ge=0)
    dsn: str = "sqlite:///.radstream/ingest-assembly.sqlite3"
    # How often the assembler looks for studies whose quiet period is over.
    poll_interval_s: float = Field(default=1.0, gt=0)


# Copies of an instance ingest holds at its peak (tests/bench/memory_peak.py, tracemalloc on a
# 200 MB instance): the receiver's input and pydicom's data set. A C-STORE data set and a
# STOW-RS part beyond 1 MiB wait on disk (RADSTREAM_MEMORY_SPOOL_DIR) until the receiver reads
# them within its reservation; a C-STORE received in pynetdicom's memory took 3.
INGEST_COPIES = 2


class IngestSettings(RadstreamSettings):
    """Everything the ingest service reads from its environment (``RADSTREAM_INGEST_*``)."""

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_INGEST_", extra="ignore")

    # Unset: the memory budget over INGEST_COPIES; a larger value is refused at startup.
    max_file_bytes: int | None = Field(default=None, gt=0)
    max_element_bytes: int = Field(default=_DEFAULT_LIMITS.max_element_bytes, gt=0)
    max_private_bytes: int = Field(default=_DEFAULT_LIMITS.max_private_bytes, gt=0)
    # "file": JSON lines at audit_path; "phi-store": one JSON object per receipt in the PHI
    # blob store (for deployments whose only durable storage is object storage).
    audit_sink: Literal["file", "phi-store"] = "file"
    audit_path: Path = Path(".radstream/audit/ingest-receipts.jsonl")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    blob: BlobSettings = Field(default_factory=BlobSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    observability: ObservabilitySettings = Field(
        default_factory=lambda: ObservabilitySettings(service_name="ingest")
    )
    dicom: DicomSettings = Field(default_factory=DicomSettings)
    assembly: AssemblySettings = Field(default_factory=AssemblySettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    mllp: MllpSettings = Field(default_factory=MllpSettings)
    pacs: PacsSettings = Field(default_factory=PacsSettings)

    @model_validator(mode="after")
    def _push_needs_the_scp(self) -> IngestSettings:
        if self.pacs.mode == "push" and not self.dicom.enabled:
            raise IngestConfigurationError(
                "RADSTREAM_INGEST_PACS_MODE=push means Orthanc sends to ingest's DICOM SCP, "
                "which RADSTREAM_INGEST_DICOM_ENABLED=false turns off"
            )
        return self

    def memory_plan(self) -> MemoryPlan:
        """The memory budget (setting, container limit or fallback) with ingest's copies."""
        return plan_memory(self.memory, copies=INGEST_COPIES)

    def reader_limits(self) -> ReaderLimits:
        """Size limits for incoming instances (every channel); the file limit within the budget.

        Raises
        ------
        MemoryBudgetExceededError
            RADSTREAM_INGEST_MAX_FILE_BYTES is larger than the memory budget can hold.
        """
        return ReaderLimits(
            max_file_bytes=self.memory_plan().instance_limit(
                self.max_file_bytes, setting="RADSTREAM_INGEST_MAX_FILE_BYTES"
            ),
            max_element_bytes=self.max_element_bytes,
            max_private_bytes=self.max_private_bytes,
        )
