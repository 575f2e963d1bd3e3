"""Settings of the deid service (``RADSTREAM_DEID_*``), validated at startup.

The pseudonymisation key is the one secret: it makes UIDs, patient pseudonyms and date shifts
reproducible across studies of a project, so losing it breaks longitudinal linkage and leaking
it lets anyone holding a guessed original confirm a pseudonym. It comes from
``RADSTREAM_DEID_KEY`` or from the file named by ``RADSTREAM_DEID_KEY_FILE`` (a mounted
Kubernetes Secret), never from a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from radstream.common.memory_budget import MemoryPlan, MemorySettings, plan_memory
from radstream.common.settings import (
    BlobSettings,
    DeliverySettings,
    KafkaSettings,
    ObservabilitySettings,
    RadstreamSettings,
)
from radstream.deid.errors import DeidConfigurationError
from radstream.deid.pixels.settings import DEFAULT_PADDING, PixelPolicyMode, PixelSettings
from radstream.deid.profile import DeidKeys, DeidProfile, ProfileOption, TextCleaner
from radstream.dicom.reader import DEFAULT_READER_LIMITS, ReaderLimits
from radstream.ocr.config import OcrClientSettings

if TYPE_CHECKING:
    from radstream.deid.pixels.stage import PixelStage
    from radstream.ocr.engine import OcrEngine

__all__ = [
    "DEFAULT_LEAK_RATE",
    "DEID_COPIES",
    "DEID_PIXEL_COPIES",
    "DEID_STAGE_COPIES",
    "KSERVE_OCR_ENGINE",
    "MIN_KEY_BYTES",
    "REMOTE_OCR_ENGINE",
    "DeidSettings",
    "parse_options",
]

DEFAULT_LEAK_RATE = 0.01  # radstream.deid.pixels.risk.DEFAULT_LEAK_RATE, without its imports
# RADSTREAM_DEID_OCR_ENGINE's value for an ocr service (RADSTREAM_OCR_CLIENT_*, the Helm chart's
# services.deid.ocr.via: service) instead of an engine in this process.
REMOTE_OCR_ENGINE = "grpc"
# The engine whose models run on a KServe v2 model server, named by RADSTREAM_DEID_OCR_KSERVE_URL.
KSERVE_OCR_ENGINE = "kserve"

MIN_KEY_BYTES = 32
# Copies of an instance the service holds at its peak, measured with tracemalloc on a 200 MB
# instance (tests/bench/memory_peak.py): the input bytes, pydicom's data set, the written
# output and the output read back for verification (no pixel stage).
DEID_COPIES = 4
# The same with the pixel stage (the service's): a native instance whose text it fills holds the
# redacted frames too, 5.01 copies measured on deid-data's 30-frame ultrasound cine
# (python -m tests.bench.memory_peak --pixels). Compressed pixels weigh more: DEID_PIXEL_COPIES.
DEID_STAGE_COPIES = 5
# Copies of an instance's decoded frames the pixel stage holds at its peak, on top of the file's
# copies, when the pixel data is compressed (native pixels are read in place). Measured with
# tracemalloc on deid-data's 30-frame RGB cine as JPEG baseline, 2.2 MiB decoding to 41 MiB:
# 375 MiB at the peak, 9.11 times the decoded frames (decoded, converted from YBR in floating
# point, redacted, written native; python -m tests.bench.memory_peak --pixels).
DEID_PIXEL_COPIES = 9.5


def parse_options(value: object) -> frozenset[ProfileOption]:
    """Parse profile options from a comma list (``retain-uids,clean-descriptors``) or names."""
    if isinstance(value, str):
        names = [name.strip() for name in value.split(",")]
    elif isinstance(value, list | tuple | set | frozenset):
        names = [str(name).strip() for name in value]
    else:
        raise DeidConfigurationError("profile options must be a comma-separated list of names")
    known = {option.value: option for option in ProfileOption}
    unknown = sorted(name for name in names if name and name not in known)
    if unknown:
        raise DeidConfigurationError(
            f"unknown profile option(s) {', '.join(unknown)}; choose from "
            f"{', '.join(sorted(known))}"
        )
    return frozenset(known[name] for name in names if name)


class DeidSettings(RadstreamSettings):
    """Everything the deid service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_DEID_", extra="ignore")

    key: SecretStr | None = None
    key_file: Path | None = None
    options: Annotated[frozenset[ProfileOption], NoDecode] = frozenset()
    profile_name: str = "basic"
    # Unset: the memory budget over DEID_COPIES; a larger value is refused at startup.
    max_file_bytes: int | None = Field(default=None, gt=0)
    max_element_bytes: int = Field(default=DEFAULT_READER_LIMITS.max_element_bytes, gt=0)
    max_private_bytes: int = Field(default=DEFAULT_READER_LIMITS.max_private_bytes, gt=0)
    group_id: str = "deid"
    # The pixel stage: every instance with pixel data is checked for text and cleaned.
    ocr_engine: str = "rapidocr"  # radstream.ocr.engines.ENGINE_NAMES, or REMOTE_OCR_ENGINE
    # The kserve engine's model server (KServe v2: Triton's grpc://host:8001); kserve only.
    ocr_kserve_url: str = ""
    pixel_mode: PixelPolicyMode = PixelPolicyMode.REMOVE_PHI
    pixel_padding: int = Field(default=DEFAULT_PADDING, ge=0, le=64)
    # The rate of PHI-bearing instances released with PHI readable that the calibrated risk
    # threshold bounds (split conformal risk control on the engine's calibration data).
    leak_rate: float = Field(default=DEFAULT_LEAK_RATE, gt=0.0, lt=1.0)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    blob: BlobSettings = Field(default_factory=BlobSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    ocr_client: OcrClientSettings = Field(default_factory=OcrClientSettings)
    observability: ObservabilitySettings = Field(
        default_factory=lambda: ObservabilitySettings(service_name="deid")
    )

    @field_validator("options", mode="before")
    @classmethod
    def _options_from_names(cls, value: object) -> frozenset[ProfileOption]:
        return parse_options(value)

    @model_validator(mode="after")
    def _one_key_source(self) -> DeidSettings:
        if self.key is not None and self.key_file is not None:
            raise DeidConfigurationError(
                "set RADSTREAM_DEID_KEY or RADSTREAM_DEID_KEY_FILE, not both"
            )
        return self

    @property
    def has_key(self) -> bool:
        """Whether a key source is configured (it is read and checked by :meth:`keys`)."""
        return self.key is not None or self.key_file is not None

    def secret(self) -> bytes:
        """The pseudonymisation secret, from the variable or the key file."""
        if self.key_file is not None:
            try:
                secret = self.key_file.read_bytes().strip()
            except OSError as exc:
                raise DeidConfigurationError(
                    f"cannot read the key file {self.key_file} ({exc.strerror}); check "
                    "RADSTREAM_DEID_KEY_FILE and the Secret mount"
                ) from exc
        elif self.key is not None:
            secret = self.key.get_secret_value().strip().encode("utf-8")
        else:
            raise DeidConfigurationError(
                "no pseudonymisation key: set RADSTREAM_DEID_KEY or RADSTREAM_DEID_KEY_FILE "
                f"(at least {MIN_KEY_BYTES} random bytes, e.g. `openssl rand -hex 32`)"
            )
        if len(secret) < MIN_KEY_BYTES:
            raise DeidConfigurationError(
                f"the pseudonymisation key has {len(secret)} bytes; use at least "
                f"{MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)"
            )
        return secret

    def keys(self) -> DeidKeys:
        """The UID, patient and date keys derived from the secret."""
        return DeidKeys.from_secret(self.secret())

    def profile(self) -> DeidProfile:
        """The de-identification profile with the configured options."""
        try:
            return DeidProfile(name=self.profile_name, options=self.options)
        except ValueError as exc:  # e.g. both longitudinal date options: keep or shift, not both
            raise DeidConfigurationError(f"RADSTREAM_DEID_OPTIONS: {exc}") from exc

    def memory_plan(self) -> MemoryPlan:
        """The memory budget (setting, container limit or fallback) with deid's copies.

        The service runs the pixel stage, so an instance weighs its copies with the stage's.
        """
        return plan_memory(self.memory, copies=DEID_STAGE_COPIES)

    def reader_limits(self) -> ReaderLimits:
        """Size limits for incoming instances; the file limit within the memory budget.

        Raises
        ------
        MemoryBudgetExceededError
            RADSTREAM_DEID_MAX_FILE_BYTES is larger than the memory budget can hold.
        """
        return ReaderLimits(
            max_file_bytes=self.memory_plan().instance_limit(
                self.max_file_bytes, setting="RADSTREAM_DEID_MAX_FILE_BYTES"
            ),
            max_element_bytes=self.max_element_bytes,
            max_private_bytes=self.max_private_bytes,
        )

    def pixel_settings(self) -> PixelSettings:
        """The pixel stage's mode and padding (thresholds at their measured defaults)."""
        return PixelSettings(mode=self.pixel_mode, padding=self.pixel_padding)

    def ocr(self) -> OcrEngine:
        """The OCR engine: this process's (one per name), or an ocr service's over gRPC.

        The remote engine names the server's engine in ``info``, so the threshold calibrated for
        that engine applies; its TLS files are read here, and a missing one stops the start.
        """
        if self.ocr_engine == REMOTE_OCR_ENGINE:
            from radstream.ocr.client import GrpcOcrEngine  # noqa: PLC0415 -- grpc, numpy

            return GrpcOcrEngine.from_settings(self.ocr_client)
        from radstream.ocr.engines import shared_engine  # noqa: PLC0415

        if self.ocr_engine == KSERVE_OCR_ENGINE:
            if not self.ocr_kserve_url:
                raise DeidConfigurationError(
                    "RADSTREAM_DEID_OCR_ENGINE is kserve: set RADSTREAM_DEID_OCR_KSERVE_URL "
                    "(radstream deid: --ocr-url) to the model server's KServe v2 endpoint "
                    "(Triton: grpc://host:8001)"
                )
            return shared_engine(self.ocr_engine, url=self.ocr_kserve_url)
        return shared_engine(self.ocr_engine)

    def pixel_stage(self, clean_text: TextCleaner) -> PixelStage:
        """The pixel stage of these settings, with ``clean_text``'s Presidio analyzer.

        The configured OCR engine (one per process), the header cleaner's analyzer for the PHI
        classifier, and the threshold calibrated for the engine at ``leak_rate``.

        Raises
        ------
        MisconfiguredError
            An unknown engine name, kserve without its URL; MissingExtraError when its extra
            is not installed.
        """
        # Imported here: engines, OpenCV and the risk model load only where pixels are read.
        from radstream.deid.clean import PresidioTextCleaner  # noqa: PLC0415
        from radstream.deid.pixels.classify import PhiClassifier  # noqa: PLC0415
        from radstream.deid.pixels.risk import threshold_for  # noqa: PLC0415
        from radstream.deid.pixels.stage import PixelStage  # noqa: PLC0415

        settings = self.pixel_settings()
        engine = self.ocr()
        analyzer = clean_text.analyzer if isinstance(clean_text, PresidioTextCleaner) else None
        return PixelStage(
            engine,
            classifier=PhiClassifier(analyzer, threshold=settings.phi_threshold),
            threshold=threshold_for(self.leak_rate, engine.info.name),
            settings=settings,
        )
