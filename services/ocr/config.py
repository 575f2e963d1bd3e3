"""Settings of the ocr service (``RADSTREAM_OCR_*``) and its clients (``RADSTREAM_OCR_CLIENT_*``).

The service runs one engine (``engine``), loaded once at startup. Its limits protect the
process from its callers: ``max_image_pixels`` and ``max_image_side`` are checked against an
image's header before anything is decoded (a 100-byte PNG can claim 50,000 x 50,000 pixels),
``max_message_bytes`` is gRPC's own receive limit, ``max_concurrency`` bounds the engine calls
running at once (each holds the decoded image and the engine's buffers) and ``queue_limit`` the
requests waiting for one; past it a caller is told RESOURCE_EXHAUSTED at once instead of
piling up memory and latency.

Images by claim check (``RecognizeRequest.ref``) are read only when ``RADSTREAM_BLOB_PHI_URI``
is set, and only from that PHI store.

Without ``tls_certfile``/``tls_keyfile`` the server speaks plaintext gRPC, which is for a
loopback stack (``radstream up``); the Helm chart refuses to deploy it so unless told that the
network is trusted. With ``tls_client_ca_file`` every caller must present a certificate that CA
signed (mTLS).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from radstream.common.errors import MisconfiguredError
from radstream.common.settings import BlobSettings, ObservabilitySettings, RadstreamSettings

__all__ = ["DEFAULT_GRPC_PORT", "OcrClientSettings", "OcrSettings", "TlsFiles"]

DEFAULT_GRPC_PORT = 50051


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of one side of a TLS connection, read at startup (fail early)."""

    certfile: Path | None
    keyfile: Path | None
    cafile: Path | None

    def read(self, path: Path | None, variable: str) -> bytes | None:
        """The file's bytes, or None when it is not set; a file that cannot be read stops."""
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise MisconfiguredError(
                f"cannot read {path} ({exc.strerror}); check {variable} and the Secret mount"
            ) from exc


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class OcrSettings(RadstreamSettings):
    """Everything the ocr service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_OCR_", extra="ignore")

    # The engine, by its registry name (radstream.ocr.engines.load_engine).
    engine: str = "rapidocr"
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_GRPC_PORT, ge=0, le=65535)
    # Engine calls at once; an engine that is not thread-safe runs one at a time regardless.
    max_concurrency: int = Field(default=1, ge=1)
    # Requests waiting for an engine slot; one more is refused with RESOURCE_EXHAUSTED.
    queue_limit: int = Field(default=16, ge=0)
    max_batch_images: int = Field(default=64, ge=1)
    # 50 MP holds a 7000 x 7000 mammogram; the side limit stops 1 x 50,000,000 strips.
    max_image_pixels: int = Field(default=50_000_000, gt=0)
    max_image_side: int = Field(default=16_384, gt=0)
    # gRPC's receive limit: a raw 16-bit image of more than 32 MP needs more, or a PNG.
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # The max_side a request leaving it 0 gets; 0 here means full resolution.
    default_max_side: int = Field(default=0, ge=0)
    # The languages the engine is set up for (ISO 639-1); requests for others are refused.
    languages: Annotated[tuple[str, ...], NoDecode] = ("en",)
    # Intra-op threads of torch (EasyOCR) and onnxruntime (RapidOCR); unset: the library's own.
    engine_threads: int | None = Field(default=None, ge=1)
    # The kserve engine's model server: its KServe v2 endpoint (Triton: host:8001 for gRPC).
    kserve_url: str = ""
    # How long a stopping server lets calls in flight finish (SIGTERM), in seconds.
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_client_ca_file: Path | None = None

    blob: BlobSettings = Field(default_factory=BlobSettings)
    observability: ObservabilitySettings = Field(
        default_factory=lambda: ObservabilitySettings(service_name="ocr")
    )

    @field_validator("languages", mode="before")
    @classmethod
    def _languages_from_list(cls, value: object) -> object:
        return _comma_list(value)

    @model_validator(mode="after")
    def _tls_is_complete(self) -> OcrSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise MisconfiguredError(
                "TLS needs both RADSTREAM_OCR_TLS_CERTFILE and RADSTREAM_OCR_TLS_KEYFILE"
            )
        if self.tls_client_ca_file is not None and self.tls_certfile is None:
            raise MisconfiguredError(
                "RADSTREAM_OCR_TLS_CLIENT_CA_FILE (mTLS) needs RADSTREAM_OCR_TLS_CERTFILE and "
                "RADSTREAM_OCR_TLS_KEYFILE"
            )
        return self

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS."""
        return self.tls_certfile is not None

    @property
    def reads_blob_refs(self) -> bool:
        """Whether images may come by claim check: only when RADSTREAM_BLOB_PHI_URI is set.

        The service opens no store by default (the chart's ``phiStore: false``: images come in
        the call and the pods reach nothing); it never opens the release store.
        """
        return "phi_uri" in self.blob.model_fields_set

    def tls_files(self) -> TlsFiles:
        """The server's certificate, key and (for mTLS) client CA."""
        return TlsFiles(self.tls_certfile, self.tls_keyfile, self.tls_client_ca_file)


class OcrClientSettings(RadstreamSettings):
    """How a caller (deid) reaches an ocr service (``RADSTREAM_OCR_CLIENT_*``)."""

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_OCR_CLIENT_", extra="ignore")

    # host:port of the ocr service; the chart sets its Service's name.
    target: str = f"127.0.0.1:{DEFAULT_GRPC_PORT}"
    # Deadline of one call, retries included, in seconds.
    timeout_s: float = Field(default=30.0, gt=0)
    # Attempts for a call answered UNAVAILABLE (engine loading, server restarting).
    attempts: int = Field(default=3, ge=1)
    backoff_s: float = Field(default=0.2, ge=0)
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # TLS: the CA that signed the server's certificate; with certfile/keyfile, mTLS.
    tls_ca_file: Path | None = None
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    # The name the server's certificate carries, when it is not the target's host.
    tls_server_name: str | None = None

    @model_validator(mode="after")
    def _tls_is_complete(self) -> OcrClientSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise MisconfiguredError(
                "a client certificate needs both RADSTREAM_OCR_CLIENT_TLS_CERTFILE and "
                "RADSTREAM_OCR_CLIENT_TLS_KEYFILE"
            )
        if self.tls_certfile is not None and self.tls_ca_file is None:
            raise MisconfiguredError(
                "RADSTREAM_OCR_CLIENT_TLS_CERTFILE needs RADSTREAM_OCR_CLIENT_TLS_CA_FILE: a "
                "client certificate is only sent over TLS"
            )
        return self

    @property
    def tls(self) -> bool:
        """Whether the client speaks TLS."""
        return self.tls_ca_file is not None

    def tls_files(self) -> TlsFiles:
        """The client's certificate and key (mTLS) and the server's CA."""
        return TlsFiles(self.tls_certfile, self.tls_keyfile, self.tls_ca_file)
