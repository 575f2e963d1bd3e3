"""Who may call the ingest HTTP endpoints (STOW-RS, FHIR, status): bearer tokens or mTLS.

Three modes, one per deployment (``RADSTREAM_INGEST_HTTP_AUTH``):

* ``bearer`` (default) -- ``Authorization: Bearer <token>``. Only the SHA-256 of each token is
  configured, keyed by a subject name (``{"ris": "9f86d0..."}``); the subject is the sender
  identity in audit records. A presented token is hashed and compared with every configured
  hash in constant time, so neither the token nor which subject it almost matched leaks
  through timing.
* ``mtls`` -- the server speaks TLS and requires a client certificate signed by the configured
  CA; the certificate's subject CN is the sender identity, optionally checked against an
  allowlist. The TLS handshake itself refuses a missing or untrusted certificate.
* ``open`` -- no authentication, for a local demo only; it must be chosen explicitly and the
  server logs a loud warning at every start.

Each authenticated subject (token subject, certificate CN) may use only the scopes it is
granted (``RADSTREAM_INGEST_HTTP_SCOPES``): ``stow`` (store instances), ``fhir`` (post
resources), ``query`` (the status lookups, which list study UIDs) and ``complete`` (the
completion trigger). A subject without an entry is granted nothing (fail closed); ``open`` mode
grants everything, as it authenticates no one.

Refusals are RFC 6750 / RFC 9110 shaped: 401 with ``WWW-Authenticate`` when credentials are
missing or wrong, 403 when an authenticated client is not allowed or lacks the scope. They are
counted in ``radstream_ingest_refused_total{channel="http"}`` and never echo the presented
credentials; a missing scope also writes an audit record (outcome ``scope_missing``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

from fastapi import Request
from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from radstream.common.settings import RadstreamSettings
from radstream.ingest.audit import ReceiptAudit, ReceiptRecord
from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.name_lists import parse_names
from radstream.ingest.receipt import Sender
from radstream.ingest.rejections import Rejections

__all__ = [
    "AuthMode",
    "AuthenticationRefused",
    "HttpAuthenticator",
    "HttpSettings",
    "Principal",
    "Scope",
    "client_cn",
    "rfc4514_name",
    "token_sha256",
]

AuthMode = Literal["bearer", "mtls", "open"]
Scope = Literal["stow", "fhir", "query", "complete"]
"""What a credential may do: store instances, post FHIR resources, look up studies, complete."""

SCOPES: Final[tuple[str, ...]] = get_args(Scope)

log = logging.getLogger(__name__)

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Subjects appear in audit records and logs: keep them to plain identifiers.
_SUBJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)
_REALM: Final = "radstream-ingest"
_MiB: Final = 1024 * 1024
_SPECIAL: Final = frozenset(',+"\\<>;=')
# Attribute names of getpeercert() (OpenSSL long names) to RFC 4514 short names.
_SHORT_NAMES: Final = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "domainComponent": "DC",
    "streetAddress": "STREET",
    "userId": "UID",
}


def token_sha256(token: str) -> str:
    """The hex SHA-256 of a token, as ``RADSTREAM_INGEST_HTTP_TOKEN_SHA256`` expects it.

    The shell equivalent is ``printf %s "$TOKEN" | sha256sum``.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class HttpSettings(RadstreamSettings):
    """The ingest HTTP server (``RADSTREAM_INGEST_HTTP_*``): STOW-RS, FHIR and status lookups.

    ``token_sha256`` is a JSON object from subject name to the hex SHA-256 of that subject's
    token; the tokens themselves are never configured. Without any, bearer mode refuses every
    request (fail closed, with a warning at start), as an empty AE title list does for DICOM.
    ``mtls`` needs ``tls_certfile``, ``tls_keyfile`` and ``tls_client_cafile``;
    ``allowed_client_cns`` (comma list) narrows which client certificates are accepted, empty
    meaning any the CA signed.
    """

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_INGEST_HTTP_", extra="ignore")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8104, ge=0, le=65535)
    auth: AuthMode = "bearer"
    token_sha256: dict[str, str] = Field(default_factory=dict)
    # Subject (token subject or certificate CN) -> the scopes it is granted; absent: none.
    scopes: dict[str, frozenset[Scope]] = Field(default_factory=dict)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_client_cafile: Path | None = None
    allowed_client_cns: Annotated[frozenset[str], NoDecode] = frozenset()
    # A STOW-RS request body larger than this is refused with 413 while it streams in.
    max_request_bytes: int = Field(default=1024 * _MiB, gt=0)
    # FHIR resources are small; anything larger is refused with 413.
    max_fhir_bytes: int = Field(default=16 * _MiB, gt=0)
    # Instances in one STOW-RS request; a request with more is refused with 413.
    max_stow_parts: int = Field(default=1000, gt=0)
    # Requests handled at once; one more is answered 503 with Retry-After.
    max_concurrent_requests: int = Field(default=64, gt=0)
    # Base of RetrieveURL and Location headers, e.g. https://ingest.radiology.example; empty:
    # derived from the request.
    public_base_url: str = ""

    @field_validator("allowed_client_cns", mode="before")
    @classmethod
    def _names(cls, value: object) -> frozenset[str]:
        return parse_names(value)

    @field_validator("scopes", mode="before")
    @classmethod
    def _scopes(cls, value: object) -> dict[str, frozenset[str]]:
        if not isinstance(value, Mapping):
            raise IngestConfigurationError(
                'RADSTREAM_INGEST_HTTP_SCOPES is a JSON object: {"pacs": ["stow", "query"]}'
            )
        granted: dict[str, frozenset[str]] = {}
        for subject, scopes in value.items():
            names = parse_names(scopes)
            if not str(subject).strip() or not names <= set(SCOPES):
                raise IngestConfigurationError(
                    "RADSTREAM_INGEST_HTTP_SCOPES maps each subject to scopes out of "
                    + ", ".join(SCOPES)
                )
            granted[str(subject)] = names
        return granted

    @field_validator("token_sha256")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        checked: dict[str, str] = {}
        for subject, digest in value.items():
            if not _SUBJECT.match(subject):
                raise IngestConfigurationError(
                    "RADSTREAM_INGEST_HTTP_TOKEN_SHA256: subject names are 1-64 letters, "
                    "digits and ._@- (they appear in audit records)"
                )
            normalized = digest.strip().lower()
            if not _SHA256_HEX.match(normalized):
                raise IngestConfigurationError(
                    "RADSTREAM_INGEST_HTTP_TOKEN_SHA256 maps each subject to the 64-hex-digit "
                    'SHA-256 of its token (printf %s "$TOKEN" | sha256sum), not the token'
                )
            checked[subject] = normalized
        return checked

    @model_validator(mode="after")
    def _consistent(self) -> HttpSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise IngestConfigurationError(
                "HTTPS needs both RADSTREAM_INGEST_HTTP_TLS_CERTFILE and "
                "RADSTREAM_INGEST_HTTP_TLS_KEYFILE"
            )
        if (
            self.enabled
            and self.auth == "mtls"
            and (self.tls_certfile is None or self.tls_client_cafile is None)
        ):
            raise IngestConfigurationError(
                "RADSTREAM_INGEST_HTTP_AUTH=mtls needs RADSTREAM_INGEST_HTTP_TLS_CERTFILE, "
                "_TLS_KEYFILE and _TLS_CLIENT_CAFILE (the CA that signs client certificates)"
            )
        return self

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS."""
        return self.tls_certfile is not None


@dataclass(frozen=True, kw_only=True)
class Principal:
    """An authenticated caller: who (never PHI), how, and from where."""

    subject: str  # token subject, client certificate CN, or "anonymous" in open mode
    method: AuthMode
    address: str  # peer IP address


class AuthenticationRefused(Exception):  # noqa: N818 -- a refusal is an outcome, not a bug
    """A request without acceptable credentials; rendered as 401/403 by the app.

    ``reason`` is a fixed word for metrics and logs; ``challenge`` is the
    ``WWW-Authenticate`` value for a 401.
    """

    def __init__(
        self, status: int, reason: str, *, challenge: str | None = None, scope: str = ""
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.challenge = challenge
        self.scope = scope  # the scope that was missing, for a 403 scope_missing

    @property
    def headers(self) -> dict[str, str]:
        """Response headers of the refusal."""
        return {"WWW-Authenticate": self.challenge} if self.challenge else {}


class HttpAuthenticator:
    """A FastAPI dependency that returns the :class:`Principal` of a request or refuses it."""

    def __init__(
        self,
        *,
        mode: AuthMode,
        rejections: Rejections,
        token_hashes: Mapping[str, str] | None = None,
        allowed_client_cns: frozenset[str] = frozenset(),
        scopes: Mapping[str, frozenset[str]] | None = None,
        audit: ReceiptAudit | None = None,
    ) -> None:
        self.mode = mode
        self._rejections = rejections
        self._scopes = dict(scopes or {})
        self._audit = audit
        # Compared as bytes; the order is fixed so every request does the same work.
        self._hashes = tuple(
            (subject, bytes.fromhex(digest)) for subject, digest in (token_hashes or {}).items()
        )
        self._allowed_cns = allowed_client_cns

    @classmethod
    def from_settings(
        cls, settings: HttpSettings, rejections: Rejections, audit: ReceiptAudit | None = None
    ) -> HttpAuthenticator:
        """Build the authenticator the settings describe."""
        return cls(
            mode=settings.auth,
            rejections=rejections,
            token_hashes=settings.token_sha256,
            allowed_client_cns=settings.allowed_client_cns,
            scopes=settings.scopes,
            audit=audit,
        )

    async def __call__(self, request: Request) -> Principal:
        """Authenticate ``request``; raise :class:`AuthenticationRefused` when it is not."""
        return self.authenticate(request.scope)

    def requiring(self, scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
        """A FastAPI dependency: authenticate, then refuse with 403 unless ``scope`` is granted."""

        async def authorized(request: Request) -> Principal:
            principal = self.authenticate(request.scope)
            await self.authorize(principal, scope)
            return principal

        return authorized

    def granted(self, subject: str) -> frozenset[str]:
        """The scopes ``subject`` is granted (every one in ``open`` mode)."""
        if self.mode == "open":
            return frozenset(SCOPES)
        return self._scopes.get(subject, frozenset())

    async def authorize(self, principal: Principal, scope: Scope) -> None:
        """Raise a 403 :class:`AuthenticationRefused` unless ``principal`` has ``scope``.

        The refusal is counted, logged with the scope word, and audited (best effort: the
        refusal stands when the audit trail is away).
        """
        if scope in self.granted(principal.subject):
            return
        self._rejections.count("http", "scope_missing", status=403)
        if self._audit is not None:
            record = ReceiptRecord(
                sender=Sender(
                    channel="http", identity=principal.subject, address=principal.address
                ),
                outcome="scope_missing",
                kind=scope,
                size=0,
                sha256="",
                received_at=datetime.now(UTC),
            )
            try:
                await self._audit.sink.write(record)
            except Exception as exc:  # the 403 stands either way
                log.warning("scope refusal not audited", extra={"error_type": type(exc).__name__})
        raise AuthenticationRefused(403, "scope_missing", scope=scope)

    def authenticate(self, scope: Mapping[str, Any]) -> Principal:
        """Authenticate an ASGI HTTP scope."""
        client = scope.get("client")
        address = str(client[0]) if client else ""
        if self.mode == "open":
            return Principal(subject="anonymous", method="open", address=address)
        if self.mode == "mtls":
            return Principal(subject=self._client_cn(scope), method="mtls", address=address)
        return Principal(subject=self._bearer_subject(scope), method="bearer", address=address)

    def _bearer_subject(self, scope: Mapping[str, Any]) -> str:
        values = [v for k, v in scope.get("headers", ()) if bytes(k).lower() == b"authorization"]
        if not values:
            raise self._refuse(401, "missing_credentials", f'Bearer realm="{_REALM}"')
        match = _BEARER.match(bytes(values[0]).decode("latin-1")) if len(values) == 1 else None
        if match is None:
            raise self._refuse(
                401,
                "malformed_authorization",
                f'Bearer realm="{_REALM}", error="invalid_request"',
            )
        presented = hashlib.sha256(match.group(1).encode("ascii")).digest()
        subject: str | None = None
        for candidate, digest in self._hashes:
            # No early exit: every configured hash is compared on every request.
            if hmac.compare_digest(presented, digest) and subject is None:
                subject = candidate
        if subject is None:
            raise self._refuse(
                401, "invalid_token", f'Bearer realm="{_REALM}", error="invalid_token"'
            )
        return subject

    def _client_cn(self, scope: Mapping[str, Any]) -> str:
        tls = (scope.get("extensions") or {}).get("tls") or {}
        name = tls.get("client_cert_name")
        if not name:
            # Only reachable behind a proxy or server that did not require the certificate.
            raise self._refuse(401, "no_client_certificate", f'Mutual realm="{_REALM}"')
        cn = client_cn(str(name))
        if cn is None:
            raise self._refuse(403, "client_certificate_without_cn")
        if self._allowed_cns and cn not in self._allowed_cns:
            raise self._refuse(403, "client_not_allowed")
        return cn

    def _refuse(
        self, status: int, reason: str, challenge: str | None = None
    ) -> AuthenticationRefused:
        self._rejections.count("http", reason, status=status)
        return AuthenticationRefused(status, reason, challenge=challenge)


def client_cn(distinguished_name: str) -> str | None:
    """The (most specific) CN of an RFC 4514 distinguished name, unescaped; None if it has none.

    RFC 4514 writes the most specific RDN first, so the first ``CN=`` is the subject's own.
    """
    for rdn in _split_unescaped(distinguished_name, ","):
        for attribute in _split_unescaped(rdn, "+"):
            key, sep, value = attribute.partition("=")
            if sep and key.strip().upper() in ("CN", "2.5.4.3"):
                return _unescape(value) or None
    return None


def rfc4514_name(subject: Sequence[Sequence[tuple[str, str]]]) -> str:
    """An RFC 4514 string of a subject as :meth:`ssl.SSLSocket.getpeercert` returns it.

    ``getpeercert()`` lists RDNs from the root down; RFC 4514 writes the most specific first.
    """
    rdns = []
    for rdn in reversed(subject):
        attributes = [f"{_SHORT_NAMES.get(key, key)}={_escape(value)}" for key, value in rdn]
        rdns.append("+".join(attributes))
    return ",".join(rdns)


def _escape(value: str) -> str:
    escaped = "".join("\\" + c if c in _SPECIAL else c for c in value)
    if escaped.startswith((" ", "#")):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    out, i = bytearray(), 0
    while i < len(value):
        char = value[i]
        if char == "\\" and _is_hex_pair(value[i + 1 : i + 3]):
            out.append(int(value[i + 1 : i + 3], 16))
            i += 3
        elif char == "\\" and i + 1 < len(value):
            out.extend(value[i + 1].encode("utf-8"))
            i += 2
        else:
            out.extend(char.encode("utf-8"))
            i += 1
    return out.decode("utf-8", errors="replace")


def _is_hex_pair(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)
