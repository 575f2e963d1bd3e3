"""Shared settings, read from ``RADSTREAM_*`` environment variables (pydantic-settings).

Each concern has its own class with its own prefix, so an operator can read the variable names
straight off the class: ``KafkaSettings.bootstrap`` is ``RADSTREAM_KAFKA_BOOTSTRAP``. A service's
settings class (``<svc>/config.py``) composes these. Settings are validated at startup and passed
in; nothing reads the environment at import time.

Every class derives from :class:`RadstreamSettings`, which also reads a setting from a file named
after its variable in the secrets directory (``RADSTREAM_SECRETS_DIR``, default
``/etc/radstream/secrets``), as Kubernetes mounts a Secret. A setting that can carry a password
or a token (a DSN, an export target) is accepted with one only from such a file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from radstream.common.errors import MisconfiguredError

SECRETS_DIR_VARIABLE = "RADSTREAM_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/etc/radstream/secrets")


def secrets_dir() -> Path | None:
    """The directory of secret files, if there is one (read when settings are built)."""
    directory = Path(os.environ.get(SECRETS_DIR_VARIABLE) or DEFAULT_SECRETS_DIR)
    return directory if directory.is_dir() else None


_KEYWORD_PASSWORD = re.compile(r"(?:^|\s)password\s*=", re.IGNORECASE)


def dsn_has_password(value: object) -> bool:
    """Whether a DSN carries a password: ``user:password@``, ``?password=`` or ``password=``.

    A DSN that cannot be parsed counts as carrying one (fail closed).
    """
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return True
    query = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    return bool(password) or "password" in query or bool(_KEYWORD_PASSWORD.search(value))


class SecretInEnvironmentError(MisconfiguredError):
    """A password or token was given as a plain environment variable instead of a secret file."""


class _EnvironmentWithoutSecrets(PydanticBaseSettingsSource):
    """The environment, refusing a secret-file-only setting whose value carries a secret."""

    def __init__(self, settings_cls: type[BaseSettings], environment: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._environment = environment

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._environment.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        values = self._environment()
        checks: Mapping[str, Callable[[object], bool]] = getattr(
            self.settings_cls, "secret_file_only", {}
        )
        prefix = str(self.settings_cls.model_config.get("env_prefix", ""))
        for name, carries_secret in checks.items():
            if name in values and carries_secret(values[name]):
                variable = f"{prefix}{name}".upper()
                raise SecretInEnvironmentError(
                    f"{variable} carries a password or token in a plain environment variable: "
                    f"put it in the secret file {variable} in {SECRETS_DIR_VARIABLE} "
                    f"(default {DEFAULT_SECRETS_DIR}), as the Helm chart does, or leave the "
                    "secret out of it (a client certificate, a passfile, a token file)"
                )
        return values


class RadstreamSettings(BaseSettings):
    """The base of every settings class: environment variables first, then secret files.

    A setting may come from a file named after its variable (``RADSTREAM_KAFKA_SASL_PASSWORD``)
    in :func:`secrets_dir`, which is how the Helm chart hands over every secret. A secret in a
    file stays out of the process environment, which child processes inherit and which
    ``/proc/<pid>/environ`` and crash reports show. A variable that is set wins over a file.

    ``secret_file_only`` names the fields that can carry a secret inside a larger value (a DSN
    with a password, an export target with a token), each with the test that tells: such a value
    is refused from a plain environment variable and accepted from a secret file.
    """

    secret_file_only: ClassVar[Mapping[str, Callable[[object], bool]]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init values, the environment, then the secrets directory when there is one."""
        environment = _EnvironmentWithoutSecrets(settings_cls, env_settings)
        directory = secrets_dir()
        if directory is None:
            return init_settings, environment
        return init_settings, environment, SecretsSettingsSource(settings_cls, directory)


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]


class KafkaSettings(RadstreamSettings):
    """How to reach the Kafka cluster (``RADSTREAM_KAFKA_*``).

    Without ``bootstrap`` the local tools (``radstream up``, tests) start the embedded broker.
    Production sets ``SASL_SSL`` with SCRAM, or ``SSL`` with client certificates (mTLS).
    """

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_KAFKA_", extra="ignore")

    bootstrap: str | None = None
    client_id: str = "radstream"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    # Wait for every in-sync replica before a publish counts as done: an event the broker
    # acknowledged must survive a broker loss (Kafka's default, 1, does not).
    acks: Literal["all", "1", "0"] = "all"
    # Tansu (the embedded broker) has no InitProducerId, so idempotent producers stay a setting.
    enable_idempotence: bool = False
    replication_factor: int = Field(default=1, ge=1)
    # Consumer tuning. Kafka answers a waiting fetch as soon as records arrive; the embedded
    # broker (Tansu) waits the whole fetch_max_wait_ms, and holds a group join for half the
    # session timeout, so local stacks and tests set both low (see EMBEDDED_BROKER_TUNING).
    fetch_max_wait_ms: int = Field(default=500, ge=0)
    session_timeout_ms: int = Field(default=10_000, ge=1000)

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise MisconfiguredError(
                "RADSTREAM_KAFKA_SECURITY_PROTOCOL uses SASL: set RADSTREAM_KAFKA_SASL_USERNAME "
                "and RADSTREAM_KAFKA_SASL_PASSWORD"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise MisconfiguredError(
                "mTLS needs both RADSTREAM_KAFKA_SSL_CERTFILE and RADSTREAM_KAFKA_SSL_KEYFILE"
            )
        return self

    @property
    def producer_acks(self) -> int | str:
        """``acks`` as Kafka clients take it: the string "all" or the number 0 or 1."""
        return "all" if self.acks == "all" else int(self.acks)

    def require_bootstrap(self) -> str:
        """Return the bootstrap servers, or explain how to set them."""
        if not self.bootstrap:
            raise MisconfiguredError(
                "RADSTREAM_KAFKA_BOOTSTRAP is not set: point it at the Kafka cluster "
                "(host:port[,host:port]) or start a local broker with `radstream up`"
            )
        return self.bootstrap


EMBEDDED_BROKER_TUNING = {
    "RADSTREAM_KAFKA_FETCH_MAX_WAIT_MS": "10",
    "RADSTREAM_KAFKA_SESSION_TIMEOUT_MS": "6000",
}
"""Consumer settings for the embedded broker, which answers fetches and joins slowly otherwise."""


class DeliverySettings(RadstreamSettings):
    """Retry, dead-letter and idempotency behaviour of consumers (``RADSTREAM_DELIVERY_*``)."""

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_DELIVERY_", extra="ignore")
    secret_file_only: ClassVar[Mapping[str, Callable[[object], bool]]] = {
        "idempotency_dsn": dsn_has_password
    }

    max_attempts: int = Field(default=3, ge=1)
    backoff_initial_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=5.0, ge=0)
    backoff_multiplier: float = Field(default=2.0, ge=1)
    # sqlite:///path (embedded default) or postgresql://user@host/db (production).
    idempotency_dsn: str = "sqlite:///.radstream/idempotency.sqlite3"
    # How long a done mark is kept; an event that comes again later runs its handler again.
    # Keep it longer than the topics' retention. 0 keeps marks for ever.
    idempotency_retention_days: float = Field(default=30.0, ge=0)
    # How often a consuming service deletes the marks older than that.
    idempotency_prune_interval_s: float = Field(default=3600.0, gt=0)
    # A record in flight each time this many consumers died (out of memory, say) goes to the
    # DLQ (kind "crashed") instead of killing the next one; counted in the idempotency store.
    max_crashes: int = Field(default=3, ge=1)
    # A record failing for want of a dependency (TransientError, MisconfiguredError) for this
    # long, across redeliveries and restarts, goes to the DLQ (kind "retry-time-exhausted") so
    # its partition moves on. 0 retries for ever.
    max_retry_s: float = Field(default=3600.0, ge=0)


class BlobSettings(RadstreamSettings):
    """Claim-check stores (``RADSTREAM_BLOB_*``): the PHI zone and the release zone are separate.

    URIs are ``file:///abs/path``, ``file://relative/path`` (against the working directory) or
    ``s3://bucket/prefix``.
    """

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_BLOB_", extra="ignore")

    phi_uri: str = "file://.radstream/blobs/phi"
    release_uri: str = "file://.radstream/blobs/release"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    # On-premises S3-compatible stores (MinIO, Ceph, StorageGRID) usually need "path".
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"

    @model_validator(mode="after")
    def _zones_are_apart(self) -> BlobSettings:
        if self.phi_uri.rstrip("/") == self.release_uri.rstrip("/"):
            raise MisconfiguredError(
                "RADSTREAM_BLOB_PHI_URI and RADSTREAM_BLOB_RELEASE_URI must differ: "
                "the release zone never shares storage with PHI"
            )
        return self


class ObservabilitySettings(RadstreamSettings):
    """Logging, tracing and the health/metrics endpoint (``RADSTREAM_OBS_*``)."""

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_OBS_", extra="ignore")

    log_level: str = "INFO"
    log_json: bool = True
    health_host: str = "127.0.0.1"
    health_port: int = Field(default=8081, ge=0, le=65535)
    service_name: str = "radstream"
